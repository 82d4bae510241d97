//! `run_command` for local sandboxes: `sh -c` in the project root, with a
//! timeout that kills the whole process group and output capped with a marker.

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
    let mut cmd = project_command(isolation, spec, "sh", &["-c", &req.command]);
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
    let (buf, truncated) = {
        let c = cap.lock().unwrap_or_else(|p| p.into_inner());
        (c.buf.clone(), c.truncated)
    };
    let mut output = String::from_utf8_lossy(&buf).into_owned();
    if truncated {
        output.push_str(TRUNCATION_MARKER);
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
