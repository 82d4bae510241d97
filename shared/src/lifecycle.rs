//! Where a project's files are right now, and moving it between places:
//! its sandbox while awake, its latest snapshot while hibernated.

use crate::app::AppState;
use crate::error::Result;
use crate::sandbox::{SandboxState, SourceTree};

/// The project's current source: from its sandbox when it has one, else from
/// the latest snapshot (hibernated projects).
pub async fn current_tree(state: &AppState, project_id: &str) -> Result<SourceTree> {
    let sandbox = state.sandboxes.sandbox(project_id)?;
    if sandbox.status().await?.state != SandboxState::Missing {
        return sandbox.export_source().await;
    }
    match crate::snapshot::get_latest(&*state.blobs, project_id).await? {
        Some(key) => crate::snapshot::load_tree(&*state.blobs, &key).await,
        None => Ok(SourceTree::default()),
    }
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
