//! `apna sandboxd`: one project's workspace served over HTTP, inside its pod.
//!
//! The pod's entrypoint. It owns one [`Workspace`] (the local driver's own
//! files, commands and Vite supervisor, with [`RootKind::Mounted`]: the
//! directory is the pod's volume) and answers the routes documented in
//! [`super::remote`], whose [`super::remote::RemoteSandbox`] is its client.
//! There is no bubblewrap in a pod (the pod is the isolation, and the
//! "restricted" profile forbids the user namespaces bubblewrap needs), so
//! commands and Vite run as plain children ([`Isolation::None`]).
//!
//! On start an empty workspace is seeded from its starter (`APNA_STARTER`)
//! and the dev server started; until anything changes it, an ensure naming
//! another starter gives it that starter's files instead (a warm pod adopted
//! by a project of another starter); a workspace with a project in it is kept (the volume outlives the
//! pod). Every route but `GET /healthz` needs the token, compared in constant
//! time (both sides hashed first, so not even its length leaks).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument;

use super::browser::{Browser, BrowserOptions};
use super::connections::ConnectionWatch;
use super::local::files::MAX_FILE_BYTES;
use super::local::process::Isolation;
use super::local::supervisor::DevServerOptions;
use super::local::template::installed_templates;
use super::local::workspace::{RootKind, Toolchain, Workspace};
use super::remote::{Deleted, ExecBody, WireError, TOKEN_ENV, TOKEN_HEADER};
use super::source_tar::{self, MAX_SOURCE_BYTES};
use crate::error::{Error, Result};
use crate::sandbox::activity::Activity;
use crate::sandbox::{ExecRequest, ProjectPath, Sandbox, SmokeRequest};

/// Largest exec request body (the command line is in it).
const MAX_EXEC_BODY: usize = 1024 * 1024;
/// Longest browser check one request may ask for.
pub const MAX_SMOKE_TIMEOUT: Duration = Duration::from_secs(120);
/// Most output one command may keep, whatever the caller asks for.
pub const MAX_EXEC_OUTPUT: usize = 16 * 1024 * 1024;
/// Most log lines one request returns.
pub const MAX_LOG_LINES: usize = 10_000;

/// What `apna sandboxd` needs (flags and environment, see `apna sandboxd --help`).
#[derive(Debug, Clone)]
pub struct SandboxdOptions {
    /// The project's files: the pod's volume (`/workspace`).
    pub workspace: PathBuf,
    /// The starters with their `node_modules` installed (`/opt/apna/templates`).
    pub templates: PathBuf,
    /// The starter an empty workspace is seeded from (`APNA_STARTER`; the
    /// kube driver sets the project's, warm pods get the default).
    pub starter: String,
    /// Where the API listens (`0.0.0.0:7070`).
    pub listen: SocketAddr,
    /// Where Vite listens (`0.0.0.0:5173`); port 0 picks a free one per start.
    pub dev_server: SocketAddr,
    /// The port browsers use for Vite's HMR socket (443 behind Caddy).
    pub hmr_client_port: Option<u16>,
    /// Origins of the Apna UI that may drive Select in the preview (`APNA_UI_ORIGINS`).
    pub ui_origins: Vec<String>,
    /// Writable scratch (the dev server's log): `/tmp/apna-sandboxd`.
    pub state_dir: PathBuf,
    /// The token every request but `/healthz` must carry (`APNA_SANDBOXD_TOKEN`).
    pub token: String,
    /// The project, for logs and messages (`APNA_PROJECT_ID`).
    pub project_id: Option<String>,
    /// The headless browser for the page check (`APNA_CHROMIUM`; unset: the
    /// image's `chromium-headless-shell` on `PATH`).
    pub chromium: Option<PathBuf>,
}

/// Checks the token's presence (the one setting without a default).
pub fn token_from_env() -> Result<String> {
    match std::env::var(TOKEN_ENV) {
        Ok(t) if !t.trim().is_empty() => Ok(t),
        _ => Err(Error::Config {
            var: TOKEN_ENV,
            message: "required: sandboxd refuses to start without its token".into(),
        }),
    }
}

/// The workspace sandboxd serves, seeded and with its dev server starting.
pub async fn open_workspace(opts: &SandboxdOptions) -> Result<Arc<Workspace>> {
    let templates = installed_templates(&opts.templates).await?;
    templates.get(&opts.starter)?;
    tokio::fs::create_dir_all(&opts.workspace).await?;
    let root = tokio::fs::canonicalize(&opts.workspace).await?;
    tokio::fs::create_dir_all(&opts.state_dir).await?;
    let hidden = root.parent().unwrap_or(&root).to_path_buf();
    let toolchain = Toolchain::new(
        templates,
        hidden,
        Isolation::None,
        DevServerOptions {
            host: opts.dev_server.ip().to_string(),
            port: (opts.dev_server.port() != 0).then_some(opts.dev_server.port()),
            hmr_client_port: opts.hmr_client_port,
            ui_origins: opts.ui_origins.clone(),
            // node_modules is on the image's read-only file system.
            vite_args: vec!["--configLoader".into(), "runner".into()],
            node_args: super::local::supervisor::NODE_FLAGS
                .iter()
                .map(|f| f.to_string())
                .collect(),
        },
    )?
    .with_browser(Arc::new(Browser::new(BrowserOptions {
        executable: opts.chromium.clone(),
        // The pod is the isolation: its restricted profile allows neither the
        // user namespaces nor the setuid helper Chromium's own sandbox needs.
        no_sandbox: Some(true),
    })));
    let id = opts
        .project_id
        .clone()
        .unwrap_or_else(|| "workspace".into());
    Ok(Arc::new(Workspace::new(
        &id,
        root,
        opts.state_dir.join("dev-server.log"),
        RootKind::Mounted,
        Arc::new(toolchain),
    )))
}

/// Runs sandboxd until `shutdown` resolves, then stops the dev server and
/// every command (they are in their own process groups: nothing else would).
pub async fn run(
    opts: SandboxdOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let span = tracing::info_span!(
        "sandboxd",
        project_id = opts.project_id.as_deref().unwrap_or_default()
    );
    serve(opts, shutdown).instrument(span).await
}

async fn serve(
    opts: SandboxdOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::Config {
            var: "APNA_SANDBOXD_LISTEN",
            message: format!("cannot listen on {}: {e}", opts.listen),
        })?;
    let ws = open_workspace(&opts).await?;
    // A failed seed (a full volume) must not stop the API: status says Missing
    // and the driver sees the error on its next ensure.
    match ws.ensure_from(&opts.starter).await {
        Ok(st) => tracing::info!(state = ?st.state, "workspace in place, dev server starting"),
        Err(e) => tracing::error!(error = %e, "could not prepare the workspace"),
    }
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "sandboxd listening");
    // Caddy sends previews straight to the dev server; its connections are
    // how the backend's light sleep learns whether anyone is looking.
    let connections =
        (opts.dev_server.port() != 0).then(|| ConnectionWatch::spawn(opts.dev_server.port()));
    let app = router_watching(ws.clone(), &opts.token, connections);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = ws.stop().await;
    ws.toolchain().browser().close().await;
    let killed = ws.kill_commands();
    tracing::info!(killed, "sandboxd stopped");
    served.map_err(Error::Io)
}

struct Daemon {
    sandbox: Arc<dyn Sandbox>,
    token_digest: [u8; 32],
    connections: Option<ConnectionWatch>,
}

/// The routes (see [`super::remote`]) over any sandbox, behind `token`.
pub fn router(sandbox: Arc<dyn Sandbox>, token: &str) -> Router {
    router_watching(sandbox, token, None)
}

/// [`router`], answering `GET /v1/activity` from `connections` (the dev
/// server's port watched in the pod) instead of asking the sandbox.
pub fn router_watching(
    sandbox: Arc<dyn Sandbox>,
    token: &str,
    connections: Option<ConnectionWatch>,
) -> Router {
    let state = Arc::new(Daemon {
        sandbox,
        token_digest: Sha256::digest(token.as_bytes()).into(),
        connections,
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/status", get(status))
        .route("/v1/ensure", post(ensure))
        .route("/v1/files", get(list_files))
        .route(
            "/v1/file",
            get(read_file).put(write_file).delete(delete_file),
        )
        .route("/v1/exec", post(exec))
        .route("/v1/logs", get(logs))
        .route("/v1/activity", get(activity))
        .route("/v1/stop", post(stop))
        .route("/v1/destroy", post(destroy))
        .route("/v1/source", get(export_source).put(import_source))
        .route("/v1/smoke", post(smoke))
        .route("/v1/check", post(check))
        .fallback(|| async { DaemonError(Error::NotFound("no such sandboxd route".into())) })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Every request but `GET /healthz` carries the token (checked before routing,
/// so an unknown route without it is a 401 too).
async fn require_token(State(d): State<Arc<Daemon>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" && req.method() == Method::GET {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let digest = Sha256::digest(given);
    if !bool::from(digest.as_slice().ct_eq(&d.token_digest)) {
        return DaemonError(Error::Unauthorized(format!(
            "missing or wrong {TOKEN_HEADER} header"
        )))
        .into_response();
    }
    next.run(req).await
}

/// An error as sandboxd sends it: the full message (the caller is the
/// backend, which rebuilds the same [`Error`]), with the API's status.
struct DaemonError(Error);

impl From<Error> for DaemonError {
    fn from(e: Error) -> Self {
        DaemonError(e)
    }
}

impl IntoResponse for DaemonError {
    fn into_response(self) -> Response {
        let status = self.0.http_status();
        // NotReady (no project yet) is an answer, not a fault.
        if status.is_server_error() && !matches!(self.0, Error::NotReady(_)) {
            tracing::warn!(error = %self.0, "sandboxd request failed");
        }
        (status, Json(WireError::from_error(&self.0))).into_response()
    }
}

type Answer<T> = std::result::Result<T, DaemonError>;

fn query_param(q: &Option<String>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn path_param(q: &Option<String>) -> Result<ProjectPath> {
    let raw = query_param(q, "path").ok_or_else(|| {
        Error::InvalidInput(
            "the `path` query parameter is missing (/v1/file?path=src/App.tsx)".into(),
        )
    })?;
    ProjectPath::parse(&raw)
}

async fn body_bytes(body: Body, limit: usize, what: &str) -> Result<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            Error::TooLarge(format!("{what} is over the {limit} byte limit"))
        } else {
            Error::InvalidInput(format!("could not read the {what}: {inner}"))
        }
    })
}

async fn status(State(d): State<Arc<Daemon>>) -> Answer<Response> {
    Ok(Json(d.sandbox.status().await?).into_response())
}

async fn ensure(State(d): State<Arc<Daemon>>, RawQuery(q): RawQuery) -> Answer<Response> {
    let status = match query_param(&q, "template") {
        Some(starter) => d.sandbox.ensure_from(&starter).await?,
        None => d.sandbox.ensure().await?,
    };
    Ok(Json(status).into_response())
}

async fn list_files(State(d): State<Arc<Daemon>>) -> Answer<Response> {
    Ok(Json(d.sandbox.list_files().await?).into_response())
}

async fn read_file(State(d): State<Arc<Daemon>>, RawQuery(q): RawQuery) -> Answer<Response> {
    let path = path_param(&q)?;
    let data = d.sandbox.read_file(&path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

async fn write_file(
    State(d): State<Arc<Daemon>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Answer<StatusCode> {
    let path = path_param(&q)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > MAX_FILE_BYTES) {
        // The local driver's words for the same refusal.
        return Err(Error::TooLarge(format!(
            "{len} bytes is over the {MAX_FILE_BYTES} byte file limit"
        ))
        .into());
    }
    let data = body_bytes(body, MAX_FILE_BYTES as usize, "file").await?;
    d.sandbox.write_file(&path, &data).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_file(State(d): State<Arc<Daemon>>, RawQuery(q): RawQuery) -> Answer<Response> {
    let path = path_param(&q)?;
    let deleted = d.sandbox.delete_file(&path).await?;
    Ok(Json(Deleted { deleted }).into_response())
}

async fn exec(State(d): State<Arc<Daemon>>, body: Body) -> Answer<Response> {
    let raw = body_bytes(body, MAX_EXEC_BODY, "exec request").await?;
    let req: ExecBody = serde_json::from_slice(&raw).map_err(Error::from)?;
    let out = d
        .sandbox
        .exec(&ExecRequest {
            command: req.command,
            timeout: Duration::from_millis(req.timeout_ms),
            max_output: req.max_output.min(MAX_EXEC_OUTPUT),
        })
        .await?;
    Ok(Json(out).into_response())
}

async fn logs(State(d): State<Arc<Daemon>>, RawQuery(q): RawQuery) -> Answer<Response> {
    let lines = match query_param(&q, "lines") {
        None => 200,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| Error::InvalidInput(format!("lines={v:?} is not a number of lines")))?,
    };
    let text = d.sandbox.logs(lines.min(MAX_LOG_LINES)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn activity(State(d): State<Arc<Daemon>>) -> Answer<Json<Option<Activity>>> {
    Ok(Json(match &d.connections {
        Some(c) => Some(c.activity()),
        None => d.sandbox.preview_activity().await?,
    }))
}

async fn stop(State(d): State<Arc<Daemon>>) -> Answer<StatusCode> {
    d.sandbox.stop().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn destroy(State(d): State<Arc<Daemon>>) -> Answer<StatusCode> {
    d.sandbox.destroy().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn export_source(State(d): State<Arc<Daemon>>) -> Answer<Response> {
    let tree = d.sandbox.export_source().await?;
    let tar = tokio::task::spawn_blocking(move || source_tar::to_tar(&tree))
        .await
        .map_err(|e| Error::Internal(format!("tar task: {e}")))??;
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], tar).into_response())
}

async fn import_source(State(d): State<Arc<Daemon>>, body: Body) -> Answer<StatusCode> {
    // The tar's headers add a little to the tree's own limit.
    let limit = MAX_SOURCE_BYTES as usize + 16 * 1024 * 1024;
    let raw = body_bytes(body, limit, "source archive").await?;
    let tree = tokio::task::spawn_blocking(move || source_tar::from_tar(&raw))
        .await
        .map_err(|e| Error::Internal(format!("tar task: {e}")))??;
    d.sandbox.import_source(&tree).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn check(State(d): State<Arc<Daemon>>) -> Answer<Response> {
    let report = d.sandbox.check_build().await?;
    Ok(Json(report).into_response())
}

async fn smoke(State(d): State<Arc<Daemon>>, body: Body) -> Answer<Response> {
    let raw = body_bytes(body, MAX_EXEC_BODY, "smoke request").await?;
    let mut req: SmokeRequest = serde_json::from_slice(&raw).map_err(Error::from)?;
    req.timeout_ms = req
        .timeout_ms
        .min(u64::try_from(MAX_SMOKE_TIMEOUT.as_millis()).unwrap_or(u64::MAX));
    if req.viewports.len() > 4
        || req
            .viewports
            .iter()
            .any(|v| v.width > 4096 || v.height > 4096)
    {
        return Err(Error::InvalidInput("at most 4 viewports of at most 4096×4096".into()).into());
    }
    let report = d.sandbox.smoke_check(&req).await?;
    Ok(Json(report).into_response())
}
