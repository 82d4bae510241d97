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

/// Sends a streamed request; returns the time to the first body chunk, the
/// whole answer's time, and the number of events.
async fn timed_stream(url: &str) -> (std::time::Duration, std::time::Duration, usize) {
    let started = std::time::Instant::now();
    let mut r = reqwest::Client::new()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 50, "stream": true, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut first = None;
    let mut body = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        first.get_or_insert(started.elapsed());
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = body.matches("\nevent: ").count() + usize::from(body.starts_with("event: "));
    assert!(body.contains("message_stop"), "{body}");
    (first.unwrap(), started.elapsed(), events)
}

#[tokio::test]
async fn latency_delays_each_call_and_each_streamed_event() {
    let mock = MockAnthropic::start(Script::new(vec![
        Turn::text("a reply long enough to stream in several pieces"),
        Turn::text("a reply long enough to stream in several pieces"),
    ]))
    .await
    .unwrap();
    let url = mock.url();
    let (_, total, _) = timed_stream(&url).await;
    assert!(
        total < std::time::Duration::from_millis(300),
        "{total:?} without latency"
    );

    mock.set_latency(std::time::Duration::from_millis(400));
    mock.set_chunk_latency(std::time::Duration::from_millis(30));
    let (first, total, events) = timed_stream(&url).await;
    assert!(events >= 8, "{events} events");
    assert!(
        first >= std::time::Duration::from_millis(400),
        "first byte after {first:?}"
    );
    let paced = std::time::Duration::from_millis(400 + 30 * events as u64);
    assert!(
        total >= paced,
        "{total:?} for {events} events, expected ≥ {paced:?}"
    );
    // A reset keeps the latency (it is the server's setting, not a test's state).
    mock.reset();
    let started = std::time::Instant::now();
    let (status, _) = ask(&url, user("again")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(400));
}

#[tokio::test]
async fn the_binary_takes_latency_from_its_flags_and_environment() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-anthropic"))
        .args(["--port", "0", "--chunk-latency-ms", "20"])
        .env("MOCK_ANTHROPIC_LATENCY_MS", "300")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next_line().await.unwrap().unwrap();
    let (first, total, events) = timed_stream(&url).await;
    assert!(first >= std::time::Duration::from_millis(300), "{first:?}");
    assert!(
        total >= std::time::Duration::from_millis(300 + 20 * events as u64),
        "{total:?} for {events} events"
    );
    child.kill().await.unwrap();

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-anthropic"))
        .env("MOCK_ANTHROPIC_LATENCY_MS", "soon")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOCK_ANTHROPIC_LATENCY_MS"));
}
