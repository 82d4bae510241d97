//! Retries of the model client against injected faults of the mock API.

use std::time::{Duration, Instant};

use apna::agent::{run_step, AnthropicClient, Model, ModelDelta, ModelMessage, ModelRequest};
use apna::domain::{ContentBlock, Role};
use apna::error::Error;
use apna_tests::agent_harness::{fixture, test_options, AgentHarness};
use apna_tests::mock_anthropic::{Fault, MockAnthropic, Script, Turn};

fn hello() -> ModelRequest {
    ModelRequest {
        system: "sys".into(),
        tools: vec![],
        messages: vec![ModelMessage {
            role: Role::User,
            content: vec![ContentBlock::Text { text: "hi".into() }],
        }],
        max_tokens: 100,
    }
}

#[tokio::test]
async fn overloaded_twice_then_the_step_succeeds() {
    let h = AgentHarness::new(fixture("create_todo").unwrap())
        .await
        .unwrap();
    h.say("a todo app").await.unwrap();
    h.mock.push_fault(Fault::Overloaded);
    h.mock.push_fault(Fault::Overloaded);
    let o = run_step(&h.deps(), &h.run.id, 1, None).await.unwrap();
    assert_eq!(o.tool_calls, 1);
    assert!(h.sandbox.file("src/components/TodoList.tsx").is_some());
    let outcomes: Vec<String> = h.mock.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes[0].contains("Overloaded") && outcomes[1].contains("Overloaded"));
    assert_eq!(outcomes[2], "turn 0");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    for stream in [false, true] {
        let mock = MockAnthropic::start(Script::new(vec![Turn::text("hello")]))
            .await
            .unwrap();
        let client =
            AnthropicClient::new(test_options(&mock.url(), stream, Duration::from_secs(5)))
                .unwrap();
        mock.push_fault(Fault::RateLimited {
            retry_after_secs: 1.0,
        });
        let t = Instant::now();
        let r = client.complete(&hello(), None).await.unwrap();
        let waited = t.elapsed();
        assert_eq!(r.text(), "hello");
        // The client's own backoff is 5-50 ms: only retry-after explains a 1 s wait.
        assert!(waited >= Duration::from_millis(990), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        assert_eq!(mock.requests().len(), 2);
    }
}

#[tokio::test]
async fn server_errors_malformed_json_and_mid_stream_errors_are_retried() {
    for stream in [false, true] {
        let mock = MockAnthropic::start(Script::new(vec![Turn::text("recovered")]))
            .await
            .unwrap();
        let client =
            AnthropicClient::new(test_options(&mock.url(), stream, Duration::from_secs(5)))
                .unwrap();
        mock.push_fault(Fault::ServerError);
        mock.push_fault(Fault::MalformedJson);
        mock.push_fault(Fault::MidStreamError);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = client.complete(&hello(), Some(&tx)).await.unwrap();
        assert_eq!(r.text(), "recovered");
        assert_eq!(mock.requests().len(), 4);
        drop(tx);
        let mut deltas = Vec::new();
        while let Some(d) = rx.recv().await {
            deltas.push(d);
        }
        if stream {
            // The partial text of the failed stream is followed by a restart marker.
            let restart = deltas
                .iter()
                .position(|d| matches!(d, ModelDelta::Restart { .. }));
            let restart = restart.expect("no restart delta after a mid-stream error");
            let after: String = deltas[restart..]
                .iter()
                .filter_map(|d| match d {
                    ModelDelta::Text { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(after, "recovered");
        } else {
            assert!(deltas.is_empty());
        }
    }
}

#[tokio::test]
async fn a_request_timeout_is_retried() {
    let mock = MockAnthropic::start(Script::new(vec![Turn::text("in time")]))
        .await
        .unwrap();
    let client =
        AnthropicClient::new(test_options(&mock.url(), true, Duration::from_millis(300))).unwrap();
    mock.push_fault(Fault::Timeout { ms: 2_000 });
    let t = Instant::now();
    let r = client.complete(&hello(), None).await.unwrap();
    assert_eq!(r.text(), "in time");
    assert!(
        t.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn giving_up_is_an_error_and_the_step_can_be_retried() {
    let h = AgentHarness::new(fixture("create_todo").unwrap())
        .await
        .unwrap();
    h.say("a todo app").await.unwrap();
    for _ in 0..5 {
        h.mock.push_fault(Fault::ServerError);
    }
    let err = run_step(&h.deps(), &h.run.id, 1, None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Model(m) if m.contains("gave up after 5 attempts")),
        "{err}"
    );
    assert!(h.sandbox.writes().is_empty());
    // The workflow retries the step: it now succeeds, with nothing applied twice.
    let o = run_step(&h.deps(), &h.run.id, 1, None).await.unwrap();
    assert_eq!(o.tool_calls, 1);
    assert_eq!(h.sandbox.writes().len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let mock = MockAnthropic::start(Script::default()).await.unwrap();
    let client =
        AnthropicClient::new(test_options(&mock.url(), false, Duration::from_secs(5))).unwrap();
    let mut bad = hello();
    bad.messages[0].role = Role::Assistant;
    bad.messages[0].content = vec![ContentBlock::ToolUse {
        id: "x".into(),
        name: "read_file".into(),
        input: serde_json::json!({}),
    }];
    let err = client.complete(&bad, None).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 400"), "{err}");
    assert_eq!(mock.requests().len(), 1);

    let mut opts = test_options(&mock.url(), false, Duration::from_secs(5));
    opts.api_key = None;
    let keyless = AnthropicClient::new(opts).unwrap();
    let err = keyless.complete(&hello(), None).await.unwrap_err();
    assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
    assert_eq!(mock.requests().len(), 1);
}
