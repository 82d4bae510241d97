//! A project's life outside its runs: creation (quotas and the owner's
//! record), status moves, where its files are right now (its sandbox while
//! awake, its latest snapshot while hibernated), waking, deleting and purging.

use std::sync::Arc;

use crate::app::{AppState, Backends};
use crate::domain::{now, ExecutionStatus, Project, ProjectStatus, User};
use crate::error::{Error, Result};
use crate::sandbox::{FileEntry, ProjectPath, Sandbox, SandboxState, SourceTree};

/// Creates a project for `owner` from `prompt`, within the owner's project
/// quota; the owner's record is created on first use. No run is started.
pub async fn create(
    state: &Backends,
    owner: &str,
    prompt: &str,
    template: &str,
) -> Result<Project> {
    if state.store.count_projects(owner).await? >= state.config.max_projects_per_user {
        return Err(Error::QuotaExceeded(format!(
            "you have reached the limit of {} projects; delete one first",
            state.config.max_projects_per_user
        )));
    }
    state
        .store
        .upsert_user(&User {
            id: owner.to_string(),
            email: None,
            created_at: now(),
        })
        .await?;
    let project = Project::new(owner, prompt, template);
    state.store.create_project(&project).await?;
    Ok(project)
}

/// A project that exists and is not deleted, or `NotFound`.
pub async fn live(state: &Backends, project_id: &str) -> Result<Project> {
    match state.store.get_project(project_id).await? {
        Some(p) if p.deleted_at.is_none() => Ok(p),
        _ => Err(Error::NotFound(format!("project {project_id} not found"))),
    }
}

/// Moves a project to `to` from whatever status it has now, if allowed.
/// Returns the status it had. Retries when the status changes underneath.
pub async fn move_project(
    state: &Backends,
    project_id: &str,
    to: ProjectStatus,
    error: Option<&str>,
) -> Result<ProjectStatus> {
    for _ in 0..5 {
        let current = state
            .store
            .get_project(project_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project {project_id} not found")))?
            .status;
        if current == to {
            return Ok(current);
        }
        current.check_transition(to)?;
        if state
            .store
            .set_project_status(project_id, current, to, error)
            .await?
        {
            return Ok(current);
        }
    }
    Err(Error::Conflict(format!(
        "project {project_id} keeps changing status; try again"
    )))
}

/// The project's sandbox, when it has one (`None` while hibernated).
async fn live_sandbox(state: &Backends, project_id: &str) -> Result<Option<Arc<dyn Sandbox>>> {
    let sandbox = state.sandboxes.sandbox(project_id)?;
    Ok((sandbox.status().await?.state != SandboxState::Missing).then_some(sandbox))
}

/// The project's current source: from its sandbox when it has one, else from
/// the latest snapshot (hibernated projects).
pub async fn current_tree(state: &Backends, project_id: &str) -> Result<SourceTree> {
    if let Some(sandbox) = live_sandbox(state, project_id).await? {
        return sandbox.export_source().await;
    }
    match crate::snapshot::get_latest(&*state.blobs, project_id).await? {
        Some(key) => crate::snapshot::load_tree(&*state.blobs, &key).await,
        None => Ok(SourceTree::default()),
    }
}

/// The project's source files with sizes, without reading their contents:
/// the sandbox's listing, or the latest snapshot's manifest.
pub async fn list_files(state: &Backends, project_id: &str) -> Result<Vec<FileEntry>> {
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
pub async fn read_file(state: &Backends, project_id: &str, path: &ProjectPath) -> Result<Vec<u8>> {
    if let Some(sandbox) = live_sandbox(state, project_id).await? {
        return sandbox.read_file(path).await;
    }
    current_tree(state, project_id)
        .await?
        .files
        .into_iter()
        .find(|f| f.path == path.as_str())
        .map(|f| f.data)
        .ok_or_else(|| Error::NotFound(format!("file {path} not found")))
}

/// Brings a hibernated project back from its latest snapshot into a fresh
/// sandbox; a project that is awake gets its dev server (re)started.
pub async fn wake(state: &Backends, project_id: &str) -> Result<()> {
    let project = live(state, project_id).await?;
    if project.status == ProjectStatus::Hibernated {
        crate::snapshot::wake_project(&*state.store, &*state.blobs, &*state.sandboxes, project_id)
            .await
            .map(|_| ())
    } else {
        state
            .sandboxes
            .sandbox(project_id)?
            .ensure()
            .await
            .map(|_| ())
    }
}

/// The state machine that wakes a project (`statemachines/wake.asl.json`).
pub const WAKE: &str = "wake";

/// How many wake executions one hibernation may start: the first, then one
/// more after each that failed.
const WAKE_ATTEMPTS: usize = 5;

/// What [`start_wake`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "wake", rename_all = "snake_case")]
pub enum WakeStart {
    /// A wake execution was started under this name.
    Started {
        /// The execution's name.
        execution: String,
    },
    /// One is running (or has succeeded) for this hibernation already.
    AlreadyStarted {
        /// The execution's name.
        execution: String,
    },
    /// The project is not hibernated: nothing to wake.
    Awake,
}

/// Starts waking a hibernated project and returns at once: on AWS the restore
/// (pod, volume, snapshot, packages) outlives any API request, so it runs as
/// an execution of the wake state machine; `apna serve` interprets the same
/// file. Idempotent: the execution is named after the project and the moment
/// it hibernated, so repeated calls start one execution per hibernation (and
/// one more only when the previous one failed).
pub async fn start_wake(state: &AppState, project: &Project) -> Result<WakeStart> {
    if project.status != ProjectStatus::Hibernated {
        return Ok(WakeStart::Awake);
    }
    let base = format!(
        "wake-{}-{}",
        project.id,
        project.updated_at.timestamp_millis()
    );
    for attempt in 1..=WAKE_ATTEMPTS {
        let name = if attempt == 1 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        let input = serde_json::json!({ "project_id": project.id });
        match state.workflow.start(WAKE, &name, input).await {
            Ok(()) => {
                tracing::info!(project_id = %project.id, execution = %name, "wake started");
                return Ok(WakeStart::Started { execution: name });
            }
            Err(Error::Conflict(_)) => {
                let ended_badly = state.workflow.describe(&name).await?.is_some_and(|e| {
                    !matches!(
                        e.status,
                        ExecutionStatus::Running | ExecutionStatus::Succeeded
                    )
                });
                if !ended_badly {
                    return Ok(WakeStart::AlreadyStarted { execution: name });
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Internal(format!(
        "waking project {} failed {WAKE_ATTEMPTS} times; see the executions named {base}*",
        project.id
    )))
}

/// Snapshots a project's sandbox (so a deleted project's last state is kept)
/// and removes the sandbox.
pub async fn remove_sandbox(state: &Backends, project: &Project) -> Result<()> {
    let project_id = project.id.as_str();
    let sandbox = state.sandboxes.sandbox(project_id)?;
    if sandbox.status().await?.state != SandboxState::Missing {
        let snapshot =
            crate::snapshot::take_snapshot(&*state.blobs, &*sandbox, &project.template).await?;
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
pub async fn purge_deleted(state: &Backends, limit: i64) -> Result<PurgeReport> {
    let before = now() - chrono::Duration::days(i64::from(state.config.deleted_retention_days));
    let mut report = PurgeReport::default();
    for id in state.store.deleted_projects(before, limit).await? {
        let purge = async {
            let sandbox = state.sandboxes.sandbox(&id)?;
            if sandbox.status().await?.state != SandboxState::Missing {
                sandbox.destroy().await?;
            }
            let blobs = crate::snapshot::delete_project_blobs(&*state.blobs, &id).await?;
            state.store.purge_project(&id).await?;
            Ok::<usize, Error>(blobs)
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
