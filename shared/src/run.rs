//! Runs from start to end, the same way from every entry point (API, CLI,
//! workflow tasks): who may start one, what is written first, how its
//! progress is reported, and how it ends — succeeded, failed or cancelled —
//! releasing the project's run lock.

use std::time::Duration;

use serde_json::json;
use tracing::Instrument;

use crate::app::{AppState, Backends};
use crate::domain::{
    now, ContentBlock, Execution, ExecutionStatus, NewMessage, Project, ProjectStatus, Role, Run,
    RunEvent, RunEventKind, RunStatus,
};
use crate::error::{Error, Result};
use crate::project::move_project;
use crate::store::Store;

/// The state machine every generation runs (`statemachines/generation.asl.json`).
pub const GENERATION: &str = "generation";
/// The state machine the idle sweep runs (`statemachines/hibernation.asl.json`).
pub const HIBERNATION: &str = "hibernation";
pub use crate::project::WAKE;
/// Every state machine, as the local interpreter and the Lambda config name them.
pub const STATE_MACHINES: &[&str] = &[GENERATION, HIBERNATION, WAKE];

/// The cause [`cancel_run`] stops a run's execution with: an execution that
/// ended `ABORTED` with it was cancelled by its person, not lost.
pub const CANCEL_CAUSE: &str = "cancelled by the user";

/// How long a run may wait for its execution to appear before the sweep
/// counts it as never started (a process that died between recording the run
/// and starting its workflow).
const START_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Finished with the model's closing text.
    Succeeded {
        /// What the model said it did.
        summary: String,
    },
    /// Stopped by an error the person should see.
    Failed {
        /// The reason, in words for the person.
        error: String,
    },
    /// Stopped by the person.
    Cancelled,
}

/// What a person sends to start a run: text, and optionally checked images
/// (stored once the run is accepted) and the element they selected.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    /// The message.
    pub text: String,
    /// Attached images, checked and scaled (see `crate::images::prepare`).
    pub images: Vec<crate::images::PreparedImage>,
    /// The element selected in the preview, if any.
    pub selection: Option<crate::domain::ElementSelection>,
}

impl From<&str> for Prompt {
    fn from(text: &str) -> Self {
        Prompt {
            text: text.to_string(),
            ..Prompt::default()
        }
    }
}

impl From<&String> for Prompt {
    fn from(text: &String) -> Self {
        Prompt::from(text.as_str())
    }
}

impl Prompt {
    /// The message's content blocks: images first (as Anthropic recommends),
    /// then the selection, then the text.
    fn content(&self, images: Vec<crate::domain::ImageRef>) -> Vec<ContentBlock> {
        let mut content: Vec<ContentBlock> = images
            .into_iter()
            .map(|r| ContentBlock::Image {
                source: crate::domain::ImageSource::Stored(r),
            })
            .collect();
        if let Some(selection) = &self.selection {
            content.push(ContentBlock::Selection {
                selection: selection.clone(),
            });
        }
        content.push(ContentBlock::Text {
            text: self.text.clone(),
        });
        content
    }
}

/// Reports that a running run entered `phase`, with a line for people.
pub async fn report_phase(
    store: &dyn Store,
    run_id: &str,
    phase: &str,
    message: &str,
) -> Result<()> {
    store
        .append_event(
            run_id,
            RunEventKind::Status,
            &json!({ "status": "running", "phase": phase, "message": message }),
        )
        .await?;
    Ok(())
}

/// Creates a project for `owner` and starts its first generation from
/// `prompt`. A project whose first run could not start is deleted again: it
/// would be of no use to anyone.
pub async fn create_and_start(
    state: &AppState,
    owner: &str,
    prompt: impl Into<Prompt>,
    template: &str,
) -> Result<(Project, Run)> {
    let prompt = prompt.into();
    let project = crate::project::create(state, owner, &prompt.text, template).await?;
    let run = match start_run(state, &project, prompt).await {
        Ok(run) => run,
        Err(e) => {
            let _ = state.store.soft_delete_project(&project.id).await;
            return Err(e);
        }
    };
    let project = state
        .store
        .get_project(&project.id)
        .await?
        .ok_or_else(|| Error::Internal("project vanished".into()))?;
    Ok((project, run))
}

/// Starts a generation for `message` on `project`: checks the caller's caps,
/// takes the run lock (409 if a run is active), records the message and starts
/// the workflow. On any failure after the lock, the run is failed and the lock
/// released, so nothing is left half-started.
pub async fn start_run(
    state: &AppState,
    project: &Project,
    prompt: impl Into<Prompt>,
) -> Result<Run> {
    let prompt = prompt.into();
    let message = prompt.text.as_str();
    let cfg = &state.config;
    if state.store.count_active_runs(&project.owner).await? >= cfg.max_active_runs_per_user {
        return Err(Error::QuotaExceeded(format!(
            "you already have {} generations running; wait for one to finish",
            cfg.max_active_runs_per_user
        )));
    }
    if let Some(crate::agent::StopReason::DailyCost { limit, spent }) =
        crate::agent::safety::check_daily_budget(&*state.store, &project.owner, cfg).await?
    {
        return Err(Error::QuotaExceeded(format!(
            "you have used ${spent:.2} of your ${limit:.2} daily model budget; it resets at 00:00 UTC"
        )));
    }
    // A hibernated project is not woken here: that can take longer than an
    // API request may (pod, volume, restore). The run's EnsureSandbox restores
    // the latest snapshot before the agent's first step.
    let run = Run::new(&project.id, &project.owner, message);
    if !acquire_run_lock(state, &project.id, &run.id).await? {
        let holder = state.store.run_lock_holder(&project.id).await?;
        return Err(Error::Conflict(
            if holder
                .as_deref()
                .is_some_and(crate::snapshot::is_maintenance_holder)
            {
                "the project is being saved or woken up; try again in a few seconds".into()
            } else {
                "a generation is already running for this project; wait for it or cancel it".into()
            },
        ));
    }
    let span = tracing::info_span!("start_run", project_id = %project.id, run_id = %run.id);
    let started = async {
        state.store.create_run(&run).await?;
        let images = crate::images::store(&*state.blobs, &project.id, &prompt.images).await?;
        state
            .store
            .append_messages(
                &project.id,
                &[NewMessage {
                    run_id: Some(run.id.clone()),
                    role: Role::User,
                    content: prompt.content(images),
                    tool_calls: vec![],
                    file_diffs: vec![],
                }],
            )
            .await?;
        move_project(state, &project.id, ProjectStatus::Building, None).await?;
        state.store.touch_project(&project.id, now()).await?;
        state
            .store
            .append_event(
                &run.id,
                RunEventKind::Status,
                &json!({ "status": "queued" }),
            )
            .await?;
        state
            .workflow
            .start(
                GENERATION,
                &run.id,
                json!({
                    "run_id": run.id,
                    "project_id": project.id,
                    "max_fix_attempts": cfg.max_fix_attempts,
                }),
            )
            .await
    }
    .instrument(span.clone())
    .await;
    if let Err(e) = started {
        span.in_scope(|| tracing::error!(error = %e, "could not start the run"));
        let _ = finish_run(
            state,
            &run.id,
            RunEnd::Failed {
                error: format!("could not start: {e}"),
            },
        )
        .await;
        let _ = state.store.release_run_lock(&project.id, &run.id).await;
        return Err(e);
    }
    Ok(run)
}

/// Ends a run: records the outcome, sets the project's status, releases the
/// run lock and appends the `done` event last (so a client that sees it reads
/// a consistent state). Ending an already-ended run does nothing.
pub async fn finish_run(state: &Backends, run_id: &str, end: RunEnd) -> Result<Run> {
    let mut run = state
        .store
        .get_run(run_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("run {run_id} not found")))?;
    if run.status.is_terminal() {
        return Ok(run);
    }
    let has_version = !state.store.list_versions(&run.project_id).await?.is_empty();
    let (status, project_status, project_error) = match &end {
        RunEnd::Succeeded { summary } => {
            run.summary = Some(summary.clone());
            (RunStatus::Succeeded, ProjectStatus::Ready, None)
        }
        RunEnd::Failed { error } => {
            run.error = Some(error.clone());
            (
                RunStatus::Failed,
                ProjectStatus::Failed,
                Some(error.clone()),
            )
        }
        RunEnd::Cancelled => {
            run.stop_reason = Some("cancelled".into());
            if has_version {
                (RunStatus::Cancelled, ProjectStatus::Ready, None)
            } else {
                (
                    RunStatus::Cancelled,
                    ProjectStatus::Failed,
                    Some("cancelled before the first version".to_string()),
                )
            }
        }
    };
    run.status = status;
    run.finished_at = Some(now());
    state.store.update_run(&run).await?;
    if let Err(e) = move_project(
        state,
        &run.project_id,
        project_status,
        project_error.as_deref(),
    )
    .await
    {
        // A project deleted meanwhile stays deleted; the run still ends.
        tracing::warn!(project_id = %run.project_id, run_id, error = %e, "project status not updated");
    }
    state.store.touch_project(&run.project_id, now()).await?;
    state
        .store
        .release_run_lock(&run.project_id, run_id)
        .await?;
    state
        .store
        .append_event(
            run_id,
            RunEventKind::Done,
            &json!({
                "status": run.status,
                "summary": run.summary,
                "error": run.error,
            }),
        )
        .await?;
    Ok(run)
}

/// Stops a run's workflow and ends it as cancelled (an ended run is returned as is).
pub async fn cancel_run(state: &AppState, run_id: &str) -> Result<Run> {
    let run = state
        .store
        .get_run(run_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("run {run_id} not found")))?;
    if run.status.is_terminal() {
        return Ok(run);
    }
    state.workflow.stop(run_id, CANCEL_CAUSE).await?;
    finish_run(state, run_id, RunEnd::Cancelled).await
}

/// Ends the run of a generation execution that has ended without ending it:
/// aborted in the Step Functions console, timed out, or failed where even
/// MarkFailed could not run. Its status, the reason, the lock and the
/// watchers' `done` event are settled as if MarkFailed had run. Runs that
/// ended already, executions still running and other state machines are left
/// alone. Called by the EventBridge rule on Step Functions status changes, by
/// the local interpreter at the end of every execution, and by the sweep.
pub async fn execution_ended(state: &Backends, execution: &Execution) -> Result<Option<Run>> {
    if execution.state_machine != GENERATION || execution.status == ExecutionStatus::Running {
        return Ok(None);
    }
    let Some(run) = state.store.get_run(&execution.id).await? else {
        return Ok(None);
    };
    if run.status.is_terminal() {
        return Ok(None);
    }
    let end = ended_as(execution);
    tracing::warn!(
        project_id = %run.project_id,
        run_id = %run.id,
        status = execution.status.as_str(),
        end = ?end,
        "the run's execution ended before the run did; finishing it"
    );
    finish_run(state, &run.id, end).await.map(Some)
}

/// How a run ends when its execution ended on its own.
fn ended_as(execution: &Execution) -> RunEnd {
    // Step Functions reports "Error: cause"; the interpreter "Aborted: cause".
    let detail = execution.error.as_deref().unwrap_or("").trim();
    let cause = detail
        .split_once(": ")
        .map_or(detail, |(_, c)| c)
        .trim()
        .to_string();
    let error = match execution.status {
        ExecutionStatus::Aborted if cause == CANCEL_CAUSE => return RunEnd::Cancelled,
        ExecutionStatus::Aborted if cause.is_empty() => {
            "The run was stopped from outside Apna.".to_string()
        }
        ExecutionStatus::Aborted => format!("The run was stopped from outside Apna: {cause}"),
        ExecutionStatus::TimedOut => {
            "The run took longer than its workflow allows and was stopped.".to_string()
        }
        ExecutionStatus::Failed if detail.is_empty() => "The run's workflow failed.".to_string(),
        ExecutionStatus::Failed => format!("The run's workflow failed: {detail}"),
        ExecutionStatus::Succeeded | ExecutionStatus::Running => {
            "The run's workflow ended without recording the run's end.".to_string()
        }
    };
    RunEnd::Failed { error }
}

/// What [`reconcile_runs`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    /// Runs finished because their execution had ended or never started.
    pub finished: Vec<String>,
    /// Projects whose run had ended but whose lock or status had not followed.
    pub settled: Vec<String>,
}

/// The sweep's safety net for runs whose end was never recorded (an
/// EventBridge event lost, a process that died between two writes): every
/// project still `building` is checked against its run's execution, and a run
/// whose execution has ended (or never started) is finished.
pub async fn reconcile_runs(state: &AppState, limit: i64) -> Result<Reconciled> {
    let mut report = Reconciled::default();
    for project in state.store.building_projects(limit).await? {
        let Some(holder) = state.store.run_lock_holder(&project.id).await? else {
            continue;
        };
        if crate::snapshot::is_maintenance_holder(&holder) {
            continue;
        }
        let Some(run) = state.store.get_run(&holder).await? else {
            continue;
        };
        let span = tracing::info_span!("reconcile", project_id = %project.id, run_id = %run.id);
        let outcome = async {
            if run.status.is_terminal() {
                // The run ended but its finish stopped before the lock: redo the tail.
                settle(state, &run).await?;
                return Ok::<_, Error>(Some(false));
            }
            match state.workflow.describe(&run.id).await? {
                Some(e) if e.status == ExecutionStatus::Running => Ok(None),
                Some(e) => Ok(execution_ended(state, &e).await?.map(|_| true)),
                None if now() - run.created_at > START_GRACE => {
                    finish_run(
                        state,
                        &run.id,
                        RunEnd::Failed {
                            error: "The run's workflow never started.".into(),
                        },
                    )
                    .await?;
                    Ok(Some(true))
                }
                None => Ok(None),
            }
        }
        .instrument(span.clone())
        .await;
        match outcome {
            Ok(Some(true)) => report.finished.push(run.id),
            Ok(Some(false)) => report.settled.push(project.id),
            Ok(None) => {}
            Err(e) => span.in_scope(|| tracing::warn!(error = %e, "could not reconcile the run")),
        }
    }
    Ok(report)
}

/// Puts a project whose run has ended back where [`finish_run`] would have:
/// out of `building`, its lock released.
async fn settle(state: &Backends, run: &Run) -> Result<()> {
    let to = match run.status {
        RunStatus::Succeeded => ProjectStatus::Ready,
        RunStatus::Cancelled if !state.store.list_versions(&run.project_id).await?.is_empty() => {
            ProjectStatus::Ready
        }
        _ => ProjectStatus::Failed,
    };
    if let Err(e) = move_project(state, &run.project_id, to, run.error.as_deref()).await {
        tracing::warn!(error = %e, "project status not updated");
    }
    state
        .store
        .release_run_lock(&run.project_id, &run.id)
        .await?;
    Ok(())
}

/// Creates a project for the single local user from `prompt`, runs its first
/// generation to the end and reports each event worth a line through
/// `progress` (the CLI's `apna generate`). Returns the finished run.
pub async fn generate(state: &AppState, prompt: &str, progress: impl Fn(String)) -> Result<Run> {
    let (project, run) = create_and_start(
        state,
        crate::domain::LOCAL_USER,
        prompt,
        crate::domain::DEFAULT_TEMPLATE,
    )
    .await?;
    progress(format!("project {} created", project.id));
    follow(&*state.store, &run.id, |ev| {
        if let Some(line) = describe_event(ev) {
            progress(line);
        }
    })
    .await
}

/// Reads a run's events as they come, handing each to `on_event`, until its
/// terminal event; returns the run as it ended.
pub async fn follow(
    store: &dyn Store,
    run_id: &str,
    mut on_event: impl FnMut(&RunEvent),
) -> Result<Run> {
    let mut after = 0;
    loop {
        let events = store.list_events(run_id, after, 200).await?;
        for ev in &events {
            after = ev.seq;
            on_event(ev);
        }
        if events.iter().any(RunEvent::is_terminal) {
            break;
        }
        if events.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    store
        .get_run(run_id)
        .await?
        .ok_or_else(|| Error::Internal("run vanished".into()))
}

/// One line for a person reading a run's progress, or `None` for events not worth a line.
pub fn describe_event(ev: &RunEvent) -> Option<String> {
    let s = |k: &str| {
        ev.data
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    match ev.kind {
        RunEventKind::Status => Some(
            format!("· {}", s("message"))
                .trim_end_matches(" ")
                .to_string(),
        )
        .filter(|l| l != "·"),
        RunEventKind::Text => {
            Some(format!("agent: {}", s("text").trim())).filter(|l| l != "agent: ")
        }
        RunEventKind::Tool => Some(format!("  {}", s("summary"))),
        RunEventKind::Diagnostics => {
            let n = ev
                .data
                .get("items")
                .and_then(|v| v.as_array())
                .map_or(0, Vec::len);
            let check = if ev.data.get("check").and_then(|v| v.as_str()) == Some("browser") {
                "browser check"
            } else {
                "build check"
            };
            Some(
                if ev.data.get("smoke").and_then(|v| v.as_str()) == Some("skipped") {
                    format!("– {check} skipped: {}", s("note").trim())
                } else if n == 0 {
                    format!("✓ {check} passed")
                } else {
                    format!("✗ {check} found {n} problem(s)")
                },
            )
        }
        RunEventKind::Done => Some(format!(
            "done: {}",
            ev.data
                .get("status")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
        )),
        RunEventKind::Delta | RunEventKind::Usage | RunEventKind::Error => None,
    }
}

/// Takes the project's run lock for `run_id`. Light sleep holds it for the
/// moment it takes to stop a dev server: a message arriving then waits that
/// out (up to 3 s) instead of being refused.
async fn acquire_run_lock(state: &AppState, project_id: &str, run_id: &str) -> Result<bool> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        if state.store.acquire_run_lock(project_id, run_id).await? {
            return Ok(true);
        }
        let sleeping = state
            .store
            .run_lock_holder(project_id)
            .await?
            .is_some_and(|h| crate::snapshot::is_sleep_holder(&h));
        if !sleeping || std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
