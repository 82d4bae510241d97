//! The ASL interpreter, feature by feature: load-time validation, paths and
//! intrinsics, every Choice operator, Retry backoff (paused clock), Catch
//! routing, Map concurrency, Wait, Fail and timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apna::domain::ExecutionStatus;
use apna::testing::workflow::{entered, run, run_paused, types, ScriptInvoker};
use apna::workflow::asl::{StateMachine, TaskFailure};
use serde_json::{json, Value};

fn parse_err(def: Value) -> String {
    match StateMachine::parse(&def.to_string()) {
        Ok(_) => panic!("definition was accepted: {def}"),
        Err(e) => {
            assert_eq!(e.code(), "workflow", "{e}");
            e.to_string()
        }
    }
}

#[test]
fn load_time_errors_name_the_state_and_field() {
    let e = parse_err(
        json!({"StartAt": "A", "States": {"A": {"Type": "Parallel", "Branches": [], "End": true}}}),
    );
    assert!(e.contains("\"A\"") && e.contains("Parallel"), "{e}");

    let e = parse_err(
        json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "HeartbeatSeconds": 5, "End": true}}}),
    );
    assert!(e.contains("\"A\"") && e.contains("HeartbeatSeconds"), "{e}");

    let e =
        parse_err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}));
    assert!(e.contains("\"A\"") && e.contains("Nowhere"), "{e}");

    let e =
        parse_err(json!({"StartAt": "Missing", "States": {"A": {"Type": "Pass", "End": true}}}));
    assert!(e.contains("Missing"), "{e}");

    let e = parse_err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}));
    assert!(e.contains("\"A\"") && e.contains("End"), "{e}");

    let e = parse_err(
        json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true,
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gone"}]}}}),
    );
    assert!(e.contains("Gone"), "{e}");

    let e = parse_err(json!({"StartAt": "A", "States": {"A": {"Type": "Choice",
        "Choices": [{"Variable": "$.x", "StringSounds": "a", "Next": "A"}]}}}));
    assert!(e.contains("\"A\"") && e.contains("StringSounds"), "{e}");

    let e = parse_err(json!({"StartAt": "A", "States": {"A": {"Type": "Choice",
        "Choices": [{"Variable": "$.x", "StringEquals": "a", "Next": "B"}], "Default": "A"}}}));
    assert!(e.contains("\"B\""), "{e}");

    let e = parse_err(
        json!({"StartAt": "A", "States": {"A": {"Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "Bogus": 1, "End": true}}}}}}),
    );
    assert!(e.contains("A/I") && e.contains("Bogus"), "{e}");

    let e = parse_err(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true,
        "Parameters": {"x.$": "States.Sha512($.a)"}}}}),
    );
    assert!(e.contains("\"A\"") && e.contains("Parameters.x.$"), "{e}");

    let e = parse_err(
        json!({"StartAt": "A", "Bogus": 1, "States": {"A": {"Type": "Pass", "End": true}}}),
    );
    assert!(e.contains("Bogus"), "{e}");

    let e = parse_err(json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "End": true}}}));
    assert!(e.contains("Seconds"), "{e}");

    // The same shapes without the mistake are accepted.
    StateMachine::parse(&json!({"StartAt": "A", "Comment": "c", "TimeoutSeconds": 60, "States": {
        "A": {"Type": "Task", "Resource": "${AgentStepFunctionArn}", "TimeoutSeconds": 5, "Next": "M",
              "Retry": [{"ErrorEquals": ["Apna.NotReady"], "IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 3,
                         "MaxDelaySeconds": 10, "JitterStrategy": "FULL"}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "F"}]},
        "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "Next": "C",
              "ItemSelector": {"v.$": "$$.Map.Item.Value"},
              "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}},
        "C": {"Type": "Choice", "Choices": [{"Not": {"Variable": "$.x", "IsPresent": true}, "Next": "W"}], "Default": "S"},
        "W": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "S"},
        "S": {"Type": "Succeed"},
        "F": {"Type": "Fail", "Error": "E", "Cause": "c"}
    }}).to_string())
    .expect("valid definition");
}

#[tokio::test]
async fn pass_applies_paths_context_and_intrinsics() {
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "InputPath": "$.in", "ResultPath": "$.r", "Next": "Q",
              "Parameters": {
                  "plain": "v",
                  "a.$": "$.a",
                  "deep.$": "$.list[1].k",
                  "name.$": "$$.Execution.Name",
                  "id.$": "$$.Execution.Id",
                  "state.$": "$$.State.Name",
                  "greeting.$": "States.Format('hi {} #{}', $.a, $.n)",
                  "parsed.$": "States.StringToJson($.js)",
                  "text.$": "States.JsonToString($.obj)",
                  "arr.$": "States.Array($.a, 1, States.MathAdd($.n, 1))",
                  "sum.$": "States.MathAdd($.n, -3)",
                  "merged.$": "States.JsonMerge($.obj, $.obj2, false)",
                  "nested": {"again.$": "$.a"}
              }},
        "Q": {"Type": "Pass", "Result": {"fixed": true}, "ResultPath": null, "OutputPath": "$.r", "End": true}
    }});
    let input = json!({"in": {"a": "x", "n": 5, "list": [{}, {"k": 9}], "js": "{\"q\":[1]}",
                              "obj": {"a": 1, "b": 2}, "obj2": {"b": 3}}});
    let (exec, history) = run(&def.to_string(), input, ScriptInvoker::echo()).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
    let out = exec.output.unwrap();
    assert_eq!(out["plain"], "v");
    assert_eq!(out["a"], "x");
    assert_eq!(out["deep"], 9);
    assert_eq!(out["name"], json!(exec.id));
    assert!(out["id"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", exec.id)));
    assert_eq!(out["state"], "P");
    assert_eq!(out["greeting"], "hi x #5");
    assert_eq!(out["parsed"], json!({"q": [1]}));
    assert_eq!(out["text"], "{\"a\":1,\"b\":2}");
    assert_eq!(out["arr"], json!(["x", 1, 6]));
    assert_eq!(out["sum"], 2);
    assert_eq!(out["merged"], json!({"a": 1, "b": 3}));
    assert_eq!(out["nested"], json!({"again": "x"}));
    assert_eq!(entered(&history), ["P", "Q"]);
}

#[tokio::test]
async fn task_result_selector_result_path_and_output_path() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "${AgentStepFunctionArn}", "End": true,
              "Parameters": {"run_id.$": "$$.Execution.Name", "step.$": "$.step"},
              "ResultSelector": {"got.$": "$.input.step", "res.$": "$.resource"},
              "ResultPath": "$.result", "OutputPath": "$.result"}
    }});
    let invoker = ScriptInvoker::echo();
    let (exec, history) = run(&def.to_string(), json!({"step": 3}), invoker.clone()).await;
    assert_eq!(
        exec.output,
        Some(json!({"got": 3, "res": "${AgentStepFunctionArn}"}))
    );
    let calls = invoker.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].resource, "${AgentStepFunctionArn}");
    assert_eq!(calls[0].input, json!({"run_id": exec.id, "step": 3}));
    assert_eq!(
        types(&history),
        [
            "ExecutionStarted",
            "StateEntered",
            "TaskScheduled",
            "TaskSucceeded",
            "StateExited",
            "ExecutionSucceeded"
        ]
    );
    let entered = &history[1];
    assert_eq!(entered.data["type"], "Task");
    assert_eq!(entered.data["input"], json!({"step": 3}));
    assert_eq!(
        history[2].data["parameters"],
        json!({"run_id": exec.id, "step": 3})
    );
}

/// Runs a Choice with one rule against `input`; true when the rule matched.
async fn choice(rule: Value, input: Value) -> bool {
    let mut rule = rule;
    rule["Next"] = json!("Yes");
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [rule], "Default": "No"},
        "Yes": {"Type": "Pass", "Result": "yes", "End": true},
        "No": {"Type": "Pass", "Result": "no", "End": true}
    }});
    let (exec, _) = run(&def.to_string(), input, ScriptInvoker::echo()).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
    exec.output == Some(json!("yes"))
}

#[tokio::test]
async fn every_choice_operator() {
    let input = json!({"s": "beta", "t": "beta", "u": "alpha", "n": 5, "m": 5, "k": 7, "b": true, "z": null,
                       "ts": "2024-01-02T00:00:00Z", "ts2": "2024-03-01T00:00:00Z"});
    let cases: Vec<(Value, bool)> = vec![
        (json!({"Variable": "$.s", "StringEquals": "beta"}), true),
        (json!({"Variable": "$.s", "StringEquals": "gamma"}), false),
        (json!({"Variable": "$.s", "StringEqualsPath": "$.t"}), true),
        (json!({"Variable": "$.s", "StringEqualsPath": "$.u"}), false),
        (json!({"Variable": "$.s", "StringLessThan": "gamma"}), true),
        (
            json!({"Variable": "$.s", "StringGreaterThan": "gamma"}),
            false,
        ),
        (
            json!({"Variable": "$.s", "StringGreaterThanPath": "$.u"}),
            true,
        ),
        (
            json!({"Variable": "$.s", "StringLessThanEquals": "beta"}),
            true,
        ),
        (
            json!({"Variable": "$.s", "StringGreaterThanEquals": "zeta"}),
            false,
        ),
        (json!({"Variable": "$.s", "StringMatches": "b*a"}), true),
        (json!({"Variable": "$.s", "StringMatches": "a*"}), false),
        (json!({"Variable": "$.n", "NumericEquals": 5}), true),
        (json!({"Variable": "$.n", "NumericEquals": 5.5}), false),
        (json!({"Variable": "$.n", "NumericEqualsPath": "$.m"}), true),
        (
            json!({"Variable": "$.n", "NumericEqualsPath": "$.k"}),
            false,
        ),
        (json!({"Variable": "$.n", "NumericLessThan": 6}), true),
        (json!({"Variable": "$.n", "NumericLessThan": 5}), false),
        (
            json!({"Variable": "$.n", "NumericLessThanPath": "$.k"}),
            true,
        ),
        (json!({"Variable": "$.n", "NumericGreaterThan": 4}), true),
        (json!({"Variable": "$.n", "NumericGreaterThan": 5}), false),
        (
            json!({"Variable": "$.k", "NumericGreaterThanPath": "$.n"}),
            true,
        ),
        (json!({"Variable": "$.n", "NumericLessThanEquals": 5}), true),
        (
            json!({"Variable": "$.n", "NumericLessThanEquals": 4}),
            false,
        ),
        (
            json!({"Variable": "$.n", "NumericLessThanEqualsPath": "$.m"}),
            true,
        ),
        (
            json!({"Variable": "$.n", "NumericGreaterThanEquals": 5}),
            true,
        ),
        (
            json!({"Variable": "$.n", "NumericGreaterThanEquals": 6}),
            false,
        ),
        (
            json!({"Variable": "$.n", "NumericGreaterThanEqualsPath": "$.k"}),
            false,
        ),
        (json!({"Variable": "$.b", "BooleanEquals": true}), true),
        (json!({"Variable": "$.b", "BooleanEquals": false}), false),
        (json!({"Variable": "$.b", "BooleanEqualsPath": "$.b"}), true),
        (
            json!({"Variable": "$.ts", "TimestampLessThan": "2024-02-01T00:00:00Z"}),
            true,
        ),
        (
            json!({"Variable": "$.ts", "TimestampGreaterThanPath": "$.ts2"}),
            false,
        ),
        (json!({"Variable": "$.s", "IsPresent": true}), true),
        (json!({"Variable": "$.nope", "IsPresent": true}), false),
        (json!({"Variable": "$.nope", "IsPresent": false}), true),
        (json!({"Variable": "$.z", "IsNull": true}), true),
        (json!({"Variable": "$.s", "IsNull": true}), false),
        (json!({"Variable": "$.s", "IsString": true}), true),
        (json!({"Variable": "$.n", "IsNumeric": true}), true),
        (json!({"Variable": "$.n", "IsBoolean": true}), false),
        (json!({"Variable": "$.ts", "IsTimestamp": true}), true),
        // Type mismatches do not match.
        (json!({"Variable": "$.n", "StringEquals": "5"}), false),
        (
            json!({"And": [{"Variable": "$.n", "NumericEquals": 5}, {"Variable": "$.s", "StringEquals": "beta"}]}),
            true,
        ),
        (
            json!({"And": [{"Variable": "$.n", "NumericEquals": 5}, {"Variable": "$.s", "StringEquals": "x"}]}),
            false,
        ),
        (
            json!({"Or": [{"Variable": "$.n", "NumericEquals": 1}, {"Variable": "$.s", "StringEquals": "beta"}]}),
            true,
        ),
        (
            json!({"Or": [{"Variable": "$.n", "NumericEquals": 1}, {"Variable": "$.s", "StringEquals": "x"}]}),
            false,
        ),
        (
            json!({"Not": {"Variable": "$.n", "NumericEquals": 1}}),
            true,
        ),
        (
            json!({"Not": {"Variable": "$.n", "NumericEquals": 5}}),
            false,
        ),
        (
            json!({"Not": {"Variable": "$.nope", "IsPresent": true}}),
            true,
        ),
    ];
    for (rule, expected) in cases {
        assert_eq!(
            choice(rule.clone(), input.clone()).await,
            expected,
            "rule {rule}"
        );
    }
}

#[tokio::test]
async fn choice_without_match_or_variable_fails() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Y"}]},
        "Y": {"Type": "Succeed"}
    }});
    let (exec, _) = run(&def.to_string(), json!({"n": 2}), ScriptInvoker::echo()).await;
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert!(exec.error.unwrap().starts_with("States.NoChoiceMatched"));
    let (exec, _) = run(&def.to_string(), json!({}), ScriptInvoker::echo()).await;
    assert!(exec.error.unwrap().starts_with("States.Runtime"));
}

fn flaky(failures: usize, error: &'static str) -> Arc<ScriptInvoker> {
    ScriptInvoker::new(move |_, input, n| {
        Box::pin(async move {
            if n < failures {
                Err(TaskFailure::new(error, format!("attempt {n}")))
            } else {
                Ok(json!({"ok": true, "input": input}))
            }
        })
    })
}

#[tokio::test(start_paused = true)]
async fn retry_counts_attempts_and_backs_off() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "End": true,
              "Parameters": {"retry.$": "$$.State.RetryCount"},
              "Retry": [
                  {"ErrorEquals": ["Other"], "MaxAttempts": 10, "IntervalSeconds": 100},
                  {"ErrorEquals": ["Apna.NotReady"], "IntervalSeconds": 2, "BackoffRate": 3,
                   "MaxAttempts": 5, "MaxDelaySeconds": 10}
              ]}
    }});
    let invoker = flaky(4, "Apna.NotReady");
    let (exec, history) = run_paused(&def.to_string(), json!({}), invoker.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
    let calls = invoker.calls();
    assert_eq!(calls.len(), 5);
    let gaps: Vec<u64> = calls
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis() as u64)
        .collect();
    // 2, 2*3, 2*9 capped at 10, 2*27 capped at 10.
    assert_eq!(gaps, [2000, 6000, 10000, 10000]);
    let retry_counts: Vec<Value> = calls.iter().map(|c| c.input["retry"].clone()).collect();
    assert_eq!(
        retry_counts,
        [json!(0), json!(1), json!(2), json!(3), json!(4)]
    );
    assert_eq!(
        types(&history)
            .iter()
            .filter(|t| **t == "TaskFailed")
            .count(),
        4
    );
    assert_eq!(entered(&history), ["T"]);
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_max_attempts_then_catch_routes() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "Next": "Done",
              "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1}],
              "Catch": [{"ErrorEquals": ["Apna.NotReady"], "ResultPath": "$.error", "Next": "Handled"}]},
        "Done": {"Type": "Succeed"},
        "Handled": {"Type": "Pass", "End": true}
    }});
    let invoker = flaky(100, "Apna.NotReady");
    let start = tokio::time::Instant::now();
    let (exec, history) = run_paused(&def.to_string(), json!({"keep": 1}), invoker.clone()).await;
    assert_eq!(invoker.calls().len(), 3, "one attempt and two retries");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(exec.status, ExecutionStatus::Succeeded);
    assert_eq!(
        exec.output,
        Some(json!({"keep": 1, "error": {"Error": "Apna.NotReady", "Cause": "attempt 2"}}))
    );
    assert_eq!(entered(&history), ["T", "Handled"]);
}

#[tokio::test(start_paused = true)]
async fn full_jitter_stays_within_the_backoff() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "End": true,
              "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 4, "BackoffRate": 2, "MaxAttempts": 3,
                         "JitterStrategy": "FULL"}]}
    }});
    let invoker = flaky(3, "Boom");
    let (exec, _) = run_paused(&def.to_string(), json!({}), invoker.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded);
    let calls = invoker.calls();
    for (i, w) in calls.windows(2).enumerate() {
        let gap = w[1].at - w[0].at;
        assert!(
            gap <= Duration::from_secs(4 << i),
            "retry {i} waited {gap:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn task_timeout_is_states_timeout_and_not_task_failed() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "slow", "TimeoutSeconds": 5, "End": true,
              "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 3}],
              "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "Late"}]},
        "Late": {"Type": "Pass", "End": true}
    }});
    let invoker = ScriptInvoker::new(|_, _, _| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(100)).await;
            Ok(json!("too late"))
        })
    });
    let start = tokio::time::Instant::now();
    let (exec, _) = run_paused(&def.to_string(), json!({}), invoker.clone()).await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(
        invoker.calls().len(),
        1,
        "States.TaskFailed does not match States.Timeout"
    );
    assert_eq!(exec.output.unwrap()["timeout"]["Error"], "States.Timeout");
}

#[tokio::test]
async fn catch_picks_the_first_matching_catcher() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "End": true,
              "Catch": [
                  {"ErrorEquals": ["Apna.Conflict"], "Next": "Conflict"},
                  {"ErrorEquals": ["Apna.NotReady", "Apna.Model"], "ResultPath": "$.err", "Next": "Named"},
                  {"ErrorEquals": ["States.ALL"], "ResultPath": null, "Next": "Any"}
              ]},
        "Conflict": {"Type": "Pass", "End": true},
        "Named": {"Type": "Pass", "End": true},
        "Any": {"Type": "Pass", "End": true}
    }});
    for (error, state, output) in [
        (
            "Apna.Model",
            "Named",
            json!({"a": 1, "err": {"Error": "Apna.Model", "Cause": "c"}}),
        ),
        (
            "Apna.Conflict",
            "Conflict",
            json!({"Error": "Apna.Conflict", "Cause": "c"}),
        ),
        ("Something.Else", "Any", json!({"a": 1})),
    ] {
        let invoker = ScriptInvoker::new(move |_, _, _| {
            Box::pin(async move { Err(TaskFailure::new(error, "c")) })
        });
        let (exec, history) = run(&def.to_string(), json!({"a": 1}), invoker).await;
        assert_eq!(entered(&history), ["T", state], "{error}");
        assert_eq!(exec.output, Some(output), "{error}");
    }
}

#[tokio::test]
async fn uncaught_failures_and_fail_states_fail_the_execution() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "End": true,
              "Catch": [{"ErrorEquals": ["Other"], "Next": "T"}]}
    }});
    let invoker = ScriptInvoker::new(|_, _, _| {
        Box::pin(async { Err(TaskFailure::new("Apna.Sandbox", "pod gone")) })
    });
    let (exec, history) = run(&def.to_string(), json!({}), invoker).await;
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert_eq!(exec.error.as_deref(), Some("Apna.Sandbox: pod gone"));
    let last = history.last().unwrap();
    assert_eq!(last.event_type, "ExecutionFailed");
    assert_eq!(
        last.data,
        json!({"error": "Apna.Sandbox", "cause": "pod gone"})
    );

    let def = json!({"StartAt": "F", "States": {
        "F": {"Type": "Fail", "ErrorPath": "$.code", "Cause": "fixed cause"}
    }});
    let (exec, history) = run(
        &def.to_string(),
        json!({"code": "Custom.Error"}),
        ScriptInvoker::echo(),
    )
    .await;
    assert_eq!(exec.error.as_deref(), Some("Custom.Error: fixed cause"));
    assert_eq!(
        types(&history),
        ["ExecutionStarted", "StateEntered", "ExecutionFailed"]
    );
}

#[tokio::test(start_paused = true)]
async fn map_respects_max_concurrency_and_keeps_order() {
    for (limit, expected_peak) in [(2u32, 2usize), (0, 7)] {
        let def = json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": limit, "ResultPath": "$.out", "End": true,
                  "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "tag.$": "$.tag"},
                  "ItemProcessor": {"StartAt": "Work", "States": {
                      "Work": {"Type": "Task", "Resource": "work", "End": true}
                  }}}
        }});
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (f, p) = (in_flight.clone(), peak.clone());
        let invoker = ScriptInvoker::new(move |_, input, _| {
            let (f, p) = (f.clone(), p.clone());
            Box::pin(async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                // Later items finish sooner, so order must come from the index, not completion.
                let i = input["i"].as_u64().unwrap();
                tokio::time::sleep(Duration::from_secs(10 - i)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                Ok(json!(format!(
                    "{}-{}",
                    input["tag"].as_str().unwrap(),
                    input["v"]
                )))
            })
        });
        let items: Vec<u64> = (10..17).collect();
        let (exec, history) = run_paused(
            &def.to_string(),
            json!({"items": items, "tag": "t"}),
            invoker,
        )
        .await;
        assert_eq!(exec.status, ExecutionStatus::Succeeded, "{:?}", exec.error);
        assert_eq!(
            peak.load(Ordering::SeqCst),
            expected_peak,
            "MaxConcurrency {limit}"
        );
        let out = &exec.output.unwrap()["out"];
        assert_eq!(
            out,
            &json!(["t-10", "t-11", "t-12", "t-13", "t-14", "t-15", "t-16"])
        );
        assert_eq!(
            types(&history)
                .iter()
                .filter(|t| **t == "MapIterationSucceeded")
                .count(),
            7
        );
        assert_eq!(entered(&history).iter().filter(|s| *s == "Work").count(), 7);
    }
}

#[tokio::test]
async fn legacy_iterator_with_parameters_and_failed_iteration_is_caught() {
    let def = json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "MaxConcurrency": 1, "Next": "Ok", "ItemsPath": "$.items",
              "Parameters": {"n.$": "$$.Map.Item.Value"},
              "Iterator": {"StartAt": "Check", "States": {
                  "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 2, "Next": "Bad"}], "Default": "Good"},
                  "Good": {"Type": "Pass", "End": true},
                  "Bad": {"Type": "Fail", "Error": "TooBig", "Cause": "n > 2"}
              }},
              "Catch": [{"ErrorEquals": ["TooBig"], "ResultPath": "$.error", "Next": "Caught"}]},
        "Ok": {"Type": "Succeed"},
        "Caught": {"Type": "Pass", "End": true}
    }});
    let (exec, history) = run(
        &def.to_string(),
        json!({"items": [1, 2]}),
        ScriptInvoker::echo(),
    )
    .await;
    assert_eq!(exec.output, Some(json!([{"n": 1}, {"n": 2}])));
    assert!(entered(&history).ends_with(&["Ok".to_string()]));
    let (exec, history) = run(
        &def.to_string(),
        json!({"items": [1, 5, 2]}),
        ScriptInvoker::echo(),
    )
    .await;
    assert_eq!(
        exec.output.unwrap()["error"],
        json!({"Error": "TooBig", "Cause": "n > 2"})
    );
    assert!(types(&history).contains(&"MapIterationFailed"));
    assert_eq!(entered(&history).last().unwrap(), "Caught");
}

#[tokio::test(start_paused = true)]
async fn wait_uses_seconds_and_seconds_path() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Wait", "Seconds": 30, "Next": "B"},
        "B": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "C"},
        "C": {"Type": "Wait", "Seconds": 0, "End": true}
    }});
    let start = tokio::time::Instant::now();
    let (exec, history) = run_paused(
        &def.to_string(),
        json!({"delay": 45}),
        ScriptInvoker::echo(),
    )
    .await;
    assert_eq!(start.elapsed(), Duration::from_secs(75));
    assert_eq!(exec.output, Some(json!({"delay": 45})));
    assert_eq!(entered(&history), ["A", "B", "C"]);
    let (exec, _) = run_paused(
        &def.to_string(),
        json!({"delay": "soon"}),
        ScriptInvoker::echo(),
    )
    .await;
    assert!(exec.error.unwrap().starts_with("States.Runtime"));
}

#[tokio::test(start_paused = true)]
async fn execution_timeout_ends_as_timed_out() {
    let def = json!({"StartAt": "W", "TimeoutSeconds": 10, "States": {
        "W": {"Type": "Wait", "Seconds": 60, "End": true}
    }});
    let start = tokio::time::Instant::now();
    let (exec, history) = run_paused(&def.to_string(), json!({}), ScriptInvoker::echo()).await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(exec.status, ExecutionStatus::TimedOut);
    assert_eq!(history.last().unwrap().event_type, "ExecutionTimedOut");
}

#[tokio::test]
async fn bad_paths_fail_with_runtime_errors_that_catch_all_does_not_see() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "End": true, "Parameters": {"x.$": "$.missing"},
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}]},
        "C": {"Type": "Succeed"}
    }});
    let invoker = ScriptInvoker::echo();
    let (exec, _) = run(&def.to_string(), json!({}), invoker.clone()).await;
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert!(exec.error.unwrap().starts_with("States.Runtime"));
    assert!(invoker.calls().is_empty());
}

#[tokio::test]
async fn a_panicking_handler_is_a_task_failure() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "End": true,
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.err", "Next": "C"}]},
        "C": {"Type": "Pass", "End": true}
    }});
    let invoker = ScriptInvoker::new(|_, _, _| Box::pin(async { panic!("handler bug") }));
    let (exec, _) = run(&def.to_string(), json!({}), invoker).await;
    assert_eq!(exec.status, ExecutionStatus::Succeeded);
    assert_eq!(exec.output.unwrap()["err"]["Error"], "States.TaskFailed");
}
