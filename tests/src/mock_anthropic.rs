//! A mock of the Anthropic Messages API, for tests, benches and `apna serve`
//! (point `ANTHROPIC_BASE_URL` at it).
//!
//! `POST /v1/messages` answers with the same JSON shapes and, for
//! `"stream": true`, the same server-sent event sequence as the real API. The
//! answers come from a [`Script`]: a list of turns, each the assistant content
//! to return. A turn may carry `match`, a case-insensitive substring of the
//! last user message's text, so one script can hold several flows ("create"
//! vs "fix the TypeScript error"). Each request takes the first unused turn
//! that matches; when none is left the answer is `end_turn` with "Done.".
//!
//! Faults ([`Fault`]) are queued and each consumes one request before any turn
//! is used. Requests are validated like the real API (headers, alternating
//! roles, every `tool_use` answered by a `tool_result` in the next message) and
//! recorded for assertions.
//!
//! Control endpoints for out-of-process use: `GET /_mock/requests`,
//! `POST /_mock/faults` (a [`Fault`] as JSON), `POST /_mock/script` (a [`Script`]),
//! `POST /_mock/reset`.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One scripted assistant answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Only answer when the last user message's text contains this (case-insensitive).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_text: Option<String>,
    /// Content blocks: `{"type":"text","text":…}` and `{"type":"tool_use","name":…,"input":…}`
    /// (`id` is generated when missing).
    pub content: Vec<Value>,
    /// Defaults to `tool_use` when the content has a tool call, else `end_turn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Usage to report; simulated from sizes (with prompt caching) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    /// Extra latency before answering this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl Turn {
    /// A turn that answers with text and ends.
    pub fn text(text: &str) -> Self {
        Turn {
            match_text: None,
            content: vec![json!({ "type": "text", "text": text })],
            stop_reason: None,
            usage: None,
            delay_ms: None,
        }
    }

    /// A turn that asks for one tool call, after optional text.
    pub fn tool(text: &str, name: &str, input: Value) -> Self {
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(json!({ "type": "text", "text": text }));
        }
        content.push(json!({ "type": "tool_use", "name": name, "input": input }));
        Turn {
            match_text: None,
            content,
            stop_reason: None,
            usage: None,
            delay_ms: None,
        }
    }

    /// The same turn, only answered when the last user text contains `text`.
    pub fn when(mut self, text: &str) -> Self {
        self.match_text = Some(text.to_string());
        self
    }
}

/// A scripted conversation: `{"turns": [...]}` or just `[...]` in fixture files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// Turns in the order they are used.
    pub turns: Vec<Turn>,
}

impl Script {
    /// A script of `turns`.
    pub fn new(turns: Vec<Turn>) -> Self {
        Script { turns }
    }

    /// Parses a fixture (an object with `turns`, or a bare list of turns).
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let v: Value = serde_json::from_str(text)?;
        Ok(if v.is_array() {
            Script {
                turns: serde_json::from_value(v)?,
            }
        } else {
            serde_json::from_value(v)?
        })
    }

    /// Reads a fixture file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::from_json(&text)
    }
}

/// A failure to inject into one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 429 `rate_limit_error` with `retry-after`.
    RateLimited {
        /// Seconds the client is asked to wait.
        retry_after_secs: f64,
    },
    /// HTTP 529 `overloaded_error`.
    Overloaded,
    /// HTTP 500 `api_error`.
    ServerError,
    /// Wait, then answer normally (uses a turn).
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Wait, then fail with 504 (for client timeouts; never uses a turn).
    Timeout {
        /// Milliseconds.
        ms: u64,
    },
    /// HTTP 200 with a body (or stream event) that is not valid JSON.
    MalformedJson,
    /// A stream that starts normally and then sends an `error` event (`overloaded_error`).
    MidStreamError,
}

/// A request the mock received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The JSON body (`Null` if it did not parse).
    pub body: Value,
    /// Whether `x-api-key` was present.
    pub has_api_key: bool,
    /// The `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// Whether it asked for a stream.
    pub stream: bool,
    /// What the mock did: `turn N`, `done`, `fault …` or `invalid: …`.
    pub outcome: String,
}

impl RecordedRequest {
    /// Whether a scripted (or the final "Done.") answer was given.
    pub fn answered(&self) -> bool {
        self.outcome.starts_with("turn") || self.outcome == "done"
    }
}

struct MockState {
    script: Script,
    used: Vec<bool>,
    faults: VecDeque<Fault>,
    requests: Vec<RecordedRequest>,
    cached_prefixes: HashSet<u64>,
    next_id: u64,
    latency: Duration,
}

impl MockState {
    fn new(script: Script) -> Self {
        MockState {
            used: vec![false; script.turns.len()],
            script,
            faults: VecDeque::new(),
            requests: Vec::new(),
            cached_prefixes: HashSet::new(),
            next_id: 0,
            latency: Duration::ZERO,
        }
    }
}

/// Shared state of a mock server; clones share it.
#[derive(Clone)]
pub struct MockHandle {
    state: Arc<Mutex<MockState>>,
}

impl MockHandle {
    /// State for a server answering from `script`.
    pub fn new(script: Script) -> Self {
        MockHandle {
            state: Arc::new(Mutex::new(MockState::new(script))),
        }
    }

    // A poisoned lock only means a test thread panicked; keep serving.
    fn lock(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a fault for the next request without one.
    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Replaces the script (used turns are forgotten).
    pub fn set_script(&self, script: Script) {
        let mut g = self.lock();
        g.used = vec![false; script.turns.len()];
        g.script = script;
    }

    /// Latency added to every answered request.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many requests got an answer (faults and invalid requests excluded).
    pub fn answered_calls(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.answered()).count()
    }

    /// Forgets requests, faults, the prompt cache and used turns.
    pub fn reset(&self) {
        let mut g = self.lock();
        let script = g.script.clone();
        *g = MockState::new(script);
    }

    /// The router serving the API and the control endpoints.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/messages", post(messages))
            .route("/model/{model}/invoke", post(bedrock_invoke))
            .route(
                "/model/{model}/invoke-with-response-stream",
                post(bedrock_invoke_stream),
            )
            .route("/_mock/requests", get(list_requests))
            .route("/_mock/faults", post(add_fault))
            .route("/_mock/script", post(put_script))
            .route("/_mock/reset", post(reset))
            .with_state(self.clone())
    }
}

/// A running mock server; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct MockAnthropic {
    handle: MockHandle,
    addr: SocketAddr,
    _server: Arc<ServerTask>,
}

struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::ops::Deref for MockAnthropic {
    type Target = MockHandle;
    fn deref(&self) -> &MockHandle {
        &self.handle
    }
}

impl MockAnthropic {
    /// Starts a server on a free loopback port.
    pub async fn start(script: Script) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), script).await
    }

    /// Starts a server on `addr`.
    pub async fn start_on(addr: SocketAddr, script: Script) -> anyhow::Result<Self> {
        let handle = MockHandle::new(script);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = handle.router();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("mock anthropic server stopped: {e}");
            }
        });
        Ok(MockAnthropic {
            handle,
            addr,
            _server: Arc::new(ServerTask(task)),
        })
    }

    /// The base URL to use as `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The state handle (also reachable through `Deref`).
    pub fn handle(&self) -> &MockHandle {
        &self.handle
    }
}

fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "type": "error", "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

async fn list_requests(State(h): State<MockHandle>) -> Json<Vec<RecordedRequest>> {
    Json(h.requests())
}

async fn add_fault(State(h): State<MockHandle>, Json(f): Json<Fault>) -> StatusCode {
    h.push_fault(f);
    StatusCode::NO_CONTENT
}

async fn put_script(State(h): State<MockHandle>, Json(s): Json<Script>) -> StatusCode {
    h.set_script(s);
    StatusCode::NO_CONTENT
}

async fn reset(State(h): State<MockHandle>) -> StatusCode {
    h.reset();
    StatusCode::NO_CONTENT
}

enum Plan {
    Invalid(Response),
    Fault(Fault),
    Answer { message: Value, delay: Duration },
}

async fn messages(State(h): State<MockHandle>, headers: HeaderMap, body: Bytes) -> Response {
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
        Plan::Answer { message, delay } => {
            let message = deliver(message, delay).await;
            if stream {
                sse_response(sse_body(&message))
            } else {
                Json(message).into_response()
            }
        }
    }
}

async fn bedrock_invoke(
    State(h): State<MockHandle>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bedrock(h, model, headers, body, false).await
}

async fn bedrock_invoke_stream(
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
        Some(crate::mock_bedrock::error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "request is not SigV4-signed",
        ))
    } else if let Some(k) = extraneous {
        Some(crate::mock_bedrock::error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!("extraneous key [{k}] is not permitted"),
        ))
    } else if version.as_deref() != Some(crate::mock_bedrock::BEDROCK_VERSION) {
        Some(crate::mock_bedrock::error(
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
            return crate::mock_bedrock::error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                &why,
            );
        }
    }
    let plan = plan_and_record(&h, record, parsed.as_ref());
    match plan {
        Plan::Invalid(_) => crate::mock_bedrock::error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "malformed input request",
        ),
        Plan::Fault(f) => crate::mock_bedrock::fault(&f, stream),
        Plan::Answer { message, delay } => {
            let message = deliver(message, delay).await;
            if stream {
                crate::mock_bedrock::stream_response(crate::mock_bedrock::stream_body(&message))
            } else {
                Json(message).into_response()
            }
        }
    }
}

/// Plans the answer to a request and records the request with its outcome.
fn plan_and_record(h: &MockHandle, mut record: RecordedRequest, body: Option<&Value>) -> Plan {
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
async fn deliver(mut message: Value, delay: Duration) -> Value {
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
    let (mut input, mut write, mut read) = (tokens(&body["messages"]), 0, 0);
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

fn sse_response(body: String) -> Response {
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

fn push_event(out: &mut String, event: &str, data: &Value) {
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

/// The event stream the real API sends for `message`.
pub fn sse_body(message: &Value) -> String {
    let mut s = String::new();
    for e in sse_events(message) {
        let name = e["type"].as_str().unwrap_or("message").to_string();
        push_event(&mut s, &name, &e);
    }
    s
}

/// The text of the last user message's text blocks (tool results excluded).
pub fn last_user_text(body: &Value) -> String {
    let Some(last) = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Checks a request body the way the real API does for the rules the agent
/// must follow: required fields, alternating roles starting with the user,
/// non-empty text, and each assistant `tool_use` answered (tool results first)
/// in the next user message, with no orphan results.
pub fn validate_request(body: &Value) -> Result<(), String> {
    if body["model"].as_str().is_none_or(str::is_empty) {
        return Err("model: field required".into());
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return Err("max_tokens: must be a positive integer".into());
    }
    let msgs = body["messages"]
        .as_array()
        .ok_or("messages: field required")?;
    if msgs.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"]
            .as_str()
            .ok_or(format!("messages.{i}.role: required"))?;
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if role != expected {
            return Err(format!(
                "messages.{i}: roles must alternate between \"user\" and \"assistant\", starting with \"user\"; got {role:?}"
            ));
        }
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => return Err(format!("messages.{i}.content: required")),
        };
        if blocks.is_empty() {
            return Err(format!("messages.{i}: content must be non-empty"));
        }
        let mut answered = Vec::new();
        let mut seen_other = false;
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("text") => {
                    if b["text"].as_str().is_none_or(|t| t.is_empty()) {
                        return Err(format!("messages.{i}.content.{j}.text: text content blocks must be non-empty"));
                    }
                    seen_other = true;
                }
                Some("tool_use") if role == "assistant" => {
                    if b["id"].as_str().is_none() || b["name"].as_str().is_none() || !b["input"].is_object() {
                        return Err(format!("messages.{i}.content.{j}: tool_use needs id, name and an input object"));
                    }
                }
                Some("tool_result") if role == "user" => {
                    if seen_other {
                        return Err(format!(
                            "messages.{i}.content.{j}: tool_result blocks must come before other content"
                        ));
                    }
                    let id = b["tool_use_id"].as_str().unwrap_or_default().to_string();
                    if !pending.contains(&id) {
                        return Err(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                    answered.push(id);
                }
                other => {
                    return Err(format!(
                        "messages.{i}.content.{j}: block type {other:?} is not allowed in a {role} message"
                    ))
                }
            }
        }
        if role == "user" {
            let missing: Vec<&String> =
                pending.iter().filter(|id| !answered.contains(id)).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing:?}"
                ));
            }
            pending.clear();
        } else {
            pending = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str().map(str::to_string))
                .collect();
        }
    }
    if !pending.is_empty() {
        return Err("the last assistant message has tool_use blocks without results".into());
    }
    Ok(())
}

/// Whether the request marks the system prompt and the last tool for prompt caching.
pub fn has_cache_breakpoints(body: &Value) -> bool {
    let system = body["system"]
        .as_array()
        .and_then(|s| s.last())
        .is_some_and(|b| b["cache_control"]["type"] == "ephemeral");
    let tool = body["tools"]
        .as_array()
        .and_then(|t| t.last())
        .is_some_and(|b| b["cache_control"]["type"] == "ephemeral");
    system && tool
}
