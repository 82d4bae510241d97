//! The browser check after Verify: what is asked of a sandbox
//! ([`SmokeRequest`]) and what it answers ([`SmokeReport`]).
//!
//! The check itself runs where the preview is (see
//! [`Sandbox::smoke_check`](crate::sandbox::Sandbox::smoke_check)): the local
//! driver drives the host's Chromium, a pod's `apna sandboxd` its own headless
//! shell, both through [`super::browser::Browser`]. Its findings are
//! [`Diagnostic`]s of [`DiagnosticSource::Browser`], in the shape Verify gives
//! the model. Findings the browser cannot place in a file (a failed request,
//! a blank page) are placed here, from the project's own source
//! ([`locate`]).

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::build_check::{Diagnostic, DiagnosticSource};
use super::SourceTree;

/// One screen size the page is looked at in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewport {
    /// `desktop`, `phone`.
    pub name: String,
    /// CSS pixels.
    pub width: u32,
    /// CSS pixels.
    pub height: u32,
    /// Whether to emulate a touch phone (meta viewport, touch events).
    pub mobile: bool,
}

impl Viewport {
    /// 1280×800.
    pub fn desktop() -> Viewport {
        Viewport {
            name: "desktop".into(),
            width: 1280,
            height: 800,
            mobile: false,
        }
    }

    /// 390×844 (a current phone).
    pub fn phone() -> Viewport {
        Viewport {
            name: "phone".into(),
            width: 390,
            height: 844,
            mobile: true,
        }
    }
}

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmokeRequest {
    /// The whole check (load, settle, screenshots) must end within this.
    pub timeout_ms: u64,
    /// Screenshots, in order; errors are collected while the first loads.
    pub viewports: Vec<Viewport>,
}

impl Default for SmokeRequest {
    fn default() -> Self {
        SmokeRequest {
            timeout_ms: 20_000,
            viewports: vec![Viewport::desktop(), Viewport::phone()],
        }
    }
}

impl SmokeRequest {
    /// [`SmokeRequest::timeout_ms`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// One screenshot, as PNG.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenshotImage {
    /// The viewport's name.
    pub viewport: String,
    /// CSS pixels.
    pub width: u32,
    /// CSS pixels.
    pub height: u32,
    /// The PNG (base64 on the wire).
    #[serde(with = "png_base64")]
    pub png: Vec<u8>,
}

impl std::fmt::Debug for ScreenshotImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenshotImage")
            .field("viewport", &self.viewport)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("png_bytes", &self.png.len())
            .finish()
    }
}

mod png_base64 {
    use super::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmokeReport {
    /// Whether a browser looked at the page (`false`: skipped, see `note`).
    pub checked: bool,
    /// Problems, at most [`super::build_check::MAX_DIAGNOSTICS`].
    pub diagnostics: Vec<Diagnostic>,
    /// One per viewport asked for (none when skipped).
    pub screenshots: Vec<ScreenshotImage>,
    /// Why the check was skipped, or anything else worth telling.
    pub note: Option<String>,
    /// How long the check took, in milliseconds.
    pub elapsed_ms: u64,
}

impl SmokeReport {
    /// A check that did not run, and why.
    pub fn skipped(note: impl Into<String>) -> SmokeReport {
        SmokeReport {
            checked: false,
            diagnostics: Vec::new(),
            screenshots: Vec::new(),
            note: Some(note.into()),
            elapsed_ms: 0,
        }
    }

    /// Checked and found nothing wrong (a skipped check is not a failure).
    pub fn ok(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// What the browser found, before it is placed in the project's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Located already (a mapped stack frame, the error overlay's file), or
    /// with no place to look for one.
    Located(Diagnostic),
    /// A request of the page's own origin that failed: `path` is its URL path.
    Request {
        /// `/images/hero.png`.
        path: String,
        /// What happened to it.
        message: String,
    },
    /// Nothing visible in the root element after load.
    Blank {
        /// What the page showed, for the message.
        message: String,
    },
}

/// Turns findings into diagnostics, placing each in `tree` where the
/// browser could not: a failed request where its path is written in the
/// source, a blank page at the component the entry module renders. Absolute
/// paths under `root` become relative.
pub fn locate(findings: Vec<Finding>, tree: &SourceTree, root: &str) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = findings
        .into_iter()
        .map(|f| match f {
            Finding::Located(mut d) => {
                d.file = relative(&d.file, root);
                d
            }
            Finding::Request { path, message } => {
                let (file, line, column) = find_reference(tree, &path).unwrap_or_default();
                browser_diag(file, line, column, message)
            }
            Finding::Blank { message } => {
                let (file, line, column) = rendered_component(tree).unwrap_or_default();
                browser_diag(file, line, column, message)
            }
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    out.retain(|d| seen.insert((d.file.clone(), d.line, d.message.clone())));
    out.truncate(super::build_check::MAX_DIAGNOSTICS);
    out
}

fn browser_diag(file: String, line: u32, column: u32, message: String) -> Diagnostic {
    Diagnostic {
        file,
        line,
        column,
        message,
        source: DiagnosticSource::Browser,
    }
}

/// `path` relative to `root` (and without `./` or a leading `/`).
fn relative(path: &str, root: &str) -> String {
    let p = path.trim();
    let p = match p.strip_prefix(root.trim_end_matches('/')) {
        Some(rest) if !root.is_empty() => rest,
        _ => p,
    };
    p.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// Text files worth searching: the app's source and its HTML entry.
fn searchable(tree: &SourceTree) -> impl Iterator<Item = (&str, &str)> {
    tree.files.iter().filter_map(|f| {
        let code = f.path.starts_with("src/")
            || f.path == "index.html"
            || f.path.ends_with(".html")
            || f.path.ends_with(".css");
        if !code || f.data.len() > 1024 * 1024 {
            return None;
        }
        std::str::from_utf8(&f.data)
            .ok()
            .map(|text| (f.path.as_str(), text))
    })
}

/// 1-based (line, column) of byte offset `at` in `text`.
fn position(text: &str, at: usize) -> (u32, u32) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
    (line as u32, col as u32)
}

/// Where the source mentions the request path `path`: the whole path first
/// (`/images/hero.png`, `images/hero.png`), then its file name.
pub fn find_reference(tree: &SourceTree, path: &str) -> Option<(String, u32, u32)> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let trimmed = path.trim_start_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    for needle in [path, trimmed, name] {
        if needle.len() < 3 {
            continue;
        }
        for (file, text) in searchable(tree) {
            if let Some(at) = text.find(needle) {
                let (line, col) = position(text, at);
                return Some((file.to_string(), line, col));
            }
        }
    }
    None
}

/// The component the entry module renders into the root element, and where
/// it is defined: `createRoot(…).render(<StrictMode><App /></StrictMode>)`
/// with `import App from './App'` → `src/App.tsx` at `export default function App`.
pub fn rendered_component(tree: &SourceTree) -> Option<(String, u32, u32)> {
    let files: Vec<(&str, &str)> = searchable(tree).collect();
    let (entry, text) = files
        .iter()
        .find(|(p, t)| p.starts_with("src/") && t.contains(".render("))?;
    let render_at = text.find(".render(")?;
    let after = &text[render_at..];
    let tags = regex::Regex::new(r"<([A-Z][A-Za-z0-9_]*)").ok()?;
    for cap in tags.captures_iter(after) {
        let name = &cap[1];
        let import = regex::Regex::new(&format!(
            r#"import\s+(?:{name}\b[^;]*?|[^;]*?\{{[^}}]*\b{name}\b[^}}]*\}}[^;]*?)\s+from\s+['"](\.[^'"]+)['"]"#
        ))
        .ok()?;
        let Some(spec) = import.captures(text).map(|c| c[1].to_string()) else {
            continue;
        };
        let dir = entry.rsplit_once('/').map_or("", |(d, _)| d);
        let base = join(dir, &spec);
        let found = ["", ".tsx", ".ts", ".jsx", ".js", "/index.tsx", "/index.jsx"]
            .iter()
            .map(|ext| format!("{base}{ext}"))
            .find_map(|cand| files.iter().find(|(p, _)| *p == cand));
        let Some((file, body)) = found else {
            continue;
        };
        let def = regex::Regex::new(&format!(
            r"(?m)^\s*(?:export\s+(?:default\s+)?)?(?:function\s+{name}\b|(?:const|let)\s+{name}\b|class\s+{name}\b)|export\s+default\s+"
        ))
        .ok()?;
        let at = def.find(body).map_or(0, |m| {
            m.start() + (m.as_str().len() - m.as_str().trim_start().len())
        });
        let (line, col) = position(body, at);
        return Some((file.to_string(), line, col));
    }
    Some((entry.to_string(), position(text, render_at).0, 1))
}

/// `dir` joined with the relative import `spec` (`./App`, `../x/Y`).
fn join(dir: &str, spec: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in spec.split('/') {
        match seg {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SourceFile;

    fn tree(files: &[(&str, &str)]) -> SourceTree {
        SourceTree {
            files: files
                .iter()
                .map(|(p, d)| SourceFile {
                    path: p.to_string(),
                    data: d.as_bytes().to_vec(),
                    executable: false,
                })
                .collect(),
        }
    }

    const MAIN: &str = "import { StrictMode } from \"react\";\nimport { createRoot } from \"react-dom/client\";\nimport App from \"./App\";\n\ncreateRoot(document.getElementById(\"root\")!).render(\n  <StrictMode>\n    <App />\n  </StrictMode>,\n);\n";

    #[test]
    fn a_blank_page_is_placed_at_the_rendered_component() {
        let t = tree(&[
            ("src/main.tsx", MAIN),
            (
                "src/App.tsx",
                "import { useState } from 'react'\n\nexport default function App() {\n  return null\n}\n",
            ),
        ]);
        assert_eq!(rendered_component(&t), Some(("src/App.tsx".into(), 3, 1)));
        let named = tree(&[
            (
                "src/main.tsx",
                "import { Shell } from './ui/Shell'\ncreateRoot(r).render(<Shell />)\n",
            ),
            ("src/ui/Shell.tsx", "\n\nexport const Shell = () => null\n"),
        ]);
        assert_eq!(
            rendered_component(&named),
            Some(("src/ui/Shell.tsx".into(), 3, 1))
        );
    }

    #[test]
    fn a_failed_request_is_placed_where_the_source_names_it() {
        let t = tree(&[
            ("src/main.tsx", MAIN),
            (
                "src/App.tsx",
                "export default function App() {\n  return <img src=\"/images/hero.png\" />\n}\n",
            ),
        ]);
        assert_eq!(
            find_reference(&t, "/images/hero.png?v=1"),
            // `/` of the path is the 20th character of `  return <img src="/images/…`.
            Some(("src/App.tsx".into(), 2, 20))
        );
        assert_eq!(find_reference(&t, "/nowhere.png"), None);
        let d = locate(
            vec![
                Finding::Request {
                    path: "/images/hero.png".into(),
                    message: "404".into(),
                },
                Finding::Located(browser_diag("/p/src/App.tsx".into(), 1, 2, "x".into())),
            ],
            &t,
            "/p",
        );
        assert_eq!(
            (d[0].file.as_str(), d[0].line, d[1].file.as_str()),
            ("src/App.tsx", 2, "src/App.tsx")
        );
    }

    #[test]
    fn screenshots_travel_as_base64() {
        let s = ScreenshotImage {
            viewport: "desktop".into(),
            width: 1,
            height: 1,
            png: vec![0x89, b'P', b'N', b'G'],
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["png"], "iVBORw==");
        assert_eq!(serde_json::from_value::<ScreenshotImage>(v).unwrap(), s);
    }
}
