//! Resource limits for project processes: what one command or one dev
//! server may use before it is stopped, and how it is stopped.
//!
//! Two mechanisms, both set between `fork` and `exec` so that nothing the
//! process starts escapes them:
//!
//! * rlimits, always: CPU seconds per process (an endless loop ends) and file
//!   size (one file cannot outgrow the project's disk budget); and a lower
//!   CPU priority (`nice 10`), so a busy project never starves the server.
//! * a cgroup per command and per dev server when this process may create
//!   them (cgroup v1 `pids` + `memory` hierarchies, or a cgroup v2 root with
//!   both controllers): a process limit (a fork bomb stalls inside its own
//!   group while everything else keeps forking) and a memory limit. Without
//!   cgroups the process limit falls back to `RLIMIT_NPROC`, which counts all
//!   of the user's processes, and memory to `RLIMIT_AS`.
//!
//! When a limit stops a command, [`Usage::explain`] says which one, in
//! words the model can act on.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What one process tree may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU seconds per process (`RLIMIT_CPU`).
    pub cpu_secs: u64,
    /// Bytes of memory for the whole tree (cgroup), or per process (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Processes and threads in the tree (cgroup `pids.max`, else `RLIMIT_NPROC`).
    pub processes: u64,
    /// Largest file it may write (`RLIMIT_FSIZE`).
    pub file_bytes: u64,
    /// Size of its private `/tmp` (a tmpfs under bubblewrap).
    pub tmp_bytes: u64,
}

const MIB: u64 = 1024 * 1024;

impl Limits {
    /// Limits of one `run_command` in a project with a disk budget of `budget` bytes.
    pub fn command(budget: u64) -> Limits {
        Limits {
            cpu_secs: 300,
            memory_bytes: 2048 * MIB,
            processes: 256,
            file_bytes: budget,
            tmp_bytes: budget.min(512 * MIB),
        }
    }

    /// Limits of one dev server (Vite runs for hours: its CPU limit is generous,
    /// and the supervisor restarts it if it is ever reached).
    pub fn dev_server(budget: u64) -> Limits {
        Limits {
            cpu_secs: 4 * 3600,
            memory_bytes: 2048 * MIB,
            processes: 256,
            file_bytes: budget,
            tmp_bytes: 256 * MIB,
        }
    }
}

/// The CPU priority of project processes (`nice`): the server's own threads
/// (the API, the proxy, the interpreter) come first when the machine is busy.
const PROJECT_NICENESS: libc::c_int = 10;

/// Without a pids cgroup: `RLIMIT_NPROC` counts every process of the user,
/// not of the sandbox, so it can only be a coarse ceiling.
const FALLBACK_NPROC: u64 = 4096;
/// Without a memory cgroup: address space per process. Node reserves far more
/// address space than it uses, so this only stops runaway allocations.
const FALLBACK_AS: u64 = 16 * 1024 * MIB;

/// The rlimits to set in the child, computed before `fork`.
#[derive(Debug, Clone, Copy)]
pub struct Rlimits {
    cpu: u64,
    fsize: u64,
    nproc: Option<u64>,
    address_space: Option<u64>,
}

impl Rlimits {
    /// For `limits`, given whether a cgroup enforces processes and memory.
    pub fn new(limits: &Limits, cgroup: bool) -> Rlimits {
        Rlimits {
            cpu: limits.cpu_secs,
            fsize: limits.file_bytes,
            nproc: (!cgroup).then_some(FALLBACK_NPROC.max(limits.processes)),
            address_space: (!cgroup).then_some(FALLBACK_AS.max(limits.memory_bytes)),
        }
    }

    /// Sets them on the calling process. Only async-signal-safe calls: this
    /// runs between `fork` and `exec`.
    pub fn apply(&self) -> std::io::Result<()> {
        // Below the server: a busy project slows other projects, never the API.
        // SAFETY: setpriority on the calling process; no memory is touched.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, PROJECT_NICENESS);
        }
        // SIGXCPU at the soft limit (a message we can name); SIGKILL a little
        // later for a process that ignores it. Equal limits would be SIGKILL only.
        set(libc::RLIMIT_CPU as i32, self.cpu, self.cpu + 5)?;
        set(libc::RLIMIT_FSIZE as i32, self.fsize, self.fsize)?;
        set(libc::RLIMIT_CORE as i32, 0, 0)?;
        if let Some(n) = self.nproc {
            set(libc::RLIMIT_NPROC as i32, n, n)?;
        }
        if let Some(a) = self.address_space {
            set(libc::RLIMIT_AS as i32, a, a)?;
        }
        Ok(())
    }
}

fn set(resource: i32, soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass and touches no other memory.
    if unsafe { libc::setrlimit(resource as _, &lim) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Where this process may create cgroups for its children.
#[derive(Debug, Clone)]
enum Flavor {
    /// cgroup v1: one parent directory in the `pids` and one in the `memory` hierarchy.
    V1 { pids: PathBuf, memory: PathBuf },
    /// cgroup v2: one parent directory with both controllers enabled for children.
    V2 { parent: PathBuf },
}

/// Creates a cgroup per command and per dev server, under a parent of its own
/// (`apna-{pid}`), when the system lets it.
#[derive(Debug)]
pub struct Cgroups {
    flavor: Flavor,
    next: AtomicU64,
}

impl Cgroups {
    /// The cgroup support of this machine, or `None` (with a log line) when
    /// cgroups cannot be created here.
    pub fn detect() -> Option<Cgroups> {
        let found = Self::detect_v2().or_else(Self::detect_v1);
        match &found {
            Some(c) => tracing::info!(cgroups = ?c.flavor, "project processes get a cgroup each (process and memory limits)"),
            None => tracing::info!(
                "no writable cgroup hierarchy with pids and memory: process and memory limits fall back to rlimits"
            ),
        }
        found
    }

    fn own_path(controller: Option<&str>) -> Option<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        text.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let hit = match controller {
                None => ctrls.is_empty(),
                Some(c) => ctrls.split(',').any(|x| x == c),
            };
            hit.then(|| PathBuf::from(path.trim_start_matches('/')))
        })
    }

    fn parent_name() -> String {
        format!("apna-{}", std::process::id())
    }

    /// Removes the groups an earlier `apna serve` left when it was killed
    /// (their processes end with it: bubblewrap's `--die-with-parent`).
    fn remove_stale(base: &Path) {
        let Ok(entries) = std::fs::read_dir(base) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("apna-")
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            // SAFETY: signal 0 only checks that the pid exists.
            if pid == std::process::id() as i32 || unsafe { libc::kill(pid, 0) } == 0 {
                continue;
            }
            if let Ok(children) = std::fs::read_dir(e.path()) {
                for c in children.flatten().filter(|c| c.path().is_dir()) {
                    drop(Cgroup {
                        dirs: vec![c.path()],
                        procs: Vec::new(),
                        v2: c.path().join("cgroup.kill").exists(),
                    });
                }
            }
            let _ = std::fs::remove_dir(e.path());
        }
    }

    fn detect_v2() -> Option<Cgroups> {
        let root = Path::new("/sys/fs/cgroup");
        let base = root.join(Self::own_path(None)?);
        let controllers = std::fs::read_to_string(base.join("cgroup.controllers")).ok()?;
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if !has("pids") || !has("memory") {
            return None;
        }
        // Controllers can be enabled for children only where no process
        // lives (except at the root): true for the root cgroup of a container.
        std::fs::write(base.join("cgroup.subtree_control"), "+pids +memory").ok()?;
        Self::remove_stale(&base);
        let parent = base.join(Self::parent_name());
        std::fs::create_dir_all(&parent).ok()?;
        std::fs::write(parent.join("cgroup.subtree_control"), "+pids +memory").ok()?;
        Some(Cgroups {
            flavor: Flavor::V2 { parent },
            next: AtomicU64::new(0),
        })
    }

    fn detect_v1() -> Option<Cgroups> {
        let pids_base = Path::new("/sys/fs/cgroup/pids").join(Self::own_path(Some("pids"))?);
        let memory_base = Path::new("/sys/fs/cgroup/memory").join(Self::own_path(Some("memory"))?);
        Self::remove_stale(&pids_base);
        Self::remove_stale(&memory_base);
        let pids = pids_base.join(Self::parent_name());
        let memory = memory_base.join(Self::parent_name());
        std::fs::create_dir_all(&pids).ok()?;
        if std::fs::create_dir_all(&memory).is_err() {
            let _ = std::fs::remove_dir(&pids);
            return None;
        }
        Some(Cgroups {
            flavor: Flavor::V1 { pids, memory },
            next: AtomicU64::new(0),
        })
    }

    /// A new cgroup named after `what` with `limits` applied.
    pub fn create(&self, what: &str, limits: &Limits) -> std::io::Result<Cgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{what}-{n}");
        let group = match &self.flavor {
            Flavor::V2 { parent } => {
                let dir = parent.join(&name);
                std::fs::create_dir(&dir)?;
                let g = Cgroup::new(vec![dir.clone()], true)?;
                std::fs::write(dir.join("pids.max"), limits.processes.to_string())?;
                std::fs::write(dir.join("memory.max"), limits.memory_bytes.to_string())?;
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                g
            }
            Flavor::V1 { pids, memory } => {
                let p = pids.join(&name);
                let m = memory.join(&name);
                std::fs::create_dir(&p)?;
                let made = std::fs::create_dir(&m);
                let g = Cgroup::new(vec![p.clone(), m.clone()], false)?;
                made?;
                std::fs::write(p.join("pids.max"), limits.processes.to_string())?;
                std::fs::write(
                    m.join("memory.limit_in_bytes"),
                    limits.memory_bytes.to_string(),
                )?;
                let _ = std::fs::write(
                    m.join("memory.memsw.limit_in_bytes"),
                    limits.memory_bytes.to_string(),
                );
                g
            }
        };
        Ok(group)
    }

    /// Removes the parent groups (at shutdown; they are empty by then).
    pub fn remove(&self) {
        let dirs = match &self.flavor {
            Flavor::V2 { parent } => vec![parent.clone()],
            Flavor::V1 { pids, memory } => vec![pids.clone(), memory.clone()],
        };
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// One process tree's cgroup; dropping it kills what is left inside and
/// removes it (which may wait: in async code use [`Cgroup::release`]).
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    procs: Vec<CString>,
    v2: bool,
}

impl Cgroup {
    fn new(dirs: Vec<PathBuf>, v2: bool) -> std::io::Result<Cgroup> {
        let procs = dirs
            .iter()
            .map(|d| {
                CString::new(d.join("cgroup.procs").as_os_str().as_bytes())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Cgroup { dirs, procs, v2 })
    }

    /// Kills what is left and removes the group off the async runtime (the
    /// last processes of a fork bomb can take a moment to go).
    pub async fn release(group: Option<Cgroup>) {
        if let Some(g) = group {
            let _ = tokio::task::spawn_blocking(move || drop(g)).await;
        }
    }

    /// The `cgroup.procs` files the child writes itself into.
    pub fn join_paths(&self) -> Vec<CString> {
        self.procs.clone()
    }

    /// Moves the calling process into the group. Async-signal-safe (runs
    /// between `fork` and `exec`): `open`, `write`, `close` only.
    pub fn join(paths: &[CString]) -> std::io::Result<()> {
        for p in paths {
            // SAFETY: a NUL-terminated path we own; the fd is closed below.
            let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" moves the writing process.
            // SAFETY: writes one byte from a static buffer to our own fd.
            let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            // SAFETY: closes the fd opened above.
            unsafe { libc::close(fd) };
            if n != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    fn read(&self, file: &str) -> String {
        self.dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What the group ran into so far.
    pub fn usage(&self) -> Usage {
        let count = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let pids_hit = count(&self.read("pids.events"), "max ") > 0;
        let oom = if self.v2 {
            count(&self.read("memory.events"), "oom_kill ")
        } else {
            count(&self.read("memory.oom_control"), "oom_kill ")
        };
        Usage {
            hit_process_limit: pids_hit,
            out_of_memory: oom > 0,
            ..Usage::default()
        }
    }

    fn pids(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills every process in the group (a fork bomb included) and waits
    /// briefly until it is empty.
    pub fn kill_all(&self) {
        if self.v2 {
            if let Some(d) = self.dirs.first() {
                let _ = std::fs::write(d.join("cgroup.kill"), "1");
            }
        }
        for _ in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for p in pids {
                if p > 1 {
                    // SAFETY: kill(2) has no memory effects.
                    unsafe {
                        libc::kill(p, libc::SIGKILL);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        for d in &self.dirs {
            for _ in 0..20 {
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }
}

/// Which limits a finished process tree ran into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The group reached its process limit (forks failed).
    pub hit_process_limit: bool,
    /// The kernel killed a process for using more memory than allowed.
    pub out_of_memory: bool,
    /// A process was killed for using up its CPU time.
    pub cpu_exceeded: bool,
    /// A process was killed for writing a file past the size limit.
    pub file_too_large: bool,
}

impl Usage {
    /// Adds what the exit status of the top process says.
    pub fn with_status(mut self, status: Option<std::process::ExitStatus>) -> Usage {
        use std::os::unix::process::ExitStatusExt;
        let sig = status.and_then(|s| s.signal());
        // A shell reports a child killed by signal N as exit code 128 + N.
        let code_sig = status
            .and_then(|s| s.code())
            .filter(|c| *c > 128)
            .map(|c| c - 128);
        for s in [sig, code_sig].into_iter().flatten() {
            if s == libc::SIGXCPU {
                self.cpu_exceeded = true;
            }
            if s == libc::SIGXFSZ {
                self.file_too_large = true;
            }
        }
        self
    }

    /// A line for the model saying which limit stopped the command, if any.
    pub fn explain(&self, limits: &Limits) -> Option<String> {
        let mut why = Vec::new();
        if self.cpu_exceeded {
            why.push(format!(
                "it used its CPU-time limit of {} s (an endless loop?) and was stopped",
                limits.cpu_secs
            ));
        }
        if self.file_too_large {
            why.push(format!(
                "it tried to write a file larger than {} MB and was stopped",
                limits.file_bytes / MIB
            ));
        }
        if self.out_of_memory {
            why.push(format!(
                "it needed more than {} MB of memory and was killed",
                limits.memory_bytes / MIB
            ));
        }
        if self.hit_process_limit {
            why.push(format!(
                "it tried to run more than {} processes at once (a fork bomb?); new processes were refused",
                limits.processes
            ));
        }
        (!why.is_empty()).then(|| format!("[apna: {}]", why.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_explained() {
        let l = Limits::command(500 * MIB);
        assert_eq!(Usage::default().explain(&l), None);
        let u = Usage {
            hit_process_limit: true,
            ..Usage::default()
        };
        assert!(u.explain(&l).unwrap().contains("256 processes"));
        use std::os::unix::process::ExitStatusExt;
        let killed = std::process::ExitStatus::from_raw(libc::SIGXCPU);
        let u = Usage::default().with_status(Some(killed));
        assert!(u.explain(&l).unwrap().contains("CPU-time limit of 300 s"));
        let shell = std::process::ExitStatus::from_raw((128 + libc::SIGXFSZ) << 8);
        let u = Usage::default().with_status(Some(shell));
        assert!(u.explain(&l).unwrap().contains("larger than 500 MB"));
    }

    #[test]
    fn an_endless_loop_ends_at_its_cpu_limit() {
        use std::os::unix::process::CommandExt;
        let limits = Limits {
            cpu_secs: 1,
            ..Limits::command(16 * MIB)
        };
        let rl = Rlimits::new(&limits, false);
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "while :; do :; done"]);
        // SAFETY: `apply` only calls setrlimit.
        unsafe {
            cmd.pre_exec(move || rl.apply());
        }
        let started = std::time::Instant::now();
        let status = cmd.status().unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        let why = Usage::default().with_status(Some(status)).explain(&limits);
        assert!(why.unwrap().contains("CPU-time limit of 1 s"));
    }
}
