//! Waking a hibernated project: its latest snapshot goes into a fresh sandbox.

use std::time::Duration;

use serde::Serialize;
use tracing::Instrument;

use super::archive::{get_latest, load_entries, read_manifest, starter_of};
use super::lock::{release_stale_lock, MaintenanceLock, LOCK_TTL};
use crate::blob::BlobStore;
use crate::domain::ProjectStatus;
use crate::error::{Error, Result};
use crate::sandbox::{ExecRequest, ProjectPath, Sandbox, SandboxProvider, SourceTree};
use crate::store::Store;

/// Run after restoring a project whose dependencies differ from the template's.
/// `--prefer-offline` reuses the npm cache; the template's packages are already installed.
pub const INSTALL_COMMAND: &str = "npm install --prefer-offline --no-audit --no-fund";

/// Longest the dependency install may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// What [`wake_project`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WakeOutcome {
    /// Restored from the snapshot; the status is `ready`.
    Woken {
        /// The snapshot restored.
        snapshot_key: String,
        /// Whether `npm install` ran because the project added packages.
        installed_packages: bool,
    },
    /// The project was not hibernated (nothing to do).
    AlreadyAwake,
    /// Another caller is waking it (or a maintenance task holds it); ask again shortly.
    InProgress,
}

/// Wakes a hibernated project: restores its latest snapshot into a fresh
/// sandbox (installing packages it added), starts the dev server, then moves
/// the status hibernated → ready. Cheap when the project is awake, so call it
/// on every access. Concurrent callers are safe: the run lock lets one restore
/// while the others get [`WakeOutcome::InProgress`]. On error the project stays
/// `hibernated` with its snapshot intact, so waking again retries.
pub async fn wake_project(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sandboxes: &dyn SandboxProvider,
    project_id: &str,
) -> Result<WakeOutcome> {
    let span = tracing::info_span!("wake", project_id = %project_id);
    async move {
        let project = store
            .get_project(project_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project {project_id} does not exist")))?;
        if project.status != ProjectStatus::Hibernated {
            // Clears a hold left by a crashed hibernation, which would otherwise
            // block runs on this project forever.
            release_stale_lock(store, project_id, LOCK_TTL).await?;
            return Ok(WakeOutcome::AlreadyAwake);
        }
        let lock = match MaintenanceLock::acquire(store, project_id, "wake").await? {
            Ok(lock) => lock,
            Err(_) => {
                if !release_stale_lock(store, project_id, LOCK_TTL).await? {
                    return Ok(WakeOutcome::InProgress);
                }
                match MaintenanceLock::acquire(store, project_id, "wake").await? {
                    Ok(lock) => lock,
                    Err(_) => return Ok(WakeOutcome::InProgress),
                }
            }
        };
        let result = wake_locked(store, blobs, sandboxes, project_id).await;
        lock.release(store).await;
        match &result {
            Ok(outcome) => tracing::info!(?outcome, "wake finished"),
            Err(e) => tracing::warn!(error = %e, "wake failed"),
        }
        result
    }
    .instrument(span)
    .await
}

async fn wake_locked(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sandboxes: &dyn SandboxProvider,
    project_id: &str,
) -> Result<WakeOutcome> {
    // Re-read under the lock: another caller may have finished waking it.
    let project = store
        .get_project(project_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("project {project_id} does not exist")))?;
    if project.status != ProjectStatus::Hibernated {
        return Ok(WakeOutcome::AlreadyAwake);
    }
    let key = get_latest(blobs, project_id).await?.ok_or_else(|| {
        Error::Internal(format!("hibernated project {project_id} has no snapshot"))
    })?;
    let manifest = read_manifest(blobs, &key).await?;
    let tree = load_entries(blobs, project_id, &manifest.files).await?;
    let sandbox = sandboxes.sandbox(project_id)?;
    // Start from the project's starter first (locally that can adopt the warm
    // spare, a Vite already running), then put the snapshot's files over it:
    // only the files that differ are written, and the dev server picks them up
    // by HMR.
    sandbox.ensure_from(starter_of(&manifest, &tree)).await?;
    let installed_packages = import_with_dependencies(sandbox.as_ref(), &tree).await?;
    if !store
        .set_project_status(
            project_id,
            ProjectStatus::Hibernated,
            ProjectStatus::Ready,
            None,
        )
        .await?
    {
        // Only a delete moves a hibernated project while we hold the lock.
        return Ok(WakeOutcome::AlreadyAwake);
    }
    store
        .touch_project(project_id, crate::domain::now())
        .await?;
    Ok(WakeOutcome::Woken {
        snapshot_key: key,
        installed_packages,
    })
}

/// Puts `tree` into the sandbox, then runs [`INSTALL_COMMAND`] when its
/// `package.json` asks for other packages than the one it replaced (the
/// template's on a fresh sandbox), so wake and restore install only when the
/// packages changed, and once. A failed install is logged, not fatal: the files
/// are back, and the person (or the agent) can see and fix the error.
pub async fn import_with_dependencies(sandbox: &dyn Sandbox, tree: &SourceTree) -> Result<bool> {
    let package_json = ProjectPath::parse("package.json")?;
    let before = match sandbox.read_file(&package_json).await {
        Ok(data) => data,
        Err(Error::NotFound(_) | Error::NotReady(_)) => {
            // A missing sandbox is created from the default starter.
            crate::starter::find(crate::domain::DEFAULT_TEMPLATE)?
                .package_json
                .as_bytes()
                .to_vec()
        }
        Err(e) => return Err(e),
    };
    sandbox.import_source(tree).await?;
    let Some(pkg) = tree.files.iter().find(|f| f.path == "package.json") else {
        return Ok(false);
    };
    if !crate::starter::dependencies_differ(&pkg.data, &before) {
        return Ok(false);
    }
    tracing::info!(project_id = %sandbox.project_id(), "restored project asks for other packages: npm install");
    let out = sandbox
        .exec(&ExecRequest {
            command: INSTALL_COMMAND.into(),
            timeout: INSTALL_TIMEOUT,
            max_output: 16 * 1024,
        })
        .await?;
    if out.exit_code != Some(0) {
        tracing::warn!(
            exit_code = ?out.exit_code,
            timed_out = out.timed_out,
            output = %out.output,
            "npm install after restore failed"
        );
    }
    Ok(true)
}
