//! `apna preview-gate`: the preview check for Caddy's `forward_auth` on
//! Kubernetes, where Caddy proxies `{id}.{CADDY_DOMAIN}` straight to the
//! project's Service and `apna serve`'s proxy is not in the path.
//!
//! It runs next to Caddy (a sidecar on loopback) and answers each preview
//! request's sub-request with the [`PreviewGuard`]'s decision: 200 lets Caddy
//! proxy the request, carrying the request's other cookies in
//! [`APP_COOKIE_HEADER`] (Caddy replaces `Cookie` with it, so the preview
//! cookie never reaches the dev server); anything else (the sign-in page,
//! the sign-in redirect with its cookie, 404) goes back to the browser as is.
//!
//! Owners and share flags come from the store through a short cache
//! ([`VisibilityCache`]): one lookup per project per [`DEFAULT_CACHE`] at
//! most, however many module requests a page load makes, so un-sharing
//! takes effect within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Uri};
use tokio::sync::OnceCell;

use super::access::{self, PreviewKeys};
use super::guard::{PreviewGuard, Visit};
use super::{project_from_host, text, Visibility};
use crate::config::{Config, DbMigrations};
use crate::error::{Error, Result};
use crate::store::Store;

/// The response header carrying the cookies the dev server may see.
pub const APP_COOKIE_HEADER: &str = "x-apna-app-cookie";
/// The path Caddy's `forward_auth` asks.
pub const CHECK_PATH: &str = "/check";
/// How long an owner and share flag are reused before the store is asked again.
pub const DEFAULT_CACHE: Duration = Duration::from_secs(2);
/// Entries kept before expired ones are dropped.
const PRUNE_AT: usize = 4096;

type Lookup = Arc<OnceCell<Option<Visibility>>>;

/// Owners and share flags from the store, each kept for a short time. A
/// lookup in flight is shared: a page load's burst of module requests for a
/// project not yet cached asks the store once.
pub struct VisibilityCache {
    store: Arc<dyn Store>,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Lookup)>>,
}

impl VisibilityCache {
    /// A cache over `store` keeping each answer for `ttl`.
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        VisibilityCache {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The project's owner and share flag; `Err(NotFound)` for unknown and
    /// deleted projects (cached too, so a scan of ids is one query each).
    pub async fn get(&self, project_id: &str) -> Result<Visibility> {
        let cell = self.cell(project_id)?;
        let found = cell
            .get_or_try_init(|| async {
                let project = self.store.get_project(project_id).await?;
                Ok::<_, Error>(
                    project
                        .filter(|p| p.deleted_at.is_none())
                        .map(|p| Visibility {
                            owner: p.owner,
                            public: p.preview_public,
                        }),
                )
            })
            .await?;
        found
            .clone()
            .ok_or_else(|| Error::NotFound(format!("project {project_id} not found")))
    }

    fn cell(&self, project_id: &str) -> Result<Lookup> {
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| Error::Internal("preview gate cache poisoned".into()))?;
        if let Some((at, cell)) = entries.get(project_id) {
            // A failed lookup leaves its cell empty: the next request retries.
            if now.duration_since(*at) < self.ttl {
                return Ok(cell.clone());
            }
        }
        if entries.len() >= PRUNE_AT {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| now.duration_since(*at) < ttl);
        }
        let cell: Lookup = Arc::new(OnceCell::new());
        entries.insert(project_id.to_string(), (now, cell.clone()));
        Ok(cell)
    }
}

/// The gate: a guard, the visibility cache and the preview domain.
#[derive(Clone)]
pub struct PreviewGate {
    guard: PreviewGuard,
    visibility: Arc<VisibilityCache>,
    caddy_domain: Option<String>,
}

impl PreviewGate {
    /// A gate for `{id}.{caddy_domain}` (and `{id}.localhost`) previews.
    pub fn new(
        keys: PreviewKeys,
        visibility: Arc<VisibilityCache>,
        caddy_domain: Option<String>,
    ) -> Self {
        PreviewGate {
            guard: PreviewGuard::new(keys),
            visibility,
            caddy_domain,
        }
    }

    /// `GET /check` (every preview request, from Caddy) and `GET /healthz`.
    pub fn router(self) -> Router {
        Router::new()
            .route(CHECK_PATH, get(check))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self)
    }

    /// The decision for one forwarded request: 200 (with the app's cookies)
    /// or the answer the browser gets.
    pub async fn decide(&self, headers: &HeaderMap) -> Response {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let Some(project_id) = project_from_host(host, self.caddy_domain.as_deref()) else {
            return text(StatusCode::NOT_FOUND, "unknown preview host");
        };
        // Caddy's forward_auth puts the original request's path and query
        // here (and overwrites whatever the client sent).
        let original: Option<Uri> = headers
            .get("x-forwarded-uri")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let Some(original) = original else {
            return text(StatusCode::BAD_REQUEST, "missing X-Forwarded-Uri");
        };
        let visit = Visit {
            host,
            project_id,
            path: original.path(),
            query: original.query().unwrap_or_default(),
            headers,
        };
        let visibility = self.visibility.get(project_id).await;
        if let Some(refused) = self.guard.refusal(&visit, visibility) {
            return refused;
        }
        let mut ok = StatusCode::NO_CONTENT.into_response();
        let cookies = access::app_cookies(headers).join("; ");
        if !cookies.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&cookies) {
                ok.headers_mut().insert(APP_COOKIE_HEADER, v);
            }
        }
        ok
    }
}

/// A gate over the store `config` names, checking tokens signed with `keys`.
/// A PostgreSQL schema is checked, never migrated: the gate's role may only
/// read.
pub async fn open(config: &Config, keys: PreviewKeys, ttl: Duration) -> Result<PreviewGate> {
    let mut config = config.clone();
    config.db_migrations = DbMigrations::Check;
    let blobs = crate::blob::connect(&config).await?;
    let store = crate::store::open(&config, blobs).await?;
    Ok(PreviewGate::new(
        keys,
        Arc::new(VisibilityCache::new(store, ttl)),
        config.caddy_domain.clone(),
    ))
}

async fn check(State(gate): State<PreviewGate>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    gate.decide(&parts.headers).await
}
