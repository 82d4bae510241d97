//! [`Sandbox`] over HTTP: the backend's client of `apna sandboxd`, the
//! server inside each project's pod (see [`super::sandboxd`]).
//!
//! How requests reach the pod is the [`SandboxdTransport`] seam: straight to
//! its address ([`DirectTransport`], loopback in tests, the pod IP inside a
//! VPC) or through the Kubernetes API server's `pods/proxy` (the kube driver's).
//!
//! # Wire protocol
//!
//! Every route but `GET /healthz` needs the header `X-Apna-Sandbox-Token`
//! (not `Authorization`, which the API server's proxy consumes); without it or
//! with a wrong one the answer is 401. Paths travel in the query (`?path=`,
//! percent-encoded), never in the URL path, so no proxy can normalise `..` or
//! `//` in them; sandboxd checks them exactly as the local driver does.
//!
//! | route | request | success |
//! |---|---|---|
//! | `GET /healthz` | — | 200 `ok` (no token: for probes) |
//! | `GET /v1/status` | — | 200 JSON [`SandboxStatus`] |
//! | `POST /v1/ensure` | — | 200 JSON [`SandboxStatus`] |
//! | `POST /v1/ensure?template=NAME` | — | 200 JSON [`SandboxStatus`]: a missing (or still untouched) workspace gets starter `NAME` |
//! | `GET /v1/files` | — | 200 JSON `[FileEntry]` |
//! | `GET /v1/file?path=P` | — | 200 the file's bytes |
//! | `PUT /v1/file?path=P` | the file's bytes (≤ 8 MiB) | 204 |
//! | `DELETE /v1/file?path=P` | — | 200 JSON `{"deleted": bool}` |
//! | `POST /v1/exec` | JSON `{"command", "timeout_ms", "max_output"}` | 200 JSON [`ExecOutput`] |
//! | `GET /v1/logs?lines=N` | — | 200 text |
//! | `GET /v1/activity` | — | 200 JSON [`crate::sandbox::activity::Activity`] of the dev server's connections, or `null` |
//! | `POST /v1/stop` | — | 204 |
//! | `POST /v1/destroy` | — | 204 |
//! | `GET /v1/source` | — | 200 `application/x-tar` (see [`super::source_tar`]) |
//! | `PUT /v1/source` | `application/x-tar` (≤ 256 MiB) | 204 |
//! | `POST /v1/smoke` | JSON [`SmokeRequest`] | 200 JSON [`SmokeReport`] (screenshots base64) |
//! | `POST /v1/check` | — | 200 JSON [`BuildReport`]: Verify's check, next to the files, under the pod's build gate |
//!
//! A failure is JSON `{ "error": { "code", "message" } }` with the status the
//! API uses for that [`Error`] variant; `code` is [`Error::code`] and
//! `message` the variant's own text, so [`RemoteSandbox`] rebuilds the same
//! variant with the same message and the agent's tools read the same words on
//! both drivers. Exceptions: a 401 (wrong token: a deployment fault, not the
//! caller's) becomes [`Error::Sandbox`]; an answer not in this shape (the API
//! server's proxy when the pod is gone or starting: 404, 429, 502, 503, 504)
//! becomes [`Error::NotReady`], as do refused connections and timeouts, so
//! the workflow's retries wait for the pod.
//!
//! # Differences from the local driver
//!
//! The conformance suite (`functions/tests/sandbox_conformance.rs`) runs the
//! same cases on both and they agree. What differs by design: a new pod's
//! sandboxd seeds its empty volume and starts Vite at once (a local project
//! exists only after `ensure` or an import); commands run without bubblewrap
//! (the pod is the isolation); `preview_addr` is Vite's address inside the pod
//! (`127.0.0.1:5173`), which the kube driver replaces with its Service; one
//! request returns at most 10,000 log lines and 16 MiB of command output, and
//! an import carries at most 256 MiB.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::build_check::{self, BuildReport};
use super::local::files::{check_import, MAX_FILE_BYTES};
use super::source_tar;
use crate::error::{Error, Result};
use crate::sandbox::{
    ExecOutput, ExecRequest, FileEntry, ProjectPath, Sandbox, SandboxStatus, SmokeReport,
    SmokeRequest, SourceTree,
};

/// The port sandboxd listens on in a pod.
pub const SANDBOXD_PORT: u16 = 7070;
/// The header carrying the per-pod token (lower case, as HTTP/2 sends it).
pub const TOKEN_HEADER: &str = "x-apna-sandbox-token";
/// The environment variable sandboxd reads its token from.
pub const TOKEN_ENV: &str = "APNA_SANDBOXD_TOKEN";

/// How long one request may take when the caller says nothing else.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Export and import move a whole tree.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(300);
/// What an exec request may take beyond the command's own timeout.
const EXEC_GRACE: Duration = Duration::from_secs(30);
/// Verify's check: its commands' own limit (180 s), a wait for the pod's
/// build gate, and the grace.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// A request extension: how long the transport should wait for this request's
/// answer (an exec waits for its command). Transports without one use their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// How requests reach one pod's sandboxd (seam: direct HTTP, or the kube API server's pods/proxy).
#[async_trait]
pub trait SandboxdTransport: Send + Sync {
    /// Sends one request. `req.uri()` is path-and-query only (`/v1/...`); the
    /// transport adds its base (direct: `http://10.1.2.3:7070`; kube:
    /// `/api/v1/namespaces/{ns}/pods/{pod}:7070/proxy`). Connection failures
    /// and timeouts are `Error::NotReady`.
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>>;
}

/// reqwest to a base URL (loopback in tests, the pod IP inside a VPC).
pub struct DirectTransport {
    base: String,
    client: reqwest::Client,
}

impl DirectTransport {
    /// `base_url` like `http://10.1.2.3:7070` (no trailing path).
    pub fn new(base_url: &str) -> Result<Self> {
        let parsed = url::Url::parse(base_url)
            .map_err(|e| Error::InvalidInput(format!("sandboxd URL {base_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(Error::InvalidInput(format!(
                "sandboxd URL {base_url:?} must be http(s)://host:port"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        Ok(DirectTransport {
            base: base_url.trim_end_matches('/').to_string(),
            client,
        })
    }
}

#[async_trait]
impl SandboxdTransport for DirectTransport {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>> {
        let (parts, body) = req.into_parts();
        let timeout = parts
            .extensions
            .get::<RequestTimeout>()
            .map_or(DEFAULT_TIMEOUT, |t| t.0);
        let url = format!("{}{}", self.base, parts.uri);
        let unreachable = |e: reqwest::Error| {
            Error::NotReady(format!("sandboxd at {} did not answer: {e}", self.base))
        };
        let resp = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let mut out = Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = resp.headers().clone();
        }
        let body = resp.bytes().await.map_err(unreachable)?;
        out.body(body)
            .map_err(|e| Error::Internal(format!("response: {e}")))
    }
}

/// The body of `POST /v1/exec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecBody {
    /// Shell command line.
    pub command: String,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
    /// Output cap in bytes.
    pub max_output: usize,
}

/// The answer of `DELETE /v1/file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    /// Whether the file existed.
    pub deleted: bool,
}

/// The error body: `{ "error": { "code", "message" } }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    /// Code and message.
    pub error: WireErrorDetail,
}

/// Code and message of a [`WireError`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireErrorDetail {
    /// [`Error::code`].
    pub code: String,
    /// The variant's own message (without the `sandbox: ` style prefix).
    pub message: String,
}

impl WireError {
    /// The wire form of `e`.
    pub fn from_error(e: &Error) -> WireError {
        let message = match e {
            Error::InvalidInput(m)
            | Error::Unauthorized(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::TooLarge(m)
            | Error::QuotaExceeded(m)
            | Error::NotReady(m)
            | Error::Store(m)
            | Error::Blob(m)
            | Error::Sandbox(m)
            | Error::Model(m)
            | Error::Workflow(m)
            | Error::Internal(m) => m.clone(),
            Error::Io(io) => io.to_string(),
            Error::Config { .. } => e.to_string(),
        };
        WireError {
            error: WireErrorDetail {
                code: e.code().to_string(),
                message,
            },
        }
    }

    /// The [`Error`] this stands for.
    pub fn into_error(self) -> Error {
        let m = self.error.message;
        match self.error.code.as_str() {
            "invalid_input" => Error::InvalidInput(m),
            "not_found" => Error::NotFound(m),
            "conflict" => Error::Conflict(m),
            "payload_too_large" => Error::TooLarge(m),
            "quota_exceeded" => Error::QuotaExceeded(m),
            "not_ready" => Error::NotReady(m),
            "store" => Error::Store(m),
            "blob" => Error::Blob(m),
            "model" => Error::Model(m),
            "workflow" => Error::Workflow(m),
            "io" => Error::Io(std::io::Error::other(m)),
            "internal" => Error::Internal(m),
            "unauthorized" => Error::Sandbox(format!("sandboxd refused the request: {m}")),
            _ => Error::Sandbox(m),
        }
    }
}

/// `Sandbox` over sandboxd: file operations, exec, logs, export/import, the
/// dev server's status. It cannot create or delete the pod: `ensure`/`status`
/// report what sandboxd says; `destroy` empties the workspace and stops the dev
/// server; lifecycle drivers (kube) wrap it and do the pod part themselves.
pub struct RemoteSandbox {
    project_id: String,
    transport: Arc<dyn SandboxdTransport>,
    token: String,
}

impl RemoteSandbox {
    /// A client of the sandboxd reached through `transport`, sending `token`.
    pub fn new(project_id: &str, transport: Arc<dyn SandboxdTransport>, token: String) -> Self {
        RemoteSandbox {
            project_id: project_id.to_string(),
            transport,
            token,
        }
    }

    fn request(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Request<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(TOKEN_HEADER, &self.token);
        if let Some(ct) = content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        let mut req = b
            .body(body)
            .map_err(|e| Error::Internal(format!("sandboxd request {uri}: {e}")))?;
        req.extensions_mut().insert(RequestTimeout(timeout));
        Ok(req)
    }

    /// Sends a request and returns the body of a 2xx answer, or the error it stands for.
    async fn call(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes> {
        let req = self.request(method, uri, content_type, body, timeout)?;
        let span =
            tracing::debug_span!("sandboxd", xray = "sandbox", project_id = %self.project_id, %uri);
        let resp = tracing::Instrument::instrument(self.transport.send(req), span).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        Err(error_from_response(status, resp.body()))
    }

    async fn get(&self, uri: &str) -> Result<Bytes> {
        self.call(Method::GET, uri, None, Bytes::new(), DEFAULT_TIMEOUT)
            .await
    }

    async fn post(&self, uri: &str) -> Result<Bytes> {
        self.call(Method::POST, uri, None, Bytes::new(), DEFAULT_TIMEOUT)
            .await
    }
}

/// The error a non-2xx answer stands for.
fn error_from_response(status: StatusCode, body: &[u8]) -> Error {
    if let Ok(w) = serde_json::from_slice::<WireError>(body) {
        return w.into_error();
    }
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    match status {
        StatusCode::NOT_FOUND
        | StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => {
            Error::NotReady(format!("sandboxd is not reachable yet ({status}): {text}"))
        }
        _ => Error::Sandbox(format!("sandboxd answered {status}: {text}")),
    }
}

fn file_uri(path: &ProjectPath) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("path", path.as_str())
        .finish();
    format!("/v1/file?{q}")
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Sandbox(format!("sandboxd sent an unreadable {what}: {e}")))
}

#[async_trait]
impl Sandbox for RemoteSandbox {
    fn project_id(&self) -> &str {
        &self.project_id
    }

    async fn ensure(&self) -> Result<SandboxStatus> {
        json(&self.post("/v1/ensure").await?, "status")
    }

    async fn ensure_from(&self, starter: &str) -> Result<SandboxStatus> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("template", starter)
            .finish();
        json(&self.post(&format!("/v1/ensure?{query}")).await?, "status")
    }

    async fn status(&self) -> Result<SandboxStatus> {
        json(&self.get("/v1/status").await?, "status")
    }

    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        Ok(self.get(&file_uri(path)).await?.to_vec())
    }

    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()> {
        // The local driver's own check, before 8 MiB cross the network.
        if data.len() as u64 > MAX_FILE_BYTES {
            return Err(Error::TooLarge(format!(
                "{} bytes is over the {} byte file limit",
                data.len(),
                MAX_FILE_BYTES
            )));
        }
        self.call(
            Method::PUT,
            &file_uri(path),
            Some("application/octet-stream"),
            Bytes::copy_from_slice(data),
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    async fn delete_file(&self, path: &ProjectPath) -> Result<bool> {
        let body = self
            .call(
                Method::DELETE,
                &file_uri(path),
                None,
                Bytes::new(),
                DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(json::<Deleted>(&body, "delete answer")?.deleted)
    }

    async fn list_files(&self) -> Result<Vec<FileEntry>> {
        json(&self.get("/v1/files").await?, "file list")
    }

    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput> {
        let body = serde_json::to_vec(&ExecBody {
            command: req.command.clone(),
            timeout_ms: u64::try_from(req.timeout.as_millis()).unwrap_or(u64::MAX),
            max_output: req.max_output,
        })?;
        let out = self
            .call(
                Method::POST,
                "/v1/exec",
                Some("application/json"),
                Bytes::from(body),
                req.timeout.saturating_add(EXEC_GRACE),
            )
            .await?;
        json(&out, "exec result")
    }

    async fn logs(&self, lines: usize) -> Result<String> {
        let body = self.get(&format!("/v1/logs?lines={lines}")).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn preview_activity(&self) -> Result<Option<crate::sandbox::activity::Activity>> {
        let body = self.get("/v1/activity").await?;
        Ok(serde_json::from_slice(&body)?)
    }

    async fn stop(&self) -> Result<()> {
        self.post("/v1/stop").await?;
        Ok(())
    }

    async fn destroy(&self) -> Result<()> {
        self.post("/v1/destroy").await?;
        Ok(())
    }

    async fn export_source(&self) -> Result<SourceTree> {
        let body = self
            .call(
                Method::GET,
                "/v1/source",
                None,
                Bytes::new(),
                SOURCE_TIMEOUT,
            )
            .await?;
        source_tar::from_tar(&body)
            .map_err(|e| Error::Sandbox(format!("sandboxd sent an unreadable source tree: {e}")))
    }

    async fn import_source(&self, tree: &SourceTree) -> Result<()> {
        // Refused here exactly as the local driver refuses them, before any upload.
        check_import(tree)?;
        let tar = source_tar::to_tar(tree)?;
        self.call(
            Method::PUT,
            "/v1/source",
            Some("application/x-tar"),
            Bytes::from(tar),
            SOURCE_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    async fn smoke_check(&self, req: &SmokeRequest) -> Result<SmokeReport> {
        let body = serde_json::to_vec(req)?;
        let out = self
            .call(
                Method::POST,
                "/v1/smoke",
                Some("application/json"),
                Bytes::from(body),
                req.timeout().saturating_add(EXEC_GRACE),
            )
            .await?;
        json(&out, "smoke report")
    }

    async fn check_build(&self) -> Result<BuildReport> {
        match self
            .call(Method::POST, "/v1/check", None, Bytes::new(), CHECK_TIMEOUT)
            .await
        {
            Ok(out) => json(&out, "build report"),
            // A pod started from an image older than the route: check the
            // way it could, through exec.
            Err(Error::NotFound(m)) if m.contains("no such sandboxd route") => {
                build_check::check_build_with_vite_build(self).await
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_variant_and_message() {
        for e in [
            Error::InvalidInput("path \"x\" refused".into()),
            Error::NotFound("src/a.ts does not exist".into()),
            Error::TooLarge("too big".into()),
            Error::NotReady("not yet".into()),
            Error::Sandbox("could not start the command".into()),
            Error::Io(std::io::Error::other("disk full")),
            Error::Internal("bug".into()),
        ] {
            let wire = serde_json::to_vec(&WireError::from_error(&e)).unwrap();
            let back = error_from_response(StatusCode::BAD_REQUEST, &wire);
            assert_eq!(back.code(), e.code());
            assert_eq!(back.to_string(), e.to_string());
        }
        let e = error_from_response(StatusCode::SERVICE_UNAVAILABLE, b"upstream connect error");
        assert!(matches!(e, Error::NotReady(_)), "{e}");
        let e = error_from_response(StatusCode::FORBIDDEN, b"{\"kind\":\"Status\"}");
        assert!(matches!(e, Error::Sandbox(_)), "{e}");
    }
}
