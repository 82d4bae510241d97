//! `search_files`: substring or regex search over the files `list_files` lists.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{object_schema, parse_input, Tool, ToolOutput};
use crate::agent::model::ToolSpec;
use crate::error::{Error, Result};
use crate::sandbox::{ProjectPath, Sandbox};

/// Most matching lines returned.
pub const MAX_MATCHES: usize = 100;
/// Files larger than this are skipped (they are not hand-written source).
pub const MAX_SEARCH_FILE_BYTES: u64 = 1_000_000;
/// Longest line shown per match, in characters.
const MAX_LINE_CHARS: usize = 200;

#[derive(Deserialize)]
struct SearchInput {
    pattern: String,
    #[serde(default)]
    regex: bool,
    #[serde(default)]
    path: Option<String>,
}

enum Matcher {
    Substring(String),
    Regex(regex::Regex),
}

impl Matcher {
    fn is_match(&self, line: &str) -> bool {
        match self {
            Matcher::Substring(s) => line.contains(s.as_str()),
            Matcher::Regex(r) => r.is_match(line),
        }
    }
}

/// `search_files {pattern, regex?, path?}`: matching lines as `path:line: text`.
pub struct SearchFiles;

#[async_trait]
impl Tool for SearchFiles {
    fn name(&self) -> &'static str {
        "search_files"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: format!(
                "Search the project's source files for a substring (or a regex when regex is \
                 true). Returns up to {MAX_MATCHES} matching lines as path:line: text."
            ),
            input_schema: object_schema(
                json!({
                    "pattern": { "type": "string", "description": "Text (or regex) to find" },
                    "regex": { "type": "boolean", "description": "Treat pattern as a regular expression (default false)" },
                    "path": { "type": "string", "description": "Only search under this folder, e.g. src" },
                }),
                &["pattern"],
            ),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: SearchInput = parse_input(self.name(), input, r#"{"pattern": "useState"}"#)?;
        if i.pattern.is_empty() {
            return Err(Error::InvalidInput("pattern is empty".into()));
        }
        let matcher = if i.regex {
            let re = regex::RegexBuilder::new(&i.pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| Error::InvalidInput(format!("invalid regex: {e}")))?;
            Matcher::Regex(re)
        } else {
            Matcher::Substring(i.pattern.clone())
        };
        let prefix = match i.path.as_deref().map(str::trim) {
            None | Some("") | Some(".") => None,
            Some(p) => Some(format!("{}/", ProjectPath::parse(p)?.as_str())),
        };
        let mut hits = Vec::new();
        let mut more = false;
        'files: for entry in sandbox.list_files().await? {
            if entry.size > MAX_SEARCH_FILE_BYTES
                || prefix
                    .as_deref()
                    .is_some_and(|p| !entry.path.starts_with(p))
            {
                continue;
            }
            let Ok(path) = ProjectPath::parse(&entry.path) else {
                continue;
            };
            let Ok(bytes) = sandbox.read_file(&path).await else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                if matcher.is_match(line) {
                    if hits.len() == MAX_MATCHES {
                        more = true;
                        break 'files;
                    }
                    let shown: String = line.trim().chars().take(MAX_LINE_CHARS).collect();
                    hits.push(format!("{}:{}: {}", entry.path, n + 1, shown));
                }
            }
        }
        let found = hits.len();
        let mut content = if hits.is_empty() {
            format!("no matches for {:?}", i.pattern)
        } else {
            hits.join("\n")
        };
        if more {
            content.push_str(&format!(
                "\n[truncated: more than {MAX_MATCHES} matches; narrow the pattern or the path]"
            ));
        }
        let summary = format!(
            "searched for {:?} ({found}{} matches)",
            i.pattern.chars().take(60).collect::<String>(),
            if more { "+" } else { "" }
        );
        Ok(ToolOutput::ok(content, summary))
    }
}
