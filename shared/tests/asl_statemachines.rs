//! The repository's `statemachines/*.asl.json` load in the interpreter, and the
//! generation machine walks its loops (sandbox polling, agent steps, verify,
//! the browser check and fix) with scripted step handlers under a paused clock.

use std::sync::Arc;

use apna::domain::ExecutionStatus;
use apna::testing::workflow::{entered, run_paused, ScriptInvoker};
use apna::workflow::asl::{StateMachine, TaskFailure, TaskInvoker};
use serde_json::{json, Value};

const GENERATION: &str = include_str!("../../statemachines/generation.asl.json");
const HIBERNATION: &str = include_str!("../../statemachines/hibernation.asl.json");
const PUBLISH: &str = include_str!("../../statemachines/publish.asl.json");
const WAKE: &str = include_str!("../../statemachines/wake.asl.json");

#[test]
fn repository_state_machines_load() {
    for (name, json) in [
        ("generation", GENERATION),
        ("hibernation", HIBERNATION),
        ("publish", PUBLISH),
        ("wake", WAKE),
    ] {
        StateMachine::parse(json).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Step handlers following a script: the sandbox is ready on the second poll,
/// the agent needs two steps, the first verify fails and one fix succeeds.
fn scripted() -> Arc<ScriptInvoker> {
    ScriptInvoker::new(|resource, input, _| {
        Box::pin(async move {
            let out: Value = match resource.as_str() {
                "${EnsureSandboxFunctionArn}" => json!({"ready": false, "polls": 0}),
                "${SandboxStatusFunctionArn}" => {
                    let polls = input["polls"].as_i64().unwrap() + 1;
                    json!({"ready": polls >= 2, "polls": polls})
                }
                "${AgentStepFunctionArn}" => {
                    let step = input["step"].as_i64().unwrap() + 1;
                    json!({"step": step, "done": step % 2 == 0, "stopped": false})
                }
                "${VerifyFunctionArn}" => {
                    let attempt = input["attempt"].as_i64().unwrap() + 1;
                    json!({"attempt": attempt, "ok": attempt >= 2})
                }
                "${SmokeFunctionArn}" => json!({
                    "ok": true, "attempt": input["attempt"], "problems": 0, "smoke": "passed"
                }),
                "${FinalizeFunctionArn}" => json!({"version": 1, "verified": input["verified"]}),
                "${MarkFailedFunctionArn}" => json!({"marked": input["error"]}),
                other => return Err(TaskFailure::new("Test.Unexpected", other.to_string())),
            };
            Ok(out)
        })
    })
}

fn generation_input() -> Value {
    json!({"run_id": "run-1", "project_id": "p-1", "max_fix_attempts": 4})
}

#[tokio::test(start_paused = true)]
async fn generation_happy_path_polls_loops_and_finalizes() {
    let invoker = scripted();
    let (exec, history) = run_paused(GENERATION, generation_input(), invoker.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
    assert_eq!(
        entered(&history),
        [
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
            "AgentStep",
            "AfterAgentStep",
            "Verify",
            "AfterVerify",
            "Smoke",
            "AfterSmoke",
            "Finalize",
            "Done"
        ]
    );
    assert_eq!(
        exec.output.unwrap()["result"],
        json!({"version": 1, "verified": true})
    );
    let steps: Vec<Value> = invoker
        .calls()
        .iter()
        .filter(|c| c.resource == "${AgentStepFunctionArn}")
        .map(|c| c.input.clone())
        .collect();
    assert_eq!(
        steps[0],
        json!({"run_id": "run-1", "project_id": "p-1", "step": 0})
    );
    assert_eq!(steps[3]["step"], 3);
}

#[tokio::test(start_paused = true)]
async fn generation_failure_is_marked_and_fails_the_execution() {
    let base = scripted();
    let invoker = ScriptInvoker::new(move |resource, input, _| {
        let base = base.clone();
        Box::pin(async move {
            if resource == "${AgentStepFunctionArn}" {
                return Err(TaskFailure::new("Apna.Model", "model API unavailable"));
            }
            base.invoke(&resource, input).await
        })
    });
    let (exec, history) = run_paused(GENERATION, generation_input(), invoker.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert!(exec.error.unwrap().starts_with("Apna.GenerationFailed"));
    assert_eq!(entered(&history).last().unwrap(), "Failed");
    let marked: Vec<Value> = invoker
        .calls()
        .iter()
        .filter(|c| c.resource == "${MarkFailedFunctionArn}")
        .map(|c| c.input["error"].clone())
        .collect();
    assert_eq!(
        marked,
        [json!({"Error": "Apna.Model", "Cause": "model API unavailable"})]
    );
    assert_eq!(
        invoker.count("${AgentStepFunctionArn}"),
        1,
        "Apna.Model is not retried"
    );
}

/// The publish machine: BuildSite's deploy reaches ActivateSite; a failure in
/// either ends in PublishFailed with the job, the deploy (or null) and the error.
#[tokio::test(start_paused = true)]
async fn publish_builds_then_activates_and_fails_into_publish_failed() {
    let input = json!({"project_id": "p-1", "job": "publish-1", "version": 2, "slug": "my-app"});
    for fail_at in [
        None,
        Some("${BuildSiteFunctionArn}"),
        Some("${ActivateSiteFunctionArn}"),
    ] {
        let invoker = ScriptInvoker::new(move |resource, input, _| {
            Box::pin(async move {
                if Some(resource.as_str()) == fail_at {
                    return Err(TaskFailure::new(
                        "Apna.InvalidInput",
                        "the app does not build",
                    ));
                }
                Ok(match resource.as_str() {
                    "${BuildSiteFunctionArn}" => json!({"deploy_id": "v2-0a1b2c3d"}),
                    "${ActivateSiteFunctionArn}" => {
                        assert_eq!(input["deploy_id"], "v2-0a1b2c3d");
                        json!({"slug": input["slug"]})
                    }
                    "${PublishFailedFunctionArn}" => {
                        assert_eq!(input["job"], "publish-1");
                        assert_eq!(input["error"]["Error"], "Apna.InvalidInput");
                        let want = if fail_at == Some("${BuildSiteFunctionArn}") {
                            Value::Null
                        } else {
                            json!("v2-0a1b2c3d")
                        };
                        assert_eq!(input["deploy_id"], want);
                        json!({})
                    }
                    other => return Err(TaskFailure::new("Test.Unexpected", other.to_string())),
                })
            })
        });
        let (exec, history) = run_paused(PUBLISH, input.clone(), invoker).await;
        let states = entered(&history);
        match fail_at {
            None => {
                assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
                assert_eq!(states, ["Init", "BuildSite", "ActivateSite", "Done"]);
            }
            Some(_) => {
                assert_eq!(exec.status, ExecutionStatus::Failed);
                assert_eq!(states.last().map(String::as_str), Some("Failed"));
                assert!(states.contains(&"PublishFailed".to_string()), "{states:?}");
            }
        }
    }
}

/// The wake machine waits for whoever holds the project (`Apna.NotReady`,
/// retried with backoff) and gives up, leaving the project hibernated, on an
/// error it cannot wait out.
#[tokio::test(start_paused = true)]
async fn wake_waits_out_a_held_project_then_wakes_it() {
    let invoker = ScriptInvoker::new(|resource, input, n| {
        Box::pin(async move {
            assert_eq!(resource, "${WakeProjectFunctionArn}");
            assert_eq!(input, json!({"project_id": "p-1"}));
            if n < 2 {
                return Err(TaskFailure::new("Apna.NotReady", "held by a run"));
            }
            Ok(json!({"project_id": "p-1", "wake": {"outcome": "woken"}}))
        })
    });
    let (exec, history) = run_paused(WAKE, json!({"project_id": "p-1"}), invoker.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
    assert_eq!(invoker.calls().len(), 3);
    assert_eq!(entered(&history), ["WakeProject"]);

    let broken = ScriptInvoker::new(|_, _, _| {
        Box::pin(async { Err(TaskFailure::new("Apna.Sandbox", "no node can take the pod")) })
    });
    let (exec, _) = run_paused(WAKE, json!({"project_id": "p-1"}), broken.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert_eq!(broken.calls().len(), 1, "a sandbox error is not retried");
}

/// The browser check finds a problem once: the model gets another step, the
/// build and the page are checked again, and Finalize sees Smoke's verdict.
#[tokio::test(start_paused = true)]
async fn a_failed_browser_check_goes_back_to_the_agent() {
    let base = scripted();
    let invoker = ScriptInvoker::new(move |resource, input, _| {
        let base = base.clone();
        Box::pin(async move {
            match resource.as_str() {
                "${VerifyFunctionArn}" => {
                    let attempt = input["attempt"].as_i64().unwrap() + 1;
                    Ok(json!({"attempt": attempt, "ok": true}))
                }
                "${SmokeFunctionArn}" => {
                    let ok = input["attempt"] != 1;
                    Ok(
                        json!({"ok": ok, "attempt": input["attempt"], "problems": if ok { 0 } else { 1 },
                              "smoke": if ok { "passed" } else { "failed" }}),
                    )
                }
                _ => base.invoke(&resource, input).await,
            }
        })
    });
    let (exec, history) = run_paused(GENERATION, generation_input(), invoker.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
    let path = entered(&history);
    let tail: Vec<&str> = path.iter().skip(9).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "AgentStep",
            "AfterAgentStep",
            "AgentStep",
            "AfterAgentStep",
            "Verify",
            "AfterVerify",
            "Smoke",
            "AfterSmoke",
            "AgentStep",
            "AfterAgentStep",
            "AgentStep",
            "AfterAgentStep",
            "Verify",
            "AfterVerify",
            "Smoke",
            "AfterSmoke",
            "Finalize",
            "Done"
        ]
    );
    let smoke: Vec<Value> = invoker
        .calls()
        .iter()
        .filter(|c| c.resource == "${SmokeFunctionArn}")
        .map(|c| c.input.clone())
        .collect();
    assert_eq!(
        smoke,
        [
            json!({"run_id": "run-1", "project_id": "p-1", "attempt": 1, "max_fix_attempts": 4, "step": 2}),
            json!({"run_id": "run-1", "project_id": "p-1", "attempt": 2, "max_fix_attempts": 4, "step": 4}),
        ]
    );
    let finalize = invoker
        .calls()
        .into_iter()
        .find(|c| c.resource == "${FinalizeFunctionArn}")
        .unwrap();
    assert_eq!(finalize.input["verified"], true);
    assert_eq!(finalize.input["check"]["smoke"], "passed");
}

/// A browser that crashes is retried once, then the check is skipped: the
/// run goes on to Finalize (never MarkFailed), which is told why.
#[tokio::test(start_paused = true)]
async fn a_crashing_browser_is_retried_then_skipped() {
    browser_failure_is_retried_then_skipped("Apna.Sandbox", false).await;
}

/// A check that hangs past the state's TimeoutSeconds is treated the same way.
#[tokio::test(start_paused = true)]
async fn a_hung_browser_check_times_out_is_retried_then_skipped() {
    browser_failure_is_retried_then_skipped("States.Timeout", true).await;
}

async fn browser_failure_is_retried_then_skipped(error: &'static str, hang: bool) {
    let base = scripted();
    let invoker = ScriptInvoker::new(move |resource, input, _| {
        let base = base.clone();
        Box::pin(async move {
            if resource == "${SmokeFunctionArn}" {
                if hang {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                return Err(TaskFailure::new(
                    "Apna.Sandbox",
                    "sandbox: the browser failed during the check: connection closed",
                ));
            }
            base.invoke(&resource, input).await
        })
    });
    let (exec, history) = run_paused(GENERATION, generation_input(), invoker.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
    assert_eq!(invoker.count("${SmokeFunctionArn}"), 2, "one retry");
    assert_eq!(invoker.count("${MarkFailedFunctionArn}"), 0);
    let path = entered(&history);
    assert_eq!(
        path[path.len() - 5..],
        ["AfterVerify", "Smoke", "SmokeSkipped", "Finalize", "Done"]
    );
    let finalize = invoker
        .calls()
        .into_iter()
        .find(|c| c.resource == "${FinalizeFunctionArn}")
        .unwrap();
    assert_eq!(finalize.input["verified"], true);
    assert_eq!(finalize.input["check"]["smoke"], "skipped");
    assert_eq!(finalize.input["check"]["attempt"], 2);
    assert_eq!(finalize.input["check"]["error"]["Error"], error);
}
