//! Local sandboxes: one directory and one supervised Vite process per project.
//!
//! Layout under the data dir:
//!
//! * `projects/{id}/` — the project's files; `node_modules` is a symlink into
//!   the template cache (see [`template`]).
//! * `logs/{id}.log` — the dev server's output (also kept in memory, bounded).
//!
//! The supervisors live in this process (local mode is one process). Nothing
//! else depends on them: with no supervisor, a project directory on disk is
//! reported `Stopped` and a missing one `Missing`. Commands and Vite run inside
//! bubblewrap when it is installed ([`process::Isolation`]); there every
//! project is mounted at `{data_dir}/workspace`, which lets a create adopt an
//! already running template dev server (the warm spare, see `spare.rs`).
//!
//! Measured create → preview ready (HTTP 200 through the proxy and
//! `/src/main.tsx` served), 2 cores under load average ~4.5: warm spare p50
//! 0.044 s, cold start 0.45–0.83 s depending on load, the seed's copy +
//! `npm install` + Vite 4–6 s. Run `cargo bench -p apna --bench create_to_ready`.

pub mod command;
pub mod files;
pub mod process;
mod spare;
pub mod supervisor;
pub mod template;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::Instrument;

use crate::domain::is_valid_id;
use crate::error::{Error, Result};
use crate::sandbox::{
    ExecOutput, ExecRequest, FileEntry, ProjectPath, Sandbox, SandboxProvider, SandboxState,
    SandboxStatus, SourceTree,
};
pub use process::Isolation;
use process::ProcessSpec;
use supervisor::{Supervisor, ViteSpec};
pub use template::{prepare_template, PreparedTemplate, TemplateProgress};

/// Settings for [`LocalProvider`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// `APNA_DATA_DIR`: projects and logs go below it.
    pub data_dir: PathBuf,
    /// The template, from [`prepare_template`].
    pub template: PreparedTemplate,
    /// The port browsers reach the preview proxy on (`PORT` of `apna serve`), for Vite's HMR client.
    pub hmr_client_port: Option<u16>,
    /// Isolation; `None` detects bubblewrap.
    pub isolation: Option<Isolation>,
}

struct Inner {
    data_dir: PathBuf,
    projects_dir: PathBuf,
    logs_dir: PathBuf,
    template: PreparedTemplate,
    node_modules: PathBuf,
    vite_temp: PathBuf,
    hmr_client_port: Option<u16>,
    isolation: Isolation,
    supervisors: Mutex<HashMap<String, Arc<Supervisor>>>,
    commands: command::RunningCommands,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    spare: spare::SpareSlot,
}

impl Inner {
    fn vite_spec(&self, project_id: &str, project_dir: PathBuf, log_file: PathBuf) -> ViteSpec {
        ViteSpec {
            project_id: project_id.to_string(),
            project_dir,
            hidden_dir: self.data_dir.clone(),
            read_only_dirs: vec![self.node_modules.clone()],
            private_dirs: vec![self.vite_temp.clone()],
            log_file,
            hmr_client_port: self.hmr_client_port,
            isolation: self.isolation.clone(),
        }
    }
}

/// Writes the template (sources + `node_modules` link) into `staging`, then
/// renames it to `dest` (blocking). `dest` must not exist or be incomplete.
fn materialize(
    template: &SourceTree,
    node_modules: &Path,
    staging: &Path,
    dest: &Path,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let res = (|| -> Result<()> {
        std::fs::create_dir_all(staging)?;
        let st = std::fs::canonicalize(staging)?;
        for f in &template.files {
            let p = ProjectPath::parse(&f.path)?;
            files::write(&st, &p, &f.data)?;
            if f.executable {
                std::fs::set_permissions(
                    st.join(p.as_str()),
                    std::fs::Permissions::from_mode(0o755),
                )?;
            }
        }
        std::os::unix::fs::symlink(node_modules, st.join("node_modules"))?;
        if dest.exists() {
            // A directory without package.json: an interrupted import. Replace it.
            std::fs::remove_dir_all(dest)?;
        }
        std::fs::rename(&st, dest)?;
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(staging);
    }
    res
}

/// Hands out [`LocalSandbox`]es; cheap to clone.
#[derive(Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

impl LocalProvider {
    /// Creates the directories and checks the template is installed.
    pub fn new(opts: LocalOptions) -> Result<LocalProvider> {
        let projects = opts.data_dir.join("projects");
        let logs = opts.data_dir.join("logs");
        std::fs::create_dir_all(&projects)?;
        std::fs::create_dir_all(&logs)?;
        let node_modules = std::fs::canonicalize(&opts.template.node_modules).map_err(|e| {
            Error::Sandbox(format!(
                "template dependencies missing at {} (run prepare_template first): {e}",
                opts.template.node_modules.display()
            ))
        })?;
        let vite_temp = node_modules.join(template::VITE_TEMP_DIR);
        std::fs::create_dir_all(&vite_temp)?;
        let isolation = opts.isolation.unwrap_or_else(Isolation::detect);
        let data_dir = std::fs::canonicalize(&opts.data_dir)?;
        let orphans = process::kill_orphans(&[
            std::fs::canonicalize(&projects)?,
            data_dir.join("workspace"),
        ]);
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "stopped dev servers left running by an earlier apna serve"
            );
        }
        spare::remove_leftovers(&projects, &logs);
        let provider = LocalProvider {
            inner: Arc::new(Inner {
                data_dir: std::fs::canonicalize(&opts.data_dir)?,
                projects_dir: std::fs::canonicalize(&projects)?,
                logs_dir: std::fs::canonicalize(&logs)?,
                template: opts.template,
                node_modules,
                vite_temp,
                hmr_client_port: opts.hmr_client_port,
                isolation,
                supervisors: Mutex::new(HashMap::new()),
                commands: command::RunningCommands::default(),
                locks: Mutex::new(HashMap::new()),
                spare: spare::SpareSlot::default(),
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            spare::refill(&provider.inner);
        }
        Ok(provider)
    }

    /// Turns the warm spare off (or back on). It is on by default where
    /// bubblewrap is used: one idle template dev server kept running so a
    /// create only renames a directory (create → ready in tens of ms instead
    /// of a Vite start, ~0.45 s). Costs one idle Node process (~150 MB).
    pub async fn set_warm_spare(&self, enabled: bool) {
        self.inner.spare.set_enabled(enabled);
        if enabled {
            spare::refill(&self.inner);
        } else {
            spare::discard(&self.inner).await;
        }
    }

    /// Waits until the warm spare's dev server is ready (false when there is
    /// none: disabled, or no bubblewrap). For benchmarks and tests.
    pub async fn wait_spare_ready(&self, timeout: Duration) -> bool {
        spare::wait_ready(&self.inner, timeout).await
    }

    /// The concrete sandbox for a project (tests and the bench use its extras).
    pub fn local(&self, project_id: &str) -> Result<LocalSandbox> {
        if !is_valid_id(project_id) {
            return Err(Error::InvalidInput(format!(
                "{project_id:?} is not a project id"
            )));
        }
        Ok(LocalSandbox {
            id: project_id.to_string(),
            root: self.inner.projects_dir.join(project_id),
            inner: self.inner.clone(),
        })
    }

    /// The isolation in use.
    pub fn isolation(&self) -> &Isolation {
        &self.inner.isolation
    }

    /// Stops every dev server this process started (for shutdown).
    pub async fn stop_all(&self) {
        let all: Vec<Arc<Supervisor>> = self
            .inner
            .supervisors
            .lock()
            .map(|mut m| m.drain().map(|(_, s)| s).collect())
            .unwrap_or_default();
        for s in all {
            s.stop().await;
        }
        self.inner.spare.set_enabled(false);
        spare::discard(&self.inner).await;
    }
}

impl SandboxProvider for LocalProvider {
    fn sandbox(&self, project_id: &str) -> Result<Arc<dyn Sandbox>> {
        Ok(Arc::new(self.local(project_id)?))
    }

    fn backend(&self) -> &'static str {
        "local"
    }
}

/// One project's local sandbox.
#[derive(Clone)]
pub struct LocalSandbox {
    id: String,
    root: PathBuf,
    inner: Arc<Inner>,
}

impl LocalSandbox {
    /// The project's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The dev server's pid, when this process supervises one.
    pub fn dev_server_pid(&self) -> Option<u32> {
        self.supervisor().and_then(|s| s.pid())
    }

    fn supervisor(&self) -> Option<Arc<Supervisor>> {
        self.inner
            .supervisors
            .lock()
            .ok()
            .and_then(|m| m.get(&self.id).cloned())
    }

    fn project_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(self.id.clone()).or_default().clone()
    }

    fn log_file(&self) -> PathBuf {
        self.inner.logs_dir.join(format!("{}.log", self.id))
    }

    fn exists(&self) -> bool {
        self.root.join("package.json").is_file()
    }

    /// Creates the directory from the template (files + `node_modules` link).
    async fn create_dir(&self) -> Result<()> {
        if self.exists() {
            return Ok(());
        }
        let staging = self.inner.projects_dir.join(format!(
            ".{}.creating-{}",
            self.id,
            rand::random::<u32>()
        ));
        let root = self.root.clone();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            materialize(&inner.template.files, &inner.node_modules, &staging, &root)
        })
        .await
        .map_err(|e| Error::Internal(format!("create task: {e}")))?
    }

    fn spec<'a>(&'a self, env: &'a [(&'a str, String)]) -> ProcessSpec<'a> {
        ProcessSpec {
            project_dir: &self.root,
            hidden_dir: &self.inner.data_dir,
            read_only_dirs: std::slice::from_ref(&self.inner.node_modules),
            private_dirs: std::slice::from_ref(&self.inner.vite_temp),
            env,
        }
    }

    fn require_exists(&self) -> Result<()> {
        if self.exists() {
            Ok(())
        } else {
            Err(Error::NotReady(format!(
                "the sandbox of project {} does not exist yet; it is created when the project starts",
                self.id
            )))
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| Error::Internal(format!("file task: {e}")))?
    }
}

/// Whether a shell command runs a package manager that may change `node_modules`.
fn touches_node_modules(command: &str) -> bool {
    command
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(|w| matches!(w, "npm" | "pnpm" | "yarn" | "bun"))
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn project_id(&self) -> &str {
        &self.id
    }

    async fn ensure(&self) -> Result<SandboxStatus> {
        let lock = self.project_lock();
        let _guard = lock.lock().await;
        if !self.exists() {
            if let Some(sup) =
                spare::adopt(&self.inner, &self.id, &self.root, &self.log_file()).await
            {
                let status = sup.status();
                self.inner
                    .supervisors
                    .lock()
                    .map_err(|_| Error::Internal("supervisor table poisoned".into()))?
                    .insert(self.id.clone(), sup);
                tracing::info!(project_id = %self.id, "adopted the warm spare");
                spare::refill(&self.inner);
                return Ok(status);
            }
        }
        self.create_dir().await?;
        if let Some(s) = self.supervisor() {
            if s.is_active() {
                return Ok(s.status());
            }
            s.stop().await;
        }
        let sup = Supervisor::start(self.inner.vite_spec(
            &self.id,
            self.root.clone(),
            self.log_file(),
        ));
        spare::refill(&self.inner);
        let status = sup.status();
        self.inner
            .supervisors
            .lock()
            .map_err(|_| Error::Internal("supervisor table poisoned".into()))?
            .insert(self.id.clone(), sup);
        tracing::info!(project_id = %self.id, "dev server starting");
        Ok(status)
    }

    async fn status(&self) -> Result<SandboxStatus> {
        if !self.exists() {
            return Ok(SandboxStatus {
                state: SandboxState::Missing,
                preview_addr: None,
                detail: None,
            });
        }
        match self.supervisor() {
            Some(s) if s.is_active() => Ok(s.status()),
            Some(s) => {
                let st = s.status();
                Ok(SandboxStatus {
                    state: if st.state == SandboxState::Crashed {
                        SandboxState::Crashed
                    } else {
                        SandboxState::Stopped
                    },
                    preview_addr: None,
                    detail: st.detail,
                })
            }
            None => Ok(SandboxStatus {
                state: SandboxState::Stopped,
                preview_addr: None,
                detail: None,
            }),
        }
    }

    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        self.require_exists()?;
        let p = path.clone();
        let allow = vec![self.inner.node_modules.clone()];
        self.blocking(move |root| files::read(root, &p, &allow))
            .await
    }

    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()> {
        self.require_exists()?;
        let p = path.clone();
        let data = data.to_vec();
        self.blocking(move |root| files::write(root, &p, &data))
            .await
    }

    async fn delete_file(&self, path: &ProjectPath) -> Result<bool> {
        self.require_exists()?;
        let p = path.clone();
        self.blocking(move |root| files::delete(root, &p)).await
    }

    async fn list_files(&self) -> Result<Vec<FileEntry>> {
        self.require_exists()?;
        self.blocking(files::list_entries).await
    }

    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        self.require_exists()?;
        if touches_node_modules(&req.command) {
            template::detach_node_modules(&self.root).await?;
        }
        let env = [];
        let span = tracing::info_span!("exec", project_id = %self.id);
        command::run(
            &self.inner.isolation,
            &self.spec(&env),
            &self.inner.commands,
            &self.id,
            req,
        )
        .instrument(span)
        .await
    }

    async fn logs(&self, lines: usize) -> Result<String> {
        if let Some(s) = self.supervisor() {
            return Ok(s.tail(lines));
        }
        match tokio::fs::read(self.log_file()).await {
            Ok(data) => {
                let text = String::from_utf8_lossy(&data);
                let all: Vec<&str> = text.lines().collect();
                let start = all.len().saturating_sub(lines);
                let mut out = all[start..].join("\n");
                if !out.is_empty() {
                    out.push('\n');
                }
                Ok(out)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn stop(&self) -> Result<()> {
        let sup = self
            .inner
            .supervisors
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&self.id));
        if let Some(s) = sup {
            s.stop().await;
            tracing::info!(project_id = %self.id, "dev server stopped");
        }
        Ok(())
    }

    async fn destroy(&self) -> Result<()> {
        let lock = self.project_lock();
        let _guard = lock.lock().await;
        self.stop().await?;
        let killed = self.inner.commands.kill_all(&self.id);
        if killed > 0 {
            tracing::info!(project_id = %self.id, killed, "ended running commands");
        }
        let root = self.root.clone();
        let log = self.log_file();
        tokio::task::spawn_blocking(move || -> Result<()> {
            // remove_dir_all does not follow symlinks: the shared cache is safe.
            // A process killed just now may still have a write in flight
            // (ENOTEMPTY): try again briefly.
            let mut attempt = 0;
            loop {
                match std::fs::remove_dir_all(&root) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 10 => {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let _ = std::fs::remove_file(log);
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("destroy task: {e}")))??;
        Ok(())
    }

    async fn export_source(&self) -> Result<SourceTree> {
        self.require_exists()?;
        self.blocking(files::export).await
    }

    async fn import_source(&self, tree: &SourceTree) -> Result<()> {
        let lock = self.project_lock();
        let _guard = lock.lock().await;
        self.create_dir().await?;
        let imported = tree.clone();
        self.blocking(move |root| files::import(root, &imported))
            .await
    }
}

/// Polls `status()` until the sandbox is ready, or fails after `timeout`.
pub async fn wait_ready(sandbox: &dyn Sandbox, timeout: Duration) -> Result<SandboxStatus> {
    let started = Instant::now();
    loop {
        let st = sandbox.status().await?;
        if st.state == SandboxState::Ready {
            return Ok(st);
        }
        if started.elapsed() > timeout {
            return Err(Error::NotReady(format!(
                "sandbox of project {} not ready after {:?} (state {:?}{})",
                sandbox.project_id(),
                timeout,
                st.state,
                st.detail.map(|d| format!(": {d}")).unwrap_or_default()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_manager_commands_are_detected() {
        assert!(touches_node_modules("npm install zod"));
        assert!(touches_node_modules("cd x && pnpm add y"));
        assert!(!touches_node_modules("ls -la src"));
        assert!(!touches_node_modules("cat npm-debug.txt"));
    }
}
