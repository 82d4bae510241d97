//! Where a project's files are right now, and moving it between places:
//! its sandbox while awake, its latest snapshot while hibernated.

use crate::app::AppState;
use crate::error::Result;
use crate::sandbox::{FileEntry, ProjectPath, Sandbox, SandboxState, SourceTree};

/// The project's current source: from its sandbox when it has one, else from
/// the latest snapshot (hibernated projects).
pub async fn current_tree(state: &AppState, project_id: &str) -> Result<SourceTree> {
    if let Some(sandbox) = live_sandbox(state, project_id).await? {
        return sandbox.export_source().await;
    }
    match crate::snapshot::get_latest(&*state.blobs, project_id).await? {
        Some(key) => crate::snapshot::load_tree(&*state.blobs, &key).await,
        None => Ok(SourceTree::default()),
    }
}

/// The project's sandbox, when it has one (`None` while hibernated).
async fn live_sandbox(
    state: &AppState,
    project_id: &str,
) -> Result<Option<std::sync::Arc<dyn Sandbox>>> {
    let sandbox = state.sandboxes.sandbox(project_id)?;
    Ok((sandbox.status().await?.state != SandboxState::Missing).then_some(sandbox))
}

/// The project's source files with sizes, without reading their contents:
/// the sandbox's listing, or the latest snapshot's manifest.
pub async fn list_files(state: &AppState, project_id: &str) -> Result<Vec<FileEntry>> {
    if let Some(sandbox) = live_sandbox(state, project_id).await? {
        return sandbox.list_files().await;
    }
    match crate::snapshot::get_latest(&*state.blobs, project_id).await? {
        Some(key) => Ok(crate::snapshot::read_manifest(&*state.blobs, &key)
            .await?
            .files
            .into_iter()
            .map(|e| FileEntry {
                path: e.path,
                size: e.size,
            })
            .collect()),
        None => Ok(Vec::new()),
    }
}

/// One source file: read from the sandbox, or from the latest snapshot.
pub async fn read_file(state: &AppState, project_id: &str, path: &ProjectPath) -> Result<Vec<u8>> {
    if let Some(sandbox) = live_sandbox(state, project_id).await? {
        return sandbox.read_file(path).await;
    }
    current_tree(state, project_id)
        .await?
        .files
        .into_iter()
        .find(|f| f.path == path.as_str())
        .map(|f| f.data)
        .ok_or_else(|| crate::error::Error::NotFound(format!("file {path} not found")))
}

/// Starts waking a hibernated project without waiting for it.
pub fn wake_in_background(state: &AppState, project_id: &str) {
    let state = state.clone();
    let project_id = project_id.to_string();
    tokio::spawn(async move {
        if let Err(e) = crate::snapshot::wake_project(
            &*state.store,
            &*state.blobs,
            &*state.sandboxes,
            &project_id,
        )
        .await
        {
            tracing::warn!(project_id, error = %e, "wake failed");
        }
    });
}

/// Snapshots a project's sandbox (so a deleted project's last state is kept)
/// and removes the sandbox.
pub async fn remove_project(state: &AppState, project_id: &str) -> Result<()> {
    let sandbox = state.sandboxes.sandbox(project_id)?;
    if sandbox.status().await?.state != SandboxState::Missing {
        let snapshot = crate::snapshot::take_snapshot(&*state.blobs, &*sandbox).await?;
        crate::snapshot::set_latest(&*state.blobs, project_id, &snapshot.key).await?;
        sandbox.destroy().await?;
    }
    Ok(())
}

/// What [`purge_deleted`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    /// Projects removed for good.
    pub purged: Vec<String>,
    /// Projects that could not be (they are tried again next time).
    pub failed: Vec<String>,
}

/// Removes projects deleted longer than `APNA_DELETED_RETENTION_DAYS` ago:
/// their sandbox if one is left, their snapshots, then their rows. Blobs go
/// first, so a failure half-way leaves the project listed for the next sweep.
pub async fn purge_deleted(state: &AppState, limit: i64) -> Result<PurgeReport> {
    let before = crate::domain::now()
        - chrono::Duration::days(i64::from(state.config.deleted_retention_days));
    let mut report = PurgeReport::default();
    for id in state.store.deleted_projects(before, limit).await? {
        let purge = async {
            let sandbox = state.sandboxes.sandbox(&id)?;
            if sandbox.status().await?.state != SandboxState::Missing {
                sandbox.destroy().await?;
            }
            let blobs = crate::snapshot::delete_project_blobs(&*state.blobs, &id).await?;
            state.store.purge_project(&id).await?;
            Ok::<usize, crate::error::Error>(blobs)
        };
        match purge.await {
            Ok(blobs) => {
                tracing::info!(project_id = %id, blobs, "purged a deleted project");
                report.purged.push(id);
            }
            Err(e) => {
                tracing::warn!(project_id = %id, error = %e, "could not purge a deleted project");
                report.failed.push(id);
            }
        }
    }
    Ok(report)
}

/// The preview proxy's view of projects in `apna serve`: unknown and deleted
/// projects are 404, hibernated ones are woken from their snapshot.
pub struct StorePreviewBackend {
    state: AppState,
}

impl StorePreviewBackend {
    /// A backend over the app's store and sandboxes.
    pub fn new(state: AppState) -> Self {
        StorePreviewBackend { state }
    }

    async fn live_project(&self, project_id: &str) -> Result<crate::domain::Project> {
        match self.state.store.get_project(project_id).await? {
            Some(p) if p.deleted_at.is_none() => Ok(p),
            _ => Err(crate::error::Error::NotFound(format!(
                "project {project_id} not found"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl crate::preview::PreviewBackend for StorePreviewBackend {
    async fn preview_addr(&self, project_id: &str) -> Result<Option<String>> {
        let project = self.live_project(project_id).await?;
        if project.status == crate::domain::ProjectStatus::Hibernated {
            return Ok(None);
        }
        let status = self.state.sandboxes.sandbox(project_id)?.status().await?;
        Ok(match status.state {
            SandboxState::Ready => status.preview_addr,
            _ => None,
        })
    }

    async fn wake(&self, project_id: &str) -> Result<()> {
        let project = self.live_project(project_id).await?;
        if project.status == crate::domain::ProjectStatus::Hibernated {
            crate::snapshot::wake_project(
                &*self.state.store,
                &*self.state.blobs,
                &*self.state.sandboxes,
                project_id,
            )
            .await
            .map(|_| ())
        } else {
            self.state
                .sandboxes
                .sandbox(project_id)?
                .ensure()
                .await
                .map(|_| ())
        }
    }
}
