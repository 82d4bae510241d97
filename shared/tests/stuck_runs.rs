//! A run whose execution ends without the run ending (stopped in the Step
//! Functions console, timed out, failed where MarkFailed could not run) must
//! not leave its project `building` and every chat answered 409. Three ends
//! finish it: the EventBridge rule's function on AWS, the interpreter's
//! end-of-execution hook locally, and the sweep's reconciliation on both.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apna::app::{AppState, Backends};
use apna::domain::{ProjectStatus, RunStatus};
use apna::run::CANCEL_CAUSE;
use apna::tasks::TaskRouter;
use apna::testing::lambda::{http_event, invoke, status_change_event};
use apna::testing::memory::MemoryProvider;
use apna::testing::sfn::{create_state_machine, WAIT_AN_HOUR};
use apna::workflow::{LocalWorkflow, StepFunctionsWorkflow, Workflow};
use axum::http::StatusCode;
use serde_json::{json, Value};

async fn backends(dir: &std::path::Path, store: Arc<dyn apna::store::Store>) -> Backends {
    let config = apna::testing::fixtures::config(dir, &[]);
    let blobs = apna::blob::FsBlobStore::new(dir.join("blobs")).await;
    Backends::new(
        config,
        store,
        Arc::new(blobs.unwrap()),
        Arc::new(MemoryProvider::default()),
        Arc::new(apna::testing::model::NoModel),
    )
}

/// Creates a project for alice through the create function; returns (project, run).
async fn create(state: &AppState) -> (String, String) {
    let a = invoke(
        "api-create-project",
        state,
        &http_event(
            "POST",
            "/api/projects",
            Some("alice"),
            &[],
            Some(json!({ "prompt": "a todo list" })),
            json!({}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    (
        a.body["project"]["id"].as_str().unwrap().to_string(),
        a.body["run_id"].as_str().unwrap().to_string(),
    )
}

/// POSTs a chat message through the chat function; returns the status.
async fn chat(state: &AppState, project: &str) -> (StatusCode, Value) {
    let a = invoke(
        "api-chat",
        state,
        &http_event(
            "POST",
            &format!("/api/projects/{project}/chat"),
            Some("alice"),
            &[],
            Some(json!({ "message": "and a dark mode" })),
            json!({ "id": project }),
        ),
    )
    .await;
    (a.status, a.body)
}

/// The run failed with a reason naming `words`, the project is out of
/// `building`, its lock is free and the watchers got `done`.
async fn assert_finished(state: &AppState, project: &str, run: &str, words: &str) {
    let r = state.store.get_run(run).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains(words),
        "reason {error:?} should say {words:?}"
    );
    let p = state.store.get_project(project).await.unwrap().unwrap();
    assert_eq!(p.status, ProjectStatus::Failed);
    assert_eq!(state.store.run_lock_holder(project).await.unwrap(), None);
    let events = state.store.list_events(run, 0, 100).await.unwrap();
    assert!(
        events.last().is_some_and(|e| e.is_terminal()),
        "done is the last event"
    );
}

struct Moto {
    state: AppState,
    client: aws_sdk_sfn::Client,
    generation: String,
    _dir: tempfile::TempDir,
}

async fn moto() -> Option<Moto> {
    let url = apna::testing::services::moto_url()?;
    // These tests need executions to stay RUNNING until stopped; the ASL
    // tests (another binary, same moto in tests/run) turn execution on.
    apna::testing::sfn::configure_moto(
        &url,
        serde_json::json!({"stepfunctions": {"execute_state_machine": false}}),
    )
    .await;
    let client = apna::testing::sfn::client(&url);
    let generation = create_state_machine(&client, "apna-generation", WAIT_AN_HOUR).await;
    let dir = tempfile::tempdir().unwrap();
    let mut b = backends(dir.path(), apna::testing::fixtures::memory_store().await).await;
    // The ARNs the template gives every function that reads executions.
    let mut config = (*b.config).clone();
    config.state_machine_arns = vec![("generation".into(), generation.clone())];
    b.config = Arc::new(config);
    let machines: HashMap<_, _> = b.config.state_machine_arns.iter().cloned().collect();
    let workflow = Arc::new(StepFunctionsWorkflow::new(client.clone(), machines));
    Some(Moto {
        state: AppState::new(b, workflow),
        client,
        generation,
        _dir: dir,
    })
}

impl Moto {
    async fn stop(&self, run: &str, cause: &str) {
        let arn = format!(
            "{}:{run}",
            self.generation.replacen(":stateMachine:", ":execution:", 1)
        );
        self.client
            .stop_execution()
            .execution_arn(arn)
            .cause(cause)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn stopped_on_step_functions_then_the_eventbridge_rule_finishes_the_run() {
    let Some(m) = moto().await else { return };
    let (project, run) = create(&m.state).await;
    assert_eq!(chat(&m.state, &project).await.0, StatusCode::CONFLICT);
    m.stop(&run, "stopped from the console").await;
    let d = m.state.workflow.describe(&run).await.unwrap().unwrap();
    assert_eq!(d.status, apna::domain::ExecutionStatus::Aborted);

    // What EventBridge delivers to the rule's target.
    let ev = status_change_event(
        &m.generation,
        &run,
        "ABORTED",
        None,
        Some("stopped from the console"),
    );
    let out = apna::lambda::handle_execution_event(&m.state, ev)
        .await
        .unwrap();
    assert_eq!(out["run_finished"], "failed", "{out}");
    assert_finished(&m.state, &project, &run, "stopped from the console").await;
    // Delivered twice (EventBridge is at least once): nothing more happens.
    let again = status_change_event(&m.generation, &run, "ABORTED", None, None);
    let out = apna::lambda::handle_execution_event(&m.state, again)
        .await
        .unwrap();
    assert_eq!(out["run_finished"], Value::Null);
    let (status, body) = chat(&m.state, &project).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn the_eventbridge_rule_tells_a_cancel_and_a_timeout_apart() {
    let Some(m) = moto().await else { return };
    let (_, run) = create(&m.state).await;
    let ev = status_change_event(&m.generation, &run, "ABORTED", None, Some(CANCEL_CAUSE));
    apna::lambda::handle_execution_event(&m.state, ev)
        .await
        .unwrap();
    let r = m.state.store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);

    let (project, run) = create(&m.state).await;
    let ev = status_change_event(
        &m.generation,
        &run,
        "TIMED_OUT",
        Some("States.Timeout"),
        None,
    );
    apna::lambda::handle_execution_event(&m.state, ev)
        .await
        .unwrap();
    assert_finished(&m.state, &project, &run, "took longer").await;

    // Other state machines' executions, and unknown ones, are left alone.
    let ev = status_change_event(
        "arn:aws:states:us-east-1:123456789012:stateMachine:apna-wake",
        "wake-x-1",
        "FAILED",
        Some("Apna.Sandbox"),
        Some("no nodes"),
    );
    let out = apna::lambda::handle_execution_event(&m.state, ev)
        .await
        .unwrap();
    assert_eq!(out["run_finished"], Value::Null);
    let bad = lambda_runtime::LambdaEvent::new(json!({"detail": {"nope": 1}}), Default::default());
    assert!(apna::lambda::handle_execution_event(&m.state, bad)
        .await
        .is_err());
}

#[tokio::test]
async fn stopped_on_step_functions_with_the_event_lost_then_the_sweep_finishes_the_run() {
    let Some(m) = moto().await else { return };
    let (project, run) = create(&m.state).await;
    let (running, running_run) = create(&m.state).await;
    m.stop(&run, "stopped from the console").await;

    let report = apna::run::reconcile_runs(&m.state, 100).await.unwrap();
    assert_eq!(report.finished, vec![run.clone()], "{report:?}");
    // moto's DescribeExecution leaves out the stop's cause (AWS reports it).
    assert_finished(&m.state, &project, &run, "stopped from outside Apna").await;
    // The run whose execution still runs is left alone.
    let r = m.state.store.get_run(&running_run).await.unwrap().unwrap();
    assert!(!r.status.is_terminal());
    assert_eq!(chat(&m.state, &running).await.0, StatusCode::CONFLICT);
    assert_eq!(chat(&m.state, &project).await.0, StatusCode::ACCEPTED);
    // A second sweep finds nothing more to do.
    let report = apna::run::reconcile_runs(&m.state, 100).await.unwrap();
    assert_eq!(report, Default::default());
}

/// `apna serve`'s workflow over `definition` as the generation state machine,
/// with the end-of-execution hook `apna serve` installs.
async fn local(definition: &str) -> (AppState, Arc<LocalWorkflow>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = apna::testing::fixtures::memory_store().await;
    let b = backends(dir.path(), store.clone()).await;
    let workflow = Arc::new(
        LocalWorkflow::new(
            store,
            Arc::new(TaskRouter::new(b.clone())),
            [("generation", definition)],
        )
        .unwrap()
        .on_end(apna::server::run_finisher(b.clone())),
    );
    (AppState::new(b, workflow.clone()), workflow, dir)
}

#[tokio::test]
async fn aborted_in_the_local_interpreter_then_its_hook_finishes_the_run() {
    let (state, workflow, _dir) = local(WAIT_AN_HOUR).await;
    let (project, run) = create(&state).await;
    assert_eq!(chat(&state, &project).await.0, StatusCode::CONFLICT);
    workflow
        .stop(&run, "stopped by the operator")
        .await
        .unwrap();
    assert_finished(&state, &project, &run, "stopped by the operator").await;
    assert_eq!(chat(&state, &project).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn failed_or_timed_out_in_the_local_interpreter_then_its_hook_finishes_the_run() {
    let fails = r#"{"StartAt":"Boom","States":{"Boom":{"Type":"Fail","Error":"Apna.Sandbox","Cause":"the node is gone"}}}"#;
    let (state, workflow, _dir) = local(fails).await;
    let (project, run) = create(&state).await;
    workflow.wait(&run).await.unwrap();
    assert_finished(&state, &project, &run, "the node is gone").await;

    let slow = r#"{"StartAt":"Hold","TimeoutSeconds":1,"States":{"Hold":{"Type":"Wait","Seconds":30,"End":true}}}"#;
    let (state, workflow, _dir) = local(slow).await;
    let (project, run) = create(&state).await;
    tokio::time::timeout(Duration::from_secs(20), workflow.wait(&run))
        .await
        .expect("the interpreter times the execution out")
        .unwrap();
    assert_finished(&state, &project, &run, "took longer").await;
    assert_eq!(chat(&state, &project).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_local_sweep_finishes_a_run_whose_end_was_never_recorded() {
    let (state, workflow, _dir) = local(WAIT_AN_HOUR).await;
    let (project, run) = create(&state).await;
    // The process died after the execution ended but before its hook ran:
    // the record says ABORTED, the run still says running.
    workflow.stop(&run, "power cut").await.unwrap();
    let mut r = state.store.get_run(&run).await.unwrap().unwrap();
    r.status = RunStatus::Running;
    r.error = None;
    r.finished_at = None;
    state.store.update_run(&r).await.unwrap();
    state
        .store
        .set_project_status(
            &project,
            ProjectStatus::Failed,
            ProjectStatus::Building,
            None,
        )
        .await
        .unwrap();
    assert!(state.store.acquire_run_lock(&project, &run).await.unwrap());

    let report = apna::run::reconcile_runs(&state, 100).await.unwrap();
    assert_eq!(report.finished, vec![run.clone()]);
    let r = state.store.get_run(&run).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(state.store.run_lock_holder(&project).await.unwrap(), None);
    assert_eq!(chat(&state, &project).await.0, StatusCode::ACCEPTED);
}
