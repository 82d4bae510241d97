//! The hibernation state machine's tasks: find idle projects (first putting
//! idle previews to light sleep, see [`crate::light_sleep`]), hibernate each,
//! and purge projects deleted past the retention period.

use serde_json::{json, Value};

use crate::app::Backends;
use crate::error::{Error, Result};

/// Projects idle for longer than `POD_TTL_HOURS`, as Map items.
pub(super) async fn list_idle_projects(input: Value, state: &Backends) -> Result<Value> {
    let limit = input.get("limit").and_then(Value::as_i64).unwrap_or(100);
    // The sweep also tops up pre-started sandboxes (kube warm pods); a failure
    // there must not stop hibernation.
    if let Err(e) = state.sandboxes.replenish().await {
        tracing::warn!(error = %e, "could not replenish warm sandboxes");
    }
    // ... and puts idle previews to light sleep: on AWS this schedule is the
    // only periodic driver there is (no process stays up between requests).
    match crate::light_sleep::sleep_idle(state).await {
        Ok(r) if !r.slept.is_empty() => {
            tracing::info!(slept = r.slept.len(), "idle previews asleep")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "light sleep pass failed"),
    }
    let ttl = chrono::Duration::from_std(state.config.pod_ttl)
        .map_err(|e| Error::Internal(format!("POD_TTL_HOURS: {e}")))?;
    let idle = state
        .store
        .idle_projects(crate::domain::now() - ttl, limit)
        .await?;
    let ids: Vec<Value> = idle.iter().map(|p| json!({ "project_id": p.id })).collect();
    Ok(json!({ "projects": ids }))
}

/// Snapshots one project, verifies the upload, then removes its sandbox.
pub(super) async fn hibernate_project(input: Value, state: &Backends) -> Result<Value> {
    let project_id = input
        .get("project_id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidInput("task input: missing project_id".into()))?;
    let outcome = crate::snapshot::hibernate_project(
        &*state.store,
        &*state.blobs,
        &*state.sandboxes,
        project_id,
    )
    .await?;
    Ok(serde_json::to_value(outcome)?)
}

/// Removes projects deleted longer ago than the retention period.
pub(super) async fn purge_deleted(input: Value, state: &Backends) -> Result<Value> {
    let limit = input.get("limit").and_then(Value::as_i64).unwrap_or(100);
    let report = crate::project::purge_deleted(state, limit).await?;
    Ok(serde_json::to_value(report)?)
}
