//! The HTTP API: one axum Router for `apna serve`, whose handlers are also
//! served one per Lambda behind API Gateway (see `functions/`).
//!
//! * [`error`]: the JSON error shape and status mapping.
//! * [`auth`]: who is calling (API Gateway claims, HS256 tokens, or single-user).
//! * [`guard`]: the Host allowlist (DNS rebinding) and cross-site refusals (CSRF), before routing.
//! * [`projects`], [`images`], [`runs`], [`versions`], [`publish`], [`git`], [`previews`], [`templates`], [`health`], [`wake`]: the handlers.
//! * [`openapi`]: the OpenAPI 3.1 document generated from the handlers.

pub mod auth;
pub mod error;
pub mod git;
pub mod guard;
pub mod health;
pub mod images;
pub mod openapi;
pub mod previews;
pub mod projects;
pub mod publish;
pub mod runs;
pub mod templates;
pub mod versions;
pub mod wake;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;

use crate::app::{AppState, Uses};
use crate::error::Error;
pub use health::{healthz, Health};

/// Largest request body accepted: a prompt of the longest allowed length
/// (20000 characters) fits even with every character JSON-escaped.
pub const BODY_LIMIT: usize = 256 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the UI needs to know about this server.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientConfig {
    /// `single_user` (no token needed), `jwt` (send `Authorization: Bearer`
    /// with a token you have) or `oidc` (sign in with `oidc`'s provider and
    /// send its ID token as the bearer token).
    pub auth: &'static str,
    /// The OpenID Connect provider to sign in with, when `auth` is `oidc`.
    pub oidc: Option<crate::config::OidcClient>,
    /// Whether ANTHROPIC_API_KEY is set.
    pub model_configured: bool,
    /// Model id.
    pub model: String,
    /// How to set the API key, when it is missing.
    pub setup_hint: Option<String>,
}

/// Text telling a person how to give Apna a model key.
pub const SETUP_HINT: &str = "ANTHROPIC_API_KEY is not set, so the agent cannot write code yet. \
Get a key at https://console.anthropic.com/settings/keys, then restart Apna with: \
ANTHROPIC_API_KEY=sk-ant-... cargo run --release -- serve";

/// Server facts for the UI.
#[utoipa::path(get, path = "/api/config", responses((status = 200, body = ClientConfig)))]
pub async fn client_config(
    State(state): State<AppState>,
    gateway: Option<axum::Extension<auth::RequireGatewayCaller>>,
) -> Json<ClientConfig> {
    let configured = state.config.model_configured();
    // Behind API Gateway the JWT authorizer checks tokens: the UI must send one.
    let jwt = state.config.jwt_secret.is_some() || gateway.is_some();
    let oidc = state.config.oidc.clone().filter(|_| jwt);
    Json(ClientConfig {
        auth: match (&oidc, jwt) {
            (Some(_), _) => "oidc",
            (None, true) => "jwt",
            (None, false) => "single_user",
        },
        oidc,
        model_configured: configured,
        model: state.config.anthropic_model.clone(),
        setup_hint: (!configured).then(|| SETUP_HINT.to_string()),
    })
}

/// JSON 404 for paths no route matches.
pub async fn not_found() -> error::ApiError {
    error::ApiError(Error::NotFound("no such endpoint".into()))
}

/// The one state-changing route other sites may call.
const PUBLIC_WAKE: &str = "api-preview-wake";

/// One Lambda function of the API: its name and its routes. A binary in
/// `functions/` passes its own constant from [`endpoints`] to
/// `lambda::run_endpoint`, so only its handlers are reachable and LTO drops
/// the rest of the API (a name looked up at run time kept every handler in
/// every function; BENCHMARKS.md, "Package size").
#[derive(Clone, Copy)]
pub struct Endpoint {
    /// The function's name (`api-create-project`), as infra/template.yaml has it.
    pub name: &'static str,
    /// The backends its handlers reach; its Lambda builds only these.
    pub uses: Uses,
    /// Its routes (path, handler), before the cross-site guard.
    unguarded: fn() -> Vec<(&'static str, MethodRouter<AppState>)>,
}

impl Endpoint {
    /// Its routes (path, handler): each behind the cross-site guard, which
    /// runs only for a method the route has, so any other method stays a 405.
    /// `POST /preview-wake/{id}` is exempt: a preview's waking page calls it
    /// from the preview's own origin without credentials, and all it can do
    /// is start an idempotent wake (throttled on AWS).
    pub fn routes(&self) -> Vec<(&'static str, MethodRouter<AppState>)> {
        let public = self.name == PUBLIC_WAKE;
        (self.unguarded)()
            .into_iter()
            .map(|(path, m)| {
                let m = if public {
                    m
                } else {
                    m.route_layer(axum::middleware::from_fn(guard::csrf_guard))
                };
                (path, m)
            })
            .collect()
    }

    /// Its routes as a router.
    pub fn router(&self) -> Router<AppState> {
        self.routes()
            .into_iter()
            .fold(Router::new(), |r, (path, m)| r.route(path, m))
    }
}

/// Defines one [`Endpoint`] constant per function in [`endpoints`] and the
/// list of them all, [`ENDPOINTS`].
macro_rules! endpoints {
    ($($konst:ident = $name:literal [$($uses:ident),*] { $($path:literal => $handler:expr),+ $(,)? })+) => {
        /// The API's Lambda functions, one constant each.
        pub mod endpoints {
            use super::*;
            $(
                #[doc = concat!("`", $name, "`.")]
                // An endpoint may name every field of `Uses`.
                #[allow(clippy::needless_update)]
                pub const $konst: Endpoint = Endpoint {
                    name: $name,
                    uses: Uses { $($uses: true,)* ..Uses::NONE },
                    unguarded: || vec![$(($path, $handler)),+],
                };
            )+
        }

        /// Every endpoint function; `apna serve` mounts them all.
        pub const ENDPOINTS: &[Endpoint] = &[$(endpoints::$konst),+];
    };
}

endpoints! {
    API_HEALTHZ = "api-healthz" [store] {
        "/healthz" => get(healthz),
    }
    API_CONFIG = "api-config" [] {
        "/api/config" => get(client_config),
    }
    API_OPENAPI = "api-openapi" [] {
        "/api/openapi.json" => get(openapi::openapi_json),
    }
    API_LIST_TEMPLATES = "api-list-templates" [] {
        "/api/templates" => get(templates::list_templates),
        "/api/templates/{name}/preview.png" => get(templates::preview),
    }
    API_CREATE_PROJECT = "api-create-project" [store, sandboxes, workflow] {
        "/api/projects" => post(projects::create_project).layer(message_body_limit()),
        "/api/projects/create" => post(projects::create_project_alias).layer(message_body_limit()),
    }
    API_LIST_PROJECTS = "api-list-projects" [store, sandboxes] {
        "/api/projects" => get(projects::list_projects),
    }
    API_GET_PROJECT = "api-get-project" [store, sandboxes, workflow] {
        "/api/projects/{id}" => get(projects::get_project),
    }
    API_DELETE_PROJECT = "api-delete-project" [store, sandboxes, workflow] {
        "/api/projects/{id}" => delete(projects::delete_project),
    }
    API_CHAT = "api-chat" [store, workflow] {
        "/api/projects/{id}/chat" => post(projects::chat).layer(message_body_limit()),
    }
    API_GET_IMAGE = "api-get-image" [store] {
        "/api/projects/{id}/images/{image_id}" => get(images::get_image),
    }
    API_LIST_MESSAGES = "api-list-messages" [store] {
        "/api/projects/{id}/messages" => get(projects::list_messages),
    }
    API_LIST_RUNS = "api-list-runs" [store] {
        "/api/projects/{id}/runs" => get(projects::list_runs),
    }
    API_LIST_FILES = "api-list-files" [store, sandboxes] {
        "/api/projects/{id}/files" => get(projects::list_files),
    }
    API_READ_FILE = "api-read-file" [store, sandboxes] {
        "/api/projects/{id}/files/{*path}" => get(projects::read_file),
    }
    API_GET_RUN = "api-get-run" [store, workflow] {
        "/api/runs/{id}" => get(runs::get_run),
    }
    API_CANCEL_RUN = "api-cancel-run" [store, workflow] {
        "/api/runs/{id}/cancel" => post(runs::cancel),
    }
    API_RUN_EVENTS = "api-run-events" [store, workflow] {
        "/api/runs/{id}/events" => get(runs::events),
    }
    API_LIST_VERSIONS = "api-list-versions" [store] {
        "/api/projects/{id}/versions" => get(versions::list_versions),
    }
    API_VERSION_DIFF = "api-version-diff" [store] {
        "/api/projects/{id}/versions/{n}/diff" => get(versions::version_diff),
    }
    API_RESTORE_VERSION = "api-restore-version" [store, sandboxes] {
        "/api/projects/{id}/versions/{n}/restore" => post(versions::restore_version),
    }
    API_TEXT_EDIT = "api-text-edit" [store, sandboxes] {
        "/api/projects/{id}/text-edit" => post(versions::text_edit),
    }
    API_DOWNLOAD = "api-download" [store, sandboxes] {
        "/api/projects/{id}/download" => get(versions::download),
    }
    API_PUBLISH = "api-publish" [store, workflow] {
        "/api/projects/{id}/publish" => post(publish::publish),
    }
    API_GET_PUBLISH = "api-get-publish" [store] {
        "/api/projects/{id}/publish" => get(publish::get_publish),
    }
    API_UNPUBLISH = "api-unpublish" [store] {
        "/api/projects/{id}/publish" => delete(publish::unpublish),
    }
    API_GIT_BUNDLE = "api-git-bundle" [store, sandboxes] {
        "/api/projects/{id}/git" => get(git::bundle),
    }
    API_GIT_PUSH = "api-git-push" [store, sandboxes] {
        "/api/projects/{id}/git/push" => post(git::push),
    }
    API_PREVIEW_ACCESS = "api-preview-access" [store, sandboxes] {
        "/api/projects/{id}/preview-access" => get(previews::preview_access),
        "/api/projects/{id}/share" => put(previews::share),
    }
    API_PREVIEW_WAKE = "api-preview-wake" [store, sandboxes, workflow] {
        "/preview-wake/{id}" => post(wake::preview_wake),
    }
    API_GET_SCREENSHOT = "api-get-screenshot" [store] {
        "/api/projects/{id}/screenshots/{sha256}" => get(versions::screenshot),
    }
}

/// Every API route: the Lambda function that serves it, its path and its
/// handler. `apna serve` mounts them all; each Lambda mounts its own rows.
pub fn route_table() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    ENDPOINTS
        .iter()
        .flat_map(|e| e.routes().into_iter().map(|(path, m)| (e.name, path, m)))
        .collect()
}

/// Create and chat bodies may carry images (see [`images::MESSAGE_BODY_LIMIT`]).
fn message_body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(images::MESSAGE_BODY_LIMIT)
}

/// The names of the Lambda functions serving the API, each once.
pub fn endpoint_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ENDPOINTS.iter().map(|e| e.name).collect();
    names.sort_unstable();
    names
}

/// The endpoint function named `name` (`api-create-project`).
pub fn endpoint(name: &str) -> Option<Endpoint> {
    ENDPOINTS.iter().copied().find(|e| e.name == name)
}

/// The routes one Lambda function serves (`None` for an unknown name).
pub fn endpoint_routes(name: &str) -> Option<Router<AppState>> {
    endpoint(name).map(|e| e.router())
}

/// Every route with the state its Lambda function has: the backends its
/// endpoint's [`Uses`] leaves out refuse (tests catch a handler reaching
/// further than its function builds).
pub fn deployed_routes(state: &AppState) -> Router<AppState> {
    ENDPOINTS.iter().fold(Router::new(), |r, e| {
        let own = state.as_function(e.name, e.uses);
        e.routes()
            .into_iter()
            .fold(r, |r, (path, m)| r.route(path, m.with_state(own.clone())))
    })
}

/// The API routes, without middleware.
pub fn routes() -> Router<AppState> {
    route_table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, m)| r.route(path, m))
}

/// Middleware every deployment uses: body limit, request ids, tracing,
/// timeouts, compression, (when configured) CORS, the cross-site guard and,
/// when given, the Host allowlist.
pub fn with_middleware(
    router: Router<AppState>,
    state: AppState,
    hosts: Option<guard::HostAllowlist>,
) -> Router {
    let csrf = std::sync::Arc::new(guard::CrossSiteRules::new(&state.config));
    let cors = if state.config.cors_origins.is_empty() {
        CorsLayer::new()
    } else {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static(guard::REQUEST_HEADER),
            ])
            .expose_headers([REQUEST_ID])
    };
    // The rules reach the per-route guard (see `route_table`) as an extension.
    let router = router
        .with_state(state)
        .layer(axum::Extension(csrf))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CompressionLayer::new())
        .layer(cors);
    let router = match hosts {
        Some(h) => router.layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(h),
            guard::host_guard,
        )),
        None => router,
    };
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The whole API as `apna serve` guards it; unknown paths are JSON 404s.
pub fn router(state: AppState) -> Router {
    let hosts = guard::HostAllowlist::for_server(&state.config);
    with_middleware(routes().fallback(not_found), state, Some(hosts))
}
