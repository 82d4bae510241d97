//! Hibernation: an idle project's files go to the blob store and its sandbox
//! is removed, in an order where every interruption leaves the project usable.
//!
//! Under the project's run lock ([`super::lock`]):
//!
//! 1. export the source tree and write a snapshot;
//! 2. verify the upload (manifest read back whole, every object by `head`);
//! 3. point `latest` at it;
//! 4. move the status ready/failed → hibernated (compare-and-set);
//! 5. only then destroy the sandbox.
//!
//! Steps 4 and 5 are in this order on purpose. Stopped between them, the
//! project is `hibernated` with a sandbox still present, which wake handles by
//! restoring over it: nothing is lost. The reverse order would leave, after a
//! crash, a `ready` project without its sandbox, whose next start would come up
//! from the template. A failure at steps 1–4 leaves the sandbox untouched and
//! the status as it was.

use serde::Serialize;
use tracing::Instrument;

use super::archive::{get_latest, read_manifest, set_latest, verify_objects, verify_snapshot};
use super::archive::{write_snapshot, SnapshotInfo};
use super::lock::{release_stale_lock, MaintenanceLock, LOCK_TTL};
use crate::blob::BlobStore;
use crate::domain::ProjectStatus;
use crate::error::{Error, Result};
use crate::sandbox::{SandboxProvider, SandboxState};
use crate::store::Store;

/// What [`hibernate_project`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HibernateOutcome {
    /// The snapshot is verified, the status is `hibernated` and the sandbox is gone.
    Hibernated {
        /// The snapshot wake will restore.
        snapshot: SnapshotInfo,
    },
    /// Nothing changed (a run or another maintenance task holds the project,
    /// its status is not ready/failed, or it is already hibernated).
    Skipped {
        /// Why.
        reason: String,
    },
}

/// Hibernates one project (see the module doc for the order of steps). An
/// error means nothing was removed: the sandbox is in place and the project
/// usable, except for an error from the final `destroy`, after which the
/// project is `hibernated` and its snapshot verified.
pub async fn hibernate_project(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sandboxes: &dyn SandboxProvider,
    project_id: &str,
) -> Result<HibernateOutcome> {
    let span = tracing::info_span!("hibernate", project_id = %project_id);
    async move {
        let lock = match MaintenanceLock::acquire(store, project_id, "hibernate").await? {
            Ok(lock) => lock,
            Err(holder) => {
                // An abandoned maintenance hold would keep the project from ever
                // hibernating (idle_projects skips locked projects): clear it for next time.
                release_stale_lock(store, project_id, LOCK_TTL).await?;
                return Ok(HibernateOutcome::Skipped {
                    reason: format!(
                        "run lock held by {}",
                        holder.unwrap_or_else(|| "another task".into())
                    ),
                });
            }
        };
        let result = hibernate_locked(store, blobs, sandboxes, project_id).await;
        lock.release(store).await;
        match &result {
            Ok(HibernateOutcome::Hibernated { snapshot }) => {
                tracing::info!(key = %snapshot.key, "project hibernated")
            }
            Ok(HibernateOutcome::Skipped { reason }) => {
                tracing::info!(reason = %reason, "hibernation skipped")
            }
            Err(e) => tracing::warn!(error = %e, "hibernation failed"),
        }
        result
    }
    .instrument(span)
    .await
}

async fn hibernate_locked(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sandboxes: &dyn SandboxProvider,
    project_id: &str,
) -> Result<HibernateOutcome> {
    let project = store
        .get_project(project_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("project {project_id} does not exist")))?;
    let sandbox = sandboxes.sandbox(project_id)?;
    let from = project.status;
    match from {
        ProjectStatus::Ready | ProjectStatus::Failed => {}
        ProjectStatus::Hibernated => {
            // A destroy that failed after the status moved left the sandbox behind.
            if sandbox.status().await?.state != SandboxState::Missing {
                let key = get_latest(blobs, project_id).await?.ok_or_else(|| {
                    Error::Internal(format!("hibernated project {project_id} has no snapshot"))
                })?;
                verify_objects(blobs, &read_manifest(blobs, &key).await?).await?;
                sandbox.destroy().await?;
                return Ok(HibernateOutcome::Skipped {
                    reason: "already hibernated; removed the sandbox left behind".into(),
                });
            }
            return Ok(HibernateOutcome::Skipped {
                reason: "already hibernated".into(),
            });
        }
        other => {
            return Ok(HibernateOutcome::Skipped {
                reason: format!("status is {}", other.as_str()),
            })
        }
    }
    let tree = sandbox.export_source().await?;
    let snapshot = write_snapshot(blobs, project_id, &project.template, &tree).await?;
    verify_snapshot(blobs, &snapshot).await?;
    set_latest(blobs, project_id, &snapshot.key).await?;
    if !store
        .set_project_status(project_id, from, ProjectStatus::Hibernated, None)
        .await?
    {
        return Ok(HibernateOutcome::Skipped {
            reason: "status changed meanwhile".into(),
        });
    }
    sandbox.destroy().await?;
    Ok(HibernateOutcome::Hibernated { snapshot })
}
