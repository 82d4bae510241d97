//! The Task states of `statemachines/*.asl.json`, as plain async functions
//! `(input JSON, &AppState) -> Result<output JSON>`.
//!
//! The same functions back the Lambda binaries in `functions/` (one per Task)
//! and the local interpreter (through [`TaskRouter`]). Each is idempotent per
//! (run id, step): Step Functions and the interpreter both retry, and a retry
//! must neither call the model twice nor apply an edit twice, so results that
//! must not be recomputed are kept with `Store::put_step_result`.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::asl::{TaskFailure, TaskInvoker};
use super::revive::live_sandbox;
use crate::agent::{run_step, ModelDelta, StepDeps};
use crate::app::AppState;
use crate::domain::{ContentBlock, Role, RunStatus};
use crate::error::{Error, Result};
use crate::generation::{finish_run, RunEnd};
use crate::sandbox::build_check::check_build;
use crate::sandbox::SandboxState;

/// The tasks by name; a definition's `${NameFunctionArn}` resolves to `Name`.
pub const TASKS: &[&str] = &[
    "EnsureSandbox",
    "SandboxStatus",
    "AgentStep",
    "Verify",
    "Finalize",
    "MarkFailed",
    "ListIdleProjects",
    "HibernateProject",
    "PurgeDeleted",
];

/// How long streamed model text is gathered before it becomes one `delta` event.
const DELTA_FLUSH: Duration = Duration::from_millis(120);

/// The task name behind a Resource: `${AgentStepFunctionArn}` → `AgentStep`,
/// `arn:aws:lambda:…:function:apna-AgentStep` → `AgentStep`.
pub fn task_name(resource: &str) -> Option<&'static str> {
    let base = resource
        .trim_start_matches("${")
        .trim_end_matches('}')
        .trim_end_matches("FunctionArn");
    let base = base.rsplit([':', '-']).next().unwrap_or(base);
    TASKS.iter().copied().find(|t| *t == base)
}

/// Runs task `name` with `input`.
pub async fn run_task(name: &str, input: Value, state: &AppState) -> Result<Value> {
    match name {
        "EnsureSandbox" => ensure_sandbox(input, state).await,
        "SandboxStatus" => sandbox_status(input, state).await,
        "AgentStep" => agent_step(input, state).await,
        "Verify" => verify(input, state).await,
        "Finalize" => finalize(input, state).await,
        "MarkFailed" => mark_failed(input, state).await,
        "ListIdleProjects" => list_idle_projects(input, state).await,
        "HibernateProject" => hibernate_project(input, state).await,
        "PurgeDeleted" => purge_deleted(input, state).await,
        other => Err(Error::Workflow(format!("no task named {other:?}"))),
    }
}

/// Resolves Task resources to [`run_task`] for the local interpreter.
#[derive(Clone)]
pub struct TaskRouter {
    state: AppState,
}

impl TaskRouter {
    /// A router over `state`.
    pub fn new(state: AppState) -> Self {
        TaskRouter { state }
    }
}

#[async_trait]
impl TaskInvoker for TaskRouter {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
    ) -> std::result::Result<Value, TaskFailure> {
        let name = task_name(resource).ok_or_else(|| {
            TaskFailure::new(
                "States.TaskFailed",
                format!("no local handler for resource {resource:?}"),
            )
        })?;
        run_task(name, input, &self.state)
            .await
            .map_err(TaskFailure::from)
    }
}

#[derive(Debug, Deserialize)]
struct Ids {
    run_id: String,
    project_id: String,
}

fn parse<T: serde::de::DeserializeOwned>(input: Value) -> Result<T> {
    serde_json::from_value(input).map_err(|e| Error::InvalidInput(format!("task input: {e}")))
}

pub(crate) async fn status_event(
    state: &AppState,
    run_id: &str,
    phase: &str,
    message: &str,
) -> Result<()> {
    state
        .store
        .append_event(
            run_id,
            "status",
            &json!({ "status": "running", "phase": phase, "message": message }),
        )
        .await?;
    Ok(())
}

async fn ensure_sandbox(input: Value, state: &AppState) -> Result<Value> {
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
            status_event(
                state,
                &ids.run_id,
                "sandbox",
                "Starting the project's sandbox",
            )
            .await?;
        }
        let sandbox = state.sandboxes.sandbox(&ids.project_id)?;
        let mut from_template = false;
        if sandbox.status().await?.state == SandboxState::Missing {
            // A hibernated project comes back from its latest snapshot, not the template.
            match crate::snapshot::get_latest(&*state.blobs, &ids.project_id).await? {
                Some(key) => crate::snapshot::restore(&*state.blobs, &*sandbox, &key).await?,
                None => from_template = true,
            }
        }
        let status = sandbox.ensure().await?;
        // A new project, before its first run changes anything: what its first
        // version is shown against. Sandboxes that already exist skip this.
        if from_template && crate::snapshot::record_base(&*state.blobs, &*sandbox).await? {
            tracing::info!("recorded the project's starting tree");
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

async fn sandbox_status(input: Value, state: &AppState) -> Result<Value> {
    let i: StatusInput = parse(input)?;
    let sandbox = state.sandboxes.sandbox(&i.project_id)?;
    let mut status = sandbox.status().await?;
    if matches!(status.state, SandboxState::Missing | SandboxState::Stopped) {
        status = sandbox.ensure().await?;
    }
    Ok(json!({
        "ready": status.state == SandboxState::Ready,
        "state": status.state,
        "detail": status.detail,
        "polls": i.polls + 1,
    }))
}

#[derive(Debug, Deserialize)]
struct StepInput {
    run_id: String,
    project_id: String,
    step: u32,
}

fn fix_key(step: u32) -> String {
    format!("fix:{step}")
}

async fn agent_step(input: Value, state: &AppState) -> Result<Value> {
    let i: StepInput = parse(input)?;
    let span = tracing::info_span!("agent_step_task", project_id = %i.project_id, run_id = %i.run_id, step = i.step + 1);
    async {
        let step = i.step + 1;
        if step == 1 {
            status_event(state, &i.run_id, "agent", "Writing code").await?;
        }
        // Verify leaves its findings for the step that follows it.
        let fix = state
            .store
            .get_step_result(&i.run_id, &fix_key(step))
            .await?
            .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_string));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ModelDelta>();
        let store = state.store.clone();
        let run_id = i.run_id.clone();
        let forwarder = tokio::spawn(async move {
            // Streamed text becomes `delta` events, batched so a long answer is
            // tens of rows, not thousands; the step's `text` event has it all.
            let mut pending = String::new();
            let mut ticker = tokio::time::interval(DELTA_FLUSH);
            loop {
                tokio::select! {
                    d = rx.recv() => match d {
                        Some(ModelDelta::Text { text, .. }) => pending.push_str(&text),
                        Some(ModelDelta::Restart { .. }) => {
                            pending.clear();
                            let _ = store.append_event(&run_id, "delta", &json!({ "restart": true })).await;
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = ticker.tick() => {
                        if !pending.is_empty() {
                            let text = std::mem::take(&mut pending);
                            let _ = store.append_event(&run_id, "delta", &json!({ "text": text })).await;
                        }
                    }
                }
            }
            if !pending.is_empty() {
                let _ = store.append_event(&run_id, "delta", &json!({ "text": pending })).await;
            }
        });
        let sandbox = live_sandbox(state, &i.project_id, &i.run_id, Some(step)).await?;
        let deps = StepDeps {
            store: state.store.clone(),
            model: state.model.clone(),
            sandbox,
            config: &state.config,
            deltas: Some(tx),
        };
        let outcome = run_step(&deps, &i.run_id, step, fix.as_deref()).await;
        drop(deps);
        let _ = forwarder.await;
        let outcome = outcome?;
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

#[derive(Debug, Deserialize)]
struct VerifyInput {
    run_id: String,
    project_id: String,
    attempt: u32,
    max_fix_attempts: u32,
    step: u32,
}

async fn verify(input: Value, state: &AppState) -> Result<Value> {
    let i: VerifyInput = parse(input)?;
    let span = tracing::info_span!("verify", project_id = %i.project_id, run_id = %i.run_id, attempt = i.attempt);
    async {
        let key = format!("verify:{}", i.attempt);
        if let Some(done) = state.store.get_step_result(&i.run_id, &key).await? {
            return Ok(done);
        }
        status_event(state, &i.run_id, "verify", "Checking the build").await?;
        let sandbox = live_sandbox(state, &i.project_id, &i.run_id, None).await?;
        let report = check_build(&*sandbox).await?;
        let items = serde_json::to_value(&report.diagnostics)?;
        state
            .store
            .append_event(
                &i.run_id,
                "diagnostics",
                &json!({ "ok": report.ok, "items": items }),
            )
            .await?;
        let next_attempt = i.attempt + 1;
        if !report.ok && next_attempt < i.max_fix_attempts {
            let mut text = format!(
                "The build check (TypeScript and Vite) found {} problem(s). Fix them, then reply with a short summary.\n",
                report.diagnostics.len()
            );
            for d in &report.diagnostics {
                text.push_str(&format!("- {}:{}:{}: {}\n", d.file, d.line, d.column, d.message));
            }
            state
                .store
                .put_step_result(&i.run_id, &fix_key(i.step + 1), &json!({ "text": text }))
                .await?;
        }
        let out = json!({
            "ok": report.ok,
            "attempt": next_attempt,
            "problems": report.diagnostics.len(),
        });
        state.store.put_step_result(&i.run_id, &key, &out).await
    }
    .instrument(span)
    .await
}

#[derive(Debug, Deserialize)]
struct FinalizeInput {
    run_id: String,
    project_id: String,
    verified: bool,
}

/// The model's closing text in this run: its last assistant text.
async fn run_summary(state: &AppState, project_id: &str, run_id: &str) -> Result<String> {
    let mut summary = String::new();
    let mut offset = 0;
    loop {
        let page = state
            .store
            .list_messages(project_id, crate::domain::Page::new(200, offset))
            .await?;
        for m in &page {
            if m.run_id.as_deref() == Some(run_id) && m.role == Role::Assistant {
                let text: Vec<&str> = m
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                if !text.is_empty() {
                    summary = text.join("\n");
                }
            }
        }
        if page.len() < 200 {
            break;
        }
        offset += 200;
    }
    let summary = summary.trim();
    Ok(if summary.is_empty() {
        "Updated the app.".to_string()
    } else {
        summary.chars().take(2000).collect()
    })
}

async fn finalize(input: Value, state: &AppState) -> Result<Value> {
    let i: FinalizeInput = parse(input)?;
    let span = tracing::info_span!("finalize", project_id = %i.project_id, run_id = %i.run_id);
    async {
        status_event(state, &i.run_id, "finalize", "Saving a version").await?;
        let summary = run_summary(state, &i.project_id, &i.run_id).await?;
        let version = match state.store.get_step_result(&i.run_id, "finalize:version").await? {
            Some(v) => v,
            None => {
                let sandbox = live_sandbox(state, &i.project_id, &i.run_id, None).await?;
                let v = crate::snapshot::record_version(
                    &*state.store,
                    &*state.blobs,
                    &*sandbox,
                    &i.project_id,
                    Some(&i.run_id),
                    &summary,
                )
                .await?;
                state
                    .store
                    .put_step_result(&i.run_id, "finalize:version", &json!(v.number))
                    .await?
            }
        };
        let end = if i.verified {
            RunEnd::Succeeded { summary }
        } else {
            RunEnd::Failed {
                error: format!(
                    "The build still has problems after {} fix attempts; the files are saved as version {version}. Ask for a fix in the chat.",
                    state.config.max_fix_attempts
                ),
            }
        };
        let run = finish_run(state, &i.run_id, end).await?;
        Ok(json!({ "version": version, "status": run.status }))
    }
    .instrument(span)
    .await
}

#[derive(Debug, Deserialize)]
struct FailedInput {
    run_id: String,
    project_id: String,
    #[serde(default)]
    error: Value,
}

/// A readable reason from a Catch's `{ "Error", "Cause" }`.
fn reason(error: &Value) -> String {
    let name = error
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("Error");
    let cause = error.get("Cause").and_then(Value::as_str).unwrap_or("");
    // Lambda errors put a JSON document in Cause.
    let cause = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string());
    if cause.is_empty() {
        name.to_string()
    } else {
        cause
    }
}

async fn mark_failed(input: Value, state: &AppState) -> Result<Value> {
    let i: FailedInput = parse(input)?;
    let why = reason(&i.error);
    tracing::warn!(project_id = %i.project_id, run_id = %i.run_id, reason = %why, "generation failed");
    let run = finish_run(state, &i.run_id, RunEnd::Failed { error: why }).await?;
    Ok(json!({ "status": run.status }))
}

async fn list_idle_projects(input: Value, state: &AppState) -> Result<Value> {
    let limit = input.get("limit").and_then(Value::as_i64).unwrap_or(100);
    let ttl = chrono::Duration::from_std(state.config.pod_ttl)
        .map_err(|e| Error::Internal(format!("POD_TTL_HOURS: {e}")))?;
    let idle = state
        .store
        .idle_projects(crate::domain::now() - ttl, limit)
        .await?;
    let ids: Vec<Value> = idle.iter().map(|p| json!({ "project_id": p.id })).collect();
    Ok(json!({ "projects": ids }))
}

async fn hibernate_project(input: Value, state: &AppState) -> Result<Value> {
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

async fn purge_deleted(input: Value, state: &AppState) -> Result<Value> {
    let limit = input.get("limit").and_then(Value::as_i64).unwrap_or(100);
    let report = crate::lifecycle::purge_deleted(state, limit).await?;
    Ok(serde_json::to_value(report)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_resolve_to_tasks() {
        assert_eq!(task_name("${AgentStepFunctionArn}"), Some("AgentStep"));
        assert_eq!(
            task_name("arn:aws:lambda:us-east-1:123:function:apna-Verify"),
            Some("Verify")
        );
        assert_eq!(task_name("${NopeFunctionArn}"), None);
    }

    #[test]
    fn reasons_are_readable() {
        assert_eq!(
            reason(&json!({"Error": "Apna.Model", "Cause": "model: overloaded"})),
            "model: overloaded"
        );
        assert_eq!(
            reason(
                &json!({"Error": "X", "Cause": "{\"errorMessage\":\"boom\",\"errorType\":\"X\"}"})
            ),
            "boom"
        );
        assert_eq!(
            reason(&json!({"Error": "States.Timeout"})),
            "States.Timeout"
        );
    }
}
