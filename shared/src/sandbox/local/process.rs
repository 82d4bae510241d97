//! Spawning and killing child processes: process groups, bubblewrap with
//! the least of the host a project needs (see [`system_mount_args`]), resource
//! limits (see `limits`), and a clean environment (the server's secrets never
//! reach a project).

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::process::Command;

use super::limits::{Cgroup, Cgroups, Limits, Rlimits};

/// How project processes are isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Inside `bwrap`: only the system's programs and libraries, the template
    /// cache (read-only), the project dir (writable) and a private `/tmp`.
    Bubblewrap {
        /// Path of the `bwrap` binary.
        bwrap: PathBuf,
    },
    /// Plain child processes (no bubblewrap on this machine).
    None,
}

impl Isolation {
    /// The project root as processes see it. Inside bubblewrap every project
    /// is mounted at the same path (`workspace`, the template cache's
    /// `workspace` folder, see `template::PreparedTemplates`), so a dev server
    /// started for one directory keeps working after that directory is
    /// renamed (see the warm spare in `local`), and Vite's dependency
    /// pre-bundle, which is valid for one root only, is shared by all projects.
    pub fn workdir(&self, project_dir: &Path, workspace: &Path) -> PathBuf {
        match self {
            Isolation::Bubblewrap { .. } => workspace.to_path_buf(),
            Isolation::None => project_dir.to_path_buf(),
        }
    }

    /// Bubblewrap when `bwrap` is on PATH and works here, otherwise none (with a warning, once).
    pub fn detect() -> Isolation {
        static DETECTED: OnceLock<Isolation> = OnceLock::new();
        DETECTED
            .get_or_init(|| match find_on_path("bwrap") {
                Some(bwrap) if bwrap_works(&bwrap) => Isolation::Bubblewrap { bwrap },
                found => {
                    tracing::warn!(
                        bwrap_found = found.is_some(),
                        "bubblewrap is not usable: project commands and dev servers run unsandboxed \
                         (install the Debian package `bubblewrap` to isolate them)"
                    );
                    Isolation::None
                }
            })
            .clone()
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Some containers forbid user namespaces: try once, with the flags every
/// project process gets, before relying on bwrap.
fn bwrap_works(bwrap: &Path) -> bool {
    let mut c = std::process::Command::new(bwrap);
    c.args(system_mount_args(false))
        .args(["--", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.status().map(|s| s.success()).unwrap_or(false)
}

/// The parts of the host a project process sees, read-only: the system's
/// programs and libraries (`/usr` and its merged-`/usr` links), what DNS and
/// TLS need from `/etc`, and `extra` (the Node install when it lives outside
/// `/usr`). Nothing else of the host: no HOME, no `/root`, no `/srv`, no data
/// dir; `/tmp` is a private tmpfs and `/proc` shows only the sandbox.
fn system_mount_args(network: bool) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    let mut push = |parts: &[&std::ffi::OsStr]| a.extend(parts.iter().map(|p| p.to_os_string()));
    push(&["--ro-bind".as_ref(), "/usr".as_ref(), "/usr".as_ref()]);
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        let p = Path::new(top);
        match std::fs::read_link(p) {
            // Merged /usr (Debian 12+): keep the link, not a second mount.
            Ok(target) => push(&["--symlink".as_ref(), target.as_os_str(), top.as_ref()]),
            Err(_) if p.is_dir() => push(&["--ro-bind".as_ref(), top.as_ref(), top.as_ref()]),
            Err(_) => {}
        }
    }
    for etc in ETC_FILES {
        push(&["--ro-bind-try".as_ref(), etc.as_ref(), etc.as_ref()]);
    }
    push(&[
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--unshare-pid".as_ref(),
        "--unshare-ipc".as_ref(),
        "--unshare-uts".as_ref(),
        "--die-with-parent".as_ref(),
        "--new-session".as_ref(),
    ]);
    if !network {
        push(&["--unshare-net".as_ref()]);
    }
    // As root, bwrap keeps every capability unless told otherwise.
    // SAFETY: geteuid has no side effects.
    if unsafe { libc::geteuid() } == 0 {
        push(&["--cap-drop".as_ref(), "ALL".as_ref()]);
    }
    a
}

/// What Node, npm and the toolchain read from `/etc` (DNS, TLS, `/usr/bin`'s
/// alternatives links, the time zone). Missing ones are skipped.
const ETC_FILES: &[&str] = &[
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/localtime",
];

/// What every project process of a provider shares: cgroups, the project
/// disk budget, and the toolchain directories outside `/usr` it may read.
#[derive(Debug)]
pub struct Confinement {
    /// A cgroup per process tree, when this machine lets us create them.
    pub cgroups: Option<Cgroups>,
    /// Bytes a project's directory may hold (`APNA_MAX_PROJECT_MB`).
    pub budget_bytes: u64,
    /// Extra read-only directories (the Node install when it is not under `/usr`).
    toolchain: Vec<PathBuf>,
    /// Node preload making Vite serve the socket Apna listens on (see `listen_shim`).
    listen_shim: Option<PathBuf>,
}

/// The Node install when it lives outside `/usr` (`/opt/node/bin/node` →
/// `/opt/node`); nothing for `/usr/bin/node`.
fn node_install_dirs() -> Vec<PathBuf> {
    let node = find_on_path("node").and_then(|n| std::fs::canonicalize(n).ok());
    node.and_then(|n| n.parent().and_then(Path::parent).map(Path::to_path_buf))
        .filter(|r| !r.starts_with("/usr") && r != Path::new("/"))
        .into_iter()
        .collect()
}

/// Where the socket shim appears inside the sandbox.
const SHIM_PATH: &str = "/run/apna/listen-fd.cjs";

/// Loaded into the dev server with `--require`: its HTTP server listens on
/// the socket Apna opened and passed as fd 3, so the dev server itself runs
/// without any network (`--unshare-net`) yet the preview proxy reaches it.
const LISTEN_SHIM: &str = r#"// Written by Apna: serve the socket passed as fd 3 (the sandbox has no network).
// Only the HTTP server takes it: Vite first probes the port with plain
// net servers, which must not consume (and close) the socket.
const net = require("net");
const http = require("http");
const tls = require("tls");
const fd = Number(process.env.APNA_LISTEN_FD);
const port = Number(process.env.PORT);
const listen = net.Server.prototype.listen;
let used = false;
net.Server.prototype.listen = function (...args) {
  const wanted = typeof args[0] === "object" && args[0] !== null ? args[0].port : args[0];
  const isHttp = this instanceof http.Server || this instanceof tls.Server;
  if (!used && isHttp && fd >= 0 && Number(wanted) === port) {
    used = true;
    return listen.call(this, { fd }, args.find((a) => typeof a === "function"));
  }
  return listen.apply(this, args);
};
"#;

impl Confinement {
    /// For processes isolated by `isolation`, with helper files under `data_dir`.
    pub fn new(isolation: &Isolation, data_dir: &Path, budget_bytes: u64) -> Confinement {
        let toolchain = node_install_dirs();
        let listen_shim = match isolation {
            Isolation::Bubblewrap { .. } => {
                let path = data_dir.join("runtime").join("listen-fd.cjs");
                let written = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|_| std::fs::write(&path, LISTEN_SHIM));
                match written {
                    Ok(()) => Some(path),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not write the dev server's socket shim: dev servers keep the host network");
                        None
                    }
                }
            }
            Isolation::None => None,
        };
        Confinement {
            cgroups: Cgroups::detect(),
            budget_bytes,
            toolchain,
            listen_shim,
        }
    }

    /// The toolchain directories only: no cgroups, no socket shim (one-off
    /// tool runs such as the starters' pre-bundle, before any provider exists).
    pub fn without_cgroups(budget_bytes: u64) -> Confinement {
        Confinement {
            cgroups: None,
            budget_bytes,
            toolchain: node_install_dirs(),
            listen_shim: None,
        }
    }

    /// No cgroups, nothing extra (tests of command parsing).
    pub fn minimal(budget_bytes: u64) -> Confinement {
        Confinement {
            cgroups: None,
            budget_bytes,
            toolchain: Vec::new(),
            listen_shim: None,
        }
    }

    /// Whether dev servers run without a network and serve a socket passed in.
    pub fn dev_server_offline(&self, isolation: &Isolation) -> bool {
        self.listen_shim.is_some() && matches!(isolation, Isolation::Bubblewrap { .. })
    }

    /// A cgroup for one process tree, or `None` (no cgroups, or creating one failed).
    pub fn cgroup(&self, what: &str, limits: &Limits) -> Option<Cgroup> {
        let groups = self.cgroups.as_ref()?;
        match groups.create(what, limits) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "could not create a cgroup: this process tree is limited by rlimits only");
                None
            }
        }
    }
}

/// Where a project process may write and what it may see.
#[derive(Debug, Clone)]
pub struct ProcessSpec<'a> {
    /// The project root (the working directory, writable).
    pub project_dir: &'a Path,
    /// Hidden inside the sandbox (the data dir: other projects, the database).
    pub hidden_dir: &'a Path,
    /// Where the project is mounted inside bubblewrap.
    pub workspace: &'a Path,
    /// Visible read-only inside the hidden dir (the template cache's
    /// `node_modules` and pre-bundles).
    pub read_only_dirs: &'a [PathBuf],
    /// Existing directories inside the read-only ones that get a private,
    /// writable tmpfs (Vite writes its bundled config to `node_modules/.vite-temp`).
    pub private_dirs: &'a [PathBuf],
    /// Extra environment variables.
    pub env: &'a [(&'a str, String)],
    /// Shared settings: cgroups, disk budget, toolchain.
    pub confinement: &'a Confinement,
    /// What this process tree may use.
    pub limits: Limits,
    /// Its cgroup, when there is one (the caller keeps it until the tree ends).
    pub cgroup: Option<&'a Cgroup>,
    /// Whether it may use the host's network (under bubblewrap; otherwise it always can).
    pub network: bool,
    /// A listening socket to hand to the process as fd 3 (the dev server).
    pub listen_fd: Option<RawFd>,
}

/// Builds a command running `program args…` for a project, in its own process
/// group, with a minimal environment and resource limits, inside bubblewrap
/// when available.
pub fn project_command(
    isolation: &Isolation,
    spec: &ProcessSpec<'_>,
    program: &str,
    args: &[&str],
) -> Command {
    let mut cmd = match isolation {
        Isolation::Bubblewrap { bwrap } => {
            let mut c = Command::new(bwrap);
            c.args(system_mount_args(spec.network));
            // /tmp first: the mounts below may lie under it (tests' data dirs).
            c.arg("--size")
                .arg(spec.limits.tmp_bytes.to_string())
                .arg("--tmpfs")
                .arg("/tmp");
            for dir in &spec.confinement.toolchain {
                c.arg("--ro-bind").arg(dir).arg(dir);
            }
            if let (Some(shim), Some(_)) = (&spec.confinement.listen_shim, spec.listen_fd) {
                c.arg("--ro-bind").arg(shim).arg(SHIM_PATH);
            }
            for ro in spec.read_only_dirs {
                c.arg("--ro-bind").arg(ro).arg(ro);
            }
            for dir in spec.private_dirs {
                c.arg("--tmpfs").arg(dir);
            }
            let workdir = isolation.workdir(spec.project_dir, spec.workspace);
            c.arg("--bind").arg(spec.project_dir).arg(&workdir);
            c.arg("--chdir").arg(&workdir);
            c.arg("--").arg(program).args(args);
            c
        }
        Isolation::None => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    };
    let bin = isolation
        .workdir(spec.project_dir, spec.workspace)
        .join("node_modules/.bin");
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut parts = vec![bin];
            parts.extend(std::env::split_paths(&p));
            std::env::join_paths(parts).unwrap_or(p)
        }
        None => bin.into_os_string(),
    };
    cmd.current_dir(spec.project_dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", "/tmp")
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .env("CI", "1")
        .env("npm_config_cache", "/tmp/.npm")
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false");
    for (k, v) in spec.env {
        cmd.env(k, v);
    }
    if let (Some(_), Some(_), Isolation::Bubblewrap { .. }) =
        (&spec.confinement.listen_shim, spec.listen_fd, isolation)
    {
        cmd.env("NODE_OPTIONS", format!("--require {SHIM_PATH}"))
            .env("APNA_LISTEN_FD", "3");
    }
    let rlimits = Rlimits::new(&spec.limits, spec.cgroup.is_some());
    let join = spec.cgroup.map(Cgroup::join_paths).unwrap_or_default();
    let listen_fd = spec.listen_fd;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only async-signal-safe functions (setrlimit, open, write, close, dup2);
    // everything it reads was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            Cgroup::join(&join)?;
            rlimits.apply()?;
            if let Some(fd) = listen_fd {
                let ok = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0) >= 0
                } else {
                    libc::dup2(fd, 3) >= 0
                };
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.process_group(0).kill_on_drop(true);
    cmd
}

/// Kills a whole process group (the child and everything it started).
pub fn kill_group(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals the process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Whether a process with this pid still exists.
pub fn is_alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the pid exists.
    unsafe { libc::kill(p, 0) == 0 }
}

/// Kills processes left running in project directories by an earlier
/// `apna serve` that died without stopping them (a hard kill never runs
/// kill-on-drop): orphans (re-parented to init) whose working directory is
/// under one of `dirs`. A person's shell opened in a project folder has a
/// live parent and is left alone. Returns how many it signalled.
pub fn kill_orphans(dirs: &[PathBuf]) -> usize {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if !dirs.iter().any(|d| cwd.starts_with(d)) || parent_pid(pid) != Some(1) {
            continue;
        }
        if let Ok(raw) = i32::try_from(pid) {
            // SAFETY: kill(2) with a plain pid and signal has no memory effects.
            unsafe {
                libc::kill(raw, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    killed
}

/// The parent pid from `/proc/{pid}/stat` (the field after the `(comm)`).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod orphan_tests {
    use super::*;

    #[test]
    fn kills_orphans_in_project_dirs_but_not_processes_with_a_parent() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        // An orphan: `sh` starts `sleep` in the background and exits.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 60 >/dev/null 2>&1 & echo $!")
            .current_dir(&root)
            .output()
            .unwrap();
        let orphan: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // A child of ours in the same folder (like a person's shell there),
        // killed and reaped when the test ends, however it ends.
        struct Reaped(std::process::Child);
        impl Drop for Reaped {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Reaped(
            std::process::Command::new("sleep")
                .arg("60")
                .current_dir(&root)
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        if parent_pid(orphan) != Some(1) {
            // A subreaper adopted it (some CI sandboxes): nothing to assert here.
            let _ = std::process::Command::new("kill")
                .arg(orphan.to_string())
                .status();
            return;
        }
        assert_eq!(kill_orphans(std::slice::from_ref(&root)), 1);
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Gone, or a zombie waiting for init to reap it.
        let state = std::fs::read_to_string(format!("/proc/{orphan}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
            .flatten();
        assert!(
            matches!(state, None | Some('Z')),
            "the orphan is gone: {state:?}"
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "a process with a parent is left alone"
        );
    }
}
