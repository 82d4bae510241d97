//! The mock Anthropic server itself: turn matching, validation like the real
//! API, and the control endpoints used by out-of-process e2e tests.

use apna_tests::mock_anthropic::{validate_request, MockAnthropic, Script, Turn};
use serde_json::{json, Value};

async fn ask(url: &str, messages: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": messages}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn turns_are_picked_by_match_then_order_then_done() {
    let script = Script::new(vec![
        Turn::text("fixed it").when("TypeScript"),
        Turn::text("created it").when("create"),
        Turn::text("anything"),
    ]);
    let mock = MockAnthropic::start(script).await.unwrap();
    let url = mock.url();
    let text = |v: &Value| v["content"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(
        text(&ask(&url, user("please create a todo app")).await.1),
        "created it"
    );
    assert_eq!(text(&ask(&url, user("something else")).await.1), "anything");
    assert_eq!(
        text(&ask(&url, user("fix the typescript error")).await.1),
        "fixed it"
    );
    let (status, done) = ask(&url, user("more")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (text(&done), done["stop_reason"].as_str()),
        ("Done.".into(), Some("end_turn"))
    );
}

#[tokio::test]
async fn generated_tool_ids_are_unique_and_paired_results_are_required() {
    let mock = MockAnthropic::start(Script::new(vec![
        Turn::tool("", "list_files", json!({})),
        Turn::tool("", "list_files", json!({})),
    ]))
    .await
    .unwrap();
    let url = mock.url();
    let (_, a) = ask(&url, user("go")).await;
    assert_eq!(a["stop_reason"], "tool_use");
    let id = a["content"][0]["id"].as_str().unwrap().to_string();

    // Answering with the wrong id is refused like the real API does.
    let wrong = json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": a["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]},
    ]);
    let (status, err) = ask(&url, wrong).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");

    let right = json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": a["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "x"}]},
    ]);
    let (status, b) = ask(&url, right).await;
    assert_eq!(status, 200);
    assert_ne!(b["content"][0]["id"], a["content"][0]["id"]);
    assert_eq!(mock.answered_calls(), 2);
}

#[test]
fn validation_matches_the_api_rules() {
    let ok =
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]});
    assert!(validate_request(&ok).is_ok());
    let bad = [
        json!({"model": "m", "max_tokens": 1, "messages": []}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": "hi"}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]},
            {"role": "user", "content": [{"type": "text", "text": "no result"}]}]}),
        json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]},
            {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]}),
    ];
    for b in bad {
        assert!(validate_request(&b).is_err(), "accepted {b}");
    }
}

#[tokio::test]
async fn control_endpoints_script_faults_and_record() {
    let mock = MockAnthropic::start(Script::default()).await.unwrap();
    let url = mock.url();
    let http = reqwest::Client::new();
    let script = json!([{"content": [{"type": "text", "text": "scripted over HTTP"}]}]);
    let s = http
        .post(format!("{url}/_mock/script"))
        .json(&json!({"turns": script}))
        .send()
        .await
        .unwrap();
    assert_eq!(s.status().as_u16(), 204);
    let f = http
        .post(format!("{url}/_mock/faults"))
        .json(&json!({"type": "rate_limited", "retry_after_secs": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(f.status().as_u16(), 204);
    let r = http
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let (_, ok) = ask(&url, user("x")).await;
    assert_eq!(ok["content"][0]["text"], "scripted over HTTP");
    let (status, _) = {
        let r = http
            .post(format!("{url}/v1/messages"))
            .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 401);
    let recorded: Vec<Value> = http
        .get(format!("{url}/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = recorded
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes[0].starts_with("fault RateLimited"));
    assert_eq!(outcomes[1], "turn 0");
    assert_eq!(outcomes[2], "invalid: HTTP 401");
}
