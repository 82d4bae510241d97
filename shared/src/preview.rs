//! The host-based preview proxy of `apna serve`.
//!
//! `http://{project-id}.localhost:{PORT}/` (or `{project-id}.{CADDY_DOMAIN}`)
//! is forwarded to that project's dev server, WebSocket upgrades included, so
//! Vite's HMR works through it. Only hosts matching
//! `^[a-z0-9-]{1,63}\.localhost(:\d+)?$` (or the Caddy domain equivalent) are
//! accepted; anything else is answered 400 before any backend is looked up.
//! A project that is not serving gets a small "starting…" page that retries,
//! and the [`PreviewBackend`] is asked to wake it.
//!
//! In multi-user mode a preview is its owner's unless shared: see [`access`].

pub mod access;
pub mod gate;
pub mod guard;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use access::PreviewKeys;
use guard::{PreviewGuard, Visit};

use crate::app::Backends;
use crate::domain::ProjectStatus;
use crate::error::{Error, Result};
use crate::sandbox::activity::PreviewActivity;
use crate::sandbox::{SandboxProvider, SandboxState};

/// Where the proxy finds a project's dev server, and how it wakes one.
#[async_trait]
pub trait PreviewBackend: Send + Sync {
    /// `host:port` of the project's dev server when it is serving; `None` when
    /// it is starting, stopped or hibernated. `Err(NotFound)` for unknown projects.
    async fn preview_addr(&self, project_id: &str) -> Result<Option<String>>;
    /// Starts (or restores) the project's sandbox; called when a preview is
    /// requested and `preview_addr` is `None`. Runs in the background.
    async fn wake(&self, project_id: &str) -> Result<()>;
    /// Who owns the project and whether its preview is public (asked only in
    /// multi-user mode). `Err(NotFound)` for unknown projects.
    async fn visibility(&self, project_id: &str) -> Result<Visibility>;
}

/// A project's owner and whether anyone may open its preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    /// The owner's user id.
    pub owner: String,
    /// Shared by its owner: no token needed.
    pub public: bool,
}

/// A [`PreviewBackend`] that asks a [`SandboxProvider`] directly, with no
/// store behind it (tests and benches of the proxy alone; `apna serve` uses
/// [`StorePreviewBackend`]).
pub struct SandboxPreviewBackend {
    provider: Arc<dyn SandboxProvider>,
}

impl SandboxPreviewBackend {
    /// Wraps a provider.
    pub fn new(provider: Arc<dyn SandboxProvider>) -> Self {
        Self { provider }
    }
}

#[async_trait]
impl PreviewBackend for SandboxPreviewBackend {
    async fn preview_addr(&self, project_id: &str) -> Result<Option<String>> {
        let st = self.provider.sandbox(project_id)?.status().await?;
        Ok(match st.state {
            SandboxState::Ready => st.preview_addr,
            _ => None,
        })
    }

    async fn wake(&self, project_id: &str) -> Result<()> {
        self.provider
            .sandbox(project_id)?
            .ensure()
            .await
            .map(|_| ())
    }

    async fn visibility(&self, _project_id: &str) -> Result<Visibility> {
        // No store, no owners: every sandbox is open (proxy tests and benches).
        Ok(Visibility {
            owner: String::new(),
            public: true,
        })
    }
}

/// The preview proxy's view of projects in `apna serve`: unknown and deleted
/// projects are 404, hibernated ones are woken from their snapshot.
pub struct StorePreviewBackend {
    state: Backends,
}

impl StorePreviewBackend {
    /// A backend over the app's store and sandboxes.
    pub fn new(state: Backends) -> Self {
        StorePreviewBackend { state }
    }
}

#[async_trait]
impl PreviewBackend for StorePreviewBackend {
    async fn preview_addr(&self, project_id: &str) -> Result<Option<String>> {
        let project = crate::project::live(&self.state, project_id).await?;
        if project.status == ProjectStatus::Hibernated {
            return Ok(None);
        }
        let status = self.state.sandboxes.sandbox(project_id)?.status().await?;
        Ok(match status.state {
            SandboxState::Ready => status.preview_addr,
            _ => None,
        })
    }

    async fn wake(&self, project_id: &str) -> Result<()> {
        crate::project::wake(&self.state, project_id).await
    }

    async fn visibility(&self, project_id: &str) -> Result<Visibility> {
        let project = crate::project::live(&self.state, project_id).await?;
        Ok(Visibility {
            owner: project.owner,
            public: project.preview_public,
        })
    }
}

/// The host part of a `Host` header value, lower-cased, without the port.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host;
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

fn request_host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
}

/// Whether a request is meant for the preview proxy rather than the API: its
/// host is a subdomain of `localhost` (or of the Caddy domain). Plain
/// `localhost`, `127.0.0.1` and other hosts go to the API router. The proxy
/// then validates the host strictly.
pub fn is_preview_request(headers: &HeaderMap, uri: &Uri, caddy_domain: Option<&str>) -> bool {
    let Some(host) = request_host(headers, uri) else {
        return false;
    };
    let name = host_name(&host).to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    let under = |suffix: &str| {
        name.len() > suffix.len() + 1
            && name.ends_with(suffix)
            && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
    };
    under("localhost") || caddy_domain.is_some_and(|d| under(&d.to_ascii_lowercase()))
}

/// The project id named by a preview `Host` header, or `None` when the header
/// does not match `^[a-z0-9-]{1,63}\.localhost(:\d+)?$` (or, with a Caddy
/// domain, `^[a-z0-9-]{1,63}\.{domain}(:\d+)?$`) exactly.
pub fn project_from_host<'a>(host: &'a str, caddy_domain: Option<&str>) -> Option<&'a str> {
    let (label, rest) = host.split_once('.')?;
    if label.is_empty()
        || label.len() > 63
        || !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return None;
    }
    let (domain, port) = match rest.split_once(':') {
        Some((d, p)) => (d, Some(p)),
        None => (rest, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let ok = domain == "localhost" || caddy_domain.is_some_and(|d| domain == d);
    ok.then_some(label)
}

/// Hop-by-hop headers: meaningful for one connection only, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    let conn_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    conn_upgrade && headers.contains_key(header::UPGRADE)
}

/// The proxy: cheap to clone; one per `apna serve`.
#[derive(Clone)]
pub struct PreviewProxy {
    backend: Arc<dyn PreviewBackend>,
    caddy_domain: Option<String>,
    client: Client<HttpConnector, Body>,
    guard: Option<PreviewGuard>,
    activity: PreviewActivity,
}

impl PreviewProxy {
    /// A proxy answering `{id}.localhost` and, when set, `{id}.{caddy_domain}`.
    pub fn new(backend: Arc<dyn PreviewBackend>, caddy_domain: Option<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        PreviewProxy {
            backend,
            caddy_domain,
            client,
            guard: None,
            activity: PreviewActivity::default(),
        }
    }

    /// Records requests and open HMR sockets into `activity` (the app's, so
    /// light sleep sees what this proxy sees).
    pub fn with_activity(mut self, activity: PreviewActivity) -> Self {
        self.activity = activity;
        self
    }

    /// What this proxy has seen of each project.
    pub fn activity(&self) -> &PreviewActivity {
        &self.activity
    }

    /// Requires the owner's preview token for private previews (multi-user mode).
    pub fn with_access(mut self, keys: PreviewKeys) -> Self {
        self.guard = Some(PreviewGuard::new(keys));
        self
    }

    /// Whether `req` is for this proxy (see [`is_preview_request`]).
    pub fn wants(&self, req: &Request) -> bool {
        is_preview_request(req.headers(), req.uri(), self.caddy_domain.as_deref())
    }

    /// Handles one preview request; never fails (errors become responses).
    pub async fn handle(&self, req: Request) -> Response {
        let host = request_host(req.headers(), req.uri()).unwrap_or_default();
        let Some(project_id) = project_from_host(&host, self.caddy_domain.as_deref()) else {
            return text(
                StatusCode::BAD_REQUEST,
                "bad preview host: expected {project-id}.localhost",
            );
        };
        let project_id = project_id.to_string();
        if let Some(guard) = &self.guard {
            let visit = Visit {
                host: &host,
                project_id: &project_id,
                path: req.uri().path(),
                query: req.uri().query().unwrap_or_default(),
                headers: req.headers(),
            };
            let visibility = self.backend.visibility(&project_id).await;
            if let Some(refused) = guard.refusal(&visit, visibility) {
                return refused;
            }
        }
        // Counted before the lookup: a request for a sleeping preview is
        // what wakes it, and must not look idle to the next sleep pass.
        self.activity.request(&project_id);
        let addr = match self.backend.preview_addr(&project_id).await {
            Ok(a) => a,
            Err(Error::NotFound(_)) | Err(Error::InvalidInput(_)) => {
                return text(StatusCode::NOT_FOUND, "no such project");
            }
            Err(e) => {
                tracing::warn!(project_id = %project_id, error = %e, "preview lookup failed");
                return text(StatusCode::BAD_GATEWAY, "preview unavailable");
            }
        };
        let Some(addr) = addr else {
            self.wake_in_background(&project_id);
            return starting_page(&req);
        };
        let result = if is_upgrade(req.headers()) {
            self.forward_upgrade(req, &addr, &project_id).await
        } else {
            self.forward(req, &addr).await
        };
        match result {
            Ok(resp) => resp,
            Err(e) => {
                // Vite is restarting or just died: treat like "starting".
                tracing::debug!(project_id = %project_id, error = %e, "preview backend unreachable");
                self.wake_in_background(&project_id);
                starting_page_for(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    fn wake_in_background(&self, project_id: &str) {
        let backend = self.backend.clone();
        let id = project_id.to_string();
        tokio::spawn(async move {
            if let Err(e) = backend.wake(&id).await {
                tracing::warn!(project_id = %id, error = %e, "waking preview failed");
            }
        });
    }

    fn backend_request_parts(req: &Request, addr: &str) -> Result<(Uri, HeaderMap)> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: Uri = format!("http://{addr}{pq}")
            .parse()
            .map_err(|e| Error::Internal(format!("backend uri: {e}")))?;
        let mut headers = req.headers().clone();
        let host = headers.get(header::HOST).cloned();
        strip_hop_by_hop(&mut headers);
        let cookies = access::app_cookies(&headers);
        headers.remove(header::COOKIE);
        for c in cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                headers.append(header::COOKIE, v);
            }
        }
        if let Some(h) = host {
            headers.insert("x-forwarded-host", h);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        Ok((uri, headers))
    }

    async fn forward(&self, req: Request, addr: &str) -> Result<Response> {
        let (uri, headers) = Self::backend_request_parts(&req, addr)?;
        let (parts, body) = req.into_parts();
        let build = |body: Body| {
            let mut out = http::Request::builder()
                .method(parts.method.clone())
                .uri(uri.clone());
            if let Some(h) = out.headers_mut() {
                *h = headers.clone();
            }
            out.body(body)
                .map_err(|e| Error::Internal(format!("backend request: {e}")))
        };
        // A bodiless GET or HEAD is sent once more on a fresh connection when
        // a pooled one fails: Node resets kept-alive connections now and then
        // on a dev server's busy first page load (seen as ECONNRESET), and
        // browsers retry such requests the same way.
        let replayable = matches!(parts.method, http::Method::GET | http::Method::HEAD)
            && axum::body::HttpBody::size_hint(&body).exact() == Some(0);
        let resp = if replayable {
            match self.client.request(build(Body::empty())?).await {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::debug!(error = %e, "dev server connection failed; retrying once");
                    self.client
                        .request(build(Body::empty())?)
                        .await
                        .map_err(|e| Error::NotReady(format!("dev server: {e}")))?
                }
            }
        } else {
            self.client
                .request(build(body)?)
                .await
                .map_err(|e| Error::NotReady(format!("dev server: {e}")))?
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// Forwards an Upgrade request on its own connection and splices the two
    /// upgraded streams together.
    async fn forward_upgrade(
        &self,
        mut req: Request,
        addr: &str,
        project_id: &str,
    ) -> Result<Response> {
        let (uri, mut headers) = Self::backend_request_parts(&req, addr)?;
        // Keep what the upgrade needs; everything else hop-by-hop stays stripped.
        if let Some(u) = req.headers().get(header::UPGRADE).cloned() {
            headers.insert(header::UPGRADE, u);
        }
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        let client_upgrade = hyper::upgrade::on(&mut req);

        let stream =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| Error::NotReady("dev server connect timed out".into()))??;
        stream.set_nodelay(true)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::NotReady(format!("dev server handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut out = http::Request::builder()
            .method(req.method().clone())
            .uri(path);
        if let Some(h) = out.headers_mut() {
            *h = headers;
        }
        let out = out
            .body(Body::empty())
            .map_err(|e| Error::Internal(format!("upgrade request: {e}")))?;
        let mut resp = sender
            .send_request(out)
            .await
            .map_err(|e| Error::NotReady(format!("dev server: {e}")))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = resp.into_parts();
            return Ok(Response::from_parts(parts, Body::new(body)));
        }
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        // An open socket (Vite's HMR client: a tab showing the preview) keeps
        // the project awake for as long as it lasts.
        let open = self.activity.open_socket(project_id);
        tokio::spawn(async move {
            let _open = open;
            let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
                (Ok(c), Ok(b)) => (c, b),
                (c, b) => {
                    tracing::debug!(
                        client_ok = c.is_ok(),
                        backend_ok = b.is_ok(),
                        "upgrade failed"
                    );
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        });
        let (parts, _) = resp.into_parts();
        Ok(Response::from_parts(parts, Body::empty()))
    }
}

/// Axum middleware sending preview hosts to the proxy and everything else on to
/// the API: `router.layer(axum::middleware::from_fn_with_state(proxy, preview::route_preview))`.
pub async fn route_preview(
    axum::extract::State(proxy): axum::extract::State<PreviewProxy>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if proxy.wants(&req) {
        proxy.handle(req).await
    } else {
        next.run(req).await
    }
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, msg: &'static str) -> Response {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The page shown while a project starts: retries by itself.
const STARTING_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Starting…</title>
<style>body{font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:100vh;margin:0;color:#334155;background:#f8fafc}
.d{width:12px;height:12px;border-radius:50%;background:#6366f1;display:inline-block;animation:p 1s infinite alternate}
@keyframes p{to{opacity:.2}}</style></head>
<body><div><span class="d"></span> Starting the preview…</div>
<script>
(function poll(){fetch(location.href,{cache:"no-store"}).then(function(r){
if(r.status!==503){location.reload()}else{setTimeout(poll,500)}
}).catch(function(){setTimeout(poll,1000)})})();
</script></body></html>"#;

fn starting_page(req: &Request) -> Response {
    // Only a page navigation should see HTML; modules and sockets get a plain 503.
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html || req.uri().path() == "/" {
        // 200 for page loads: the page refreshes itself, and a 503 would show
        // up as an error in the browser console of the app being previewed.
        starting_page_for(StatusCode::OK)
    } else {
        let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "preview is starting");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }
}

fn starting_page_for(status: StatusCode) -> Response {
    let mut r = Response::new(Body::from(STARTING_HTML));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_pattern_is_strict() {
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        assert_eq!(
            project_from_host("abc-1.localhost:3000", None),
            Some("abc-1")
        );
        assert_eq!(project_from_host("abc.localhost", None), Some("abc"));
        assert_eq!(
            project_from_host(&format!("{long}.localhost"), None),
            Some(long.as_str())
        );
        for bad in [
            "evil.com",
            "a.b.localhost",
            "../x.localhost",
            "localhost",
            "localhost:3000",
            ".localhost",
            "ABC.localhost",
            "abc.localhost:",
            "abc.localhost:30a",
            "abc.localhost:3000:1",
            "abc_x.localhost",
            "abc.localhost.evil.com",
            "127.0.0.1",
        ] {
            assert_eq!(project_from_host(bad, None), None, "{bad} accepted");
        }
        assert_eq!(
            project_from_host(&format!("{too_long}.localhost"), None),
            None
        );
        let d = Some("preview.example.com");
        assert_eq!(project_from_host("p1.preview.example.com", d), Some("p1"));
        assert_eq!(project_from_host("p1.x.preview.example.com", d), None);
        assert_eq!(project_from_host("p1.preview.example.com.evil", d), None);
    }

    #[test]
    fn preview_requests_are_localhost_subdomains() {
        let check = |h: &str, d: Option<&str>| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
            is_preview_request(&m, &Uri::from_static("/"), d)
        };
        assert!(check("abc.localhost:3000", None));
        assert!(check("a.b.localhost", None));
        assert!(!check("localhost:3000", None));
        assert!(!check("127.0.0.1:3000", None));
        assert!(!check("evil.com", None));
        assert!(!check("xlocalhost", None));
        assert!(check("p.apps.example.com", Some("apps.example.com")));
        assert!(!check("apps.example.com", Some("apps.example.com")));
    }
}
