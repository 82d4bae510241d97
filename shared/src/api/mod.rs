//! The HTTP API: one axum Router for `apna serve`, whose handlers are also
//! served one per Lambda behind API Gateway.

mod health;

use axum::routing::get;
use axum::Router;

use crate::app::AppState;

pub use health::{healthz, Health};

/// The API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
}
