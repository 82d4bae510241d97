//! `save_image`: copies an image the person attached into the project, for
//! when they want it used in the app (a logo, a hero picture).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{object_schema, parse_input, source_path, Tool, ToolOutput};
use crate::agent::model::ToolSpec;
use crate::blob::BlobStore;
use crate::diff::file_diff;
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;

#[derive(Deserialize)]
struct SaveInput {
    image_id: String,
    path: String,
}

/// `save_image {image_id, path}`: writes one of the project's stored images to `path`.
pub struct SaveImage {
    /// Where the project's images are.
    pub blobs: Arc<dyn BlobStore>,
    /// The project whose images may be copied.
    pub project_id: String,
}

#[async_trait]
impl Tool for SaveImage {
    fn name(&self) -> &'static str {
        "save_image"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "Copy an image the person attached to a message into the project, \
                          e.g. to public/hero.png, so the app can show it (as /hero.png). \
                          Use the image id given next to the image. The extension should \
                          match the image's type."
                .into(),
            input_schema: object_schema(
                json!({
                    "image_id": { "type": "string", "description": "The attached image's id (64 hex digits)" },
                    "path": { "type": "string", "description": "Where to put it, e.g. public/logo.png" },
                }),
                &["image_id", "path"],
            ),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: SaveInput = parse_input(
            self.name(),
            input,
            r#"{"image_id": "3fa1…", "path": "public/hero.png"}"#,
        )?;
        let path = source_path(&i.path)?;
        let (bytes, media_type) =
            crate::images::load(self.blobs.as_ref(), &self.project_id, &i.image_id)
                .await
                .map_err(|e| match e {
                    Error::NotFound(_) => Error::NotFound(format!(
                        "no attached image has id {:?}; use the id written next to the image",
                        i.image_id
                    )),
                    other => other,
                })?;
        let before = sandbox.read_file(&path).await.ok();
        sandbox.write_file(&path, &bytes).await?;
        let diff = file_diff(path.as_str(), before.as_deref(), Some(&bytes));
        let mut out = ToolOutput::ok(
            format!(
                "saved the image to {path} ({} bytes, {})",
                bytes.len(),
                media_type.as_str()
            ),
            format!("saved image to {path}"),
        )
        .with_path(&path);
        out.file_diff = Some(diff);
        Ok(out)
    }
}
