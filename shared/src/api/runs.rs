//! Run endpoints: status with step history, cancel, and the event stream (SSE,
//! resumable with `Last-Event-ID`, or long-poll JSON for API Gateway, which
//! does not stream).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::app::AppState;
use crate::domain::{is_valid_id, Run, RunEvent};
use crate::error::Error;
use crate::run::cancel_run;
use crate::store::Store;

/// How often the event stream looks for new events.
const POLL: Duration = Duration::from_millis(150);
/// Longest long-poll wait.
const MAX_WAIT_SECS: u64 = 25;

/// One state of the run's workflow execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepItem {
    /// Position in the history.
    pub seq: i64,
    /// e.g. `StateEntered`, `TaskSucceeded`.
    pub event_type: String,
    /// The state, e.g. `AgentStep`.
    pub state_name: Option<String>,
    /// When.
    pub timestamp: DateTime<Utc>,
}

/// A run with its step history.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// The workflow's history.
    pub history: Vec<StepItem>,
}

/// Answer of `POST /api/runs/{id}/cancel`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    /// The run after cancelling.
    pub run: Run,
}

/// Long-poll parameters; without `after` the endpoint streams SSE.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Return events with seq greater than this (JSON long-poll mode).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Seconds to wait for an event when there is none yet (0–25, default 20).
    #[param(minimum = 0, maximum = 25)]
    pub wait: Option<u64>,
}

/// A batch of events (long-poll mode).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventBatch {
    /// Events in order.
    pub events: Vec<RunEvent>,
    /// Whether the run has ended (its `done` event is included or was sent before).
    pub done: bool,
}

async fn owned_run(state: &AppState, caller: &Caller, id: &str) -> Result<Run, Error> {
    let missing = || Error::NotFound(format!("run {id} not found"));
    if !is_valid_id(id) {
        return Err(missing());
    }
    match state.store.get_run(id).await? {
        Some(r) if r.owner == caller.0 => Ok(r),
        _ => Err(missing()),
    }
}

/// A run: status, usage, cost and step history.
#[utoipa::path(get, path = "/api/runs/{id}", params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RunView>> {
    let run = owned_run(&state, &caller, &id).await?;
    let history = state
        .workflow
        .history(&id)
        .await?
        .into_iter()
        .map(|h| StepItem {
            seq: h.seq,
            event_type: h.event_type,
            state_name: h.state_name,
            timestamp: h.timestamp,
        })
        .collect();
    Ok(Json(RunView { run, history }))
}

/// Cancels a run (no-op for an ended run).
#[utoipa::path(post, path = "/api/runs/{id}/cancel", params(("id" = String, Path, description = "Run id"),
        ("X-Apna-Request" = String, Header, description = "Any value: a POST without a JSON body must carry it (a cross-site form cannot)")),
    responses((status = 200, body = Cancelled),
              (status = 403, description = "a cross-site request, or no X-Apna-Request header", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Cancelled>> {
    owned_run(&state, &caller, &id).await?;
    let run = cancel_run(&state, &id).await?;
    Ok(Json(Cancelled { run }))
}

/// The run's events: SSE (`text/event-stream`, resumable with `Last-Event-ID`),
/// or with `?after=N` a JSON batch after waiting up to `wait` seconds.
#[utoipa::path(get, path = "/api/runs/{id}/events", params(("id" = String, Path, description = "Run id"), EventsQuery),
    responses((status = 200, description = "SSE stream of RunEvent, or an EventBatch with ?after", body = EventBatch),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    owned_run(&state, &caller, &id).await?;
    if q.wait.is_some_and(|w| w > MAX_WAIT_SECS) || q.after.is_some_and(|a| a < 0) {
        return Err(Error::InvalidInput(format!(
            "after must be at least 0 and wait between 0 and {MAX_WAIT_SECS}"
        ))
        .into());
    }
    if let Some(after) = q.after {
        let wait = Duration::from_secs(q.wait.unwrap_or(20));
        return Ok(Json(long_poll(&*state.store, &id, after, wait).await?).into_response());
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let stream = event_stream(state.store.clone(), id, last);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn long_poll(
    store: &dyn Store,
    run_id: &str,
    after: i64,
    wait: Duration,
) -> Result<EventBatch, Error> {
    let deadline = Instant::now() + wait;
    loop {
        let events = store.list_events(run_id, after, 200).await?;
        let ended = events.iter().any(RunEvent::is_terminal);
        if !events.is_empty() || Instant::now() >= deadline {
            // A full batch may stop short of the `done` event: only an empty
            // batch of an ended run means there is nothing more to read.
            let done = ended || (events.is_empty() && run_ended(store, run_id).await?);
            return Ok(EventBatch { events, done });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn run_ended(store: &dyn Store, run_id: &str) -> Result<bool, Error> {
    Ok(store
        .get_run(run_id)
        .await?
        .is_some_and(|r| r.status.is_terminal()))
}

struct Cursor {
    store: Arc<dyn Store>,
    run_id: String,
    last: i64,
    buf: VecDeque<RunEvent>,
    done: bool,
}

fn event_stream(
    store: Arc<dyn Store>,
    run_id: String,
    last: i64,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    let cursor = Cursor {
        store,
        run_id,
        last,
        buf: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(ev) = c.buf.pop_front() {
                let sse = Event::default()
                    .id(ev.seq.to_string())
                    .event(ev.kind.as_str())
                    .json_data(&ev)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable event"));
                return Some((Ok(sse), c));
            }
            if c.done {
                return None;
            }
            match c.store.list_events(&c.run_id, c.last, 200).await {
                Ok(evs) if !evs.is_empty() => {
                    if let Some(e) = evs.last() {
                        c.last = e.seq;
                    }
                    c.done = evs.iter().any(RunEvent::is_terminal);
                    c.buf.extend(evs);
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    c.done = true;
                    let sse = Event::default()
                        .event(crate::domain::RunEventKind::Error.as_str())
                        .data(e.to_string());
                    return Some((Ok(sse), c));
                }
            }
        }
    })
}
