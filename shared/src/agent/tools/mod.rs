//! The agent's tools: small structs, each with its JSON schema and an
//! `execute` against a [`Sandbox`].
//!
//! A tool never fails the step: bad input, a refused path or a sandbox error
//! becomes a [`ToolOutput`] with `is_error` set and a message the model can act
//! on. Tool output is untrusted text (it may hold anything a file or command
//! printed) and is only ever sent back to the model as a `tool_result`.

mod files;
mod image;
mod search;
mod shell;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::ToolSpec;
use crate::domain::FileDiff;
use crate::error::{Error, Result};
use crate::sandbox::{ProjectPath, Sandbox};

pub use files::{DeleteFile, EditFile, ListFiles, ReadFile, WriteFile};
pub use image::SaveImage;
pub use search::SearchFiles;
pub use shell::{CheckLogs, RunCommand};

/// What one tool call produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// Text sent back to the model as the `tool_result` content.
    pub content: String,
    /// Whether the call failed (sent as `is_error`).
    pub is_error: bool,
    /// One line for the person, e.g. `edited src/App.tsx (+12 −3)`.
    pub summary: String,
    /// The file the call concerned, if one.
    #[serde(default)]
    pub path: Option<String>,
    /// The change it made to that file, if any.
    #[serde(default)]
    pub file_diff: Option<FileDiff>,
}

impl ToolOutput {
    /// A successful result without a file change.
    pub fn ok(content: impl Into<String>, summary: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            is_error: false,
            summary: summary.into(),
            path: None,
            file_diff: None,
        }
    }

    /// A failed call; `message` tells the model what to do differently.
    pub fn error(tool: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ToolOutput {
            summary: format!("{tool} failed"),
            content: message,
            is_error: true,
            path: None,
            file_diff: None,
        }
    }

    fn with_path(mut self, path: &ProjectPath) -> Self {
        self.path = Some(path.as_str().to_string());
        self
    }
}

/// One tool the model can call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &'static str;
    /// Name, description and input schema, as sent to the model.
    fn spec(&self) -> ToolSpec;
    /// Runs the call. `Err` is turned into an `is_error` result by [`Toolbox::execute`].
    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput>;
}

/// The set of tools offered to the model.
pub struct Toolbox {
    tools: Vec<Box<dyn Tool>>,
}

impl Default for Toolbox {
    fn default() -> Self {
        Self::standard()
    }
}

impl Toolbox {
    /// All eight tools: files, search, logs and commands.
    pub fn standard() -> Self {
        Toolbox {
            tools: vec![
                Box::new(ReadFile),
                Box::new(WriteFile),
                Box::new(EditFile),
                Box::new(DeleteFile),
                Box::new(ListFiles),
                Box::new(SearchFiles),
                Box::new(CheckLogs),
                Box::new(RunCommand),
            ],
        }
    }

    /// The eight tools plus `save_image` for the images attached to `project_id`'s messages.
    pub fn for_project(
        blobs: std::sync::Arc<dyn crate::blob::BlobStore>,
        project_id: &str,
    ) -> Self {
        let mut toolbox = Self::standard();
        toolbox.tools.push(Box::new(SaveImage {
            blobs,
            project_id: project_id.to_string(),
        }));
        toolbox
    }

    /// The specs, in a stable order (stable so the prompt cache keeps hitting).
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec()).collect()
    }

    /// Runs tool `name`; every failure, including an unknown name, is an error result.
    pub async fn execute(&self, sandbox: &dyn Sandbox, name: &str, input: &Value) -> ToolOutput {
        let Some(tool) = self.tools.iter().find(|t| t.name() == name) else {
            let names: Vec<&str> = self.tools.iter().map(|t| t.name()).collect();
            return ToolOutput::error(
                name,
                format!(
                    "there is no tool named {name:?}; available tools: {}",
                    names.join(", ")
                ),
            );
        };
        match tool.run(sandbox, input).await {
            Ok(out) => out,
            Err(e) => {
                let path = input
                    .get("path")
                    .and_then(Value::as_str)
                    .and_then(|p| ProjectPath::parse(p).ok());
                let mut out = ToolOutput::error(name, tool_error_message(&e));
                if let Some(p) = path {
                    out.summary = format!("{name} {p} failed");
                    out = out.with_path(&p);
                }
                out
            }
        }
    }
}

// The model reads these: say what went wrong without internal prefixes where they add nothing.
fn tool_error_message(e: &Error) -> String {
    match e {
        Error::InvalidInput(m) | Error::NotFound(m) | Error::Conflict(m) | Error::TooLarge(m) => {
            m.clone()
        }
        other => other.to_string(),
    }
}

/// Parses a tool's input object, with an error that shows the expected shape.
fn parse_input<T: DeserializeOwned>(tool: &str, input: &Value, example: &str) -> Result<T> {
    serde_json::from_value(input.clone()).map_err(|e| {
        Error::InvalidInput(format!(
            "invalid input for {tool}: {e}; expected an object like {example}"
        ))
    })
}

/// Cuts `text` to at most `max` bytes on a character boundary; returns whether it cut.
fn truncate_utf8(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    true
}

/// A path from tool input, with the ProjectPath rules and source-only folders refused.
fn source_path(raw: &str) -> Result<ProjectPath> {
    let p = ProjectPath::parse(raw)?;
    if p.is_in_ignored_dir() {
        return Err(Error::InvalidInput(format!(
            "{p} is inside node_modules, dist, .git or .vite, which are not source; \
             change source files, and use run_command with npm to manage packages"
        )));
    }
    Ok(p)
}

/// Input with just a path.
#[derive(Deserialize)]
struct PathInput {
    path: String,
}

fn object_schema(props: Value, required: &[&str]) -> Value {
    serde_json::json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests;
