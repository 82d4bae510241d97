//! EnsureSandbox and SandboxStatus: the project's sandbox exists and its dev
//! server answers before the agent's first step.

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::{parse, Ids};
use crate::app::Backends;
use crate::domain::RunStatus;
use crate::error::{Error, Result};
use crate::run::report_phase;
use crate::sandbox::SandboxState;

/// Marks the run running, creates the sandbox (from the latest snapshot, or
/// the project's starter for a new project) and starts its dev server.
pub(super) async fn ensure_sandbox(input: Value, state: &Backends) -> Result<Value> {
    let ids: Ids = parse(input)?;
    let span =
        tracing::info_span!("ensure_sandbox", project_id = %ids.project_id, run_id = %ids.run_id);
    async {
        let mut run = state
            .store
            .get_run(&ids.run_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("run {} not found", ids.run_id)))?;
        if run.status == RunStatus::Queued {
            run.status = RunStatus::Running;
            state.store.update_run(&run).await?;
            report_phase(
                &*state.store,
                &ids.run_id,
                "sandbox",
                "Starting the project's sandbox",
            )
            .await?;
        }
        let sandbox = state.sandboxes.sandbox(&ids.project_id)?;
        let mut from_template = None;
        if sandbox.status().await?.state == SandboxState::Missing {
            // A hibernated project comes back from its latest snapshot, not its starter.
            match crate::snapshot::get_latest(&*state.blobs, &ids.project_id).await? {
                Some(key) => crate::snapshot::restore(&*state.blobs, &*sandbox, &key).await?,
                None => {
                    let project =
                        state
                            .store
                            .get_project(&ids.project_id)
                            .await?
                            .ok_or_else(|| {
                                Error::NotFound(format!("project {} not found", ids.project_id))
                            })?;
                    from_template = Some(project.template);
                }
            }
        }
        let status = match &from_template {
            Some(template) => {
                let starter = crate::starter::for_project(template)?;
                sandbox.ensure_from(&starter.name).await?
            }
            None => sandbox.ensure().await?,
        };
        // A new project, before its first run changes anything: what its first
        // version is shown against. Sandboxes that already exist skip this.
        if let Some(template) = &from_template {
            if crate::snapshot::record_base(&*state.blobs, &*sandbox, template).await? {
                tracing::info!("recorded the project's starting tree");
            }
        }
        Ok(json!({
            "ready": status.state == SandboxState::Ready,
            "state": status.state,
            "polls": 0,
        }))
    }
    .instrument(span)
    .await
}

#[derive(Debug, Deserialize)]
struct StatusInput {
    project_id: String,
    #[serde(default)]
    polls: u64,
}

/// One poll of the sandbox while the state machine waits for it to be ready.
pub(super) async fn sandbox_status(input: Value, state: &Backends) -> Result<Value> {
    let i: StatusInput = parse(input)?;
    let sandbox = state.sandboxes.sandbox(&i.project_id)?;
    let mut status = sandbox.status().await?;
    if status.state == SandboxState::Stopped {
        status = sandbox.ensure().await?;
    } else if status.state == SandboxState::Missing {
        // Gone since EnsureSandbox made it: back from the project's own starter.
        let project = state
            .store
            .get_project(&i.project_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project {} not found", i.project_id)))?;
        let starter = crate::starter::for_project(&project.template)?;
        status = sandbox.ensure_from(&starter.name).await?;
    }
    Ok(json!({
        "ready": status.state == SandboxState::Ready,
        "state": status.state,
        "detail": status.detail,
        "polls": i.polls + 1,
    }))
}
