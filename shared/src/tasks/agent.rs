//! AgentStep: one model call and every tool call in its answer, with the
//! model's text streamed to the run's watchers as it arrives.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::checkpoint::TaskKey;
use super::parse;
use super::revive::live_sandbox;
use crate::agent::{run_step_with_images, ModelDelta, StepDeps};
use crate::app::Backends;
use crate::domain::{ImageRef, RunEventKind};
use crate::error::{Error, Result};
use crate::run::report_phase;
use crate::store::Store;

/// How long streamed model text is gathered before it becomes one `delta` event.
const DELTA_FLUSH: Duration = Duration::from_millis(120);

#[derive(Debug, Deserialize)]
struct StepInput {
    run_id: String,
    project_id: String,
    step: u32,
}

/// Runs the step after `step`, starting from Verify's findings when it left any.
pub(super) async fn agent_step(input: Value, state: &Backends) -> Result<Value> {
    let i: StepInput = parse(input)?;
    let span = tracing::info_span!("agent_step_task", project_id = %i.project_id, run_id = %i.run_id, step = i.step + 1);
    async {
        let step = i.step + 1;
        if step == 1 {
            report_phase(&*state.store, &i.run_id, "agent", "Writing code").await?;
        }
        // Verify and Smoke leave their findings for the step that follows
        // (Smoke's visual check a screenshot with them).
        let fix_value = TaskKey::Fix(step).get(&*state.store, &i.run_id).await?;
        let fix = fix_value
            .as_ref()
            .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_string));
        let images: Vec<ImageRef> = fix_value
            .as_ref()
            .and_then(|v| v.get("images").cloned())
            .map(serde_json::from_value)
            .transpose()?
            .unwrap_or_default();
        let looking = fix_value
            .as_ref()
            .is_some_and(|v| v.get("visual").and_then(Value::as_bool) == Some(true));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ModelDelta>();
        // Awaited below, before the task answers: nothing outlives the invocation.
        let forwarder = tokio::spawn(forward_deltas(state.store.clone(), i.run_id.clone(), rx));
        let sandbox = live_sandbox(state, &i.project_id, &i.run_id, Some(step)).await?;
        let project = state
            .store
            .get_project(&i.project_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project {} not found", i.project_id)))?;
        let deps = StepDeps {
            store: state.store.clone(),
            model: state.model.clone(),
            sandbox,
            blobs: state.blobs.clone(),
            config: &state.config,
            deltas: Some(tx),
            template: project.template,
        };
        let outcome = run_step_with_images(&deps, &i.run_id, step, fix.as_deref(), &images).await;
        drop(deps);
        let _ = forwarder.await;
        let outcome = outcome?;
        if looking {
            super::visual_check::looked(state, &i.run_id, &outcome.text).await?;
        }
        Ok(json!({
            "step": step,
            "done": outcome.done,
            "stopped": outcome.stop.is_some(),
            "stop_reason": outcome.stop.as_ref().map(|s| s.to_string()),
        }))
    }
    .instrument(span)
    .await
}

/// Turns streamed text into `delta` events, batched so a long answer is tens
/// of rows, not thousands; the step's `text` event has it all. Ends when the
/// sender is dropped.
async fn forward_deltas(
    store: std::sync::Arc<dyn Store>,
    run_id: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<ModelDelta>,
) {
    let mut pending = String::new();
    let mut ticker = tokio::time::interval(DELTA_FLUSH);
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(ModelDelta::Text { text, .. }) => pending.push_str(&text),
                Some(ModelDelta::Restart { .. }) => {
                    pending.clear();
                    let _ = store.append_event(&run_id, RunEventKind::Delta, &json!({ "restart": true })).await;
                }
                Some(_) => {}
                None => break,
            },
            _ = ticker.tick() => {
                if !pending.is_empty() {
                    let text = std::mem::take(&mut pending);
                    let _ = store.append_event(&run_id, RunEventKind::Delta, &json!({ "text": text })).await;
                }
            }
        }
    }
    if !pending.is_empty() {
        let _ = store
            .append_event(&run_id, RunEventKind::Delta, &json!({ "text": pending }))
            .await;
    }
}
