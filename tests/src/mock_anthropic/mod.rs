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
//!
//! The parts: [`script`] (what tests write: turns, scripts, faults, and the
//! record of requests), `messages` (the `/v1/messages` route and how each
//! answer is planned), [`wire`] (the server-sent event stream), [`validate`]
//! (the request rules the real API enforces); Bedrock's routes and wire
//! format are in `crate::mock_bedrock`.

mod messages;
pub mod script;
pub mod validate;
pub mod wire;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

pub(crate) use messages::{deliver, plan_and_record, Plan};
pub use script::{Fault, RecordedRequest, Script, Turn};
pub use validate::{has_cache_breakpoints, last_user_text, validate_request};
pub use wire::{sse_body, sse_events};

pub(crate) struct MockState {
    pub(crate) script: Script,
    pub(crate) used: Vec<bool>,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) cached_prefixes: HashSet<u64>,
    pub(crate) next_id: u64,
    pub(crate) latency: Duration,
    pub(crate) chunk_latency: Duration,
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
            chunk_latency: Duration::ZERO,
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
    pub(crate) fn lock(&self) -> MutexGuard<'_, MockState> {
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

    /// Pause before each event of a streamed answer, as a real model emits
    /// its tokens over time (the whole answer then takes about
    /// `latency + events × chunk_latency`).
    pub fn set_chunk_latency(&self, chunk_latency: Duration) {
        self.lock().chunk_latency = chunk_latency;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many requests got an answer (faults and invalid requests excluded).
    pub fn answered_calls(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.answered()).count()
    }

    /// Forgets requests, faults, the prompt cache and used turns (the
    /// latency settings stay).
    pub fn reset(&self) {
        let mut g = self.lock();
        let script = g.script.clone();
        let (latency, chunk_latency) = (g.latency, g.chunk_latency);
        *g = MockState::new(script);
        g.latency = latency;
        g.chunk_latency = chunk_latency;
    }

    /// The router serving the API and the control endpoints.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/messages", post(messages::messages))
            .route("/model/{model}/invoke", post(crate::mock_bedrock::invoke))
            .route(
                "/model/{model}/invoke-with-response-stream",
                post(crate::mock_bedrock::invoke_stream),
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
