//! Spawning and killing child processes: process groups, optional bubblewrap,
//! and a clean environment (the server's secrets never reach a project).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::process::Command;

/// How project processes are isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Inside `bwrap`: the file system read-only except the project dir and
    /// `/tmp`; the data dir hidden except the project and the template cache.
    Bubblewrap {
        /// Path of the `bwrap` binary.
        bwrap: PathBuf,
    },
    /// Plain child processes (no bubblewrap on this machine).
    None,
}

impl Isolation {
    /// The project root as processes see it. Inside bubblewrap every project
    /// is mounted at the same path (`{data_dir}/workspace`, inside the tmpfs
    /// that hides the data dir), so a dev server started for one directory
    /// keeps working after that directory is renamed (see the warm spare in
    /// `local`) and Vite's dependency cache key is the same for all projects.
    pub fn workdir(&self, project_dir: &Path, hidden_dir: &Path) -> PathBuf {
        match self {
            Isolation::Bubblewrap { .. } => hidden_dir.join(WORKSPACE),
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

/// Some containers forbid user namespaces: try once before relying on bwrap.
fn bwrap_works(bwrap: &Path) -> bool {
    std::process::Command::new(bwrap)
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "true",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Name of the in-sandbox project mount under the (hidden) data dir.
const WORKSPACE: &str = "workspace";

/// Where a project process may write and what it may see.
#[derive(Debug, Clone)]
pub struct ProcessSpec<'a> {
    /// The project root (the working directory, writable).
    pub project_dir: &'a Path,
    /// Hidden inside the sandbox (the data dir: other projects, the database).
    pub hidden_dir: &'a Path,
    /// Visible read-only inside the hidden dir (the template cache).
    pub read_only_dirs: &'a [PathBuf],
    /// Existing directories inside the read-only ones that get a private,
    /// writable tmpfs (Vite writes its bundled config to `node_modules/.vite-temp`).
    pub private_dirs: &'a [PathBuf],
    /// Extra environment variables.
    pub env: &'a [(&'a str, String)],
}

/// Builds a command running `program args…` for a project, in its own process
/// group, with a minimal environment, inside bubblewrap when available.
pub fn project_command(
    isolation: &Isolation,
    spec: &ProcessSpec<'_>,
    program: &str,
    args: &[&str],
) -> Command {
    let mut cmd = match isolation {
        Isolation::Bubblewrap { bwrap } => {
            let mut c = Command::new(bwrap);
            c.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
            c.arg("--tmpfs").arg("/tmp");
            // Hide the data dir (other projects, apna.db, snapshots), then give
            // back only what this project needs.
            c.arg("--tmpfs").arg(spec.hidden_dir);
            for ro in spec.read_only_dirs {
                c.arg("--ro-bind").arg(ro).arg(ro);
            }
            for dir in spec.private_dirs {
                c.arg("--tmpfs").arg(dir);
            }
            let workdir = isolation.workdir(spec.project_dir, spec.hidden_dir);
            c.arg("--bind").arg(spec.project_dir).arg(&workdir);
            c.args([
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--die-with-parent",
                "--new-session",
            ]);
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
        .workdir(spec.project_dir, spec.hidden_dir)
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
fn parent_pid(pid: u32) -> Option<u32> {
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
