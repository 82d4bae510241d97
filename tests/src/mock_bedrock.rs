//! The Amazon Bedrock runtime's wire format for the mock model server:
//! `POST /model/{id}/invoke` answers with the Messages JSON, and
//! `POST /model/{id}/invoke-with-response-stream` with an AWS event stream
//! (`application/vnd.amazon.eventstream`) whose `chunk` events carry each
//! Messages stream event's JSON, base64-encoded, as Bedrock sends them.
//! Errors are restJson1: `x-amzn-errortype` plus `{"message": …}`.

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use crate::mock_anthropic::{
    deliver, plan_and_record, sse_events, validate_request, Fault, MockHandle, Plan,
    RecordedRequest,
};

/// The `anthropic_version` a Bedrock body must carry.
pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";

fn frame(headers: Vec<(&'static str, &str)>, payload: Vec<u8>) -> Vec<u8> {
    let mut msg = Message::new(payload);
    for (name, value) in headers {
        msg = msg.add_header(Header::new(
            name,
            HeaderValue::String(value.to_string().into()),
        ));
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail; an encoding error would be a mock bug.
    aws_smithy_eventstream::frame::write_message_to(&msg, &mut out)
        .unwrap_or_else(|e| panic!("event-stream encoding: {e}"));
    out
}

/// One `chunk` event holding a Messages stream event's JSON.
pub fn chunk(event: &Value) -> Vec<u8> {
    let bytes = base64::engine::general_purpose::STANDARD.encode(event.to_string());
    frame(
        vec![
            (":message-type", "event"),
            (":event-type", "chunk"),
            (":content-type", "application/json"),
        ],
        json!({ "bytes": bytes }).to_string().into_bytes(),
    )
}

/// An exception event in the stream (`code` like `throttlingException`).
pub fn exception(code: &'static str, message: &str) -> Vec<u8> {
    frame(
        vec![
            (":message-type", "exception"),
            (":exception-type", code),
            (":content-type", "application/json"),
        ],
        json!({ "message": message }).to_string().into_bytes(),
    )
}

/// The whole event stream for a Messages answer.
pub fn stream_body(message: &Value) -> Vec<u8> {
    sse_events(message)
        .iter()
        .filter(|e| e["type"] != "ping")
        .flat_map(chunk)
        .collect()
}

/// An HTTP response with an event-stream body.
pub fn stream_response(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/vnd.amazon.eventstream")],
        body,
    )
        .into_response()
}

/// A restJson1 error response.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", code),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// What a queued fault looks like coming from Bedrock.
pub fn fault(f: &Fault, stream: bool) -> Response {
    match f {
        Fault::RateLimited { .. } => error(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        Fault::Overloaded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "The service is temporarily unable to handle the request.",
        ),
        Fault::MidStreamError if stream => {
            let mut body = chunk(
                &json!({"type": "message_start", "message": {"id": "msg_mock_err", "type": "message", "role": "assistant", "model": "mock", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            );
            body.extend(chunk(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            body.extend(chunk(&json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "I will start by"}})));
            body.extend(exception(
                "throttlingException",
                "Too many tokens, please wait.",
            ));
            stream_response(body)
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "The server encountered an internal error.",
        ),
    }
}

/// `POST /model/{id}/invoke`.
pub(crate) async fn invoke(
    State(h): State<MockHandle>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bedrock(h, model, headers, body, false).await
}

/// `POST /model/{id}/invoke-with-response-stream`.
pub(crate) async fn invoke_stream(
    State(h): State<MockHandle>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bedrock(h, model, headers, body, true).await
}

/// Bedrock's InvokeModel: the Messages body without `model`/`stream` (the
/// model is in the path), `anthropic_version` in the body, SigV4 auth.
async fn bedrock(
    h: MockHandle,
    model: String,
    headers: HeaderMap,
    body: Bytes,
    stream: bool,
) -> Response {
    let mut parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    let version = parsed
        .as_ref()
        .and_then(|b| b["anthropic_version"].as_str())
        .map(str::to_string);
    let extraneous = parsed.as_ref().and_then(|b| {
        ["model", "stream"]
            .into_iter()
            .find(|k| b.get(*k).is_some())
    });
    let mut record = RecordedRequest {
        body: parsed.clone().unwrap_or(Value::Null),
        has_api_key: signed,
        anthropic_version: version.clone(),
        stream,
        outcome: String::new(),
    };
    let early = if !signed {
        Some(error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "request is not SigV4-signed",
        ))
    } else if let Some(k) = extraneous {
        Some(error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!("extraneous key [{k}] is not permitted"),
        ))
    } else if version.as_deref() != Some(BEDROCK_VERSION) {
        Some(error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "anthropic_version must be bedrock-2023-05-31",
        ))
    } else {
        None
    };
    if let Some(resp) = early {
        record.outcome = format!("invalid: HTTP {}", resp.status().as_u16());
        h.lock().requests.push(record);
        return resp;
    }
    if let Some(b) = parsed.as_mut() {
        b["model"] = Value::String(model);
        if let Err(why) = validate_request(b) {
            record.outcome = "invalid: HTTP 400".into();
            h.lock().requests.push(record);
            return error(StatusCode::BAD_REQUEST, "ValidationException", &why);
        }
    }
    let plan = plan_and_record(&h, record, parsed.as_ref());
    match plan {
        Plan::Invalid(_) => error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "malformed input request",
        ),
        Plan::Fault(f) => fault(&f, stream),
        Plan::Answer { message, delay, .. } => {
            let message = deliver(message, delay).await;
            if stream {
                stream_response(stream_body(&message))
            } else {
                Json(message).into_response()
            }
        }
    }
}
