//! "Edit text" on an element selected in the preview: the literal text of a
//! JSX element changed in its source file without the model, recorded as a
//! version like a run's changes (so it can be diffed and reverted).
//!
//! Only where that is exact: the element at `path:line:column` (as the
//! preview's `data-apna-src` gives it) must open there, and its first child
//! must be plain JSX text equal to what the person saw. Text that comes from
//! an expression (`{title}`), or new text with `{`, `}`, `<` or `>` (which
//! would change the JSX), is refused with a message to ask the agent instead.

use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::ToSchema;

use super::lock::MaintenanceLock;
use super::version::record_version;
use crate::blob::BlobStore;
use crate::domain::{source_location, FileDiff, ProjectStatus, Version, MAX_SOURCE_CHARS};
use crate::error::{Error, Result};
use crate::sandbox::{ProjectPath, Sandbox};
use crate::store::Store;

/// Longest text a quick edit takes.
pub const MAX_TEXT_EDIT: usize = 1000;

/// A text change to one element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TextEdit {
    /// Where the element is written, `path:line:column`, from the selection
    /// (the same rule as a selection's `source`).
    #[schema(
        max_length = 256,
        pattern = r"^[^/\\:.~\x00-\x1F\x7F-\x9F][^/\\:\x00-\x1F\x7F-\x9F]*(/[^/\\:.~\x00-\x1F\x7F-\x9F][^/\\:\x00-\x1F\x7F-\x9F]*)*:[1-9][0-9]{0,8}:[1-9][0-9]{0,8}$",
        example = "src/App.tsx:12:5"
    )]
    pub source: String,
    /// The element's text as the preview shows it.
    #[schema(min_length = 1, max_length = 1000)]
    pub old_text: String,
    /// The text it should have: not only white space, and without `{`, `}`,
    /// `<` or `>` (which would change the code, not the text).
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^{}<>]*[^{}<>\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^{}<>]*$"
    )]
    pub new_text: String,
}

/// What a quick edit did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TextEdited {
    /// The version recording it.
    pub version: Version,
    /// The file's change.
    pub file_diff: FileDiff,
}

/// Collapses runs of whitespace as JSX does for text children.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Byte offset of 1-based `line` and `column` (in characters) in `text`.
fn offset_of(text: &str, line: u32, column: u32) -> Option<usize> {
    let start = if line == 1 {
        0
    } else {
        text.match_indices('\n').nth(line as usize - 2)?.0 + 1
    };
    let rest = &text[start..];
    let (i, _) = rest
        .char_indices()
        .take_while(|(_, c)| *c != '\n')
        .nth(column as usize - 1)?;
    Some(start + i)
}

/// Where the opening tag starting at `at` ends (the index after its `>`),
/// skipping `>` inside `{…}` expressions and quoted attribute values;
/// `None` for a self-closing tag or malformed source.
fn end_of_opening_tag(text: &str, at: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut depth, mut quote) = (0usize, None::<u8>);
    let mut i = at + 1;
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'' | b'`') => quote = Some(b),
            (None, b'{') => depth += 1,
            (None, b'}') => depth = depth.saturating_sub(1),
            (None, b'>') if depth == 0 => {
                return (bytes[i - 1] != b'/').then_some(i + 1);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `source` with the text of the element at `line:column` changed from
/// `old_text` to `new_text` (see the module doc for when that is refused).
pub fn replace_element_text(
    source: &str,
    line: u32,
    column: u32,
    old_text: &str,
    new_text: &str,
) -> Result<String> {
    let agent = "; ask the agent to change it instead";
    if new_text.trim().is_empty() {
        return Err(Error::InvalidInput("the new text is empty".into()));
    }
    if new_text.contains(['{', '}', '<', '>']) {
        return Err(Error::InvalidInput(format!(
            "the new text has {{, }}, < or >, which would change the code, not just the text{agent}"
        )));
    }
    let at = offset_of(source, line, column)
        .filter(|&i| source[i..].starts_with('<'))
        .ok_or_else(|| {
            Error::Conflict(format!(
                "no element starts at line {line}, column {column} any more (the file changed){agent}"
            ))
        })?;
    let open_end = end_of_opening_tag(source, at)
        .ok_or_else(|| Error::Conflict(format!("the element has no text of its own{agent}")))?;
    let text_end = source[open_end..]
        .find(['<', '{'])
        .map_or(source.len(), |i| open_end + i);
    let region = &source[open_end..text_end];
    if region.trim().is_empty() || squash(region) != squash(old_text) {
        return Err(Error::Conflict(format!(
            "the element's text is not written as that literal in the source (it may come from code){agent}"
        )));
    }
    let lead = region.len() - region.trim_start().len();
    let trail = region.len() - region.trim_end().len();
    Ok(format!(
        "{}{}{}",
        &source[..open_end + lead],
        new_text.trim(),
        &source[text_end - trail..]
    ))
}

/// Applies `edit` to the project's sandbox and records it as a new version.
/// Holds the run lock meanwhile, so it fails with `Conflict` during a run.
pub async fn edit_text(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sandbox: &dyn Sandbox,
    project_id: &str,
    edit: &TextEdit,
) -> Result<TextEdited> {
    let span = tracing::info_span!("edit_text", project_id = %project_id, source = %edit.source);
    async move {
        if edit.old_text.chars().count() > MAX_TEXT_EDIT
            || edit.new_text.chars().count() > MAX_TEXT_EDIT
        {
            return Err(Error::InvalidInput(format!(
                "the texts may have at most {MAX_TEXT_EDIT} characters"
            )));
        }
        let (path, line, column) = source_location(&edit.source).ok_or_else(|| {
            Error::InvalidInput(format!(
                "source must look like src/App.tsx:12:5 (at most {MAX_SOURCE_CHARS} characters), got {:?}",
                edit.source.chars().take(80).collect::<String>()
            ))
        })?;
        let path = ProjectPath::parse(path)?;
        // Well-formed, but not where the app's source is: like a missing file.
        if path.is_in_ignored_dir() {
            return Err(Error::NotFound(format!(
                "{path} is not one of the project's source files"
            )));
        }
        let lock = match MaintenanceLock::acquire(store, project_id, "edit").await? {
            Ok(lock) => lock,
            Err(_) => return Err(Error::Conflict(
                "the project is busy (a generation, restore or wake); try again when it finishes"
                    .into(),
            )),
        };
        let result = async {
            let project = store
                .get_project(project_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("project {project_id} does not exist")))?;
            match project.status {
                ProjectStatus::Ready | ProjectStatus::Failed => {}
                ProjectStatus::Hibernated => {
                    return Err(Error::NotReady(
                        "the project is asleep; open it to wake it first".into(),
                    ))
                }
                other => {
                    return Err(Error::Conflict(format!(
                        "cannot edit while the project is {}",
                        other.as_str()
                    )))
                }
            }
            let before = match sandbox.read_file(&path).await {
                Ok(b) => b,
                Err(Error::NotFound(_)) => {
                    return Err(Error::NotFound(format!("{path} does not exist")))
                }
                Err(e) => return Err(e),
            };
            // The request is well-formed; the file is simply not one that
            // holds elements (any more), as when the element moved.
            let text = String::from_utf8(before.clone()).map_err(|_| {
                Error::Conflict(format!("{path} is not a text file, so no element is there"))
            })?;
            let after = replace_element_text(&text, line, column, &edit.old_text, &edit.new_text)?;
            sandbox.write_file(&path, after.as_bytes()).await?;
            let file_diff =
                crate::diff::file_diff(path.as_str(), Some(&before), Some(after.as_bytes()));
            let summary = format!(
                "Edited text in {path}: “{}” → “{}”",
                squash(&edit.old_text).chars().take(60).collect::<String>(),
                edit.new_text.trim().chars().take(60).collect::<String>()
            );
            let version = record_version(store, blobs, sandbox, project_id, None, &summary).await?;
            Ok(TextEdited { version, file_diff })
        }
        .await;
        lock.release(store).await;
        result
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "export default function App() {\n  return (\n    <main className=\"p-8\">\n      <h1 className=\"text-3xl\" onClick={() => go(\"a>b\")}>\n        Habit   Tracker\n      </h1>\n      <p>{count} done</p>\n      <img src=\"/x.png\" />\n    </main>\n  );\n}\n";

    #[test]
    fn replaces_the_literal_text_of_the_element_at_the_location() {
        let out = replace_element_text(APP, 4, 7, "Habit Tracker", "Daily Habits").unwrap();
        assert!(out.contains("<h1 className=\"text-3xl\" onClick={() => go(\"a>b\")}>\n        Daily Habits\n      </h1>"), "{out}");
        assert_eq!(out.lines().count(), APP.lines().count());
    }

    #[test]
    fn refuses_what_is_not_an_exact_literal() {
        // Text from an expression.
        let e = replace_element_text(APP, 7, 7, "3 done", "x").unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        // A self-closing element.
        assert!(replace_element_text(APP, 8, 7, "", "x").is_err());
        // Not an element at that place.
        assert!(replace_element_text(APP, 5, 3, "Habit Tracker", "x").is_err());
        // Text the person did not see.
        assert!(replace_element_text(APP, 4, 7, "Other", "x").is_err());
        // New text that would be code.
        let e = replace_element_text(APP, 4, 7, "Habit Tracker", "{alert(1)}").unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        // Out of range.
        assert!(replace_element_text(APP, 99, 1, "a", "b").is_err());
    }
}
