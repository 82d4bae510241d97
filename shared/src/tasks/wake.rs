//! The wake state machine's task: a hibernated project's latest snapshot
//! restored into a fresh sandbox, its packages installed, its dev server up.

use serde_json::{json, Value};
use tracing::Instrument;

use crate::app::Backends;
use crate::error::{Error, Result};
use crate::snapshot::WakeOutcome;

/// Wakes one project (`statemachines/wake.asl.json`). Safe to retry and to
/// run beside a generation: the project's run lock lets one restore happen,
/// and a project that is no longer hibernated is left to whoever woke it.
/// While another holder has the lock the task fails with `Apna.NotReady`,
/// which the state machine retries.
pub(super) async fn wake_project(input: Value, state: &Backends) -> Result<Value> {
    let project_id = input
        .get("project_id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidInput("task input: missing project_id".into()))?;
    let span = tracing::info_span!("wake_project", project_id = %project_id);
    async {
        crate::project::live(state, project_id).await?;
        let outcome = crate::snapshot::wake_project(
            &*state.store,
            &*state.blobs,
            &*state.sandboxes,
            project_id,
        )
        .await?;
        if outcome == WakeOutcome::InProgress {
            return Err(Error::NotReady(format!(
                "project {project_id} is held by a run or another wake; trying again"
            )));
        }
        Ok(json!({ "project_id": project_id, "wake": outcome }))
    }
    .instrument(span)
    .await
}
