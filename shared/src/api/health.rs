//! `GET /healthz`: which backends are configured and whether they answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

/// Health of one backend.
#[derive(Debug, Serialize, ToSchema)]
pub struct Backend {
    /// Backend name (`sqlite`, `postgres`, `fs`, `s3`, …).
    pub backend: &'static str,
    /// Whether it answered.
    pub ok: bool,
    /// Error when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The health report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when every backend answered, else `degraded`.
    pub status: &'static str,
    /// The database.
    pub store: Backend,
    /// Object storage.
    pub blob: Backend,
    /// Whether ANTHROPIC_API_KEY is set (runs fail without it).
    pub model_configured: bool,
    /// Model id in use.
    pub model: String,
    /// Apna version.
    pub version: &'static str,
}

/// Reports backend health; 503 when one of them does not answer.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (s, b) = tokio::join!(state.store.ping(), state.blobs.ping());
    // /healthz is public: the backend's own error (hosts, paths, SQL) goes to
    // the log, the response only says which backend is down.
    let report = |backend: &'static str, result: crate::error::Result<()>| {
        let error = result.err().map(|e| {
            tracing::error!(backend, error = %e, "health check failed");
            format!("{backend} is not answering; the server log has the details")
        });
        Backend {
            backend,
            ok: error.is_none(),
            error,
        }
    };
    let store = report(state.store.backend(), s);
    let blob = report(state.blobs.backend(), b);
    let ok = store.ok && blob.ok;
    let health = Health {
        status: if ok { "ok" } else { "degraded" },
        store,
        blob,
        model_configured: state.config.model_configured(),
        model: state.config.anthropic_model.clone(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health))
}
