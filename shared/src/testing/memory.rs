//! An in-memory [`Sandbox`] for tests: files in a map, a scripted dev-server
//! log and a pluggable `exec`. It keeps a record of every write and command so
//! tests can assert that an edit was applied exactly once. [`MemoryProvider`]
//! hands out one per project.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::sandbox::{
    ExecOutput, ExecRequest, FileEntry, ProjectPath, Sandbox, SandboxProvider, SandboxState,
    SandboxStatus, SmokeReport, SmokeRequest, SourceFile, SourceTree,
};

/// What `exec` answers for a command (tests install one to script `npm`/`tsc`).
pub type ExecHandler = Arc<dyn Fn(&ExecRequest) -> ExecOutput + Send + Sync>;

/// A sandbox whose files live in a map; cheap to clone (clones share state).
#[derive(Clone)]
pub struct MemorySandbox {
    project_id: String,
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    files: BTreeMap<String, Vec<u8>>,
    state: SandboxState,
    log: Vec<String>,
    commands: Vec<String>,
    writes: Vec<String>,
    handler: Option<ExecHandler>,
    starter: Option<String>,
    smoke: std::collections::VecDeque<std::result::Result<SmokeReport, String>>,
    smoke_calls: usize,
}

impl MemorySandbox {
    /// An empty, ready sandbox for `project_id`.
    pub fn new(project_id: &str) -> Self {
        MemorySandbox {
            project_id: project_id.to_string(),
            inner: Arc::new(Mutex::new(Inner {
                files: BTreeMap::new(),
                state: SandboxState::Ready,
                log: Vec::new(),
                commands: Vec::new(),
                writes: Vec::new(),
                handler: None,
                starter: None,
                smoke: Default::default(),
                smoke_calls: 0,
            })),
        }
    }

    /// A ready sandbox holding the minimal Vite + React template files.
    pub fn with_template(project_id: &str) -> Self {
        let sb = Self::new(project_id);
        for (path, body) in TEMPLATE {
            sb.put(path, body);
        }
        sb
    }

    // A poisoned lock only means another test thread panicked; the map is still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a file directly (not recorded as a write).
    pub fn put(&self, path: &str, contents: &str) {
        self.lock()
            .files
            .insert(path.to_string(), contents.as_bytes().to_vec());
    }

    /// Removes every file whose path starts with `prefix` (not recorded).
    pub fn remove_prefix(&self, prefix: &str) {
        self.lock().files.retain(|p, _| !p.starts_with(prefix));
    }

    /// A file's contents as text, if it exists.
    pub fn file(&self, path: &str) -> Option<String> {
        self.lock()
            .files
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// All paths, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.lock().files.keys().cloned().collect()
    }

    /// Every path written through the trait, in order (one entry per write).
    pub fn writes(&self) -> Vec<String> {
        self.lock().writes.clone()
    }

    /// Every command passed to `exec`, in order.
    pub fn commands(&self) -> Vec<String> {
        self.lock().commands.clone()
    }

    /// Appends a line to the dev-server log.
    pub fn push_log(&self, line: &str) {
        self.lock().log.push(line.to_string());
    }

    /// Installs the `exec` answer (default: exit 0, no output).
    pub fn set_exec_handler(&self, handler: ExecHandler) {
        self.lock().handler = Some(handler);
    }

    /// The starter `ensure_from` last created the sandbox from, if any.
    pub fn starter(&self) -> Option<String> {
        self.lock().starter.clone()
    }

    /// Queues the answer of the next `smoke_check` (`Err(text)`: the browser
    /// failed with `Error::Sandbox(text)`). With none queued it is skipped.
    pub fn push_smoke(&self, answer: std::result::Result<SmokeReport, String>) {
        self.lock().smoke.push_back(answer);
    }

    /// How many times `smoke_check` ran.
    pub fn smoke_calls(&self) -> usize {
        self.lock().smoke_calls
    }

    /// Forces the reported state (e.g. `Crashed`) for status tests.
    pub fn set_state(&self, state: SandboxState) {
        self.lock().state = state;
    }
}

#[async_trait]
impl Sandbox for MemorySandbox {
    fn project_id(&self) -> &str {
        &self.project_id
    }

    async fn ensure(&self) -> Result<SandboxStatus> {
        let mut g = self.lock();
        if matches!(g.state, SandboxState::Missing | SandboxState::Stopped) {
            g.state = SandboxState::Ready;
        }
        Ok(status_of(g.state))
    }

    async fn ensure_from(&self, starter: &str) -> Result<SandboxStatus> {
        crate::starter::find(starter)?;
        if self.lock().state == SandboxState::Missing {
            self.lock().starter = Some(starter.to_string());
        }
        self.ensure().await
    }

    async fn status(&self) -> Result<SandboxStatus> {
        Ok(status_of(self.lock().state))
    }

    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        self.lock()
            .files
            .get(path.as_str())
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("file {path} does not exist")))
    }

    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()> {
        let mut g = self.lock();
        let prefix = format!("{}/", path.as_str());
        if g.files.keys().any(|k| k.starts_with(&prefix)) {
            return Err(Error::Sandbox(format!("{path} is a directory")));
        }
        g.files.insert(path.as_str().to_string(), data.to_vec());
        g.writes.push(path.as_str().to_string());
        Ok(())
    }

    async fn delete_file(&self, path: &ProjectPath) -> Result<bool> {
        let mut g = self.lock();
        let existed = g.files.remove(path.as_str()).is_some();
        if existed {
            g.writes.push(path.as_str().to_string());
        }
        Ok(existed)
    }

    async fn list_files(&self) -> Result<Vec<FileEntry>> {
        Ok(self
            .lock()
            .files
            .iter()
            .filter(|(p, _)| {
                ProjectPath::parse(p)
                    .map(|pp| !pp.is_in_ignored_dir())
                    .unwrap_or(false)
            })
            .map(|(p, d)| FileEntry {
                path: p.clone(),
                size: d.len() as u64,
            })
            .collect())
    }

    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        let handler = {
            let mut g = self.lock();
            g.commands.push(req.command.clone());
            g.handler.clone()
        };
        let mut out = match handler {
            Some(h) => h(req),
            None => ExecOutput {
                exit_code: Some(0),
                output: String::new(),
                truncated: false,
                timed_out: false,
            },
        };
        if out.output.len() > req.max_output {
            let mut cut = req.max_output;
            while !out.output.is_char_boundary(cut) {
                cut -= 1;
            }
            out.output.truncate(cut);
            out.truncated = true;
        }
        Ok(out)
    }

    async fn logs(&self, lines: usize) -> Result<String> {
        let g = self.lock();
        let start = g.log.len().saturating_sub(lines);
        Ok(g.log[start..].join("\n"))
    }

    async fn stop(&self) -> Result<()> {
        self.lock().state = SandboxState::Stopped;
        Ok(())
    }

    async fn destroy(&self) -> Result<()> {
        let mut g = self.lock();
        g.files.clear();
        g.log.clear();
        g.state = SandboxState::Missing;
        Ok(())
    }

    async fn export_source(&self) -> Result<SourceTree> {
        let files = self.list_files().await?;
        let g = self.lock();
        Ok(SourceTree {
            files: files
                .into_iter()
                .filter_map(|e| {
                    g.files.get(&e.path).map(|d| SourceFile {
                        path: e.path.clone(),
                        data: d.clone(),
                        executable: false,
                    })
                })
                .collect(),
        })
    }

    async fn import_source(&self, tree: &SourceTree) -> Result<()> {
        let mut g = self.lock();
        g.files = tree
            .files
            .iter()
            .map(|f| (f.path.clone(), f.data.clone()))
            .collect();
        g.state = SandboxState::Ready;
        Ok(())
    }

    async fn smoke_check(&self, _req: &SmokeRequest) -> Result<SmokeReport> {
        let mut g = self.lock();
        g.smoke_calls += 1;
        match g.smoke.pop_front() {
            Some(Ok(report)) => Ok(report),
            Some(Err(text)) => Err(Error::Sandbox(text)),
            None => Ok(SmokeReport::skipped("the memory sandbox has no browser")),
        }
    }
}

fn status_of(state: SandboxState) -> SandboxStatus {
    SandboxStatus {
        state,
        preview_addr: matches!(state, SandboxState::Ready).then(|| "127.0.0.1:5173".to_string()),
        detail: None,
    }
}

/// The smallest app the real template starts as, so agent tests edit realistic files.
const TEMPLATE: &[(&str, &str)] = &[
    (
        "index.html",
        "<!doctype html>\n<html lang=\"en\">\n  <head>\n    <meta charset=\"UTF-8\" />\n    <title>App</title>\n  </head>\n  <body>\n    <div id=\"root\"></div>\n    <script type=\"module\" src=\"/src/main.tsx\"></script>\n  </body>\n</html>\n",
    ),
    (
        "package.json",
        "{\n  \"name\": \"app\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"scripts\": { \"dev\": \"vite\", \"build\": \"tsc -b && vite build\" }\n}\n",
    ),
    (
        "src/main.tsx",
        "import { StrictMode } from 'react'\nimport { createRoot } from 'react-dom/client'\nimport './index.css'\nimport App from './App.tsx'\n\ncreateRoot(document.getElementById('root')!).render(\n  <StrictMode>\n    <App />\n  </StrictMode>,\n)\n",
    ),
    (
        "src/App.tsx",
        "export default function App() {\n  return <h1 className=\"text-2xl\">Hello</h1>\n}\n",
    ),
    ("src/index.css", "@import \"tailwindcss\";\n"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_files_and_records_writes() {
        let sb = MemorySandbox::new("p");
        let p = ProjectPath::parse("src/a.ts").unwrap();
        sb.write_file(&p, b"x").await.unwrap();
        assert_eq!(sb.read_file(&p).await.unwrap(), b"x");
        assert_eq!(sb.writes(), vec!["src/a.ts"]);
        assert!(sb.delete_file(&p).await.unwrap());
        assert!(!sb.delete_file(&p).await.unwrap());
        assert!(sb.read_file(&p).await.is_err());
        sb.put("node_modules/x/index.js", "");
        assert!(sb.list_files().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn exec_output_is_capped() {
        let sb = MemorySandbox::new("p");
        sb.set_exec_handler(Arc::new(|_| ExecOutput {
            exit_code: Some(0),
            output: "é".repeat(100),
            truncated: false,
            timed_out: false,
        }));
        let out = sb
            .exec(&ExecRequest {
                command: "ls".into(),
                timeout: std::time::Duration::from_secs(1),
                max_output: 11,
            })
            .await
            .unwrap();
        assert!(out.truncated && out.output.len() <= 11);
        assert_eq!(sb.commands(), vec!["ls"]);
    }
}

/// Sandboxes kept in memory, one per project (with the template files), shared
/// across handles.
#[derive(Default)]
pub struct MemoryProvider {
    boxes: Mutex<HashMap<String, MemorySandbox>>,
}

impl MemoryProvider {
    /// The concrete sandbox of a project, created on first use.
    pub fn get(&self, id: &str) -> MemorySandbox {
        let mut boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        boxes
            .entry(id.to_string())
            .or_insert_with(|| MemorySandbox::with_template(id))
            .clone()
    }
}

impl SandboxProvider for MemoryProvider {
    fn sandbox(&self, project_id: &str) -> Result<Arc<dyn Sandbox>> {
        Ok(Arc::new(self.get(project_id)))
    }
    fn backend(&self) -> &'static str {
        "memory"
    }
    fn awake(&self) -> futures::future::BoxFuture<'_, Result<Vec<String>>> {
        let ids = self
            .boxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, b)| matches!(b.lock().state, SandboxState::Ready | SandboxState::Starting))
            .map(|(id, _)| id.clone())
            .collect();
        Box::pin(async move { Ok(ids) })
    }
}
