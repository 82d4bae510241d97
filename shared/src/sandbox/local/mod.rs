//! Local sandboxes: one directory and one supervised Vite process per project.
//!
//! Layout under the data dir:
//!
//! * `projects/{id}/` — the project's files; `node_modules` is a symlink into
//!   the template cache, and so (under bubblewrap) is `.vite/deps`, Vite's
//!   pre-bundled dependencies (see [`template`]).
//! * `logs/{id}.log` — the dev server's output (also kept in memory, bounded).
//!
//! Each project is a [`workspace::Workspace`] (its files, commands and Vite
//! supervisor: the same code `apna sandboxd` runs in a pod); this module adds
//! the project table and the warm spare.
//!
//! The supervisors live in this process (local mode is one process). Nothing
//! else depends on them: with no supervisor, a project directory on disk is
//! reported `Stopped` and a missing one `Missing`. Commands and Vite run inside
//! bubblewrap when it is installed ([`process::Isolation`]); there every
//! project is mounted at the template cache's `workspace` path, which lets a
//! create adopt an already running template dev server (the warm spare, see
//! `spare.rs`) and every project share one dependency pre-bundle.
//!
//! Measured create → preview ready (HTTP 200 through the proxy and
//! `/src/main.tsx` served), 2 cores under load average ~4.5: warm spare p50
//! 0.044 s, cold start 0.45–0.83 s depending on load, the seed's copy +
//! `npm install` + Vite 4–6 s. Run `cargo bench -p apna --bench create_to_ready`.

pub mod build_gate;
pub mod command;
pub mod disk;
pub mod files;
mod handover;
mod host_cpu;
pub mod limits;
pub mod module_walk;
pub mod packages;
pub mod process;
mod spare;
pub mod supervisor;
pub mod template;
pub mod workspace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::is_valid_id;
use crate::error::{Error, Result};
use crate::sandbox::browser::{Browser, BrowserOptions};
use crate::sandbox::{
    ExecOutput, ExecRequest, FileEntry, ProjectPath, Sandbox, SandboxProvider, SandboxState,
    SandboxStatus, SmokeReport, SmokeRequest, SourceTree,
};
pub use handover::HandoverFault;
pub use process::Isolation;
use supervisor::DevServerOptions;
pub use template::{prepare_templates, PreparedTemplate, PreparedTemplates, TemplateProgress};
use workspace::{RootKind, Toolchain, Workspace};

/// Settings for [`LocalProvider`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// `APNA_DATA_DIR`: projects and logs go below it.
    pub data_dir: PathBuf,
    /// The starters, from [`prepare_templates`].
    pub templates: PreparedTemplates,
    /// The port browsers reach the preview proxy on (`PORT` of `apna serve`), for Vite's HMR client.
    pub hmr_client_port: Option<u16>,
    /// Origins of the UI that may drive Select in previews (see [`DevServerOptions::ui_origins`]).
    pub ui_origins: Vec<String>,
    /// Isolation; `None` detects bubblewrap.
    pub isolation: Option<Isolation>,
    /// Disk budget of one project in MiB (`APNA_MAX_PROJECT_MB`).
    pub max_project_mb: u64,
    /// The browser the page checks after Verify start (one, kept warm).
    pub browser: BrowserOptions,
    /// Warm spares kept ready (`APNA_WARM_SPARES`; 0 turns them off).
    pub warm_spares: usize,
    /// Verify checks and package installs run at once, at most
    /// (`APNA_MAX_BUILDS`; see [`build_gate`]).
    pub max_builds: usize,
    /// Verify builds with `vite build` instead of checking through the dev
    /// server (`APNA_VERIFY_BUILD`).
    pub verify_build: bool,
}

struct Inner {
    projects_dir: PathBuf,
    logs_dir: PathBuf,
    toolchain: Arc<Toolchain>,
    workspaces: Mutex<HashMap<String, Arc<Workspace>>>,
    spare: spare::SpareSlot,
}

impl Inner {
    fn workspaces(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Workspace>>> {
        self.workspaces.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands out [`LocalSandbox`]es; cheap to clone.
#[derive(Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

impl LocalProvider {
    /// Creates the directories and checks the starters are installed.
    pub fn new(opts: LocalOptions) -> Result<LocalProvider> {
        let node_args = supervisor::NODE_FLAGS
            .iter()
            .map(|f| f.to_string())
            .collect();
        Self::with_node_args(opts, node_args)
    }

    /// [`LocalProvider::new`] with other Node flags for the dev servers
    /// (benchmarks compare them).
    pub fn with_node_args(opts: LocalOptions, node_args: Vec<String>) -> Result<LocalProvider> {
        let projects = opts.data_dir.join("projects");
        let logs = opts.data_dir.join("logs");
        std::fs::create_dir_all(&projects)?;
        std::fs::create_dir_all(&logs)?;
        let isolation = opts.isolation.unwrap_or_else(Isolation::detect);
        let data_dir = std::fs::canonicalize(&opts.data_dir)?;
        let workspace = opts.templates.workspace.clone();
        let mut toolchain = Toolchain::new(
            opts.templates,
            data_dir.clone(),
            isolation,
            DevServerOptions {
                node_args,
                ui_origins: opts.ui_origins,
                ..DevServerOptions::loopback(opts.hmr_client_port)
            },
        )?
        .with_browser(Arc::new(Browser::new(opts.browser)))
        .with_max_builds(opts.max_builds)
        .with_full_build_check(opts.verify_build);
        toolchain.set_disk_budget(opts.max_project_mb.saturating_mul(1024 * 1024));
        let orphans = process::kill_orphans(&[std::fs::canonicalize(&projects)?, workspace]);
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "stopped dev servers left running by an earlier apna serve"
            );
        }
        spare::remove_leftovers(&projects, &logs);
        let provider = LocalProvider {
            inner: Arc::new(Inner {
                projects_dir: std::fs::canonicalize(&projects)?,
                logs_dir: std::fs::canonicalize(&logs)?,
                toolchain: Arc::new(toolchain),
                workspaces: Mutex::new(HashMap::new()),
                spare: spare::SpareSlot::new(opts.warm_spares),
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            spare::refill(&provider.inner);
        }
        Ok(provider)
    }

    /// Turns the warm spares off (or back on). They are on by default where
    /// bubblewrap is used: idle template dev servers kept running so a
    /// create only renames a directory (create → ready in tens of ms instead
    /// of a Vite start, ~0.45 s). Each costs one idle Node process (~150 MB).
    pub async fn set_warm_spare(&self, enabled: bool) {
        self.inner.spare.set_enabled(enabled);
        if enabled {
            spare::refill(&self.inner);
        } else {
            spare::discard(&self.inner).await;
        }
    }

    /// Waits until every warm spare's dev server is ready (false when there
    /// are none: disabled, or no bubblewrap). For benchmarks and tests.
    pub async fn wait_spare_ready(&self, timeout: Duration) -> bool {
        spare::wait_ready(&self.inner, timeout).await
    }

    /// The dev server pids of the warm spares now (tests tell a wake on the
    /// spare from a cold one by them).
    pub fn spare_pids(&self) -> Vec<u32> {
        spare::pids(&self.inner)
    }

    /// How many warm spares exist now (ready or starting).
    pub fn spare_count(&self) -> usize {
        spare::count(&self.inner)
    }

    /// Makes the next hand-over of the warm spare to a sleeping project fail
    /// at `fault` (tests of the fallback).
    #[cfg(any(test, feature = "testing"))]
    pub fn fail_next_handover(&self, fault: HandoverFault) {
        self.inner.spare.faults.arm(fault);
    }

    /// The gate every project's Verify and package installs pass.
    pub fn build_gate(&self) -> &build_gate::BuildGate {
        self.inner.toolchain.builds()
    }

    /// The concrete sandbox for a project (tests and the bench use its extras).
    pub fn local(&self, project_id: &str) -> Result<LocalSandbox> {
        if !is_valid_id(project_id) {
            return Err(Error::InvalidInput(format!(
                "{project_id:?} is not a project id"
            )));
        }
        let ws = self
            .inner
            .workspaces()
            .entry(project_id.to_string())
            .or_insert_with(|| {
                Arc::new(Workspace::new(
                    project_id,
                    self.inner.projects_dir.join(project_id),
                    self.inner.logs_dir.join(format!("{project_id}.log")),
                    RootKind::Owned,
                    self.inner.toolchain.clone(),
                ))
            })
            .clone();
        Ok(LocalSandbox {
            ws,
            inner: self.inner.clone(),
        })
    }

    /// The isolation in use.
    pub fn isolation(&self) -> &Isolation {
        self.inner.toolchain.isolation()
    }

    /// Whether each command and dev server gets its own cgroup (process and
    /// memory limits); otherwise only rlimits apply.
    pub fn cgroups_enabled(&self) -> bool {
        self.inner.toolchain.confinement().cgroups.is_some()
    }

    /// The browser the page checks use.
    pub fn browser(&self) -> &Arc<Browser> {
        self.inner.toolchain.browser()
    }

    /// Stops every dev server this process started, and the browser (for shutdown).
    pub async fn stop_all(&self) {
        self.inner.toolchain.browser().close().await;
        let all: Vec<Arc<Workspace>> = self.inner.workspaces().values().cloned().collect();
        for ws in all {
            let _ = ws.stop().await;
        }
        self.inner.spare.set_enabled(false);
        spare::discard(&self.inner).await;
        if let Some(c) = &self.inner.toolchain.confinement().cgroups {
            c.remove();
        }
    }
}

impl SandboxProvider for LocalProvider {
    fn sandbox(&self, project_id: &str) -> Result<Arc<dyn Sandbox>> {
        Ok(Arc::new(self.local(project_id)?))
    }

    fn backend(&self) -> &'static str {
        "local"
    }

    fn awake(&self) -> futures::future::BoxFuture<'_, Result<Vec<String>>> {
        let ids = self
            .inner
            .workspaces()
            .iter()
            .filter(|(_, ws)| ws.dev_server_running())
            .map(|(id, _)| id.clone())
            .collect();
        Box::pin(async move { Ok(ids) })
    }

    /// From the supervisors in memory; only the projects without a running
    /// dev server need a look at the disk (files kept or not), all of them
    /// in one blocking task.
    fn statuses<'a>(
        &'a self,
        ids: &'a [String],
    ) -> futures::future::BoxFuture<'a, Result<HashMap<String, SandboxStatus>>> {
        Box::pin(async move {
            let mut found = HashMap::with_capacity(ids.len());
            let mut asleep = Vec::new();
            for id in ids {
                // An id that is not a project's has no sandbox to report.
                let Ok(sb) = self.local(id) else { continue };
                if sb.ws.dev_server_running() {
                    // A running dev server serves the files it was started on.
                    found.insert(id.clone(), sb.ws.status_given(true));
                } else {
                    asleep.push(sb.ws);
                }
            }
            if !asleep.is_empty() {
                let looked = tokio::task::spawn_blocking(move || {
                    asleep
                        .into_iter()
                        .map(|ws| (ws.project_id().to_string(), ws.status_given(ws.exists())))
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(|e| Error::Internal(format!("sandbox status task: {e}")))?;
                found.extend(looked);
            }
            Ok(found)
        })
    }
}

/// One project's local sandbox: its [`Workspace`], plus the warm spare.
#[derive(Clone)]
pub struct LocalSandbox {
    ws: Arc<Workspace>,
    inner: Arc<Inner>,
}

impl LocalSandbox {
    /// The project's directory.
    pub fn root(&self) -> &Path {
        self.ws.root()
    }

    /// The dev server's pid, when this process supervises one.
    pub fn dev_server_pid(&self) -> Option<u32> {
        self.ws.dev_server_pid()
    }

    /// Ensures the sandbox: a missing one is made from `explicit` (or the
    /// default starter). A starter sharing the default starter's dependencies
    /// adopts the warm spare and has its own files written over it before
    /// anything is served. A sleeping one (files kept, dev server stopped)
    /// whose dependencies are the spare's takes the spare's running server
    /// (see [`handover`]); otherwise its dev server starts cold.
    async fn ensure_with(&self, explicit: Option<&str>) -> Result<SandboxStatus> {
        let toolchain = &self.inner.toolchain;
        let starter = explicit.unwrap_or(&toolchain.default_starter().name);
        let fits = spare::fits(&self.inner, toolchain.starter(starter)?);
        let _guard = self.ws.lock().await;
        let id = self.ws.project_id();
        if !self.ws.exists() && fits {
            if let Some(sup) =
                spare::adopt(&self.inner, id, self.ws.root(), self.ws.log_file()).await
            {
                if starter == toolchain.default_starter().name {
                    self.ws.set_seeded(Some(starter));
                } else {
                    self.ws.reseed(starter).await?;
                }
                let status = sup.status();
                self.ws.adopt_supervisor(sup);
                tracing::info!(project_id = %id, starter, "adopted the warm spare");
                spare::refill(&self.inner);
                return Ok(status);
            }
        }
        let reseeding = explicit.is_some() && self.ws.seeded_from().is_some_and(|s| s != starter);
        if self.ws.exists() && !reseeding && self.ws.status().await?.state == SandboxState::Stopped
        {
            if let Some(sup) =
                spare::hand_to_sleeper(&self.inner, id, self.ws.root(), self.ws.log_file()).await
            {
                let status = sup.status();
                self.ws.adopt_supervisor(sup);
                tracing::info!(project_id = %id, "woke on the warm spare");
                spare::refill(&self.inner);
                return Ok(status);
            }
        }
        let status = match explicit {
            Some(name) => self.ws.ensure_from_locked(name).await?,
            None => self.ws.ensure_locked().await?,
        };
        spare::refill(&self.inner);
        Ok(status)
    }
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn project_id(&self) -> &str {
        self.ws.project_id()
    }

    async fn ensure(&self) -> Result<SandboxStatus> {
        self.ensure_with(None).await
    }

    async fn ensure_from(&self, starter: &str) -> Result<SandboxStatus> {
        self.ensure_with(Some(starter)).await
    }

    async fn status(&self) -> Result<SandboxStatus> {
        self.ws.status().await
    }

    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        self.ws.read_file(path).await
    }

    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()> {
        self.ws.write_file(path, data).await
    }

    async fn delete_file(&self, path: &ProjectPath) -> Result<bool> {
        self.ws.delete_file(path).await
    }

    async fn list_files(&self) -> Result<Vec<FileEntry>> {
        self.ws.list_files().await
    }

    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        self.ws.exec(req).await
    }

    async fn logs(&self, lines: usize) -> Result<String> {
        self.ws.logs(lines).await
    }

    async fn stop(&self) -> Result<()> {
        self.ws.stop().await
    }

    async fn destroy(&self) -> Result<()> {
        self.ws.destroy().await
    }

    async fn export_source(&self) -> Result<SourceTree> {
        self.ws.export_source().await
    }

    async fn import_source(&self, tree: &SourceTree) -> Result<()> {
        self.ws.import_source(tree).await
    }

    async fn smoke_check(&self, req: &SmokeRequest) -> Result<SmokeReport> {
        self.ws.smoke_check(req).await
    }

    async fn check_build(&self) -> Result<crate::sandbox::build_check::BuildReport> {
        self.ws.check_build().await
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
