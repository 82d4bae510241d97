//! One agent step: one model call, every tool call in its answer, and the
//! resulting messages and events persisted.
//!
//! A step is idempotent per (run id, step number), because Step Functions and
//! the local interpreter both retry handlers: the model's answer, each tool's
//! result and the [`StepOutcome`] are checkpointed under the keys in
//! [`super::checkpoint`].
//!
//! Messages are appended once (assistant + user-with-all-tool-results in one
//! call); a retry recognises them by content before appending. The run's
//! usage and cost are added once: `Run::step` records the last step counted.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::Instrument;

use super::checkpoint::StepKey;
use super::conversation::{load_messages, text_of, to_model_messages};
use super::model::{DeltaSender, Model, ModelRequest, ModelResponse};
use super::pricing::cost_usd;
use super::prompt::system_prompt;
use super::safety::{
    check_budget, check_daily_budget, check_image_budget, detect_repetition, image_tokens,
    max_tokens_for_call, StopReason,
};
use super::tools::{ToolOutput, Toolbox};
use crate::blob::BlobStore;
use crate::config::Config;
use crate::domain::{
    ContentBlock, FileDiff, ImageRef, ImageSource, Message, NewMessage, Role, RunEventKind, Usage,
};
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;
use crate::store::Store;

/// Most output tokens one model call may produce.
pub const MAX_TOKENS_PER_CALL: u32 = 16_000;
/// Most characters of a tool's output kept in a message's `tool_calls` record.
const TOOL_CALL_RECORD_CHARS: usize = 2_000;
/// The result of a tool call cut off by the output limit (it did not run).
const CUT_OFF_TOOL: &str = "this call was cut off at the output token limit before its input was \
complete, so it did not run. Make smaller calls: split a large file into several components, \
or change an existing file with edit_file.";
/// Sent when a reply without tool calls was cut off by the output limit.
const CUT_OFF_TEXT: &str = "[Your reply was cut off at the output token limit. Continue where \
you stopped, in shorter replies.]";

/// What a step needs.
#[derive(Clone)]
pub struct StepDeps<'a> {
    /// Messages, runs, events and step checkpoints.
    pub store: Arc<dyn Store>,
    /// The model to call.
    pub model: Arc<dyn Model>,
    /// The project's sandbox.
    pub sandbox: Arc<dyn Sandbox>,
    /// Where the conversation's images are (and `save_image` reads them).
    pub blobs: Arc<dyn BlobStore>,
    /// Budgets.
    pub config: &'a Config,
    /// Where streamed model text goes as it arrives (optional).
    pub deltas: Option<DeltaSender>,
    /// The project's starter (`Project::template`): picks the system prompt.
    pub template: String,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    /// The step number (from 1).
    pub step: u32,
    /// The model finished its turn: it asked for no tools.
    pub done: bool,
    /// Why the loop must stop although the model is not done (budget, repetition).
    pub stop: Option<StopReason>,
    /// The model's own stop reason (`end_turn`, `tool_use`, `max_tokens`, …).
    pub model_stop_reason: Option<String>,
    /// Tokens this step's model call used.
    pub usage: Usage,
    /// Dollars this step's model call cost.
    pub cost_usd: f64,
    /// The model's text in this step (the summary when `done`).
    pub text: String,
    /// Files this step changed, in order.
    pub file_diffs: Vec<FileDiff>,
    /// Tool calls made.
    pub tool_calls: u32,
    /// Tool calls that failed.
    pub tool_errors: u32,
}

impl StepOutcome {
    /// Whether the workflow should run another step.
    pub fn should_continue(&self) -> bool {
        !self.done && self.stop.is_none()
    }
}

/// Runs step `step` (from 1) of run `run_id`. `user_text`, when given, is
/// added to the conversation as a user message before the model call (the
/// person's message on step 1, or Verify's diagnostics before a fix step);
/// retries do not add it twice.
pub async fn run_step(
    deps: &StepDeps<'_>,
    run_id: &str,
    step: u32,
    user_text: Option<&str>,
) -> Result<StepOutcome> {
    run_step_with_images(deps, run_id, step, user_text, &[]).await
}

/// [`run_step`] whose user message also carries `images`, stored already in
/// the project's images (`crate::images`): the model gets each as an image
/// block after the text (the browser check's screenshot for the visual check).
pub async fn run_step_with_images(
    deps: &StepDeps<'_>,
    run_id: &str,
    step: u32,
    user_text: Option<&str>,
    images: &[ImageRef],
) -> Result<StepOutcome> {
    let run = deps
        .store
        .get_run(run_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("run {run_id} not found")))?;
    let span = tracing::info_span!("agent_step", project_id = %run.project_id, run_id, step);
    run_step_inner(deps, run, step, user_text, images)
        .instrument(span)
        .await
}

async fn run_step_inner(
    deps: &StepDeps<'_>,
    run: crate::domain::Run,
    step: u32,
    user_text: Option<&str>,
    images: &[ImageRef],
) -> Result<StepOutcome> {
    let store = deps.store.as_ref();
    let run_id = run.id.as_str();
    let project_id = run.project_id.as_str();
    if step == 0 {
        return Err(Error::InvalidInput("steps are numbered from 1".into()));
    }
    if deps.sandbox.project_id() != project_id {
        return Err(Error::Internal(format!(
            "sandbox of project {} given for run of project {project_id}",
            deps.sandbox.project_id()
        )));
    }
    if let Some(done) = StepKey::Done(step).get(store, run_id).await? {
        return Ok(serde_json::from_value(done)?);
    }

    let mut messages = load_messages(store, project_id).await?;
    let cached = StepKey::Model(step).get(store, run_id).await?;
    let toolbox = Toolbox::for_project(deps.blobs.clone(), project_id);
    let (response, fresh): (ModelResponse, bool) = match cached {
        Some(v) => (serde_json::from_value(v)?, false),
        None => {
            let stop = match check_budget(&run, deps.config, step) {
                Some(stop) => Some(stop),
                None => check_daily_budget(store, &run.owner, deps.config).await?,
            };
            if let Some(stop) = stop {
                tracing::info!(reason = stop.code(), "budget reached before the model call");
                return finish(store, run_id, step, stopped(step, stop)).await;
            }
            if let Some(text) = user_text.filter(|t| !t.trim().is_empty()) {
                let already = messages.last().is_some_and(|m| {
                    m.role == Role::User
                        && m.run_id.as_deref() == Some(run_id)
                        && text_of(&m.content) == text
                });
                if !already {
                    let mut content = vec![ContentBlock::Text {
                        text: text.to_string(),
                    }];
                    content.extend(images.iter().map(|r| ContentBlock::Image {
                        source: ImageSource::Stored(r.clone()),
                    }));
                    let stored = store
                        .append_messages(
                            project_id,
                            &[NewMessage {
                                run_id: Some(run_id.to_string()),
                                role: Role::User,
                                content,
                                tool_calls: Vec::new(),
                                file_diffs: Vec::new(),
                            }],
                        )
                        .await?;
                    messages.extend(stored);
                }
            }
            let mut conversation = to_model_messages(&messages, run_id);
            if conversation.last().is_none_or(|m| m.role != Role::User) {
                return Err(Error::InvalidInput(
                    "the conversation has no user message to answer; store the person's message \
                     or pass it as the step's user text"
                        .into(),
                ));
            }
            let images = image_tokens(&conversation);
            if let Some(stop) = check_image_budget(&run, deps.config, deps.model.model_id(), images)
            {
                tracing::info!(image_tokens = images, "the images would exceed the budget");
                return finish(store, run_id, step, stopped(step, stop)).await;
            }
            for m in conversation.iter_mut().filter(|m| m.role == Role::User) {
                crate::images::inline(deps.blobs.as_ref(), project_id, &mut m.content).await?;
            }
            let req = ModelRequest {
                system: system_prompt(&deps.template),
                tools: toolbox.specs(),
                messages: conversation,
                max_tokens: max_tokens_for_call(&run, deps.config, MAX_TOKENS_PER_CALL),
            };
            let started = std::time::Instant::now();
            let resp = deps.model.complete(&req, deps.deltas.as_ref()).await?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                input_tokens = resp.usage.input_tokens,
                output_tokens = resp.usage.output_tokens,
                cache_read_tokens = resp.usage.cache_read_tokens,
                stop_reason = resp.stop_reason.as_deref().unwrap_or(""),
                "model answered"
            );
            // First write wins: if a concurrent attempt stored an answer, use that one.
            let stored = StepKey::Model(step)
                .put(store, run_id, &serde_json::to_value(&resp)?)
                .await?;
            let theirs: ModelResponse = serde_json::from_value(stored)?;
            if theirs != resp {
                (theirs, false)
            } else {
                (resp, true)
            }
        }
    };

    let text = response.text();
    if fresh && !text.is_empty() {
        store
            .append_event(
                run_id,
                RunEventKind::Text,
                &json!({ "step": step, "text": text }),
            )
            .await?;
    }

    // At the output limit the last block may be a tool call whose input was
    // cut off: running it would write half a file, so it is answered instead.
    let cut_off = response.stop_reason.as_deref() == Some("max_tokens");
    let cut_off_tool = match response.content.last() {
        Some(ContentBlock::ToolUse { id, .. }) if cut_off => Some(id.as_str()),
        _ => None,
    };
    let mut results = Vec::new();
    let mut tool_calls = Vec::new();
    let mut file_diffs = Vec::new();
    let mut tool_errors = 0u32;
    for block in &response.content {
        let ContentBlock::ToolUse { id, name, input } = block else {
            continue;
        };
        let tool_key = StepKey::Tool(step, id);
        let out: ToolOutput = match tool_key.get(store, run_id).await? {
            Some(v) => serde_json::from_value(v)?,
            None => {
                let out = if cut_off_tool == Some(id.as_str()) {
                    ToolOutput::error(name, CUT_OFF_TOOL)
                } else {
                    toolbox.execute(deps.sandbox.as_ref(), name, input).await
                };
                let stored = tool_key
                    .put(store, run_id, &serde_json::to_value(&out)?)
                    .await?;
                let mut data = json!({
                    "step": step,
                    "tool_use_id": id,
                    "name": name,
                    "summary": out.summary,
                    "is_error": out.is_error,
                });
                if let Some(p) = &out.path {
                    data["path"] = Value::String(p.clone());
                }
                store
                    .append_event(run_id, RunEventKind::Tool, &data)
                    .await?;
                tracing::info!(tool = %name, is_error = out.is_error, summary = %out.summary, "tool ran");
                serde_json::from_value(stored)?
            }
        };
        if out.is_error {
            tool_errors += 1;
        }
        tool_calls.push(json!({
            "id": id,
            "tool": name,
            "input": input,
            "output": out.content.chars().take(TOOL_CALL_RECORD_CHARS).collect::<String>(),
            "is_error": out.is_error,
            "summary": out.summary,
        }));
        if let Some(d) = &out.file_diff {
            file_diffs.push(d.clone());
        }
        results.push(ContentBlock::ToolResult {
            tool_use_id: id.clone(),
            content: out.content,
            is_error: out.is_error,
        });
    }
    // A reply cut off without a tool call is not the model's last word.
    if cut_off && results.is_empty() {
        results.push(ContentBlock::Text {
            text: CUT_OFF_TEXT.to_string(),
        });
    }
    let done = results.is_empty();

    if fresh || !already_persisted(&messages, run_id, &response.content) {
        let mut batch = vec![NewMessage {
            run_id: Some(run_id.to_string()),
            role: Role::Assistant,
            content: response.content.clone(),
            tool_calls,
            file_diffs: file_diffs.clone(),
        }];
        if !done {
            batch.push(NewMessage {
                run_id: Some(run_id.to_string()),
                role: Role::User,
                content: results,
                tool_calls: Vec::new(),
                file_diffs: Vec::new(),
            });
        }
        let stored = store.append_messages(project_id, &batch).await?;
        messages.extend(stored);
    }

    let cost = cost_usd(
        if response.model.is_empty() {
            deps.model.model_id()
        } else {
            &response.model
        },
        &response.usage,
    );
    let mut run = store
        .get_run(run_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("run {run_id} not found")))?;
    if run.step < step as i64 {
        run.usage.add(&response.usage);
        run.cost_usd += cost;
        run.step = step as i64;
        if done && !text.is_empty() {
            run.summary = Some(text.clone());
        }
        run.updated_at = crate::domain::now();
        store.update_run(&run).await?;
        store
            .append_event(
                run_id,
                RunEventKind::Usage,
                &json!({
                    "step": step,
                    "usage": response.usage,
                    "cost_usd": cost,
                    "run_usage": run.usage,
                    "run_cost_usd": run.cost_usd,
                }),
            )
            .await?;
    }

    let stop = if done {
        None
    } else {
        detect_repetition(&messages, run_id).or_else(|| check_budget(&run, deps.config, step + 1))
    };
    if let Some(s) = &stop {
        tracing::warn!(reason = s.code(), "agent loop stopped: {s}");
    }
    let outcome = StepOutcome {
        step,
        done,
        stop,
        model_stop_reason: response.stop_reason.clone(),
        usage: response.usage,
        cost_usd: cost,
        text,
        file_diffs,
        tool_calls: response
            .content
            .iter()
            .filter(|b| matches!(b, ContentBlock::ToolUse { .. }))
            .count() as u32,
        tool_errors,
    };
    finish(store, run_id, step, outcome).await
}

/// A step that stopped before calling the model.
fn stopped(step: u32, stop: StopReason) -> StepOutcome {
    StepOutcome {
        step,
        done: false,
        stop: Some(stop),
        model_stop_reason: None,
        usage: Usage::default(),
        cost_usd: 0.0,
        text: String::new(),
        file_diffs: Vec::new(),
        tool_calls: 0,
        tool_errors: 0,
    }
}

async fn finish(
    store: &dyn Store,
    run_id: &str,
    step: u32,
    outcome: StepOutcome,
) -> Result<StepOutcome> {
    let stored = StepKey::Done(step)
        .put(store, run_id, &serde_json::to_value(&outcome)?)
        .await?;
    Ok(serde_json::from_value(stored)?)
}

/// Whether this step's assistant message is already stored (a retry after the append):
/// it is the last message, or the one before the last answered by tool results.
fn already_persisted(messages: &[Message], run_id: &str, content: &[ContentBlock]) -> bool {
    let is_ours = |m: &Message| {
        m.role == Role::Assistant && m.run_id.as_deref() == Some(run_id) && m.content == content
    };
    match messages {
        [.., last] if is_ours(last) => true,
        [.., prev, last] => {
            is_ours(prev)
                && last.role == Role::User
                && last
                    .content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::ToolResult { .. }))
        }
        _ => false,
    }
}
