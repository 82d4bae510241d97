//! One project directory and its dev server: what the local driver keeps per
//! project, and what `apna sandboxd` serves in a pod.
//!
//! A [`Workspace`] is a whole [`Sandbox`] on its own: file access with the
//! symlink checks of `files`, commands (`command`), Vite supervised by
//! `supervisor`, export and import. What differs between the two hosts is
//! carried by [`Toolchain`] (isolation, where Vite listens, the starters and
//! where their dependencies are) and [`RootKind`] (whether the directory itself
//! may be created and removed, or is a volume's mount point). The local driver
//! adds only what needs many projects: the warm spare and the project table.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;

use super::build_gate::{default_max_builds, BuildGate};
use super::command::{self, RunningCommands};
use super::disk;
use super::files;
use super::limits::Limits;
use super::packages;
use super::process::{Confinement, Isolation, ProcessSpec};
use super::supervisor::{DevServerOptions, Supervisor, ViteSpec};
use super::template::{self, PreparedTemplate, PreparedTemplates, VITE_DEPS_LINK, VITE_TEMP_DIR};
use crate::error::{Error, Result};
use crate::sandbox::browser::{Browser, BrowserOptions, PageCheck};
use crate::sandbox::build_check::{self, BuildReport};
use crate::sandbox::smoke::{self, Finding, SmokeReport, SmokeRequest};
use crate::sandbox::{
    ExecOutput, ExecRequest, FileEntry, ProjectPath, Sandbox, SandboxState, SandboxStatus,
    SourceTree,
};

/// What every workspace of one host shares: the starters, their installed
/// dependencies, the isolation and the dev server's settings.
#[derive(Debug)]
pub struct Toolchain {
    templates: PreparedTemplates,
    /// Every starter's `node_modules` and pre-bundle (canonical; read-only in the sandbox).
    read_only: Vec<PathBuf>,
    private_dirs: Vec<PathBuf>,
    hidden_dir: PathBuf,
    isolation: Isolation,
    dev_server: DevServerOptions,
    confinement: Arc<Confinement>,
    browser: Arc<Browser>,
    builds: BuildGate,
    full_build_check: bool,
}

/// A project's disk budget unless the host sets another (`APNA_MAX_PROJECT_MB`).
pub const DEFAULT_DISK_BUDGET: u64 = 500 * 1024 * 1024;

impl Toolchain {
    /// `hidden_dir` is hidden from project processes under bubblewrap (the
    /// data dir: other projects, the database).
    pub fn new(
        mut templates: PreparedTemplates,
        hidden_dir: PathBuf,
        isolation: Isolation,
        dev_server: DevServerOptions,
    ) -> Result<Toolchain> {
        if templates.starters.is_empty() {
            return Err(Error::Internal(
                "a toolchain needs at least one starter".into(),
            ));
        }
        let mut read_only: Vec<PathBuf> = Vec::new();
        let mut private_dirs: Vec<PathBuf> = Vec::new();
        for t in &mut templates.starters {
            t.node_modules = std::fs::canonicalize(&t.node_modules).map_err(|e| {
                Error::Sandbox(format!(
                    "dependencies of starter {} missing at {} (run prepare_templates first): {e}",
                    t.name,
                    t.node_modules.display()
                ))
            })?;
            // The shared pre-bundle is valid only where every project is
            // mounted at the path it was made for.
            if !matches!(isolation, Isolation::Bubblewrap { .. }) {
                t.vite_deps = None;
            }
            for dir in [Some(t.node_modules.clone()), t.vite_deps.clone()]
                .into_iter()
                .flatten()
            {
                if !read_only.contains(&dir) {
                    read_only.push(dir);
                }
            }
            // Under bubblewrap Vite's bundled config goes to a private tmpfs
            // mounted over this directory, so it must exist in the cache.
            if let Isolation::Bubblewrap { .. } = isolation {
                let vite_temp = t.node_modules.join(VITE_TEMP_DIR);
                if !private_dirs.contains(&vite_temp) {
                    std::fs::create_dir_all(&vite_temp)?;
                    private_dirs.push(vite_temp);
                }
            }
        }
        let confinement = Arc::new(Confinement::new(
            &isolation,
            &hidden_dir,
            DEFAULT_DISK_BUDGET,
        ));
        Ok(Toolchain {
            templates,
            read_only,
            private_dirs,
            hidden_dir,
            isolation,
            dev_server,
            confinement,
            browser: Arc::new(Browser::new(BrowserOptions::default())),
            builds: BuildGate::new(default_max_builds()),
            full_build_check: false,
        })
    }

    /// The same toolchain letting `n` Verify checks and package installs run
    /// at once (see [`super::build_gate`]).
    pub fn with_max_builds(mut self, n: usize) -> Toolchain {
        self.builds = BuildGate::new(n);
        self
    }

    /// The same toolchain checking with a full `vite build` (`true`) instead
    /// of through the dev server.
    pub fn with_full_build_check(mut self, on: bool) -> Toolchain {
        self.full_build_check = on;
        self
    }

    /// The gate Verify checks and package installs pass.
    pub fn builds(&self) -> &BuildGate {
        &self.builds
    }

    /// The same toolchain checking pages with `browser` (one per host).
    pub fn with_browser(mut self, browser: Arc<Browser>) -> Toolchain {
        self.browser = browser;
        self
    }

    /// The browser the page checks use.
    pub fn browser(&self) -> &Arc<Browser> {
        &self.browser
    }

    /// Sets the disk budget of each project (bytes); before any workspace uses it.
    pub fn set_disk_budget(&mut self, bytes: u64) {
        if let Some(c) = Arc::get_mut(&mut self.confinement) {
            c.budget_bytes = bytes;
        }
    }

    /// Cgroups, disk budget and toolchain directories shared by the processes.
    pub fn confinement(&self) -> &Confinement {
        &self.confinement
    }

    /// The isolation in use.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// The starters.
    pub fn templates(&self) -> &PreparedTemplates {
        &self.templates
    }

    /// The starter called `name` (unknown names are bad input naming the choices).
    pub fn starter(&self, name: &str) -> Result<&PreparedTemplate> {
        self.templates.get(name)
    }

    /// The default starter.
    pub fn default_starter(&self) -> &PreparedTemplate {
        self.templates.default_template()
    }

    /// Every starter's installed `node_modules` and pre-bundle (canonical).
    pub fn read_only_dirs(&self) -> &[PathBuf] {
        &self.read_only
    }

    /// How to (re)start the dev server of the workspace at `project_dir`.
    pub fn vite_spec(&self, project_id: &str, project_dir: PathBuf, log_file: PathBuf) -> ViteSpec {
        ViteSpec {
            project_id: project_id.to_string(),
            project_dir,
            hidden_dir: self.hidden_dir.clone(),
            workspace: self.templates.workspace.clone(),
            read_only_dirs: self.read_only.clone(),
            private_dirs: self.private_dirs.clone(),
            log_file,
            server: self.dev_server.clone(),
            isolation: self.isolation.clone(),
            confinement: self.confinement.clone(),
        }
    }

    fn process_spec<'a>(&'a self, root: &'a Path, env: &'a [(&'a str, String)]) -> ProcessSpec<'a> {
        ProcessSpec {
            project_dir: root,
            hidden_dir: &self.hidden_dir,
            workspace: &self.templates.workspace,
            read_only_dirs: &self.read_only,
            private_dirs: &self.private_dirs,
            env,
            confinement: &self.confinement,
            limits: Limits::command(self.confinement.budget_bytes),
            cgroup: None,
            network: false,
            listen_fd: None,
        }
    }
}

/// Whether a workspace may create and remove its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// The directory is the workspace's own (local mode): created by renaming
    /// a finished staging directory, so a half-made project never looks
    /// complete, and removed on destroy.
    Owned,
    /// The directory is a volume's mount point (a pod's PVC): it always
    /// exists, is seeded in place (`package.json` written last, as the
    /// marker of a complete seed) and only emptied on destroy.
    Mounted,
}

/// One project's directory, dev server and running commands.
pub struct Workspace {
    id: String,
    root: PathBuf,
    log_file: PathBuf,
    kind: RootKind,
    toolchain: Arc<Toolchain>,
    supervisor: Mutex<Option<Arc<Supervisor>>>,
    commands: RunningCommands,
    lock: tokio::sync::Mutex<()>,
    /// The starter this process seeded the files from, while nothing else has
    /// changed them (a warm pod or spare not yet given to a project).
    seeded: Mutex<Option<String>>,
}

impl Workspace {
    /// A workspace at `root` (canonical, or for [`RootKind::Owned`] a
    /// not-yet-existing child of a canonical directory) whose dev server logs
    /// to `log_file`. Nothing is created until [`Sandbox::ensure`] or an import.
    pub fn new(
        project_id: &str,
        root: PathBuf,
        log_file: PathBuf,
        kind: RootKind,
        toolchain: Arc<Toolchain>,
    ) -> Workspace {
        Workspace {
            id: project_id.to_string(),
            root,
            log_file,
            kind,
            toolchain,
            supervisor: Mutex::new(None),
            commands: RunningCommands::default(),
            lock: tokio::sync::Mutex::new(()),
            seeded: Mutex::new(None),
        }
    }

    /// The project's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The dev server's log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The shared settings.
    pub fn toolchain(&self) -> &Toolchain {
        &self.toolchain
    }

    /// Waits until the app's files have been still for [`SETTLE`] (at most
    /// 2 s), so the dev server's watcher has seen the last write before
    /// Verify asks it for the modules.
    async fn settle_after_writes(&self) {
        let root = self.root.clone();
        let newest = tokio::task::spawn_blocking(move || newest_source_change(&root))
            .await
            .ok()
            .flatten();
        let Some(newest) = newest else { return };
        let age = std::time::SystemTime::now()
            .duration_since(newest)
            .unwrap_or_default();
        if age < SETTLE {
            tokio::time::sleep((SETTLE - age).min(Duration::from_secs(2))).await;
        }
    }

    /// Whether the project's files are in place (its `package.json` exists).
    pub fn exists(&self) -> bool {
        self.root.join("package.json").is_file()
    }

    /// The dev server's pid, when one is supervised.
    pub fn dev_server_pid(&self) -> Option<u32> {
        self.supervisor().and_then(|s| s.pid())
    }

    /// Whether this process runs the project's dev server now (starting,
    /// serving or restarting it; not stopped, not given up).
    pub fn dev_server_running(&self) -> bool {
        self.supervisor().is_some_and(|s| s.is_active())
    }

    /// The state [`Sandbox::status`] reports, given whether the files are
    /// there ([`Workspace::exists`]): the rest is in memory.
    pub fn status_given(&self, exists: bool) -> SandboxStatus {
        if !exists {
            return SandboxStatus {
                state: SandboxState::Missing,
                preview_addr: None,
                detail: None,
            };
        }
        match self.supervisor() {
            Some(s) if s.is_active() => s.status(),
            Some(s) => {
                let st = s.status();
                SandboxStatus {
                    state: if st.state == SandboxState::Crashed {
                        SandboxState::Crashed
                    } else {
                        SandboxState::Stopped
                    },
                    preview_addr: None,
                    detail: st.detail,
                }
            }
            None => SandboxStatus {
                state: SandboxState::Stopped,
                preview_addr: None,
                detail: None,
            },
        }
    }

    /// Serialises ensure, import and destroy of this workspace.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    fn supervisor(&self) -> Option<Arc<Supervisor>> {
        self.supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `sup` this workspace's dev server (the local warm spare, adopted).
    pub fn adopt_supervisor(&self, sup: Arc<Supervisor>) {
        *self.supervisor.lock().unwrap_or_else(|p| p.into_inner()) = Some(sup);
    }

    /// Creates the files from starter `name` when missing. The caller holds [`Workspace::lock`].
    pub async fn create_from(&self, name: &str) -> Result<()> {
        if self.exists() {
            return Ok(());
        }
        let starter = self.toolchain.starter(name)?.clone();
        let root = self.root.clone();
        match self.kind {
            RootKind::Owned => {
                let parent = root
                    .parent()
                    .ok_or_else(|| Error::Internal("workspace root has no parent".into()))?;
                let staging =
                    parent.join(format!(".{}.creating-{}", self.id, rand::random::<u32>()));
                blocking(move || {
                    materialize(
                        &starter.files,
                        &starter.node_modules,
                        starter.vite_deps.as_deref(),
                        &staging,
                        &root,
                    )
                })
                .await?;
            }
            RootKind::Mounted => {
                blocking(move || seed_in_place(&starter.files, &starter.node_modules, &root))
                    .await?;
            }
        }
        self.set_seeded(Some(name));
        Ok(())
    }

    /// Gives a workspace seeded from another starter, and unchanged since,
    /// the files and dependencies of starter `name` (a warm pod or spare
    /// adopted by a project of another starter). Files are rewritten only
    /// where they differ, so a running dev server reloads what changed.
    /// The caller holds [`Workspace::lock`].
    pub async fn reseed(&self, name: &str) -> Result<()> {
        let starter = self.toolchain.starter(name)?.clone();
        blocking({
            let root = self.root.clone();
            move || {
                files::import(&root, &starter.files)?;
                relink(&root.join("node_modules"), &starter.node_modules)?;
                if let Some(deps) = &starter.vite_deps {
                    relink(&root.join(VITE_DEPS_LINK), deps)?;
                }
                Ok(())
            }
        })
        .await?;
        self.set_seeded(Some(name));
        tracing::info!(project_id = %self.id, starter = name, "workspace given another starter's files");
        Ok(())
    }

    /// Records that the files are starter `name`'s and nothing else changed
    /// them (`None`: they were changed). An adopted spare is the default's.
    pub fn set_seeded(&self, name: Option<&str>) {
        *self.seeded.lock().unwrap_or_else(|p| p.into_inner()) = name.map(str::to_string);
    }

    /// The starter the files came from while nothing else changed them.
    pub fn seeded_from(&self) -> Option<String> {
        self.seeded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates the files from the default starter if missing and starts the
    /// dev server unless it runs. The caller holds [`Workspace::lock`].
    pub async fn ensure_locked(&self) -> Result<SandboxStatus> {
        self.ensure_with(None).await
    }

    /// Creates the files from starter `name` if missing (or gives a still
    /// untouched seed of another starter this one's files) and starts the dev
    /// server unless it runs. The caller holds [`Workspace::lock`].
    pub async fn ensure_from_locked(&self, name: &str) -> Result<SandboxStatus> {
        self.toolchain.starter(name)?;
        self.ensure_with(Some(name)).await
    }

    async fn ensure_with(&self, starter: Option<&str>) -> Result<SandboxStatus> {
        let name = starter.unwrap_or(&self.toolchain.default_starter().name);
        if !self.exists() {
            self.create_from(name).await?;
        } else if starter.is_some() && self.seeded_from().is_some_and(|s| s != name) {
            self.reseed(name).await?;
        }
        if let Some(s) = self.supervisor() {
            if s.is_active() {
                return Ok(s.status());
            }
            s.stop().await;
        }
        let sup = Supervisor::start(self.toolchain.vite_spec(
            &self.id,
            self.root.clone(),
            self.log_file.clone(),
        ));
        let status = sup.status();
        self.adopt_supervisor(sup);
        tracing::info!(project_id = %self.id, starter = name, "dev server starting");
        Ok(status)
    }

    /// Kills every command still running here; returns how many.
    pub fn kill_commands(&self) -> usize {
        self.commands.kill_all()
    }

    /// Stops everything and removes the files. The caller holds [`Workspace::lock`].
    pub async fn destroy_locked(&self) -> Result<()> {
        self.stop().await?;
        self.set_seeded(None);
        let killed = self.commands.kill_all();
        if killed > 0 {
            tracing::info!(project_id = %self.id, killed, "ended running commands");
        }
        let root = self.root.clone();
        let log = self.log_file.clone();
        let kind = self.kind;
        blocking(move || {
            // A process killed just now may still have a write in flight
            // (ENOTEMPTY): try again briefly.
            let mut attempt = 0;
            loop {
                let removed = match kind {
                    // remove_dir_all does not follow symlinks: the shared cache is safe.
                    RootKind::Owned => std::fs::remove_dir_all(&root),
                    RootKind::Mounted => empty_dir(&root),
                };
                match removed {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 10 => {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // The rotated log too (a full log, or the one before a wake on the spare).
            let _ = std::fs::remove_file(log.with_extension("log.1"));
            let _ = std::fs::remove_file(log);
            Ok(())
        })
        .await
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

    /// The browser check of this workspace's running dev server.
    async fn check_page(&self, req: &SmokeRequest) -> Result<SmokeReport> {
        let started = std::time::Instant::now();
        let status = self.status().await?;
        let addr = match (status.state, status.preview_addr) {
            (SandboxState::Ready, Some(addr)) => addr,
            (state, _) => {
                return Err(Error::NotReady(format!(
                    "the dev server of project {} is not serving (state {state:?}); the page cannot be checked",
                    self.id
                )))
            }
        };
        let url = format!("http://{addr}/");
        let span = tracing::info_span!("smoke_check", project_id = %self.id);
        let checked = self
            .toolchain
            .browser
            .check(&url, req)
            .instrument(span)
            .await?;
        let (findings, screenshots) = match checked {
            PageCheck::Unavailable(note) => return Ok(SmokeReport::skipped(note)),
            PageCheck::Checked {
                findings,
                screenshots,
            } => (findings, screenshots),
        };
        let needs_source = findings.iter().any(|f| !matches!(f, Finding::Located(_)));
        let tree = if needs_source {
            self.in_root(files::export).await?
        } else {
            SourceTree::default()
        };
        // Stacks name files where the dev server sees the project: under
        // bubblewrap that is the shared mount point, not `self.root`.
        let seen_at = self
            .toolchain
            .isolation
            .workdir(&self.root, &self.toolchain.templates.workspace);
        let root = seen_at.display().to_string();
        Ok(SmokeReport {
            checked: true,
            diagnostics: smoke::locate(findings, &tree, &root),
            screenshots,
            note: None,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    async fn in_root<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let root = self.root.clone();
        blocking(move || f(&root)).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("file task: {e}")))?
}

/// Removes everything inside `dir`, keeping `dir` (a mount point).
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Writes the template's files under the canonical directory `dir`, setting
/// the executable bit where the template has it; `package.json` last.
fn write_template(template: &SourceTree, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (last, first): (Vec<_>, Vec<_>) = template
        .files
        .iter()
        .partition(|f| f.path == "package.json");
    for f in first.into_iter().chain(last) {
        let p = ProjectPath::parse(&f.path)?;
        files::write(dir, &p, &f.data)?;
        if f.executable {
            std::fs::set_permissions(dir.join(p.as_str()), std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// Points the symlink `link` at `target`, replacing what is there (a link
/// or a private copy); nothing to do when it already points there.
fn relink(link: &Path, target: &Path) -> Result<()> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(link)?,
        Ok(_) => std::fs::remove_file(link)?,
        Err(_) => {}
    }
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(target, link)?;
    Ok(())
}

/// Writes a starter (sources, `node_modules` link, and the `.vite/deps` link
/// and the type check's build info when there is a shared pre-bundle) into
/// `staging`, then renames it to
/// `dest` (blocking). `dest` must not exist or be incomplete.
pub(super) fn materialize(
    template: &SourceTree,
    node_modules: &Path,
    vite_deps: Option<&Path>,
    staging: &Path,
    dest: &Path,
) -> Result<()> {
    let res = (|| -> Result<()> {
        std::fs::create_dir_all(staging)?;
        let st = std::fs::canonicalize(staging)?;
        write_template(template, &st)?;
        std::os::unix::fs::symlink(node_modules, st.join("node_modules"))?;
        if let Some(deps) = vite_deps {
            relink(&st.join(VITE_DEPS_LINK), deps)?;
            // A copy, not a link: `tsc` rewrites it after every check.
            let seed = super::template::type_check_seed(deps);
            if seed.is_file() {
                let info = st.join(crate::sandbox::build_check::TSC_BUILD_INFO);
                if let Some(dir) = info.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::copy(&seed, &info)?;
            }
        }
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

/// Seeds an existing directory (a volume) from the template: the
/// `node_modules` link unless something is there, then the files, with
/// `package.json` last so an interrupted seed is redone on the next start.
/// Files the template does not have are left alone.
fn seed_in_place(template: &SourceTree, node_modules: &Path, root: &Path) -> Result<()> {
    let link = root.join("node_modules");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(node_modules, &link)?;
    }
    write_template(template, root)
}

/// How long after the last change to the app's files the dev server is
/// trusted to have seen it (its file watcher, under load).
const SETTLE: Duration = Duration::from_millis(300);

/// The newest modification time under `src/` and of `index.html` (a bounded look).
fn newest_source_change(root: &Path) -> Option<std::time::SystemTime> {
    let mut newest = std::fs::metadata(root.join("index.html"))
        .and_then(|m| m.modified())
        .ok();
    let mut dirs = vec![root.join("src")];
    let mut seen = 0usize;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > 5000 {
                return newest;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(e.path());
            } else if let Ok(t) = meta.modified() {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}

/// Whether a shell command runs a package manager that may change `node_modules`.
fn touches_node_modules(command: &str) -> bool {
    command
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(|w| matches!(w, "npm" | "pnpm" | "yarn" | "bun"))
}

#[async_trait]
impl Sandbox for Workspace {
    fn project_id(&self) -> &str {
        &self.id
    }

    async fn ensure(&self) -> Result<SandboxStatus> {
        let _guard = self.lock().await;
        self.ensure_locked().await
    }

    async fn ensure_from(&self, starter: &str) -> Result<SandboxStatus> {
        let _guard = self.lock().await;
        self.ensure_from_locked(starter).await
    }

    async fn status(&self) -> Result<SandboxStatus> {
        Ok(self.status_given(self.exists()))
    }

    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        self.require_exists()?;
        let p = path.clone();
        let allow = self.toolchain.read_only.clone();
        self.in_root(move |root| files::read(root, &p, &allow))
            .await
    }

    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()> {
        self.require_exists()?;
        self.set_seeded(None);
        let p = path.clone();
        let data = data.to_vec();
        let budget = self.toolchain.confinement.budget_bytes;
        self.in_root(move |root| {
            disk::check_write(root, &root.join(p.as_str()), data.len() as u64, budget)?;
            files::write(root, &p, &data)
        })
        .await
    }

    async fn delete_file(&self, path: &ProjectPath) -> Result<bool> {
        self.require_exists()?;
        self.set_seeded(None);
        let p = path.clone();
        self.in_root(move |root| files::delete(root, &p)).await
    }

    async fn list_files(&self) -> Result<Vec<FileEntry>> {
        self.require_exists()?;
        self.in_root(files::list_entries).await
    }

    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        self.require_exists()?;
        self.set_seeded(None);
        if touches_node_modules(&req.command) {
            let command = req.command.clone();
            if let Some(output) = self
                .in_root(move |root| Ok(packages::already_installed(root, &command)))
                .await?
            {
                tracing::info!(project_id = %self.id, command = %req.command, "answered from the shared node_modules");
                return Ok(ExecOutput {
                    exit_code: Some(0),
                    output,
                    truncated: false,
                    timed_out: false,
                });
            }
            template::detach_node_modules(&self.root).await?;
        }
        // Installs are the other CPU- and disk-heavy job a run does.
        let _permit = if touches_node_modules(&req.command) {
            Some(self.toolchain.builds.acquire().await)
        } else {
            None
        };
        let env = [];
        let span = tracing::info_span!("exec", project_id = %self.id);
        let mut out = command::run(
            &self.toolchain.isolation,
            &self.toolchain.process_spec(&self.root, &env),
            &self.commands,
            req,
        )
        .instrument(span)
        .await?;
        let budget = self.toolchain.confinement.budget_bytes;
        if let Some(note) = self
            .in_root(move |root| Ok(disk::over_budget_note(root, budget)))
            .await?
        {
            tracing::warn!(project_id = %self.id, %note, "project over its disk budget");
            out.output.push('\n');
            out.output.push_str(&note);
            out.output.push('\n');
        }
        Ok(out)
    }

    async fn logs(&self, lines: usize) -> Result<String> {
        if let Some(s) = self.supervisor() {
            return Ok(s.tail(lines));
        }
        match tokio::fs::read(&self.log_file).await {
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
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(s) = sup {
            s.stop().await;
            tracing::info!(project_id = %self.id, "dev server stopped");
        }
        Ok(())
    }

    async fn destroy(&self) -> Result<()> {
        let _guard = self.lock().await;
        self.destroy_locked().await
    }

    async fn export_source(&self) -> Result<SourceTree> {
        self.require_exists()?;
        self.in_root(files::export).await
    }

    async fn import_source(&self, tree: &SourceTree) -> Result<()> {
        let _guard = self.lock().await;
        let default = self.toolchain.default_starter().name.clone();
        self.create_from(&default).await?;
        self.set_seeded(None);
        let imported = tree.clone();
        self.in_root(move |root| files::import(root, &imported))
            .await
    }

    async fn check_build(&self) -> Result<BuildReport> {
        let span = tracing::info_span!("check_build", project_id = %self.id);
        async {
            let queued = std::time::Instant::now();
            let _permit = self.toolchain.builds.acquire().await;
            tracing::debug!(
                waited_ms = queued.elapsed().as_millis() as u64,
                "build gate passed"
            );
            let st = self.status().await?;
            let log = self.logs(400).await.unwrap_or_default();
            match (st.state, st.preview_addr) {
                (SandboxState::Ready, Some(addr))
                    if !self.toolchain.full_build_check
                        && !build_check::dev_config_failed(&log) =>
                {
                    self.settle_after_writes().await;
                    build_check::check_with_dev_server(self, &addr).await
                }
                _ => build_check::check_build_with_vite_build(self).await,
            }
        }
        .instrument(span)
        .await
    }

    async fn smoke_check(&self, req: &SmokeRequest) -> Result<SmokeReport> {
        self.check_page(req).await
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
