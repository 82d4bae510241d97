//! The warm spare: one template project whose dev server is already running.
//!
//! Starting Vite costs ~0.45 s of CPU on the 2-core dev machine, nearly all of
//! create → ready. Under bubblewrap every project is mounted at the same path
//! inside its sandbox, so a dev server started for a spare directory keeps
//! working when that directory is renamed to a new project's: a create then
//! costs one `rename(2)`. The next spare starts in the background right after.
//! Without bubblewrap the path Vite sees would change, so there is no spare.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::process::Isolation;
use super::supervisor::Supervisor;
use super::workspace::materialize;
use super::Inner;
use crate::sandbox::SandboxState;

/// Directory-name prefix of spares under `projects/` (never a valid project id).
const PREFIX: &str = ".spare-";

/// A spare's directory, log file and supervisor.
struct Spare {
    dir: PathBuf,
    log_file: PathBuf,
    sup: Arc<Supervisor>,
}

/// The provider's slot for one spare.
pub(super) struct SpareSlot {
    spare: Mutex<Option<Spare>>,
    filling: AtomicBool,
    enabled: AtomicBool,
}

impl Default for SpareSlot {
    fn default() -> Self {
        SpareSlot {
            spare: Mutex::new(None),
            filling: AtomicBool::new(false),
            enabled: AtomicBool::new(true),
        }
    }
}

impl SpareSlot {
    pub(super) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    fn take(&self) -> Option<Spare> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn is_empty(&self) -> bool {
        self.spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

fn usable(inner: &Inner) -> bool {
    inner.spare.enabled.load(Ordering::SeqCst)
        && matches!(inner.toolchain.isolation(), Isolation::Bubblewrap { .. })
}

/// Removes spares and half-created projects left by a previous process.
pub(super) fn remove_leftovers(projects: &Path, logs: &Path) {
    for (dir, is_leftover) in [
        (
            projects,
            (|n: &str| n.starts_with(PREFIX) || (n.starts_with('.') && n.contains(".creating-")))
                as fn(&str) -> bool,
        ),
        (logs, |n: &str| n.starts_with(PREFIX)),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if is_leftover(&e.file_name().to_string_lossy()) {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

/// Starts a new spare in the background unless one exists or is being made.
pub(super) fn refill(inner: &Arc<Inner>) {
    if !usable(inner) || !inner.spare.is_empty() || inner.spare.filling.swap(true, Ordering::SeqCst)
    {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let name = format!("{PREFIX}{:08x}", rand::random::<u32>());
        let dir = inner.projects_dir.join(&name);
        let log_file = inner.logs_dir.join(format!("{name}.log"));
        let staging = inner.projects_dir.join(format!("{name}.creating"));
        let made = {
            let inner = inner.clone();
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                let tc = &inner.toolchain;
                materialize(tc.template_files(), tc.node_modules(), &staging, &dir)
            })
            .await
        };
        match made {
            Ok(Ok(())) if usable(&inner) => {
                let sup = Supervisor::start(inner.toolchain.vite_spec(
                    "spare",
                    dir.clone(),
                    log_file.clone(),
                ));
                *inner.spare.spare.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Spare { dir, log_file, sup });
            }
            Ok(Ok(())) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not prepare the warm spare"),
            Err(e) => tracing::warn!(error = %e, "warm spare task failed"),
        }
        inner.spare.filling.store(false, Ordering::SeqCst);
    });
}

/// Gives the spare to project `id`: renames its directory to `root` and points
/// its supervisor there. `None` when there is no healthy spare.
pub(super) async fn adopt(
    inner: &Arc<Inner>,
    id: &str,
    root: &Path,
    log_file: &Path,
) -> Option<Arc<Supervisor>> {
    let spare = inner.spare.take()?;
    if !spare.sup.is_active() || root.exists() {
        dispose(spare).await;
        return None;
    }
    if let Err(e) = tokio::fs::rename(&spare.dir, root).await {
        tracing::warn!(project_id = %id, error = %e, "could not adopt the warm spare");
        dispose(spare).await;
        return None;
    }
    // The open log file follows the rename; later restarts use the new paths.
    let _ = tokio::fs::rename(&spare.log_file, log_file).await;
    spare
        .sup
        .rebind(id, root.to_path_buf(), log_file.to_path_buf());
    Some(spare.sup)
}

async fn dispose(spare: Spare) {
    spare.sup.stop().await;
    let _ = tokio::fs::remove_dir_all(&spare.dir).await;
    let _ = tokio::fs::remove_file(&spare.log_file).await;
}

/// Stops and removes the current spare, if any.
pub(super) async fn discard(inner: &Arc<Inner>) {
    if let Some(spare) = inner.spare.take() {
        dispose(spare).await;
    }
}

/// Waits until a spare exists and its dev server is ready.
pub(super) async fn wait_ready(inner: &Arc<Inner>, timeout: Duration) -> bool {
    if !usable(inner) {
        return false;
    }
    let started = Instant::now();
    while started.elapsed() < timeout {
        let ready = inner
            .spare
            .spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|s| s.sup.status().state == SandboxState::Ready);
        if ready {
            return true;
        }
        if inner.spare.is_empty() && !inner.spare.filling.load(Ordering::SeqCst) {
            refill(inner);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
