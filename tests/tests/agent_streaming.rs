//! Streaming and non-streaming calls give the same answer; deltas carry it as it arrives.

use std::time::Duration;

use apna::agent::{AnthropicClient, Model, ModelDelta, ModelMessage, ModelRequest};
use apna::domain::{ContentBlock, Role};
use apna_tests::agent_harness::{fixture, test_options};
use apna_tests::mock_anthropic::MockAnthropic;

fn request() -> ModelRequest {
    ModelRequest {
        system: "You build apps.".into(),
        tools: apna::agent::tools::Toolbox::standard().specs(),
        messages: vec![ModelMessage {
            role: Role::User,
            content: vec![ContentBlock::Text {
                text: "Build me a todo app, with ünïcödé ✓".into(),
            }],
        }],
        max_tokens: 1000,
    }
}

#[tokio::test]
async fn stream_and_plain_answers_are_identical() {
    let script = fixture("create_todo").unwrap();
    let plain_mock = MockAnthropic::start(script.clone()).await.unwrap();
    let stream_mock = MockAnthropic::start(script).await.unwrap();
    let plain = AnthropicClient::new(test_options(
        &plain_mock.url(),
        false,
        Duration::from_secs(5),
    ))
    .unwrap();
    let streaming = AnthropicClient::new(test_options(
        &stream_mock.url(),
        true,
        Duration::from_secs(5),
    ))
    .unwrap();

    let a = plain.complete(&request(), None).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let b = streaming.complete(&request(), Some(&tx)).await.unwrap();
    assert_eq!(a, b);
    assert!(!plain_mock.requests()[0].stream);
    assert!(stream_mock.requests()[0].stream);
    assert!(b.has_tool_use());
    assert_eq!(b.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(b.usage.cache_write_tokens, 2500);

    // The deltas, concatenated per block, rebuild the same content.
    drop(tx);
    let mut text = String::new();
    let mut json = String::new();
    let mut tool = None;
    let mut pieces = 0;
    while let Some(d) = rx.recv().await {
        pieces += 1;
        match d {
            ModelDelta::Text { index: 0, text: t } => text.push_str(&t),
            ModelDelta::ToolUse { index: 1, name } => tool = Some(name),
            ModelDelta::ToolInput {
                index: 1,
                partial_json,
            } => json.push_str(&partial_json),
            other => panic!("unexpected delta {other:?}"),
        }
    }
    assert!(
        pieces > 10,
        "the answer should arrive in many pieces, got {pieces}"
    );
    let ContentBlock::Text { text: want_text } = &b.content[0] else {
        panic!()
    };
    assert_eq!(&text, want_text);
    let ContentBlock::ToolUse { name, input, .. } = &b.content[1] else {
        panic!()
    };
    assert_eq!(tool.as_deref(), Some(name.as_str()));
    assert_eq!(
        &serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        input
    );
}
