//! Claude on Amazon Bedrock: the same scripted conversations through
//! `BedrockClient` against the mock's Bedrock routes (InvokeModel JSON and
//! the event-stream of InvokeModelWithResponseStream), SigV4-signed.

use apna::agent::bedrock::BEDROCK_VERSION;
use apna::agent::ModelDelta;
use apna::domain::ContentBlock;
use apna_tests::agent_harness::{fixture, AgentHarness};
use apna_tests::mock_anthropic::{has_cache_breakpoints, Fault};

#[tokio::test]
async fn a_conversation_runs_on_bedrock_streaming_and_not() {
    let mut answers = Vec::new();
    for stream in [true, false] {
        let h = AgentHarness::with_bedrock(fixture("create_todo").unwrap(), stream)
            .await
            .unwrap();
        h.say("Build me a todo app").await.unwrap();
        let outcomes = h.run_until_done(1, 10).await.unwrap();
        assert_eq!(outcomes.len(), 3, "stream={stream}: {outcomes:#?}");
        let last = outcomes.last().unwrap();
        assert!(last.done && last.text.starts_with("Your todo app is ready"));
        assert!(h
            .sandbox
            .file("src/components/TodoList.tsx")
            .unwrap()
            .contains("export function TodoList"));
        // Bedrock's body: no model or stream keys, its anthropic_version,
        // the same cache breakpoints; SigV4-signed; streaming by route.
        for r in h.mock.requests() {
            assert_eq!(r.anthropic_version.as_deref(), Some(BEDROCK_VERSION));
            assert!(r.has_api_key, "not SigV4-signed");
            assert_eq!(r.stream, stream);
            assert!(r.body.get("stream").is_none() && r.body.get("model").is_none());
            assert!(has_cache_breakpoints(&r.body), "{}", r.body);
            assert!(r.outcome.starts_with("turn"), "{}", r.outcome);
        }
        let run = h.store.get_run(&h.run.id).await.unwrap().unwrap();
        assert!(run.cost_usd > 0.0 && run.usage.output_tokens > 0);
        answers.push(outcomes.iter().map(|o| o.text.clone()).collect::<Vec<_>>());
    }
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn throttling_and_mid_stream_errors_are_retried_and_deltas_restart() {
    let h = AgentHarness::with_bedrock(fixture("create_todo").unwrap(), true)
        .await
        .unwrap();
    h.mock.push_fault(Fault::RateLimited {
        retry_after_secs: 0.0,
    });
    h.mock.push_fault(Fault::MidStreamError);
    h.mock.push_fault(Fault::Overloaded);
    h.say("Build me a todo app").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut deps = h.deps();
    deps.deltas = Some(tx);
    let out = apna::agent::run_step(&deps, &h.run.id, 1, None)
        .await
        .unwrap();
    assert!(out.should_continue(), "{out:#?}");
    let outcomes: Vec<String> = h.mock.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    assert!(outcomes[3].starts_with("turn 0"), "{outcomes:?}");
    drop(deps);
    let mut deltas = Vec::new();
    while let Ok(d) = rx.try_recv() {
        deltas.push(d);
    }
    // The mid-stream failure had started an answer: watchers were told to drop it.
    assert!(deltas
        .iter()
        .any(|d| matches!(d, ModelDelta::Restart { .. })));
    assert!(h.sandbox.file("src/components/TodoList.tsx").is_some());
}

#[tokio::test]
async fn a_rejected_request_is_a_clear_final_error() {
    let h = AgentHarness::with_bedrock(fixture("create_todo").unwrap(), false)
        .await
        .unwrap();
    // A conversation must start with the person: Bedrock rejects this one.
    let model = h.model.clone();
    let req = apna::agent::ModelRequest {
        system: "s".into(),
        tools: vec![],
        messages: vec![apna::agent::ModelMessage {
            role: apna::domain::Role::Assistant,
            content: vec![ContentBlock::Text { text: "x".into() }],
        }],
        max_tokens: 10,
    };
    let e = model.complete(&req, None).await.unwrap_err().to_string();
    assert!(e.contains("ValidationException"), "{e}");
    // Not retried: a validation error is final.
    assert_eq!(h.mock.requests().len(), 1);
}
