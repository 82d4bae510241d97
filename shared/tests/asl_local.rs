//! `LocalWorkflow` (the embedded `trait Workflow` backend): start, describe,
//! history, stop, and resuming executions after a simulated crash.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use apna::domain::{Execution, ExecutionStatus};
use apna::store::{ExecutionLog, SqliteStore, Store};
use apna::testing::fixtures::memory_store as store;
use apna::testing::workflow::{entered, types, MemoryExecutionLog, ScriptInvoker};
use apna::workflow::asl::{Executor, StateMachine, StopSignal, TaskFailure};
use apna::workflow::{LocalWorkflow, Workflow};
use serde_json::{json, Value};
use tokio::sync::Notify;

const THREE_TASKS: &str = r#"{
  "StartAt": "A",
  "States": {
    "A": {"Type": "Task", "Resource": "a", "ResultPath": "$.a", "Next": "B"},
    "B": {"Type": "Task", "Resource": "b", "ResultPath": "$.b", "Next": "C"},
    "C": {"Type": "Task", "Resource": "c", "ResultPath": "$.c", "End": true}
  }
}"#;

const LONG_WAIT: &str = r#"{
  "StartAt": "W",
  "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}
}"#;

/// Returns `{"from": resource}` for every task.
fn tagging() -> Arc<ScriptInvoker> {
    ScriptInvoker::new(|r, _, _| Box::pin(async move { Ok(json!({ "from": r })) }))
}

#[tokio::test]
async fn start_describe_history_and_duplicates() {
    let store = store().await;
    let invoker = tagging();
    let wf = LocalWorkflow::new(store.clone(), invoker.clone(), [("three", THREE_TASKS)]).unwrap();
    assert_eq!(wf.backend(), "local");
    wf.start("three", "run-1", json!({"x": 1})).await.unwrap();
    let err = wf.start("three", "run-1", json!({})).await.unwrap_err();
    assert_eq!(err.code(), "conflict");
    let err = wf.start("nope", "run-2", json!({})).await.unwrap_err();
    assert_eq!(err.code(), "not_found");

    let done = wf.wait("run-1").await.unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    let described = wf.describe("run-1").await.unwrap().unwrap();
    assert_eq!(described, done);
    assert_eq!(described.state_machine, "three");
    assert_eq!(described.checkpoint, None);
    assert_eq!(
        described.output,
        Some(json!({"x": 1, "a": {"from": "a"}, "b": {"from": "b"}, "c": {"from": "c"}}))
    );
    let history = wf.history("run-1").await.unwrap();
    assert_eq!(entered(&history), ["A", "B", "C"]);
    assert_eq!(history.first().unwrap().event_type, "ExecutionStarted");
    assert_eq!(history.last().unwrap().event_type, "ExecutionSucceeded");
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(wf.describe("unknown").await.unwrap().is_none());
    assert_eq!(invoker.calls().len(), 3);
}

#[tokio::test]
async fn stop_aborts_waits_and_running_tasks() {
    let store = store().await;
    let blocked = ScriptInvoker::new(|_, _, _| Box::pin(futures::future::pending()));
    let wf = LocalWorkflow::new(
        store.clone(),
        blocked.clone(),
        [("wait", LONG_WAIT), ("three", THREE_TASKS)],
    )
    .unwrap();
    wf.start("wait", "w-1", json!({})).await.unwrap();
    wf.start("three", "t-1", json!({})).await.unwrap();
    // Let both reach their blocking point.
    while blocked.calls().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    wf.stop("w-1", "user cancelled").await.unwrap();
    wf.stop("t-1", "user cancelled").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    for name in ["w-1", "t-1"] {
        let exec = wf.describe(name).await.unwrap().unwrap();
        assert_eq!(exec.status, ExecutionStatus::Aborted, "{name}");
        assert!(exec.error.unwrap().contains("user cancelled"));
        let history = wf.history(name).await.unwrap();
        let last = history.last().unwrap();
        assert_eq!(last.event_type, "ExecutionAborted");
        assert_eq!(last.data["cause"], "user cancelled");
    }
    // Stopping again is a no-op; stopping an unknown execution is NotFound.
    wf.stop("w-1", "again").await.unwrap();
    assert_eq!(
        wf.describe("w-1").await.unwrap().unwrap().error.unwrap(),
        "Aborted: user cancelled"
    );
    assert_eq!(
        wf.stop("missing", "x").await.unwrap_err().code(),
        "not_found"
    );
}

#[tokio::test]
async fn resume_after_a_crash_skips_completed_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("apna.db").display());
    let machine = StateMachine::parse(THREE_TASKS).unwrap();

    // First process: A completes, B is in progress when the process dies.
    let reached_b = Arc::new(Notify::new());
    let signal = reached_b.clone();
    let first = ScriptInvoker::new(move |r, _, _| {
        let signal = signal.clone();
        Box::pin(async move {
            if r == "b" {
                signal.notify_one();
                futures::future::pending::<()>().await;
            }
            Ok(json!({ "from": r, "process": 1 }))
        })
    });
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await.unwrap());
        let executor = Executor::new(store.clone(), first.clone());
        let crashed = tokio::spawn(async move {
            executor
                .start(&machine, "three", "run-1", json!({"x": 1}))
                .await
        });
        reached_b.notified().await;
        crashed.abort();
        assert!(crashed.await.unwrap_err().is_cancelled());
        let exec = store.get_execution("run-1").await.unwrap().unwrap();
        assert_eq!(exec.status, ExecutionStatus::Running);
        assert_eq!(exec.checkpoint.as_ref().unwrap()["state"], "B");
    }
    assert_eq!(first.count("a"), 1);

    // Second process: same database, fresh workflow.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await.unwrap());
    let second = tagging();
    let wf = LocalWorkflow::new(store.clone(), second.clone(), [("three", THREE_TASKS)]).unwrap();
    let report = wf.resume_incomplete().await.unwrap();
    assert_eq!(report.resumed, ["run-1"]);
    assert!(report.failed.is_empty());
    let exec = wf.wait("run-1").await.unwrap().unwrap();
    assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
    assert_eq!(
        second.count("a"),
        0,
        "A completed before the crash and must not run again"
    );
    assert_eq!(second.count("b"), 1);
    assert_eq!(second.count("c"), 1);
    assert_eq!(
        exec.output,
        Some(
            json!({"x": 1, "a": {"from": "a", "process": 1}, "b": {"from": "b"}, "c": {"from": "c"}})
        )
    );
    let history = wf.history("run-1").await.unwrap();
    assert_eq!(entered(&history), ["A", "B", "B", "C"]);
    assert!(types(&history).contains(&"ExecutionResumed"));
    // Nothing left to resume.
    assert_eq!(wf.resume_incomplete().await.unwrap(), Default::default());
}

fn running(id: &str, machine: &str, checkpoint: Option<Value>) -> Execution {
    let t = apna::domain::now();
    Execution {
        id: id.into(),
        state_machine: machine.into(),
        status: ExecutionStatus::Running,
        input: json!({"x": 1}),
        output: None,
        error: None,
        checkpoint,
        started_at: t,
        updated_at: t,
    }
}

#[tokio::test]
async fn unusable_checkpoints_fail_with_a_reason() {
    let store = store().await;
    let cases = [
        running(
            "gone-state",
            "three",
            Some(json!({"state": "Removed", "input": {}})),
        ),
        running("no-input", "three", Some(json!({"state": "B"}))),
        running(
            "gone-machine",
            "retired",
            Some(json!({"state": "A", "input": {}})),
        ),
        running("never-started", "three", None),
    ];
    for exec in &cases {
        store.create_execution(exec).await.unwrap();
    }
    let invoker = tagging();
    let wf = LocalWorkflow::new(store.clone(), invoker.clone(), [("three", THREE_TASKS)]).unwrap();
    let mut report = wf.resume_incomplete().await.unwrap();
    report.failed.sort();
    assert_eq!(report.resumed, ["never-started"]);
    let failed: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed, ["gone-machine", "gone-state", "no-input"]);
    assert!(report.failed[0].1.contains("retired"));
    assert!(report.failed[1].1.contains("Removed"));
    for (name, reason) in &report.failed {
        let exec = wf.describe(name).await.unwrap().unwrap();
        assert_eq!(exec.status, ExecutionStatus::Failed);
        let error = exec.error.unwrap();
        assert!(
            error.starts_with("Apna.ResumeFailed") && error.contains(reason.as_str()),
            "{error}"
        );
    }
    let exec = wf.wait("never-started").await.unwrap().unwrap();
    assert_eq!(exec.status, ExecutionStatus::Succeeded);
    assert_eq!(invoker.calls().len(), 3);
}

#[tokio::test]
async fn a_store_failure_leaves_the_execution_resumable() {
    let memory = MemoryExecutionLog::new();
    let store: Arc<dyn ExecutionLog> = memory.clone();
    let machine = StateMachine::parse(THREE_TASKS).unwrap();
    let flag = memory.clone();
    let invoker = ScriptInvoker::new(move |r, _, _| {
        let flag = flag.clone();
        Box::pin(async move {
            if r == "b" {
                flag.broken.store(true, Ordering::SeqCst);
            }
            Ok::<_, TaskFailure>(json!(r))
        })
    });
    let executor = Executor::new(store.clone(), invoker);
    let exec = executor.create("three", "run-s", json!({})).await.unwrap();
    let err = executor
        .run(&machine, exec, StopSignal::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "store");
    let exec = store.get_execution("run-s").await.unwrap().unwrap();
    assert_eq!(exec.status, ExecutionStatus::Running);
    assert_eq!(exec.checkpoint.as_ref().unwrap()["state"], "B");

    memory.broken.store(false, Ordering::SeqCst);
    let invoker = tagging();
    let done = Executor::new(store.clone(), invoker.clone())
        .resume(&machine, exec, StopSignal::new())
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(invoker.count("a"), 0);
    assert_eq!(done.output.unwrap()["a"], "a");
}
