//! `POST /v1/messages`: each request is validated, recorded, and answered
//! with the next queued fault or the next matching scripted turn.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::validate::{last_user_text, validate_request};
use super::wire::{push_event, sse_body, sse_paced, sse_response};
use super::{Fault, MockHandle, MockState, RecordedRequest, Turn};

fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "type": "error", "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

/// What the mock will do with a request.
pub(crate) enum Plan {
    Invalid(Response),
    Fault(Fault),
    Answer {
        message: Value,
        delay: Duration,
        /// Pause after each streamed event.
        chunk_delay: Duration,
    },
}

pub(super) async fn messages(
    State(h): State<MockHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let stream = parsed
        .as_ref()
        .and_then(|b| b["stream"].as_bool())
        .unwrap_or(false);
    let record = RecordedRequest {
        body: parsed.clone().unwrap_or(Value::Null),
        has_api_key: headers.contains_key("x-api-key"),
        anthropic_version: headers
            .get("anthropic-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        stream,
        outcome: String::new(),
    };
    let plan = plan_and_record(&h, record, parsed.as_ref());
    match plan {
        Plan::Invalid(r) => r,
        Plan::Fault(f) => fault_response(&h, f, stream, parsed.as_ref()).await,
        Plan::Answer {
            message,
            delay,
            chunk_delay,
        } => {
            let message = deliver(message, delay).await;
            if stream {
                sse_paced(&message, chunk_delay)
            } else {
                Json(message).into_response()
            }
        }
    }
}

/// Plans the answer to a request and records the request with its outcome.
pub(crate) fn plan_and_record(
    h: &MockHandle,
    mut record: RecordedRequest,
    body: Option<&Value>,
) -> Plan {
    let mut g = h.lock();
    let plan = plan_answer(&mut g, &record, body);
    record.outcome = match &plan {
        Plan::Invalid(r) => format!("invalid: HTTP {}", r.status().as_u16()),
        Plan::Fault(f) => format!("fault {f:?}"),
        Plan::Answer { message, .. } => message["_outcome"].as_str().unwrap_or("").to_string(),
    };
    g.requests.push(record);
    plan
}

/// Waits out the answer's latency and strips the mock's bookkeeping from it.
pub(crate) async fn deliver(mut message: Value, delay: Duration) -> Value {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(m) = message.as_object_mut() {
        m.remove("_outcome");
    }
    message
}

fn plan_answer(g: &mut MockState, rec: &RecordedRequest, body: Option<&Value>) -> Plan {
    if !rec.has_api_key {
        return Plan::Invalid(api_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        ));
    }
    if rec.anthropic_version.is_none() {
        return Plan::Invalid(api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version header is required",
        ));
    }
    let Some(body) = body else {
        return Plan::Invalid(api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the request body is not valid JSON",
        ));
    };
    if let Err(why) = validate_request(body) {
        return Plan::Invalid(api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &why,
        ));
    }
    if let Some(f) = g.faults.pop_front() {
        return Plan::Fault(f);
    }
    let last_text = last_user_text(body).to_lowercase();
    let pick = g.script.turns.iter().enumerate().position(|(i, t)| {
        !g.used[i]
            && t.match_text
                .as_deref()
                .is_none_or(|m| last_text.contains(&m.to_lowercase()))
    });
    let (turn, outcome) = match pick {
        Some(i) => {
            g.used[i] = true;
            (g.script.turns[i].clone(), format!("turn {i}"))
        }
        None => (Turn::text("Done."), "done".to_string()),
    };
    g.next_id += 1;
    let n = g.next_id;
    let content: Vec<Value> = turn
        .content
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut b = b.clone();
            if b["type"] == "tool_use" {
                if b.get("id").and_then(Value::as_str).is_none() {
                    b["id"] = json!(format!("toolu_mock_{n:04}_{i}"));
                }
                if b.get("input").is_none() {
                    b["input"] = json!({});
                }
            }
            b
        })
        .collect();
    let has_tool = content.iter().any(|b| b["type"] == "tool_use");
    let stop_reason = turn
        .stop_reason
        .clone()
        .unwrap_or_else(|| if has_tool { "tool_use" } else { "end_turn" }.to_string());
    let usage = match &turn.usage {
        Some(u) => u.clone(),
        None => simulate_usage(g, body, &content),
    };
    let message = json!({
        "id": format!("msg_mock_{n:04}"),
        "type": "message",
        "role": "assistant",
        "model": body["model"].as_str().unwrap_or("claude-sonnet-4-5"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage,
        "_outcome": outcome,
    });
    Plan::Answer {
        message,
        delay: g.latency + Duration::from_millis(turn.delay_ms.unwrap_or(0)),
        chunk_delay: g.chunk_latency,
    }
}

/// Token counts from sizes (4 bytes a token). The tools + system prefix is
/// "cached" when it carries `cache_control`: written the first time, read after.
fn simulate_usage(g: &mut MockState, body: &Value, content: &[Value]) -> Value {
    let tokens = |v: &Value| (v.to_string().len() as i64 / 4).max(1);
    let prefix = json!([body["tools"], body["system"]]);
    let prefix_tokens = tokens(&prefix);
    let cacheable = body["system"]
        .as_array()
        .is_some_and(|s| s.iter().any(|b| b.get("cache_control").is_some()))
        || body["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|b| b.get("cache_control").is_some()));
    let mut hasher = DefaultHasher::new();
    prefix.to_string().hash(&mut hasher);
    let key = hasher.finish();
    // Images count as the API documents (width × height / 750), not by their base64 size.
    let mut messages = body["messages"].clone();
    let mut image_tokens = 0i64;
    for m in messages.as_array_mut().into_iter().flatten() {
        for b in m["content"].as_array_mut().into_iter().flatten() {
            if b["type"] == "image" {
                image_tokens += super::validate::image_tokens(b).unwrap_or(0);
                *b = json!({"type": "image"});
            }
        }
    }
    let (mut input, mut write, mut read) = (tokens(&messages) + image_tokens, 0, 0);
    if !cacheable {
        input += prefix_tokens;
    } else if g.cached_prefixes.insert(key) {
        write = prefix_tokens;
    } else {
        read = prefix_tokens;
    }
    json!({
        "input_tokens": input,
        "output_tokens": tokens(&Value::Array(content.to_vec())),
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
    })
}

async fn fault_response(h: &MockHandle, f: Fault, stream: bool, body: Option<&Value>) -> Response {
    match f {
        Fault::RateLimited { retry_after_secs } => {
            let mut r = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            );
            if let Ok(v) = retry_after_secs.to_string().parse() {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
        Fault::Overloaded => api_error(
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "Overloaded",
        ),
        Fault::ServerError => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
        ),
        Fault::Timeout { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            api_error(StatusCode::GATEWAY_TIMEOUT, "timeout_error", "timed out")
        }
        Fault::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            // Answer as if no fault had been queued for this request.
            let plan = {
                let mut g = h.lock();
                let rec = RecordedRequest {
                    body: Value::Null,
                    has_api_key: true,
                    anthropic_version: Some("delayed".into()),
                    stream,
                    outcome: String::new(),
                };
                let plan = plan_answer_without_faults(&mut g, &rec, body);
                if let (Plan::Answer { message, .. }, Some(last)) = (&plan, g.requests.last_mut()) {
                    last.outcome = format!(
                        "{} (delayed)",
                        message["_outcome"].as_str().unwrap_or_default()
                    );
                }
                plan
            };
            match plan {
                Plan::Answer { mut message, .. } => {
                    if let Some(m) = message.as_object_mut() {
                        m.remove("_outcome");
                    }
                    if stream {
                        sse_response(sse_body(&message))
                    } else {
                        Json(message).into_response()
                    }
                }
                Plan::Invalid(r) => r,
                Plan::Fault(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "mock"),
            }
        }
        Fault::MalformedJson => {
            if stream {
                sse_response(
                    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\n\n"
                        .to_string(),
                )
            } else {
                (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    "{\"id\":\"msg_broken\",\"content\":[",
                )
                    .into_response()
            }
        }
        Fault::MidStreamError => {
            if !stream {
                return api_error(
                    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "overloaded_error",
                    "Overloaded",
                );
            }
            let mut s = String::new();
            push_event(
                &mut s,
                "message_start",
                &json!({"type": "message_start", "message": {"id": "msg_mock_err", "type": "message", "role": "assistant", "model": "mock", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            );
            push_event(
                &mut s,
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            push_event(
                &mut s,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "I will start by"}}),
            );
            push_event(
                &mut s,
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            );
            sse_response(s)
        }
    }
}

fn plan_answer_without_faults(
    g: &mut MockState,
    rec: &RecordedRequest,
    body: Option<&Value>,
) -> Plan {
    let saved = std::mem::take(&mut g.faults);
    let plan = plan_answer(g, rec, body);
    g.faults = saved;
    plan
}
