//! Against moto_server (APNA_TEST_MOTO_URL): `StepFunctionsWorkflow` on the Step
//! Functions API, and a differential test running the definitions in
//! `asl_moto_corpus.json` in both moto's ASL engine and ours, asserting equal
//! status, output, errors, state-entered sequences and task attempt counts.
//! Every execution uses its own moto account (see `sfn_support`).

use std::collections::HashMap;
use std::time::Duration;

use apna::domain::{ExecutionStatus, HistoryEvent};
use apna::testing::services::moto_url;
use apna::testing::sfn::client;
use apna::testing::workflow::{entered, ScriptInvoker};
use apna::workflow::asl::{Executor, StateMachine, TaskFailure};
use apna::workflow::{StepFunctionsWorkflow, Workflow};
use serde_json::{json, Value};

/// Turns on moto's ASL execution (off by default: executions would stay RUNNING).
async fn enable_execution(url: &str) {
    apna::testing::sfn::configure_moto(
        url,
        json!({"stepfunctions": {"execute_state_machine": true}}),
    )
    .await;
}

async fn create_machine(client: &aws_sdk_sfn::Client, definition: &Value) -> String {
    let name = format!("sm-{}", uuid::Uuid::new_v4().simple());
    client
        .create_state_machine()
        .name(name)
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/apna-sfn")
        .send()
        .await
        .expect("CreateStateMachine")
        .state_machine_arn()
        .to_string()
}

async fn wait_done(wf: &StepFunctionsWorkflow, name: &str) -> apna::domain::Execution {
    for _ in 0..500 {
        let exec = wf.describe(name).await.unwrap().expect("execution exists");
        if exec.status != ExecutionStatus::Running {
            return exec;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("execution {name} did not finish in 10 s");
}

#[tokio::test]
async fn step_functions_start_describe_history_stop() {
    let Some(url) = moto_url() else { return };
    enable_execution(&url).await;
    let client = client(&url);
    let arn = create_machine(
        &client,
        &json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 60, "End": true}}}),
    )
    .await;
    let machines = HashMap::from([("generation".to_string(), arn)]);
    let wf = StepFunctionsWorkflow::new(client.clone(), machines.clone());
    assert_eq!(wf.backend(), "stepfunctions");

    let run_id = apna::domain::new_run_id();
    wf.start("generation", &run_id, json!({"run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(
        wf.start("nope", "x", json!({})).await.unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        wf.start("generation", &run_id, json!({"other": 1}))
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );

    let exec = wf.describe(&run_id).await.unwrap().unwrap();
    assert_eq!(exec.id, run_id);
    assert_eq!(exec.state_machine, "generation");
    assert_eq!(exec.status, ExecutionStatus::Running);
    assert_eq!(exec.input, json!({"run_id": run_id}));

    // moto enters the Wait state asynchronously.
    let mut history = Vec::new();
    for _ in 0..100 {
        history = wf.history(&run_id).await.unwrap();
        if !entered(&history).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(history[0].event_type, "ExecutionStarted");
    assert_eq!(history[0].data["input"], json!({"run_id": run_id}));
    let hold = history
        .iter()
        .find(|e| e.event_type == "StateEntered")
        .expect("state entered");
    assert_eq!(hold.state_name.as_deref(), Some("Hold"));
    assert_eq!(hold.data["type"], "Wait");

    wf.stop(&run_id, "user cancelled").await.unwrap();
    // moto may report the stop a moment later under load.
    let exec = wait_done(&wf, &run_id).await;
    assert_eq!(exec.status, ExecutionStatus::Aborted);
    // Stopping a finished execution is a no-op; unknown names are NotFound.
    wf.stop(&run_id, "again").await.unwrap();
    assert_eq!(
        wf.stop("no-such-run", "x").await.unwrap_err().code(),
        "not_found"
    );
    assert!(wf.describe("no-such-run").await.unwrap().is_none());

    // A fresh backend (another Lambda, no cache) finds the execution from its name alone.
    let fresh = StepFunctionsWorkflow::new(client, machines);
    assert_eq!(
        fresh.describe(&run_id).await.unwrap().unwrap().status,
        ExecutionStatus::Aborted
    );
    let history = fresh.history(&run_id).await.unwrap();
    assert_eq!(history.last().unwrap().event_type, "ExecutionAborted");
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// Outcome of one execution, reduced to what both engines must agree on.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: ExecutionStatus,
    output: Option<Value>,
    error: Option<String>,
    entered: Vec<String>,
    task_attempts: usize,
}

fn outcome(exec: &apna::domain::Execution, history: &[HistoryEvent]) -> Outcome {
    // Causes of runtime and task errors are engine-specific text (moto's carry
    // request ids); compare only their names. Fail states' causes must match.
    let error = exec.error.as_ref().map(|e| {
        if e.starts_with("DynamoDB.") || e.starts_with("States.") {
            e.split(':').next().unwrap_or_default().to_string()
        } else {
            e.clone()
        }
    });
    Outcome {
        status: exec.status,
        output: exec.output.clone(),
        error,
        entered: entered(history),
        task_attempts: history
            .iter()
            .filter(|e| e.event_type == "TaskScheduled")
            .count(),
    }
}

/// Our stand-in for the one AWS integration the corpus calls: a DynamoDB read
/// of a table that does not exist.
fn local_invoker() -> std::sync::Arc<ScriptInvoker> {
    ScriptInvoker::new(|resource, input, _| {
        Box::pin(async move {
            if resource == "arn:aws:states:::dynamodb:getItem"
                && input["TableName"] == "apna-missing-table"
            {
                Err(TaskFailure::new(
                    "DynamoDB.ResourceNotFoundException",
                    "Requested resource not found",
                ))
            } else {
                Err(TaskFailure::new(
                    "Test.Unexpected",
                    format!("{resource} {input}"),
                ))
            }
        })
    })
}

#[tokio::test]
async fn interpreter_matches_moto_on_the_corpus() {
    let Some(url) = moto_url() else { return };
    enable_execution(&url).await;
    let corpus: Vec<Value> = serde_json::from_str(include_str!("asl_moto_corpus.json")).unwrap();
    assert!(corpus.len() >= 10);

    let cases = corpus.into_iter().map(|case| {
        let url = url.clone();
        async move {
            let name = case["name"].as_str().unwrap().to_string();
            let definition = &case["definition"];
            let input = case["input"].clone();
            let execution = format!("e-{}", uuid::Uuid::new_v4().simple());

            let client = client(&url);
            let arn = create_machine(&client, definition).await;
            let wf = StepFunctionsWorkflow::new(client, HashMap::from([("m".to_string(), arn)]));
            wf.start("m", &execution, input.clone()).await.unwrap();
            let moto_exec = wait_done(&wf, &execution).await;
            let moto_history = wf.history(&execution).await.unwrap();

            let store = apna::testing::fixtures::memory_store().await;
            let machine = StateMachine::parse(&definition.to_string())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let ours = Executor::new(store.clone(), local_invoker())
                .start(&machine, "m", &execution, input)
                .await
                .unwrap();
            let our_history = store.list_history(&execution).await.unwrap();
            (
                name,
                outcome(&moto_exec, &moto_history),
                outcome(&ours, &our_history),
            )
        }
    });
    let started = std::time::Instant::now();
    let results = futures::future::join_all(cases).await;
    let mut mismatches = Vec::new();
    for (name, moto, ours) in &results {
        if moto != ours {
            mismatches.push(format!("{name}:\n  moto: {moto:?}\n  ours: {ours:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "engines disagree:\n{}",
        mismatches.join("\n")
    );
    println!(
        "{} corpus cases agree ({:?})",
        results.len(),
        started.elapsed()
    );
}
