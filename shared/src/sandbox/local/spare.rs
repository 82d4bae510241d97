//! The warm spares: projects of the default starter whose dev server is
//! already running (starters built on it use them too), `APNA_WARM_SPARES`
//! of them (default 1) so a burst of creates all start warm.
//!
//! Starting Vite costs ~0.45 s of CPU on the 2-core dev machine, nearly all of
//! create → ready. Under bubblewrap every project is mounted at the same path
//! inside its sandbox, so a dev server started for a spare directory keeps
//! working when that directory is renamed to a new project's: a create then
//! costs one `rename(2)`. The next spare starts in the background once no
//! Verify or package install holds the build gate.
//! Without bubblewrap the path Vite sees would change, so there is no spare.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::handover::{self, FaultPoint, Refused};
use super::host_cpu::HostCpu;
use super::module_walk;
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

/// The provider's warm spares (`APNA_WARM_SPARES`, default 1).
pub(super) struct SpareSlot {
    spares: Mutex<VecDeque<Spare>>,
    /// How many to keep.
    target: usize,
    filling: AtomicBool,
    enabled: AtomicBool,
    /// A hand-over step the tests make fail.
    pub(super) faults: FaultPoint,
}

impl SpareSlot {
    /// Keeps `target` spares (0: none).
    pub(super) fn new(target: usize) -> Self {
        SpareSlot {
            spares: Mutex::new(VecDeque::new()),
            target,
            filling: AtomicBool::new(false),
            enabled: AtomicBool::new(target > 0),
            faults: FaultPoint::default(),
        }
    }

    pub(super) fn set_enabled(&self, on: bool) {
        self.enabled.store(on && self.target > 0, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Spare>> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Option<Spare> {
        self.lock().pop_front()
    }

    fn put_back(&self, spare: Spare) {
        self.lock().push_front(spare);
    }

    fn is_full(&self) -> bool {
        self.lock().len() >= self.target
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
            let name = e.file_name().to_string_lossy().into_owned();
            if is_leftover(&name) {
                let p = e.path();
                // A marker goes with its directory's recovery (below).
                if handover::is_marker(&name) && p.with_extension("").is_dir() {
                    continue;
                }
                if p.is_dir() && !handover::recover(&p) {
                    continue;
                }
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

/// While builds hold the gate or the CPUs are busy, a refill waits this long between looks.
const BUSY_POLL: Duration = Duration::from_millis(250);

/// Beyond the first spare, a refill waits while more than this share of
/// the host's CPU time was busy over the last [`BUSY_POLL`].
const BUSY_SHARE: f64 = 0.75;

/// The longest a refill beyond the first spare waits for idle CPUs: on a
/// host that is never idle, spares still come, only later.
const MAX_CPU_WAIT: Duration = Duration::from_secs(20);

/// Starts making spares in the background, one at a time, until there are
/// as many as configured. Each waits until no Verify or package install holds
/// the build gate, and each beyond the first until the CPUs are mostly idle
/// (or [`MAX_CPU_WAIT`]): a spare costs ~0.55 s of CPU (its Vite start and
/// first page) that the runs of a burst should get first. In a burst of 20
/// creates, the spares made after the creates were taken ran while the
/// runs did; none of them serves the burst.
pub(super) fn refill(inner: &Arc<Inner>) {
    if !usable(inner) || inner.spare.is_full() || inner.spare.filling.swap(true, Ordering::SeqCst) {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let mut cpu = HostCpu::new();
        let asked = Instant::now();
        // Known after one poll; without `/proc/stat` only the gate is waited for.
        let mut idle = false;
        while usable(&inner) {
            let cpu_free = idle || count(&inner) == 0 || asked.elapsed() >= MAX_CPU_WAIT;
            if cpu_free && inner.toolchain.builds().in_use() == 0 {
                break;
            }
            tokio::time::sleep(BUSY_POLL).await;
            idle = cpu.busy_share().is_none_or(|b| b <= BUSY_SHARE);
        }
        let made = if usable(&inner) {
            make_one(&inner).await
        } else {
            false
        };
        inner.spare.filling.store(false, Ordering::SeqCst);
        if made {
            refill(&inner);
        }
    });
}

/// Makes one spare and adds it; false when it could not.
async fn make_one(inner: &Arc<Inner>) -> bool {
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
        Ok(Ok(())) if usable(inner) => {
            let sup = Supervisor::start(inner.toolchain.vite_spec(
                "spare",
                dir.clone(),
                log_file.clone(),
            ));
            let warm = Arc::new(AtomicBool::new(false));
            tokio::spawn(warm_up(sup.clone(), warm.clone()));
            inner.spare.lock().push_back(Spare {
                dir,
                log_file,
                sup,
                warm,
            });
            true
        }
        Ok(Ok(())) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not prepare the warm spare");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "warm spare task failed");
            false
        }
    }
}

/// Most modules [`warm_up`] requests.
const WARM_UP_MODULES: usize = 300;

/// Requests the page and every module it imports once, as a browser's first
/// load would, so Vite has transformed them (and Tailwind has built the CSS)
/// before a project adopts the spare: its first preview then finds them done.
async fn warm_up(sup: Arc<Supervisor>, warm: Arc<AtomicBool>) {
    let started = Instant::now();
    let addr = loop {
        let st = sup.status();
        match (st.state, st.preview_addr) {
            (SandboxState::Ready, Some(addr)) => break addr,
            _ if !sup.is_active() || started.elapsed() > Duration::from_secs(120) => return,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let walk = module_walk::walk(&addr, WARM_UP_MODULES).await;
    if !walk.page_loaded {
        return;
    }
    warm.store(true, Ordering::SeqCst);
    tracing::debug!(
        modules = walk.modules,
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

/// Gives the spare to the sleeping project `id` whose files are at `root`
/// (see [`handover`]): its files go into the spare's directory, the two
/// directories swap, and the spare's supervisor now serves the project.
/// `None` when there is no healthy spare or the project does not fit; the
/// project's directory is then as it was. The caller holds the workspace lock.
pub(super) async fn hand_to_sleeper(
    inner: &Arc<Inner>,
    id: &str,
    root: &Path,
    log_file: &Path,
) -> Option<Arc<Supervisor>> {
    if !usable(inner) {
        return None;
    }
    let spare = inner.spare.take()?;
    if !spare.sup.is_active() {
        dispose(spare).await;
        return None;
    }
    let moved = {
        let (inner, root, dir) = (inner.clone(), root.to_path_buf(), spare.dir.clone());
        tokio::task::spawn_blocking(move || handover::move_in(&root, &dir, &inner.spare.faults))
            .await
    };
    match moved {
        Ok(Ok(())) => {}
        Ok(Err(Refused::DoesNotFit(why))) => {
            tracing::info!(project_id = %id, %why, "sleeping project wakes cold: it does not fit the warm spare");
            inner.spare.put_back(spare);
            return None;
        }
        Ok(Err(Refused::Failed(e))) => {
            tracing::warn!(project_id = %id, error = %e, "could not hand the warm spare to a sleeping project; it wakes cold");
            dispose(spare).await;
            return None;
        }
        Ok(Err(Refused::StateStranded(e))) => {
            tracing::error!(project_id = %id, error = %e, kept = %spare.dir.display(), "project state left in the warm spare's directory, which is kept");
            spare.sup.stop().await;
            return None;
        }
        Err(e) => {
            tracing::error!(project_id = %id, error = %e, kept = %spare.dir.display(), "hand-over task failed; the warm spare's directory is kept");
            spare.sup.stop().await;
            return None;
        }
    }
    // The previous log becomes the rotated one (as a full log would); the
    // open log file follows its rename.
    let _ = tokio::fs::rename(log_file, log_file.with_extension("log.1")).await;
    let _ = tokio::fs::rename(&spare.log_file, log_file).await;
    spare
        .sup
        .rebind(id, root.to_path_buf(), log_file.to_path_buf());
    // The spare's path now holds the project's previous directory. Removing
    // it is not on the wake's path; one left by a crash is a leftover
    // (`.spare-*`) the next start removes.
    let old = spare.dir;
    tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::warn!(error = %e, dir = %old.display(), "could not remove a woken project's previous directory");
        }
    });
    Some(spare.sup)
}

async fn dispose(spare: Spare) {
    spare.sup.stop().await;
    let _ = tokio::fs::remove_dir_all(&spare.dir).await;
    let _ = tokio::fs::remove_file(&spare.log_file).await;
}

/// Stops and removes every spare.
pub(super) async fn discard(inner: &Arc<Inner>) {
    while let Some(spare) = inner.spare.take() {
        dispose(spare).await;
    }
}

/// Waits until every configured spare exists, its dev server is ready and
/// its first page has been loaded once.
pub(super) async fn wait_ready(inner: &Arc<Inner>, timeout: Duration) -> bool {
    if !usable(inner) {
        return false;
    }
    let started = Instant::now();
    while started.elapsed() < timeout {
        let ready = {
            let spares = inner.spare.lock();
            spares.len() >= inner.spare.target
                && spares.iter().all(|s| {
                    s.sup.status().state == SandboxState::Ready && s.warm.load(Ordering::SeqCst)
                })
        };
        if ready {
            return true;
        }
        refill(inner);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The dev server pids of the spares now.
pub(super) fn pids(inner: &Inner) -> Vec<u32> {
    inner
        .spare
        .lock()
        .iter()
        .filter_map(|s| s.sup.pid())
        .collect()
}

/// How many spares exist now (ready or starting).
pub(super) fn count(inner: &Inner) -> usize {
    inner.spare.lock().len()
}
