//! Tools that read and change files: read, write, edit, delete, list.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{object_schema, parse_input, source_path, PathInput, Tool, ToolOutput};
use crate::agent::model::ToolSpec;
use crate::diff::file_diff;
use crate::error::{Error, Result};
use crate::sandbox::{ProjectPath, Sandbox};

/// Largest file content returned by `read_file`, in bytes.
pub const MAX_READ_BYTES: usize = 100_000;
/// Largest file `write_file`/`edit_file` will produce, in bytes.
pub const MAX_WRITE_BYTES: usize = 1_000_000;
/// Most entries `list_files` returns.
pub const MAX_LIST_ENTRIES: usize = 1_000;

fn path_prop() -> Value {
    json!({ "type": "string", "description": "Path relative to the project root, e.g. src/App.tsx" })
}

/// The file's bytes, or `None` when it does not exist.
async fn read_existing(sandbox: &dyn Sandbox, path: &ProjectPath) -> Result<Option<Vec<u8>>> {
    match sandbox.read_file(path).await {
        Ok(b) => Ok(Some(b)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn counts(added: u32, removed: u32) -> String {
    format!("(+{added} \u{2212}{removed})")
}

/// `read_file {path}`: a file's text.
pub struct ReadFile;

#[async_trait]
impl Tool for ReadFile {
    fn name(&self) -> &'static str {
        "read_file"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "Read a text file of the project. Read a file before editing it.".into(),
            input_schema: object_schema(json!({ "path": path_prop() }), &["path"]),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: PathInput = parse_input(self.name(), input, r#"{"path": "src/App.tsx"}"#)?;
        let path = ProjectPath::parse(&i.path)?;
        let bytes = sandbox.read_file(&path).await.map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!(
                "{path} does not exist; use list_files to see the project's files"
            )),
            other => other,
        })?;
        let total = bytes.len();
        let content = match String::from_utf8(bytes) {
            Err(_) => {
                format!("{path} is a binary file ({total} bytes); it cannot be shown as text")
            }
            Ok(mut text) => {
                if super::truncate_utf8(&mut text, MAX_READ_BYTES) {
                    text.push_str(&format!(
                        "\n[truncated: the file is {total} bytes; only the first {MAX_READ_BYTES} are shown]"
                    ));
                }
                text
            }
        };
        Ok(ToolOutput::ok(content, format!("read {path}")).with_path(&path))
    }
}

#[derive(Deserialize)]
struct WriteInput {
    path: String,
    content: String,
}

/// `write_file {path, content}`: creates or replaces a whole file.
pub struct WriteFile;

#[async_trait]
impl Tool for WriteFile {
    fn name(&self) -> &'static str {
        "write_file"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "Create a file or replace its whole content. Parent folders are created. \
                          For small changes to an existing file prefer edit_file."
                .into(),
            input_schema: object_schema(
                json!({
                    "path": path_prop(),
                    "content": { "type": "string", "description": "The complete new file content" },
                }),
                &["path", "content"],
            ),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: WriteInput = parse_input(
            self.name(),
            input,
            r#"{"path": "src/components/Button.tsx", "content": "..."}"#,
        )?;
        let path = source_path(&i.path)?;
        if i.content.len() > MAX_WRITE_BYTES {
            return Err(Error::TooLarge(format!(
                "content is {} bytes; files are limited to {MAX_WRITE_BYTES} bytes, split it into modules",
                i.content.len()
            )));
        }
        let before = read_existing(sandbox, &path).await?;
        sandbox.write_file(&path, i.content.as_bytes()).await?;
        let diff = file_diff(path.as_str(), before.as_deref(), Some(i.content.as_bytes()));
        let verb = if before.is_some() { "wrote" } else { "created" };
        let summary = format!("{verb} {path} {}", counts(diff.added, diff.removed));
        let mut out = ToolOutput::ok(
            format!("{verb} {path} ({} bytes)", i.content.len()),
            summary,
        )
        .with_path(&path);
        out.file_diff = Some(diff);
        Ok(out)
    }
}

#[derive(Deserialize)]
struct EditInput {
    path: String,
    old_string: String,
    new_string: String,
    #[serde(default)]
    replace_all: bool,
}

/// `edit_file {path, old_string, new_string}`: exact string replacement.
pub struct EditFile;

#[async_trait]
impl Tool for EditFile {
    fn name(&self) -> &'static str {
        "edit_file"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "Replace an exact string in a file. old_string must appear exactly once \
                          (include enough surrounding lines to make it unique) unless replace_all \
                          is true. Whitespace and indentation must match the file exactly."
                .into(),
            input_schema: object_schema(
                json!({
                    "path": path_prop(),
                    "old_string": { "type": "string", "description": "Exact text to find" },
                    "new_string": { "type": "string", "description": "Replacement text" },
                    "replace_all": { "type": "boolean", "description": "Replace every occurrence (default false)" },
                }),
                &["path", "old_string", "new_string"],
            ),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: EditInput = parse_input(
            self.name(),
            input,
            r#"{"path": "src/App.tsx", "old_string": "<h1>Hello</h1>", "new_string": "<h1>Hi</h1>"}"#,
        )?;
        let path = source_path(&i.path)?;
        if i.old_string.is_empty() {
            return Err(Error::InvalidInput(
                "old_string is empty; to create or replace a whole file use write_file".into(),
            ));
        }
        if i.old_string == i.new_string {
            return Err(Error::InvalidInput(
                "old_string and new_string are identical; nothing would change".into(),
            ));
        }
        let before = read_existing(sandbox, &path).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "{path} does not exist; create it with write_file, or use list_files to find the right path"
            ))
        })?;
        let text = String::from_utf8(before.clone()).map_err(|_| {
            Error::InvalidInput(format!(
                "{path} is a binary file; it cannot be edited as text"
            ))
        })?;
        let count = text.matches(&i.old_string).count();
        if count == 0 {
            return Err(Error::InvalidInput(format!(
                "old_string was found 0 times in {path}; it must match the file exactly, \
                 including whitespace and indentation. read_file {path} and copy the text from it"
            )));
        }
        if count > 1 && !i.replace_all {
            return Err(Error::InvalidInput(format!(
                "old_string was found {count} times in {path}; include more surrounding lines so it \
                 matches exactly once, or set replace_all to true"
            )));
        }
        let after = if i.replace_all {
            text.replace(&i.old_string, &i.new_string)
        } else {
            text.replacen(&i.old_string, &i.new_string, 1)
        };
        if after.len() > MAX_WRITE_BYTES {
            return Err(Error::TooLarge(format!(
                "the edited file would be {} bytes; files are limited to {MAX_WRITE_BYTES} bytes",
                after.len()
            )));
        }
        sandbox.write_file(&path, after.as_bytes()).await?;
        let diff = file_diff(path.as_str(), Some(&before), Some(after.as_bytes()));
        let summary = format!("edited {path} {}", counts(diff.added, diff.removed));
        let replaced = if count == 1 {
            "1 occurrence".to_string()
        } else {
            format!("{count} occurrences")
        };
        let mut out =
            ToolOutput::ok(format!("edited {path}: replaced {replaced}"), summary).with_path(&path);
        out.file_diff = Some(diff);
        Ok(out)
    }
}

/// `delete_file {path}`.
pub struct DeleteFile;

#[async_trait]
impl Tool for DeleteFile {
    fn name(&self) -> &'static str {
        "delete_file"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "Delete a file of the project.".into(),
            input_schema: object_schema(json!({ "path": path_prop() }), &["path"]),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: PathInput = parse_input(self.name(), input, r#"{"path": "src/Old.tsx"}"#)?;
        let path = source_path(&i.path)?;
        let before = read_existing(sandbox, &path).await?;
        let Some(before) = before else {
            return Err(Error::NotFound(format!(
                "{path} does not exist; use list_files to see the project's files"
            )));
        };
        sandbox.delete_file(&path).await?;
        let diff = file_diff(path.as_str(), Some(&before), None);
        let summary = format!("deleted {path} {}", counts(diff.added, diff.removed));
        let mut out = ToolOutput::ok(format!("deleted {path}"), summary).with_path(&path);
        out.file_diff = Some(diff);
        Ok(out)
    }
}

#[derive(Deserialize)]
struct ListInput {
    #[serde(default)]
    path: Option<String>,
}

/// `list_files {path?}`: source files under a folder (all by default).
pub struct ListFiles;

#[async_trait]
impl Tool for ListFiles {
    fn name(&self) -> &'static str {
        "list_files"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "List the project's source files with their sizes (node_modules, dist \
                          and .git are never listed). Optionally only under a folder."
                .into(),
            input_schema: object_schema(
                json!({ "path": { "type": "string", "description": "Folder to list, e.g. src (default: the whole project)" } }),
                &[],
            ),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: ListInput = parse_input(self.name(), input, r#"{"path": "src"}"#)?;
        let prefix = match i.path.as_deref().map(str::trim) {
            None | Some("") | Some(".") | Some("./") => None,
            Some(p) => Some(format!("{}/", ProjectPath::parse(p)?.as_str())),
        };
        let entries: Vec<_> = sandbox
            .list_files()
            .await?
            .into_iter()
            .filter(|e| prefix.as_deref().is_none_or(|p| e.path.starts_with(p)))
            .collect();
        let total = entries.len();
        let mut lines: Vec<String> = entries
            .iter()
            .take(MAX_LIST_ENTRIES)
            .map(|e| format!("{} ({} bytes)", e.path, e.size))
            .collect();
        if total > MAX_LIST_ENTRIES {
            lines.push(format!(
                "[truncated: {total} files; only the first {MAX_LIST_ENTRIES} are listed; pass a folder to narrow]"
            ));
        }
        if lines.is_empty() {
            lines.push("(no files)".into());
        }
        let summary = match &prefix {
            Some(p) => format!("listed {} ({total} files)", p.trim_end_matches('/')),
            None => format!("listed files ({total})"),
        };
        Ok(ToolOutput::ok(lines.join("\n"), summary))
    }
}
