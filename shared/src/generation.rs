//! Runs from start to end, the same way from every entry point (API, CLI,
//! workflow tasks): who may start one, what is written first, and how a run
//! ends — succeeded, failed or cancelled — releasing the project's run lock.

use serde_json::json;

use crate::app::AppState;
use crate::domain::{now, ContentBlock, NewMessage, Project, ProjectStatus, Role, Run, RunStatus};
use crate::error::{Error, Result};

/// The state machine every generation runs.
pub const STATE_MACHINE: &str = "generation";

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Finished; `summary` is the model's closing text.
    Succeeded {
        /// Closing summary.
        summary: String,
    },
    /// Stopped by an error the person should see.
    Failed {
        /// Why.
        error: String,
    },
    /// Stopped by the person.
    Cancelled,
}

/// Starts a generation for `message` on `project`: checks the caller's caps,
/// takes the run lock (409 if a run is active), records the message and starts
/// the workflow. On any failure after the lock, the run is failed and the lock
/// released, so nothing is left half-started.
pub async fn start_run(state: &AppState, project: &Project, message: &str) -> Result<Run> {
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
    if project.status == ProjectStatus::Hibernated {
        // Wake first (restore + dependencies), so the run starts on the real tree.
        crate::snapshot::wake_project(&*state.store, &*state.blobs, &*state.sandboxes, &project.id)
            .await?;
    }
    let run = Run::new(&project.id, &project.owner, message);
    if !state.store.acquire_run_lock(&project.id, &run.id).await? {
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
    let _guard = span.enter();
    let started = async {
        state.store.create_run(&run).await?;
        state
            .store
            .append_messages(
                &project.id,
                &[NewMessage {
                    run_id: Some(run.id.clone()),
                    role: Role::User,
                    content: vec![ContentBlock::Text {
                        text: message.to_string(),
                    }],
                    tool_calls: vec![],
                    file_diffs: vec![],
                }],
            )
            .await?;
        move_project(state, &project.id, ProjectStatus::Building, None).await?;
        state.store.touch_project(&project.id, now()).await?;
        state
            .store
            .append_event(&run.id, "status", &json!({ "status": "queued" }))
            .await?;
        state
            .workflow()?
            .start(
                STATE_MACHINE,
                &run.id,
                json!({
                    "run_id": run.id,
                    "project_id": project.id,
                    "max_fix_attempts": cfg.max_fix_attempts,
                }),
            )
            .await
    }
    .await;
    if let Err(e) = started {
        tracing::error!(error = %e, "could not start the run");
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

/// Moves a project to `to` from whatever status it has now, if allowed.
/// Returns the status it had. Retries when the status changes underneath.
pub async fn move_project(
    state: &AppState,
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

/// Ends a run: records the outcome, sets the project's status, releases the
/// run lock and appends the `done` event last (so a client that sees it reads
/// a consistent state). Ending an already-ended run does nothing.
pub async fn finish_run(state: &AppState, run_id: &str, end: RunEnd) -> Result<Run> {
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
            "done",
            &json!({
                "status": run.status,
                "summary": run.summary,
                "error": run.error,
            }),
        )
        .await?;
    Ok(run)
}

/// Creates a project for the single local user from `prompt`, runs its first
/// generation to the end and reports each event through `progress` (the CLI's
/// `apna generate`). Returns the finished run.
pub async fn generate(state: &AppState, prompt: &str, progress: impl Fn(String)) -> Result<Run> {
    let owner = crate::api::auth::LOCAL_USER;
    state
        .store
        .upsert_user(&crate::domain::User {
            id: owner.to_string(),
            email: None,
            created_at: now(),
        })
        .await?;
    let project = Project::new(owner, prompt, crate::api::projects::TEMPLATE);
    state.store.create_project(&project).await?;
    progress(format!("project {} created", project.id));
    let run = start_run(state, &project, prompt).await?;
    let mut after = 0;
    loop {
        let events = state.store.list_events(&run.id, after, 200).await?;
        for ev in &events {
            after = ev.seq;
            if let Some(line) = describe_event(ev) {
                progress(line);
            }
        }
        if events.iter().any(|e| e.kind == "done") {
            break;
        }
        if events.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    state
        .store
        .get_run(&run.id)
        .await?
        .ok_or_else(|| Error::Internal("run vanished".into()))
}

/// One line for a person reading a run's progress, or `None` for events not worth a line.
pub fn describe_event(ev: &crate::domain::RunEvent) -> Option<String> {
    let s = |k: &str| {
        ev.data
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    match ev.kind.as_str() {
        "status" => Some(
            format!("· {}", s("message"))
                .trim_end_matches(" ")
                .to_string(),
        )
        .filter(|l| l != "·"),
        "text" => Some(format!("agent: {}", s("text").trim())).filter(|l| l != "agent: "),
        "tool" => Some(format!("  {}", s("summary"))),
        "diagnostics" => {
            let n = ev
                .data
                .get("items")
                .and_then(|v| v.as_array())
                .map_or(0, Vec::len);
            Some(if n == 0 {
                "✓ build check passed".to_string()
            } else {
                format!("✗ build check found {n} problem(s)")
            })
        }
        "done" => Some(format!(
            "done: {}",
            ev.data
                .get("status")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
        )),
        _ => None,
    }
}
