//! `statemachines/generation.asl.json` itself, run by moto's Step Functions
//! (APNA_TEST_MOTO_URL) and by our interpreter with the same scripted task
//! results: both must take the same path (states entered), call the same tasks
//! with the same parameters, and end with the same status, output and error.
//!
//! How moto runs it: each `${XFunctionArn}` becomes a Lambda ARN
//! (`arn:aws:lambda:{region}:123456789012:function:apna-X`). With moto's
//! `lambda.use_docker = false`, an invoke returns the next result queued with
//! `POST /moto-api/static/lambda-simple/response` for that region (or echoes
//! its payload when the queue is empty), so a scenario queues one JSON result
//! per successful task call, in call order. Each scenario uses its own Lambda
//! region (queues are per region) and its own random account for the state
//! machine (moto runs one execution per account; see `asl_moto.rs`).
//!
//! What moto cannot do, and how the scenarios work around it:
//! * its docker-less Lambda never reports a function error (`FunctionError`),
//!   so a task cannot fail with our own names (`Apna.NotReady`, …) and Retry
//!   policies on them cannot be exercised. The one task failure it produces on
//!   demand is an invoke that fails in the Lambda service: here the failing
//!   task's ARN names a region moto does not know, and the task fails with
//!   error `Exception` (moto's name for a Lambda client error; AWS would say
//!   `Lambda.…Exception`), which only `States.ALL` catches — as intended, it
//!   goes straight to MarkFailed without a Retry;
//! * an oversized result fails with `States.DataLimitExceeded`, but moto lets
//!   `States.ALL` catch it, which AWS documents it does not; not used here.
//! * Wait states really wait (1 s per sandbox poll), in both engines.

use std::collections::HashMap;
use std::time::Duration;

use apna::domain::{ExecutionStatus, HistoryEvent};
use apna::tasks::task_name;
use apna::testing::services::moto_url;
use apna::testing::sfn::client;
use apna::testing::workflow::{entered, ScriptInvoker};
use apna::workflow::asl::{Executor, StateMachine, TaskFailure};
use apna::workflow::{StepFunctionsWorkflow, Workflow};
use serde_json::{json, Value};

/// moto's default account: where its Step Functions engine invokes Lambda.
const LAMBDA_ACCOUNT: &str = "123456789012";
/// A region moto has no Lambda backend for: invoking a function there fails.
const UNKNOWN_REGION: &str = "apna-nowhere-1";
/// What a probe invoke sends; an echo of it means the result queue is empty.
const PROBE: &str = r#"{"apna_queue_probe":1}"#;

/// Turns on moto's ASL execution and its docker-less Lambda.
async fn configure(url: &str) {
    apna::testing::sfn::configure_moto(
        url,
        json!({
            "stepfunctions": {"execute_state_machine": true},
            "lambda": {"use_docker": false},
        }),
    )
    .await;
}

/// Invokes a docker-less moto Lambda in `region` directly; returns its payload.
async fn invoke(url: &str, region: &str, payload: &str) -> String {
    // moto reads the region from the credential scope and does not check signatures.
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=ak/20250101/{region}/lambda/aws4_request, SignedHeaders=host, Signature=0"
    );
    reqwest::Client::new()
        .post(format!(
            "{url}/2015-03-31/functions/apna-queue-probe/invocations"
        ))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(payload.to_string())
        .send()
        .await
        .expect("moto lambda invoke")
        .text()
        .await
        .expect("invoke payload")
}

/// Empties `region`'s queue of Lambda results; returns how many were left.
async fn drain(url: &str, region: &str) -> usize {
    let mut left = 0;
    while invoke(url, region, PROBE).await != PROBE {
        left += 1;
        assert!(
            left < 1000,
            "the lambda-simple queue of {region} never empties"
        );
    }
    left
}

async fn queue(url: &str, region: &str, results: &[Value]) {
    let results: Vec<String> = results.iter().map(Value::to_string).collect();
    let resp = reqwest::Client::new()
        .post(format!("{url}/moto-api/static/lambda-simple/response"))
        .json(&json!({ "results": results, "region": region, "account_id": LAMBDA_ACCOUNT }))
        .send()
        .await
        .expect("moto reachable");
    assert!(resp.status().is_success(), "queue: {}", resp.status());
}

/// What one task call answers.
#[derive(Debug, Clone)]
enum Answer {
    /// The task succeeds with this result.
    Returns(Value),
    /// The task's Lambda cannot be invoked (error `Exception`).
    CannotInvoke,
}

use Answer::{CannotInvoke, Returns};

/// One scripted run of the generation machine.
struct Scenario {
    name: &'static str,
    /// Lambda region: its own result queue.
    region: &'static str,
    max_fix_attempts: u32,
    /// (task, answer) for each task call, in order.
    calls: Vec<(&'static str, Answer)>,
    /// The states both engines must enter, in order.
    path: Vec<&'static str>,
    status: ExecutionStatus,
}

/// What both engines must agree on.
#[derive(Debug, PartialEq)]
struct Trace {
    status: ExecutionStatus,
    output: Option<Value>,
    error: Option<String>,
    entered: Vec<String>,
    /// (task, parameters) of each task call, in order.
    tasks: Vec<(String, Value)>,
}

/// The cause of a failed invoke is engine-specific text (moto's is an HTML
/// error page); keep only its presence.
fn mask(mut v: Value) -> Value {
    for caught in ["error", "smoke_error"] {
        if let Some(e) = v.get_mut(caught).and_then(Value::as_object_mut) {
            if e.get("Error") == Some(&json!("Exception")) {
                e.insert("Cause".into(), json!("(masked)"));
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        for (_, x) in o.iter_mut() {
            if x.is_object() {
                *x = mask(x.take());
            }
        }
    }
    v
}

fn task(resource: &str) -> String {
    task_name(resource)
        .unwrap_or_else(|| panic!("no task behind {resource}"))
        .to_string()
}

fn input(s: &Scenario) -> Value {
    json!({ "run_id": "run-1", "project_id": "project-1", "max_fix_attempts": s.max_fix_attempts })
}

/// The committed definition with Lambda ARNs in `region` (`UNKNOWN_REGION` for `broken`).
fn definition_for(region: &str, broken: &[&str]) -> String {
    let mut text = apna::server::GENERATION_ASL.to_string();
    for t in apna::tasks::TASKS {
        let r = if broken.contains(t) {
            UNKNOWN_REGION
        } else {
            region
        };
        text = text.replace(
            &format!("${{{t}FunctionArn}}"),
            &format!("arn:aws:lambda:{r}:{LAMBDA_ACCOUNT}:function:apna-{t}"),
        );
    }
    assert!(!text.contains("FunctionArn}"), "unreplaced resource");
    text
}

/// Runs `s` in moto; returns the trace and the history as `StepFunctionsWorkflow` maps it.
async fn run_in_moto(url: &str, s: &Scenario) -> (Trace, Vec<HistoryEvent>) {
    let broken: Vec<&str> = s
        .calls
        .iter()
        .filter(|(_, a)| matches!(a, CannotInvoke))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        s.calls
            .iter()
            .all(|(t, a)| !broken.contains(t) || matches!(a, CannotInvoke)),
        "{}: a task that cannot be invoked fails on every call",
        s.name
    );
    let results: Vec<Value> = s
        .calls
        .iter()
        .filter_map(|(_, a)| match a {
            Returns(v) => Some(v.clone()),
            CannotInvoke => None,
        })
        .collect();
    let stale = drain(url, s.region).await;
    if stale > 0 {
        println!(
            "{}: dropped {stale} results left in moto by an earlier run",
            s.name
        );
    }
    queue(url, s.region, &results).await;

    let client = client(url);
    let machine = client
        .create_state_machine()
        .name(format!("generation-{}", uuid::Uuid::new_v4().simple()))
        .definition(definition_for(s.region, &broken))
        .role_arn("arn:aws:iam::123456789012:role/apna-sfn")
        .send()
        .await
        .expect("CreateStateMachine accepts generation.asl.json")
        .state_machine_arn()
        .to_string();
    let name = format!("run-{}", uuid::Uuid::new_v4().simple());
    let execution = client
        .start_execution()
        .state_machine_arn(&machine)
        .name(&name)
        .input(input(s).to_string())
        .send()
        .await
        .expect("StartExecution")
        .execution_arn()
        .to_string();
    let wf = StepFunctionsWorkflow::new(
        client.clone(),
        HashMap::from([("generation".to_string(), machine)]),
    );
    let mut exec = None;
    for _ in 0..600 {
        let e = wf.describe(&name).await.unwrap().expect("execution exists");
        if e.status != ExecutionStatus::Running {
            exec = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exec = exec.unwrap_or_else(|| panic!("{}: moto did not finish in 30 s", s.name));
    let history = wf.history(&name).await.unwrap();

    let raw = client
        .get_execution_history()
        .execution_arn(&execution)
        .max_results(1000)
        .send()
        .await
        .expect("GetExecutionHistory");
    let tasks = raw
        .events()
        .iter()
        .filter_map(|e| e.lambda_function_scheduled_event_details())
        .map(|d| {
            let params: Value = serde_json::from_str(d.input().unwrap_or("null")).unwrap();
            (task(d.resource()), mask(params))
        })
        .collect();
    assert_eq!(
        drain(url, s.region).await,
        0,
        "{}: moto left scripted results unused",
        s.name
    );
    (trace(&exec, &history, tasks), history)
}

/// Runs `s` in our interpreter; returns the trace and the recorded history.
async fn run_in_interpreter(s: &Scenario) -> (Trace, Vec<HistoryEvent>) {
    let calls = s.calls.clone();
    let name = s.name;
    let invoker = ScriptInvoker::new(move |resource, _input, n| {
        let call = calls.get(n).cloned();
        Box::pin(async move {
            match call {
                Some((t, _)) if task(&resource) != t => Err(TaskFailure::new(
                    "Test.Unexpected",
                    format!("{name}: call {n} went to {resource}, the script expected {t}"),
                )),
                Some((_, Returns(v))) => Ok(v),
                Some((_, CannotInvoke)) => Err(TaskFailure::new(
                    "Exception",
                    "the Lambda function could not be invoked",
                )),
                None => Err(TaskFailure::new(
                    "Test.Unexpected",
                    format!("{name}: call {n} to {resource} is past the script"),
                )),
            }
        })
    });
    let store = apna::testing::fixtures::memory_store().await;
    let machine = StateMachine::parse(apna::server::GENERATION_ASL).unwrap();
    let exec_name = format!("run-{}", uuid::Uuid::new_v4().simple());
    let exec = Executor::new(store.clone(), invoker.clone())
        .start(&machine, "generation", &exec_name, input(s))
        .await
        .unwrap();
    let history = store.list_history(&exec_name).await.unwrap();
    let tasks = history
        .iter()
        .filter(|e| e.event_type == "TaskScheduled")
        .map(|e| {
            (
                task(e.data["resource"].as_str().unwrap_or_default()),
                mask(e.data["parameters"].clone()),
            )
        })
        .collect();
    assert_eq!(
        invoker.calls().len(),
        s.calls.len(),
        "{}: calls made",
        s.name
    );
    (trace(&exec, &history, tasks), history)
}

fn trace(
    exec: &apna::domain::Execution,
    history: &[HistoryEvent],
    tasks: Vec<(String, Value)>,
) -> Trace {
    Trace {
        status: exec.status,
        output: exec.output.clone().map(mask),
        error: exec.error.clone(),
        entered: entered(history),
        tasks,
    }
}

fn agent(step: u32, done: bool) -> Answer {
    Returns(json!({ "step": step, "done": done, "stopped": false, "stop_reason": null }))
}

fn sandbox(ready: bool, polls: u32) -> Answer {
    Returns(json!({
        "ready": ready,
        "state": if ready { "ready" } else { "starting" },
        "detail": null,
        "polls": polls,
    }))
}

fn verify(ok: bool, attempt: u32) -> Answer {
    Returns(json!({ "ok": ok, "attempt": attempt, "problems": if ok { 0 } else { 2 } }))
}

fn smoke(ok: bool, attempt: u32) -> Answer {
    Returns(json!({
        "ok": ok, "attempt": attempt, "problems": if ok { 0 } else { 1 },
        "smoke": if ok { "passed" } else { "failed" }, "note": null, "screenshots": 2,
    }))
}

fn scenarios() -> Vec<Scenario> {
    let finalize = |status: &str| Returns(json!({ "version": 1, "status": status }));
    let marked = || Returns(json!({ "status": "failed" }));
    vec![
        Scenario {
            name: "sandbox polls, agent loops, verify fails once, then passes",
            region: "us-west-2",
            max_fix_attempts: 4,
            calls: vec![
                ("EnsureSandbox", sandbox(false, 0)),
                ("SandboxStatus", sandbox(false, 1)),
                ("SandboxStatus", sandbox(true, 2)),
                ("AgentStep", agent(1, false)),
                ("AgentStep", agent(2, true)),
                ("Verify", verify(false, 1)),
                ("AgentStep", agent(3, true)),
                ("Verify", verify(true, 2)),
                ("Smoke", smoke(true, 2)),
                ("Finalize", finalize("succeeded")),
            ],
            path: vec![
                "Init",
                "EnsureSandbox",
                "IsSandboxReady",
                "WaitForSandbox",
                "CheckSandbox",
                "IsSandboxReady",
                "WaitForSandbox",
                "CheckSandbox",
                "IsSandboxReady",
                "AgentStep",
                "AfterAgentStep",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "AfterVerify",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "AfterVerify",
                "Smoke",
                "AfterSmoke",
                "Finalize",
                "Done",
            ],
            status: ExecutionStatus::Succeeded,
        },
        Scenario {
            name: "a task error is caught, marked failed, and fails the execution",
            region: "eu-west-2",
            max_fix_attempts: 4,
            calls: vec![
                ("EnsureSandbox", sandbox(true, 0)),
                ("AgentStep", agent(1, true)),
                ("Verify", CannotInvoke),
                ("MarkFailed", marked()),
            ],
            path: vec![
                "Init",
                "EnsureSandbox",
                "IsSandboxReady",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "MarkFailed",
                "Failed",
            ],
            status: ExecutionStatus::Failed,
        },
        Scenario {
            name: "the agent stops on its budget",
            region: "eu-central-1",
            max_fix_attempts: 4,
            calls: vec![
                ("EnsureSandbox", sandbox(true, 0)),
                (
                    "AgentStep",
                    Returns(json!({
                        "step": 1, "done": false, "stopped": true,
                        "stop_reason": "the run reached its limit of 40 model calls",
                    })),
                ),
                ("MarkFailed", marked()),
            ],
            path: vec![
                "Init",
                "EnsureSandbox",
                "IsSandboxReady",
                "AgentStep",
                "AfterAgentStep",
                "BudgetExhausted",
                "MarkFailed",
                "Failed",
            ],
            status: ExecutionStatus::Failed,
        },
        Scenario {
            name: "fix attempts run out: finalize unverified",
            region: "ap-southeast-1",
            max_fix_attempts: 2,
            calls: vec![
                ("EnsureSandbox", sandbox(true, 0)),
                ("AgentStep", agent(1, true)),
                ("Verify", verify(false, 1)),
                ("AgentStep", agent(2, true)),
                ("Verify", verify(false, 2)),
                ("Finalize", finalize("failed")),
            ],
            path: vec![
                "Init",
                "EnsureSandbox",
                "IsSandboxReady",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "AfterVerify",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "AfterVerify",
                "Finalize",
                "Done",
            ],
            status: ExecutionStatus::Succeeded,
        },
        Scenario {
            name: "the browser check finds a runtime error; the fix passes both checks",
            region: "us-east-2",
            max_fix_attempts: 4,
            calls: vec![
                ("EnsureSandbox", sandbox(true, 0)),
                ("AgentStep", agent(1, true)),
                ("Verify", verify(true, 1)),
                ("Smoke", smoke(false, 1)),
                ("AgentStep", agent(2, true)),
                ("Verify", verify(true, 2)),
                ("Smoke", smoke(true, 2)),
                ("Finalize", finalize("succeeded")),
            ],
            path: vec![
                "Init",
                "EnsureSandbox",
                "IsSandboxReady",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "AfterVerify",
                "Smoke",
                "AfterSmoke",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "AfterVerify",
                "Smoke",
                "AfterSmoke",
                "Finalize",
                "Done",
            ],
            status: ExecutionStatus::Succeeded,
        },
        Scenario {
            name: "the browser check cannot run: skipped, the run still finalizes",
            region: "eu-north-1",
            max_fix_attempts: 4,
            calls: vec![
                ("EnsureSandbox", sandbox(true, 0)),
                ("AgentStep", agent(1, true)),
                ("Verify", verify(true, 1)),
                ("Smoke", CannotInvoke),
                ("Finalize", finalize("succeeded")),
            ],
            path: vec![
                "Init",
                "EnsureSandbox",
                "IsSandboxReady",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "AfterVerify",
                "Smoke",
                "SmokeSkipped",
                "Finalize",
                "Done",
            ],
            status: ExecutionStatus::Succeeded,
        },
        Scenario {
            name: "the browser check still fails when attempts run out: finalize unverified",
            region: "eu-west-3",
            max_fix_attempts: 1,
            calls: vec![
                ("EnsureSandbox", sandbox(true, 0)),
                ("AgentStep", agent(1, true)),
                ("Verify", verify(true, 1)),
                ("Smoke", smoke(false, 1)),
                ("Finalize", finalize("failed")),
            ],
            path: vec![
                "Init",
                "EnsureSandbox",
                "IsSandboxReady",
                "AgentStep",
                "AfterAgentStep",
                "Verify",
                "AfterVerify",
                "Smoke",
                "AfterSmoke",
                "Finalize",
                "Done",
            ],
            status: ExecutionStatus::Succeeded,
        },
        Scenario {
            name: "the sandbox never gets ready",
            region: "ap-northeast-1",
            max_fix_attempts: 4,
            calls: vec![
                ("EnsureSandbox", sandbox(false, 0)),
                ("SandboxStatus", sandbox(false, 120)),
                ("MarkFailed", marked()),
            ],
            path: vec![
                "Init",
                "EnsureSandbox",
                "IsSandboxReady",
                "WaitForSandbox",
                "CheckSandbox",
                "IsSandboxReady",
                "SandboxTimedOut",
                "MarkFailed",
                "Failed",
            ],
            status: ExecutionStatus::Failed,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generation_machine_runs_the_same_in_moto_and_the_interpreter() {
    let Some(url) = moto_url() else { return };
    configure(&url).await;
    let scenarios = scenarios();
    let started = std::time::Instant::now();
    let runs = scenarios.iter().map(|s| {
        let url = url.clone();
        async move {
            let ((moto, _), (ours, _)) = tokio::join!(run_in_moto(&url, s), run_in_interpreter(s));
            (s, moto, ours)
        }
    });
    let results = futures::future::join_all(runs).await;
    for (s, moto, ours) in &results {
        assert_eq!(moto, ours, "{}: moto and the interpreter disagree", s.name);
        assert_eq!(ours.entered, s.path, "{}: path", s.name);
        assert_eq!(ours.status, s.status, "{}: status", s.name);
        let called: Vec<&str> = ours.tasks.iter().map(|(t, _)| t.as_str()).collect();
        let scripted: Vec<&str> = s.calls.iter().map(|(t, _)| *t).collect();
        assert_eq!(called, scripted, "{}: task calls", s.name);
    }
    println!(
        "{} generation paths agree ({:?})",
        results.len(),
        started.elapsed()
    );

    // Spot checks on what the tasks were given, from the first two scenarios.
    let params = |i: usize, t: &str| -> Vec<Value> {
        results[i]
            .2
            .tasks
            .iter()
            .filter(|(name, _)| name == t)
            .map(|(_, p)| p.clone())
            .collect()
    };
    let ids = json!({ "run_id": "run-1", "project_id": "project-1" });
    let with = |extra: Value| {
        let mut v = ids.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    assert_eq!(
        params(0, "SandboxStatus"),
        [with(json!({"polls": 0})), with(json!({"polls": 1}))]
    );
    assert_eq!(
        params(0, "AgentStep"),
        [
            with(json!({"step": 0})),
            with(json!({"step": 1})),
            with(json!({"step": 2}))
        ]
    );
    assert_eq!(
        params(0, "Verify"),
        [
            with(json!({"attempt": 0, "max_fix_attempts": 4, "step": 2})),
            with(json!({"attempt": 1, "max_fix_attempts": 4, "step": 3}))
        ]
    );
    assert_eq!(
        params(0, "Smoke"),
        [with(
            json!({"attempt": 2, "max_fix_attempts": 4, "step": 3})
        )]
    );
    assert_eq!(
        params(0, "Finalize"),
        [with(json!({"verified": true, "check": {
            "ok": true, "attempt": 2, "problems": 0, "smoke": "passed", "note": null, "screenshots": 2
        }}))]
    );
    assert_eq!(
        params(1, "MarkFailed"),
        [with(
            json!({"error": {"Error": "Exception", "Cause": "(masked)"}})
        )]
    );
    assert_eq!(
        results[1].2.error.as_deref(),
        Some("Apna.GenerationFailed: The generation failed; the run's error says why.")
    );
    assert_eq!(
        params(2, "MarkFailed"),
        [with(json!({"error": {
            "Error": "Apna.AgentStopped",
            "Cause": "the run reached its limit of 40 model calls"
        }}))]
    );
    assert_eq!(
        params(3, "Finalize"),
        [with(
            json!({"verified": false, "check": {"ok": false, "attempt": 2, "problems": 2}})
        )]
    );
    assert_eq!(
        params(4, "Smoke"),
        [
            with(json!({"attempt": 1, "max_fix_attempts": 4, "step": 1})),
            with(json!({"attempt": 2, "max_fix_attempts": 4, "step": 2}))
        ]
    );
    assert_eq!(
        params(5, "Finalize"),
        [with(json!({"verified": true, "check": {
            "ok": true, "attempt": 1, "problems": 0, "smoke": "skipped",
            "error": {"Error": "Exception", "Cause": "(masked)"}
        }}))]
    );
    assert_eq!(params(6, "Finalize")[0]["verified"], false);
    assert_eq!(
        params(7, "MarkFailed")[0]["error"]["Error"],
        "Apna.SandboxTimeout"
    );
}

/// The event types a history shows, without the ones only one engine has
/// (`TaskStarted`/`LambdaFunctionStarted`: AWS marks a Lambda's start; our
/// interpreter does not).
fn event_types(history: &[HistoryEvent]) -> Vec<String> {
    history
        .iter()
        .map(|e| e.event_type.clone())
        .filter(|t| t != "TaskStarted" && t != "LambdaFunctionStarted")
        .collect()
}

/// `StepFunctionsWorkflow::history` promises the interpreter's event names so
/// the UI shows one trace format. With Lambda ARNs as Task resources (as
/// `infra/template.yaml` deploys them) AWS records `LambdaFunctionScheduled`,
/// `LambdaFunctionStarted`, `LambdaFunctionSucceeded`/`Failed`; `sfn::map_event`
/// must map them to the interpreter's `TaskScheduled` (with `resource` and
/// `parameters`), `TaskSucceeded`, `TaskFailed`.
#[tokio::test]
async fn step_functions_history_names_lambda_task_events_like_the_interpreter() {
    let Some(url) = moto_url() else { return };
    configure(&url).await;
    let s = Scenario {
        name: "history format",
        region: "sa-east-1",
        max_fix_attempts: 4,
        calls: vec![
            ("EnsureSandbox", sandbox(true, 0)),
            ("AgentStep", agent(1, true)),
            ("Verify", CannotInvoke),
            ("MarkFailed", Returns(json!({ "status": "failed" }))),
        ],
        path: vec![],
        status: ExecutionStatus::Failed,
    };
    let ((_, moto), (_, ours)) = tokio::join!(run_in_moto(&url, &s), run_in_interpreter(&s));
    assert_eq!(event_types(&moto), event_types(&ours));
    let scheduled = |h: &[HistoryEvent]| -> Vec<(Option<String>, Value)> {
        h.iter()
            .filter(|e| e.event_type == "TaskScheduled")
            .map(|e| {
                let resource = e.data["resource"].as_str().map(task);
                (resource, e.data["parameters"].clone())
            })
            .collect()
    };
    assert_eq!(scheduled(&moto).len(), 4);
    assert_eq!(
        scheduled(&moto)[..2],
        scheduled(&ours)[..2],
        "task and parameters of each scheduled task"
    );
}

/// Where moto is no oracle: a Choice rule whose Variable is missing from the
/// input. AWS fails the execution with `States.Runtime` (which `States.ALL`
/// does not catch), and so does our interpreter; moto 5.1.22 treats the rule as
/// not matching and takes the Default. The generation machine never relies on
/// either (EnsureSandbox and SandboxStatus always return `polls`); this pins
/// the difference so a change in either engine is noticed.
#[tokio::test]
async fn a_missing_choice_variable_fails_here_as_on_aws_but_not_in_moto() {
    let Some(url) = moto_url() else { return };
    configure(&url).await;
    let s = Scenario {
        name: "EnsureSandbox without polls",
        region: "ca-central-1",
        max_fix_attempts: 4,
        calls: vec![(
            "EnsureSandbox",
            Returns(json!({ "ready": false, "state": "starting" })),
        )],
        path: vec![],
        status: ExecutionStatus::Failed,
    };
    let (ours, _) = run_in_interpreter(&s).await;
    assert_eq!(ours.status, ExecutionStatus::Failed);
    assert!(
        ours.error
            .as_deref()
            .is_some_and(|e| e.starts_with("States.Runtime")),
        "{:?}",
        ours.error
    );
    assert_eq!(ours.entered, ["Init", "EnsureSandbox", "IsSandboxReady"]);

    // moto goes on to poll, fails CheckSandbox on the missing `polls`
    // parameter and runs MarkFailed; with nothing queued those get an echo.
    let results = [json!({ "ready": false, "state": "starting" })];
    let stale = drain(&url, s.region).await;
    if stale > 0 {
        println!("dropped {stale} stale results");
    }
    queue(&url, s.region, &results).await;
    let client = client(&url);
    let machine = client
        .create_state_machine()
        .name(format!("generation-{}", uuid::Uuid::new_v4().simple()))
        .definition(definition_for(s.region, &[]))
        .role_arn("arn:aws:iam::123456789012:role/apna-sfn")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_string();
    let name = format!("run-{}", uuid::Uuid::new_v4().simple());
    let wf = StepFunctionsWorkflow::new(client, HashMap::from([("generation".into(), machine)]));
    wf.start("generation", &name, input(&s)).await.unwrap();
    let mut exec = wf.describe(&name).await.unwrap().unwrap();
    for _ in 0..200 {
        if exec.status != ExecutionStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        exec = wf.describe(&name).await.unwrap().unwrap();
    }
    let moto_entered = entered(&wf.history(&name).await.unwrap());
    assert_eq!(
        moto_entered[..4],
        ["Init", "EnsureSandbox", "IsSandboxReady", "WaitForSandbox"],
        "moto took the Default branch: {moto_entered:?}"
    );
    drain(&url, s.region).await;
}
