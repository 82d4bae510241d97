//! Published sites in `apna serve`: `http://{slug}.{APNA_APPS_DOMAIN}:{PORT}/`
//! (and the extra hosts of `APNA_SITE_HOSTS`) served straight from the blob
//! store, by the same rules CloudFront applies on AWS (`publish::layout`):
//! the entry for client-side routes, immutable caching inside a deploy,
//! revalidation for the entry, content types from the file name, an ETag
//! (the content's SHA-256) answered with 304 when it matches. Compression
//! (gzip, brotli) is a layer around [`SiteServer::handle`] in `server`.
//!
//! Hosts are matched like preview hosts: exactly one lower-case label under
//! the apps domain; anything else under it is answered 400.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use crate::blob::{sha256_hex, BlobStore};
use crate::error::Error;
use crate::publish::layout::{headers_for, is_site_host, route, site_prefix, slug_for_host};

/// Serves published sites; cheap to clone.
#[derive(Clone)]
pub struct SiteServer {
    blobs: Arc<dyn BlobStore>,
    apps_domain: String,
    hosts: Arc<Vec<(String, String)>>,
}

impl SiteServer {
    /// Serves sites under `apps_domain` and the extra `hosts` (host → slug) from `blobs`.
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        apps_domain: String,
        hosts: Vec<(String, String)>,
    ) -> Self {
        SiteServer {
            blobs,
            apps_domain,
            hosts: Arc::new(hosts),
        }
    }

    /// Whether `req`'s host belongs to published sites.
    pub fn wants(&self, req: &Request) -> bool {
        host(req).is_some_and(|h| is_site_host(&h, &self.apps_domain, &self.hosts))
    }

    /// Answers one request for a published site; never fails (errors become responses).
    pub async fn handle(&self, req: Request) -> Response {
        let host = host(&req).unwrap_or_default();
        let Some(slug) = slug_for_host(&host, &self.apps_domain, &self.hosts) else {
            return text(
                StatusCode::BAD_REQUEST,
                "bad site host: expected {slug}.{apps domain}",
            );
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "a published site is read-only",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Some(rel) = route(req.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        let key = format!("{}{rel}", site_prefix(&slug));
        let data = match self.blobs.get(&key).await {
            Ok(d) => d,
            Err(Error::NotFound(_) | Error::InvalidInput(_)) => {
                return text(StatusCode::NOT_FOUND, "not found");
            }
            Err(e) => {
                tracing::warn!(slug, key, error = %e, "site read failed");
                return text(StatusCode::BAD_GATEWAY, "site unavailable");
            }
        };
        let etag = format!("\"{}\"", &sha256_hex(&data)[..32]);
        let headers = headers_for(&rel);
        let fresh = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut resp = if fresh {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else if req.method() == Method::HEAD {
            let mut r = Response::new(Body::empty());
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
            r
        } else {
            Response::new(Body::from(data))
        };
        let h = resp.headers_mut();
        for (name, value) in [
            (header::ETAG, etag.as_str()),
            (header::CACHE_CONTROL, headers.cache_control.as_str()),
            (header::CONTENT_TYPE, headers.content_type.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

fn host(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

fn text(status: StatusCode, msg: &'static str) -> Response {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
