//! Images in messages: how they are uploaded (base64 inside the create and
//! chat JSON) and read back (`GET /api/projects/{id}/images/{image_id}`).
//!
//! Why JSON with base64 and not multipart: a message and its images are one
//! request, checked whole before anything is stored (a refused image leaves
//! no project, run or blob behind, and there is no upload area to clean up
//! for a project that does not exist yet); it keeps the cross-site rule
//! that a `POST` must be JSON (`multipart/form-data` is what a cross-site
//! HTML form sends); and API Gateway hands a Lambda a binary body base64-
//! encoded anyway. The cost is a third more bytes on the wire. On Lambda a
//! request is at most 6 MB, so there a message's images together must stay
//! under about 4 MB (the UI scales large images down before sending).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiPath, ApiResult, ErrorBody};
use super::projects::owned_project;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::images::{PreparedImage, MAX_IMAGES, MAX_IMAGE_BYTES};

/// Largest create or chat body: five images of the largest size, base64,
/// plus the longest prompt (see [`super::BODY_LIMIT`]).
pub const MESSAGE_BODY_LIMIT: usize =
    MAX_IMAGES * (MAX_IMAGE_BYTES * 4 / 3 + 1024) + super::BODY_LIMIT;

/// One attached image.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ImageUpload {
    /// The image file, base64 (standard alphabet, padded; a data URL prefix
    /// such as `data:image/png;base64,` is allowed): PNG, JPEG, WebP or GIF,
    /// judged by the bytes (bytes that are no such image are refused with
    /// 400, which no schema can say), at most 5 MiB decoded (6,990,508 base64
    /// characters). Larger than 1568 px on the long edge or about 1.19
    /// megapixels, it is scaled down to that.
    #[schema(
        min_length = 4,
        max_length = 6990508,
        content_encoding = "base64",
        pattern = r"^(data:[^,]*,)?([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    pub data: String,
    /// The file name, only to name the image in errors.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// Decodes and checks a message's images (at most five), naming each in
/// errors; nothing is stored.
pub async fn prepare_uploads(uploads: &[ImageUpload]) -> Result<Vec<PreparedImage>> {
    if uploads.len() > MAX_IMAGES {
        return Err(Error::InvalidInput(format!(
            "a message may carry at most {MAX_IMAGES} images; this one has {}",
            uploads.len()
        )));
    }
    let mut decoded = Vec::with_capacity(uploads.len());
    for (i, u) in uploads.iter().enumerate() {
        let label = match u.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => format!(
                "image {} ({:?})",
                i + 1,
                n.chars().take(80).collect::<String>()
            ),
            None => format!("image {}", i + 1),
        };
        let b64 = match u.data.strip_prefix("data:") {
            Some(rest) => rest.split_once(',').map_or("", |(_, d)| d),
            None => u.data.as_str(),
        };
        if b64.len() > (MAX_IMAGE_BYTES + 3) * 4 / 3 + 4 {
            return Err(Error::TooLarge(format!(
                "{label} is larger than {} MB",
                MAX_IMAGE_BYTES / 1_048_576
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| Error::InvalidInput(format!("{label} is not valid base64: {e}")))?;
        decoded.push((bytes, label));
    }
    crate::images::prepare_all(decoded).await
}

/// One image attached to the project's messages.
#[utoipa::path(get, path = "/api/projects/{id}/images/{image_id}",
    params(("id" = String, Path, description = "Project id"),
           ("image_id" = String, Path, pattern = "^[0-9a-f]{64}$",
             description = "The image's id (its SHA-256, 64 lowercase hex digits), from a message's image block")),
    responses((status = 200, description = "The image: image/png, image/jpeg, image/webp or image/gif", content_type = "image/png"),
              (status = 404, body = ErrorBody)))]
pub async fn get_image(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, image_id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    owned_project(&state, &caller, &id).await?;
    let (bytes, media_type) = crate::images::load(&*state.blobs, &id, &image_id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, media_type.as_str()),
            // Content-addressed: the bytes under this URL never change.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
        ],
        bytes,
    )
        .into_response())
}
