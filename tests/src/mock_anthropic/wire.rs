//! The Messages API's server-sent event stream, as the real API sends it.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};

pub(crate) fn sse_response(body: String) -> Response {
    (
        StatusCode::OK,
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) fn push_event(out: &mut String, event: &str, data: &Value) {
    out.push_str("event: ");
    out.push_str(event);
    out.push_str("\ndata: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

/// Splits `s` into pieces of about `n` bytes on character boundaries.
fn chunks(s: &str, n: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < s.len() {
        let mut end = (start + n).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        out.push(&s[start..end]);
        start = end;
    }
    out
}

/// The events the real API streams for `message`, in order (each with its `type`).
pub fn sse_events(message: &Value) -> Vec<Value> {
    let mut events = Vec::new();
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    let usage = message["usage"].clone();
    start["usage"] = json!({
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "output_tokens": 1,
    });
    events.push(json!({ "type": "message_start", "message": start }));
    events.push(json!({ "type": "ping" }));
    let blocks = message["content"].as_array().cloned().unwrap_or_default();
    // At the output limit the last block stops mid-way: a tool call's JSON
    // input arrives only in part, as the real API sends it.
    let cut_at_limit = message["stop_reason"] == "max_tokens";
    for (i, b) in blocks.iter().enumerate() {
        if b["type"] == "tool_use" {
            events.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}));
            let mut input = b["input"].to_string();
            if cut_at_limit && i + 1 == blocks.len() {
                let mut half = input.len() / 2;
                while !input.is_char_boundary(half) {
                    half -= 1;
                }
                input.truncate(half);
            }
            events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": ""}}));
            for piece in chunks(&input, 16) {
                events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": piece}}));
            }
        } else {
            events.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}));
            for piece in chunks(b["text"].as_str().unwrap_or(""), 12) {
                events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}}));
            }
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null}, "usage": {"output_tokens": usage["output_tokens"]}}));
    events.push(json!({"type": "message_stop"}));
    events
}

/// The event stream for `message`, each event sent `pause` after the one
/// before it (a zero pause sends one body at once).
pub(crate) fn sse_paced(message: &Value, pause: Duration) -> Response {
    if pause.is_zero() {
        return sse_response(sse_body(message));
    }
    let events = sse_events(message).into_iter().map(|e| {
        let mut s = String::new();
        let name = e["type"].as_str().unwrap_or("message").to_string();
        push_event(&mut s, &name, &e);
        s
    });
    let body = futures::stream::iter(events).then(move |s| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(s))
    });
    (
        StatusCode::OK,
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The event stream the real API sends for `message`.
pub fn sse_body(message: &Value) -> String {
    let mut s = String::new();
    for e in sse_events(message) {
        let name = e["type"].as_str().unwrap_or("message").to_string();
        push_event(&mut s, &name, &e);
    }
    s
}
