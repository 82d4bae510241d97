//! One project's Vite dev server as a supervised child process.
//!
//! The supervisor picks a free port, starts Vite in its own process group,
//! probes `GET /` until it answers 200, captures output into a bounded ring
//! buffer and a log file, and restarts Vite with backoff when it exits. Its
//! state lives in this process only: when the supervisor is gone, the sandbox
//! reports `Stopped` from what is on disk.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::limits::Limits;
use super::process::{kill_group, project_command, Confinement, Isolation, ProcessSpec};
use crate::error::{Error, Result};
use crate::sandbox::{SandboxState, SandboxStatus};

/// Lines kept in memory per project.
const RING_LINES: usize = 2000;
/// The log file is rotated (to `.1`) past this size.
const LOG_FILE_MAX: u64 = 4 * 1024 * 1024;
/// Give up after this many crashes in a row without a healthy minute between them.
const MAX_RESTARTS: u32 = 8;

/// Everything needed to (re)start one project's dev server.
#[derive(Debug, Clone)]
pub struct ViteSpec {
    /// Project id (for logs).
    pub project_id: String,
    /// Project root.
    pub project_dir: PathBuf,
    /// Data dir, hidden inside bubblewrap.
    pub hidden_dir: PathBuf,
    /// Where the project is mounted inside bubblewrap.
    pub workspace: PathBuf,
    /// Template `node_modules` and pre-bundles, visible read-only inside bubblewrap.
    pub read_only_dirs: Vec<PathBuf>,
    /// Directories inside those given a private writable tmpfs.
    pub private_dirs: Vec<PathBuf>,
    /// Log file.
    pub log_file: PathBuf,
    /// Where Vite listens and what it is told about the proxy in front of it.
    pub server: DevServerOptions,
    /// Isolation to use.
    pub isolation: Isolation,
    /// Cgroups, disk budget and toolchain shared by the host's processes.
    pub confinement: Arc<Confinement>,
}

/// Where a dev server listens; the same for every project of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevServerOptions {
    /// Interface Vite binds: `127.0.0.1` locally, `0.0.0.0` in a pod (Caddy reaches it through the Service).
    pub host: String,
    /// A fixed port (5173 in a pod); `None` picks a free loopback port on every start.
    pub port: Option<u16>,
    /// Port the browser uses for HMR (the proxy's), passed as `APNA_HMR_CLIENT_PORT`.
    pub hmr_client_port: Option<u16>,
    /// Origins of the Apna UI that may drive Select in the preview, passed as
    /// `APNA_UI_ORIGINS`: needed when the UI is not on the preview domain's
    /// parent (on AWS it is on CloudFront, previews under Caddy's domain).
    pub ui_origins: Vec<String>,
    /// Extra arguments for Vite. In a pod `node_modules` is on a read-only
    /// file system, where Vite's default config loader cannot write its
    /// bundled config (EROFS), so sandboxd passes `--configLoader runner`.
    pub vite_args: Vec<String>,
    /// Node and V8 flags before Vite's script ([`NODE_FLAGS`] by default).
    pub node_args: Vec<String>,
}

/// The Node flags every dev server gets: see BENCHMARKS.md, "#16 Density",
/// for what each costs and saves.
///
/// `--max-opt=2` stops V8 at Maglev, without TurboFan: a dev server spends
/// most of its life starting and serving a first page, where TurboFan's
/// background compiles never pay back (−13 to −28 % of the CPU to a served
/// first page); over 40 edits afterwards it costs ~5 % more.
pub const NODE_FLAGS: &[&str] = &["--max-opt=2"];

impl DevServerOptions {
    /// A free loopback port per start (local mode).
    pub fn loopback(hmr_client_port: Option<u16>) -> DevServerOptions {
        DevServerOptions {
            host: "127.0.0.1".into(),
            port: None,
            hmr_client_port,
            ui_origins: Vec::new(),
            vite_args: Vec::new(),
            node_args: NODE_FLAGS.iter().map(|f| f.to_string()).collect(),
        }
    }
}

struct Shared {
    state: SandboxState,
    port: Option<u16>,
    pid: Option<u32>,
    detail: Option<String>,
    restarts: u32,
    log: VecDeque<String>,
}

/// A running supervisor; dropping it does not stop Vite, [`Supervisor::stop`] does.
pub struct Supervisor {
    shared: Arc<Mutex<Shared>>,
    spec: Arc<Mutex<ViteSpec>>,
    cancel: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Supervisor {
    /// Starts the dev server and returns at once (state `Starting`).
    pub fn start(spec: ViteSpec) -> Arc<Supervisor> {
        let shared = Arc::new(Mutex::new(Shared {
            state: SandboxState::Starting,
            port: None,
            pid: None,
            detail: None,
            restarts: 0,
            log: VecDeque::with_capacity(256),
        }));
        let cancel = CancellationToken::new();
        let span = tracing::info_span!("vite", project_id = %spec.project_id);
        let spec = Arc::new(Mutex::new(spec));
        let task = tokio::spawn(run(spec.clone(), shared.clone(), cancel.clone()).instrument(span));
        Arc::new(Supervisor {
            shared,
            spec,
            cancel,
            task: Mutex::new(Some(task)),
        })
    }

    /// State, address and detail.
    pub fn status(&self) -> SandboxStatus {
        let s = lock(&self.shared);
        SandboxStatus {
            state: s.state,
            preview_addr: match s.state {
                SandboxState::Ready | SandboxState::Starting => {
                    s.port.map(|p| format!("127.0.0.1:{p}"))
                }
                _ => None,
            },
            detail: s.detail.clone(),
        }
    }

    /// Hands a running dev server to another project directory (the warm
    /// spare being adopted): later restarts use the new directory and log file.
    /// The server itself sees no change because the sandbox mount path is fixed.
    pub fn rebind(&self, project_id: &str, project_dir: PathBuf, log_file: PathBuf) {
        let mut spec = self.spec.lock().unwrap_or_else(|p| p.into_inner());
        spec.project_id = project_id.to_string();
        spec.project_dir = project_dir;
        spec.log_file = log_file;
    }

    /// The dev server's pid (the process group leader), when running.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.shared).pid
    }

    /// Whether the supervisor still manages a process (not given up, not stopped).
    pub fn is_active(&self) -> bool {
        !self.cancel.is_cancelled()
            && !matches!(
                lock(&self.shared).state,
                SandboxState::Stopped | SandboxState::Missing
            )
            && !self.gave_up()
    }

    fn gave_up(&self) -> bool {
        let s = lock(&self.shared);
        s.state == SandboxState::Crashed && s.restarts >= MAX_RESTARTS
    }

    /// The last `n` log lines.
    pub fn tail(&self, n: usize) -> String {
        let s = lock(&self.shared);
        let skip = s.log.len().saturating_sub(n);
        let mut out = String::new();
        for l in s.log.iter().skip(skip) {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Kills the dev server with its process group and waits for the supervisor to end.
    pub async fn stop(&self) {
        self.cancel.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A poisoned lock only means a reader panicked; the data is still coherent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn push_line(shared: &Mutex<Shared>, line: String) {
    let mut s = lock(shared);
    if s.log.len() >= RING_LINES {
        s.log.pop_front();
    }
    s.log.push_back(line);
}

fn set_state(shared: &Mutex<Shared>, state: SandboxState, detail: Option<String>) {
    let mut s = lock(shared);
    s.state = state;
    s.detail = detail;
}

/// A free loopback port (the OS picks one; Vite gets it with `strictPort`).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn run(current: Arc<Mutex<ViteSpec>>, shared: Arc<Mutex<Shared>>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    let current_dir = || {
        current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .project_dir
            .clone()
    };
    loop {
        let spec = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let started = Instant::now();
        let outcome = run_once(&spec, &shared, &cancel).await;
        if cancel.is_cancelled() {
            let mut s = lock(&shared);
            s.state = SandboxState::Stopped;
            s.pid = None;
            s.detail = Some("stopped".into());
            return;
        }
        let detail = match outcome {
            Ok(status) => format!("dev server exited ({status})"),
            Err(e) => format!("dev server failed to start: {e}"),
        };
        // A spare adopted while its process was still being set up: bubblewrap
        // (or the spawn) found the spare's directory already renamed to the
        // project's. Not a crash; start again at once at the new directory.
        let moved = current_dir() != spec.project_dir && lock(&shared).state != SandboxState::Ready;
        if moved {
            tracing::debug!(project_id = %spec.project_id, %detail, "dev server moved before it was ready; starting it again");
            continue;
        }
        tracing::warn!(project_id = %spec.project_id, %detail, "restarting dev server");
        push_line(&shared, format!("[apna] {detail}"));
        let restarts = {
            let mut s = lock(&shared);
            s.pid = None;
            if started.elapsed() > Duration::from_secs(60) {
                s.restarts = 0;
                backoff = Duration::from_millis(250);
            }
            s.restarts += 1;
            s.state = SandboxState::Crashed;
            s.detail = Some(detail.clone());
            s.restarts
        };
        if restarts >= MAX_RESTARTS {
            push_line(&shared, "[apna] giving up after repeated crashes".into());
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => {
                set_state(&shared, SandboxState::Stopped, Some("stopped".into()));
                return;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Runs Vite once until it exits or `cancel` fires.
async fn run_once(
    spec: &ViteSpec,
    shared: &Arc<Mutex<Shared>>,
    cancel: &CancellationToken,
) -> Result<std::process::ExitStatus> {
    // Under bubblewrap on a free loopback port the dev server has no network:
    // Apna listens and hands it the socket; the preview proxy connects to that.
    let offline =
        spec.server.port.is_none() && spec.confinement.dev_server_offline(&spec.isolation);
    let listener = if offline {
        Some(std::net::TcpListener::bind((spec.server.host.as_str(), 0))?)
    } else {
        None
    };
    let port = match (&listener, spec.server.port) {
        (Some(l), _) => l.local_addr()?.port(),
        (None, Some(p)) => p,
        (None, None) => free_port()?,
    };
    let limits = Limits::dev_server(spec.confinement.budget_bytes);
    let cgroup = spec
        .confinement
        .cgroup(&format!("vite-{}", spec.project_id), &limits);
    let mut env = vec![
        ("PORT", port.to_string()),
        ("HOST", spec.server.host.clone()),
    ];
    if let Some(p) = spec.server.hmr_client_port {
        env.push(("APNA_HMR_CLIENT_PORT", p.to_string()));
    }
    if !spec.server.ui_origins.is_empty() {
        env.push(("APNA_UI_ORIGINS", spec.server.ui_origins.join(",")));
    }
    let vite = spec
        .isolation
        .workdir(&spec.project_dir, &spec.workspace)
        .join("node_modules/vite/bin/vite.js");
    let vite = vite.to_string_lossy();
    let proc_spec = ProcessSpec {
        project_dir: &spec.project_dir,
        hidden_dir: &spec.hidden_dir,
        workspace: &spec.workspace,
        read_only_dirs: &spec.read_only_dirs,
        private_dirs: &spec.private_dirs,
        env: &env,
        confinement: &spec.confinement,
        limits,
        cgroup: cgroup.as_ref(),
        network: !offline,
        listen_fd: listener.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
    };
    // Vite's default config loader bundles vite.config.ts into
    // node_modules/.vite-temp (a private tmpfs under bubblewrap). It costs
    // ~100 ms less CPU per start than `--configLoader runner` (440 vs 550 ms).
    let mut args: Vec<&str> = spec.server.node_args.iter().map(String::as_str).collect();
    args.push(vite.as_ref());
    args.extend(spec.server.vite_args.iter().map(String::as_str));
    let mut cmd = project_command(&spec.isolation, &proc_spec, "node", &args);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Sandbox(format!("could not start node: {e}")))?;
    // The dev server holds the socket now; ours would keep the port open
    // (and queue connections) after it exits.
    drop(listener);
    let pid = child.id();
    {
        let mut s = lock(shared);
        s.port = Some(port);
        s.pid = pid;
        s.state = SandboxState::Starting;
        s.detail = None;
    }
    let log = LogSink::open(&spec.log_file).await;
    let log = Arc::new(tokio::sync::Mutex::new(log));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(pump(out, shared.clone(), log.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(pump(err, shared.clone(), log.clone())));
    }
    let probe = {
        let shared = shared.clone();
        let cancel = cancel.child_token();
        let token = cancel.clone();
        let h = tokio::spawn(async move {
            if probe_ready(port, &token).await {
                let mut s = lock(&shared);
                if s.state == SandboxState::Starting {
                    s.state = SandboxState::Ready;
                    s.restarts = 0;
                }
            }
        });
        (h, cancel)
    };
    let status = tokio::select! {
        st = child.wait() => Some(st),
        _ = cancel.cancelled() => None,
    };
    probe.1.cancel();
    let status = match status {
        Some(st) => {
            // Vite is gone; make sure whatever it started goes too.
            if let Some(pid) = pid {
                kill_group(pid);
            }
            st?
        }
        None => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            child.wait().await?
        }
    };
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
    }
    if let Some(why) = cgroup
        .as_ref()
        .map(|g| g.usage())
        .unwrap_or_default()
        .with_status(Some(status))
        .explain(&limits)
    {
        push_line(shared, format!("[apna] the dev server stopped: {why}"));
    }
    super::limits::Cgroup::release(cgroup).await;
    Ok(status)
}

/// Polls `GET /` until it answers 200.
async fn probe_ready(port: u16, cancel: &CancellationToken) -> bool {
    let started = Instant::now();
    loop {
        if cancel.is_cancelled() {
            return false;
        }
        if http_ok(port).await {
            return true;
        }
        // Poll fast at first (Vite starts in ~0.3 s), then back off.
        let wait = if started.elapsed() < Duration::from_secs(5) {
            Duration::from_millis(15)
        } else {
            Duration::from_millis(250)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return false,
        }
    }
}

/// One minimal HTTP/1.1 request; true on status 200.
pub(crate) async fn http_ok(port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAccept: text/html\r\n\r\n",
        )
        .await
        .ok()?;
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < 12 {
            let m = s.read(&mut buf[n..]).await.ok()?;
            if m == 0 {
                break;
            }
            n += m;
        }
        Some(buf[..n].starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    r: R,
    shared: Arc<Mutex<Shared>>,
    log: Arc<tokio::sync::Mutex<LogSink>>,
) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = strip_ansi(&line);
        log.lock().await.write_line(&line).await;
        push_line(&shared, line);
    }
}

/// Removes terminal colour codes so logs parse and read cleanly.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The on-disk copy of the log, rotated past [`LOG_FILE_MAX`].
struct LogSink {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    size: u64,
}

impl LogSink {
    async fn open(path: &std::path::Path) -> LogSink {
        if let Some(dir) = path.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .ok();
        let size = match &file {
            Some(f) => f.metadata().await.map(|m| m.len()).unwrap_or(0),
            None => 0,
        };
        LogSink {
            path: path.to_path_buf(),
            file,
            size,
        }
    }

    async fn write_line(&mut self, line: &str) {
        if self.size > LOG_FILE_MAX {
            let rotated = self.path.with_extension("log.1");
            let _ = tokio::fs::rename(&self.path, &rotated).await;
            *self = LogSink::open(&self.path.clone()).await;
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(line.as_bytes()).await.is_ok() && f.write_all(b"\n").await.is_ok() {
                self.size += line.len() as u64 + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for Vite that exits with 1 once `exit-once` appears in its
    /// directory (deleting it), and otherwise keeps running.
    const FAKE_VITE: &str = "const fs = require('fs');\n\
        setInterval(() => { if (fs.existsSync('exit-once')) { fs.unlinkSync('exit-once'); process.exit(1); } }, 20);\n";

    fn fake_project(dir: &std::path::Path) {
        let bin = dir.join("node_modules/vite/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("vite.js"), FAKE_VITE).unwrap();
    }

    fn spec_for(dir: &std::path::Path, data: &std::path::Path) -> ViteSpec {
        ViteSpec {
            project_id: "spare".into(),
            project_dir: dir.to_path_buf(),
            hidden_dir: data.to_path_buf(),
            workspace: data.join("workspace"),
            read_only_dirs: Vec::new(),
            private_dirs: Vec::new(),
            log_file: data.join("spare.log"),
            server: DevServerOptions::loopback(None),
            isolation: Isolation::None,
            confinement: Arc::new(Confinement::without_cgroups(1 << 30)),
        }
    }

    async fn next_pid(sup: &Supervisor, after: Option<u32>) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pid) = sup.pid().filter(|p| Some(*p) != after) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no new dev server: {}",
                sup.tail(20)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_spare_moved_before_it_was_ready_restarts_without_a_crash() {
        let data = tempfile::tempdir().unwrap();
        let (spare, project) = (data.path().join(".spare-1"), data.path().join("proj"));
        fake_project(&spare);
        let sup = Supervisor::start(spec_for(&spare, data.path()));
        let first = next_pid(&sup, None).await;
        // Adopted: renamed and rebound while starting; then the process ends.
        std::fs::rename(&spare, &project).unwrap();
        sup.rebind("proj", project.clone(), data.path().join("proj.log"));
        std::fs::write(project.join("exit-once"), "").unwrap();
        next_pid(&sup, Some(first)).await;
        {
            let s = lock(&sup.shared);
            assert_eq!(s.restarts, 0, "{:?}", s.log);
            assert_ne!(s.state, SandboxState::Crashed);
        }
        assert!(
            !sup.tail(50).contains("[apna] dev server"),
            "{}",
            sup.tail(50)
        );

        // Not moved: the same exit is a crash, logged and counted.
        let second = sup.pid().unwrap();
        std::fs::write(project.join("exit-once"), "").unwrap();
        next_pid(&sup, Some(second)).await;
        assert_eq!(lock(&sup.shared).restarts, 1);
        assert!(
            sup.tail(50).contains("[apna] dev server exited"),
            "{}",
            sup.tail(50)
        );
        sup.stop().await;
    }

    #[test]
    fn strips_colour_codes() {
        assert_eq!(
            strip_ansi("\u{1b}[31m[UNRESOLVED]\u{1b}[0m x \u{1b}[38;5;246m│\u{1b}[0m"),
            "[UNRESOLVED] x │"
        );
    }
}
