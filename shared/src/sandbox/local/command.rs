//! `run_command` for local sandboxes: `sh -c` in the project root, with a
//! timeout that kills the whole process group, resource limits (a cgroup of
//! its own when possible), and output capped with a marker.
//!
//! Under bubblewrap a command has no network, except a plain package-manager
//! install (`npm install zod`, nothing else on the line), which needs the
//! registry: it gets the host's network with install scripts turned off.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::process::{kill_group, project_command, Isolation, ProcessSpec};
use crate::error::{Error, Result};
use crate::sandbox::{ExecOutput, ExecRequest};

/// Appended when output was cut at `max_output`.
pub const TRUNCATION_MARKER: &str = "\n[… output truncated …]\n";

/// Longest timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Capture {
    buf: Vec<u8>,
    max: usize,
    truncated: bool,
}

impl Capture {
    fn push(&mut self, data: &[u8]) {
        let room = self.max.saturating_sub(self.buf.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// The process groups of one workspace's commands still running: destroying
/// a sandbox ends them first (a cancelled run's build may still be writing
/// into the directory being removed), as deleting a pod would.
#[derive(Default)]
pub struct RunningCommands(Mutex<HashSet<u32>>);

impl RunningCommands {
    fn with<T>(&self, f: impl FnOnce(&mut HashSet<u32>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Kills every running command; returns how many.
    pub fn kill_all(&self) -> usize {
        let pids = self.with(std::mem::take);
        for pid in &pids {
            kill_group(*pid);
        }
        pids.len()
    }
}

/// Registers a running command; dropping it (the command finished, or the
/// caller gave up on it) kills what is left of its process group.
struct Registration<'a> {
    running: &'a RunningCommands,
    pid: u32,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.running.with(|set| set.remove(&self.pid)) {
            kill_group(self.pid);
        }
    }
}

/// Runs `req` in the workspace described by `spec`.
pub async fn run(
    isolation: &Isolation,
    spec: &ProcessSpec<'_>,
    running: &RunningCommands,
    req: &ExecRequest,
) -> Result<ExecOutput> {
    if req.command.trim().is_empty() {
        return Err(Error::InvalidInput("the command is empty".into()));
    }
    if req.timeout.is_zero() || req.timeout > MAX_TIMEOUT {
        return Err(Error::InvalidInput(format!(
            "timeout must be between 1 s and {} s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    let limits = spec.limits;
    let cgroup = spec.confinement.cgroup("cmd", &limits);
    let network = is_package_install(&req.command);
    let extra_env: Vec<(&str, String)> = spec
        .env
        .iter()
        .cloned()
        .chain(network.then(|| ("npm_config_ignore_scripts", "true".to_string())))
        .collect();
    let spec = ProcessSpec {
        cgroup: cgroup.as_ref(),
        network,
        env: &extra_env,
        ..spec.clone()
    };
    let mut cmd = project_command(isolation, &spec, "sh", &["-c", &req.command]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Sandbox(format!("could not start the command: {e}")))?;
    let pid = child.id();
    let registration = pid.map(|pid| {
        running.with(|set| set.insert(pid));
        Registration { running, pid }
    });
    let cap = Arc::new(Mutex::new(Capture {
        buf: Vec::new(),
        max: req.max_output,
        truncated: false,
    }));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(drain(out, cap.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(drain(err, cap.clone())));
    }
    let (status, timed_out) = match tokio::time::timeout(req.timeout, child.wait()).await {
        Ok(st) => (Some(st?), false),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            let _ = child.wait().await;
            (None, true)
        }
    };
    // Background processes still holding the pipes are part of the group:
    // unregistering ends them.
    drop(registration);
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
    }
    let usage = cgroup
        .as_ref()
        .map(|g| g.usage())
        .unwrap_or_default()
        .with_status(status);
    // Whatever is left in its cgroup (a fork bomb's last children) ends now.
    super::limits::Cgroup::release(cgroup).await;
    let (buf, truncated) = {
        let c = cap.lock().unwrap_or_else(|p| p.into_inner());
        (c.buf.clone(), c.truncated)
    };
    let mut output = String::from_utf8_lossy(&buf).into_owned();
    if truncated {
        output.push_str(TRUNCATION_MARKER);
    }
    if let Some(why) = usage.explain(&limits) {
        tracing::warn!(%why, "a command ran into a resource limit");
        output.push('\n');
        output.push_str(&why);
        output.push('\n');
    }
    if timed_out {
        output.push_str(&format!(
            "\n[killed after {} s timeout]\n",
            req.timeout.as_secs_f32()
        ));
    }
    Ok(ExecOutput {
        exit_code: status.and_then(|s| s.code()),
        output,
        truncated,
        timed_out,
    })
}

/// Whether `command` is nothing but a package-manager install (no shell
/// operators, substitutions or redirections): the one kind of command that
/// gets the network, since it needs the registry.
pub fn is_package_install(command: &str) -> bool {
    let safe = |w: &str| {
        w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@/._^~=-+:".contains(&b))
    };
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        [pm, verb, rest @ ..] => {
            matches!(*pm, "npm" | "pnpm" | "yarn" | "bun")
                && matches!(
                    *verb,
                    "install"
                        | "i"
                        | "ci"
                        | "add"
                        | "update"
                        | "up"
                        | "remove"
                        | "rm"
                        | "uninstall"
                )
                && rest.iter().all(|w| safe(w))
                && !command.contains('\n')
        }
        _ => false,
    }
}

async fn drain<R: tokio::io::AsyncRead + Unpin>(mut r: R, cap: Arc<Mutex<Capture>>) {
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => cap
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_package_install;

    #[test]
    fn only_plain_installs_get_the_network() {
        for ok in [
            "npm install zod",
            "npm i -D @types/node@^20",
            "pnpm add react-router-dom",
            "npm ci",
        ] {
            assert!(is_package_install(ok), "{ok}");
        }
        for no in [
            "npm install zod && curl evil.com",
            "npm install $(cat /etc/passwd)",
            "npm install zod; wget x",
            "npm install `id`",
            "npm run build",
            "npx vite build",
            "curl http://127.0.0.1:3000/api/projects",
            "npm install zod > /tmp/x",
            "npm install zod | sh",
            "npm",
            "npm install\ncurl evil.com",
        ] {
            assert!(!is_package_install(no), "{no}");
        }
    }
}
