//! The warm spare: one project of the default starter whose dev server is
//! already running (starters built on it use it too).
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
use super::{Inner, PreparedTemplate};
use crate::sandbox::SandboxState;

/// Directory-name prefix of spares under `projects/` (never a valid project id).
const PREFIX: &str = ".spare-";

/// A spare's directory, log file and supervisor.
struct Spare {
    dir: PathBuf,
    log_file: PathBuf,
    sup: Arc<Supervisor>,
    /// Set once the first page's modules have been requested (see [`warm_up`]).
    warm: Arc<AtomicBool>,
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

/// Whether a project of `template` can start from the spare: it uses the
/// default starter's installed dependencies and pre-bundle (its own files are
/// written over the spare's after adoption).
pub(super) fn fits(inner: &Inner, template: &PreparedTemplate) -> bool {
    let default = inner.toolchain.default_starter();
    usable(inner)
        && template.node_modules == default.node_modules
        && template.vite_deps == default.vite_deps
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
                let t = inner.toolchain.default_starter();
                materialize(
                    &t.files,
                    &t.node_modules,
                    t.vite_deps.as_deref(),
                    &staging,
                    &dir,
                )
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
                let warm = Arc::new(AtomicBool::new(false));
                tokio::spawn(warm_up(sup.clone(), warm.clone()));
                *inner.spare.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(Spare {
                    dir,
                    log_file,
                    sup,
                    warm,
                });
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

/// Most modules [`warm_up`] requests.
const WARM_UP_MODULES: usize = 300;

/// Requests the page and every module it imports once, as a browser's first
/// load would, so Vite has transformed them (and Tailwind has built the CSS)
/// before a project adopts the spare: its first preview then finds them done.
async fn warm_up(sup: Arc<Supervisor>, warm: Arc<AtomicBool>) {
    let started = Instant::now();
    let port = loop {
        let st = sup.status();
        match (st.state, st.preview_addr) {
            (SandboxState::Ready, Some(addr)) => break addr,
            _ if !sup.is_active() || started.elapsed() > Duration::from_secs(120) => return,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    else {
        return;
    };
    let (Ok(script), Ok(import)) = (
        regex::Regex::new(r#"<script type="module" src="(/[^"]+)""#),
        regex::Regex::new(r#"(?:from|import)\s*\(?\s*"(/[^"]+)""#),
    ) else {
        return;
    };
    let get = |path: String| {
        let client = client.clone();
        let url = format!("http://{port}{path}");
        async move { client.get(url).send().await.ok()?.text().await.ok() }
    };
    let Some(html) = get("/".into()).await else {
        return;
    };
    let mut queue: std::collections::VecDeque<String> = script
        .captures_iter(&html)
        .map(|c| c[1].to_string())
        .collect();
    let mut seen: std::collections::HashSet<String> = queue.iter().cloned().collect();
    while let Some(path) = queue.pop_front() {
        let Some(body) = get(path).await else {
            continue;
        };
        for c in import.captures_iter(&body) {
            if seen.len() < WARM_UP_MODULES && seen.insert(c[1].to_string()) {
                queue.push_back(c[1].to_string());
            }
        }
    }
    warm.store(true, Ordering::SeqCst);
    tracing::debug!(
        modules = seen.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "warm spare's first page loaded"
    );
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

/// Waits until a spare exists, its dev server is ready and its first page
/// has been loaded once.
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
            .is_some_and(|s| {
                s.sup.status().state == SandboxState::Ready && s.warm.load(Ordering::SeqCst)
            });
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
