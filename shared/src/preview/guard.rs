//! The one decision of who may open a private preview, made by `apna
//! serve`'s preview proxy and by `apna preview-gate` (Caddy's `forward_auth`
//! on Kubernetes) alike: the caller looks up the project's [`Visibility`],
//! the guard answers "pass" or the response the browser gets instead.

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

use super::access::{self, PreviewKeys, TokenRefusal, TokenUse};
use super::{text, Visibility};
use crate::error::{Error, Result};

/// Checks preview requests against the owner's signed tokens.
#[derive(Clone, Debug)]
pub struct PreviewGuard {
    keys: PreviewKeys,
}

/// The parts of a preview request the decision reads.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    /// The `Host` header as sent (for the sign-in page's link).
    pub host: &'a str,
    /// The project the host names.
    pub project_id: &'a str,
    /// The request's path.
    pub path: &'a str,
    /// The request's query string (empty when none).
    pub query: &'a str,
    /// The request's headers (its `Cookie`s).
    pub headers: &'a HeaderMap,
}

impl PreviewGuard {
    /// A guard checking tokens signed with `keys`.
    pub fn new(keys: PreviewKeys) -> Self {
        PreviewGuard { keys }
    }

    /// `None` when the request may reach the dev server: the preview is
    /// public or the request carries the owner's session cookie for this
    /// project. Otherwise the answer to send instead: 401 with a sign-in
    /// page, 404 for unknown projects and other users' tokens, 303 +
    /// `Set-Cookie` for a valid sign-in link ([`access::AUTH_PATH`]).
    pub fn refusal(&self, visit: &Visit<'_>, visibility: Result<Visibility>) -> Option<Response> {
        self.decide(visit, visibility).err().map(|r| *r)
    }

    fn decide(
        &self,
        visit: &Visit<'_>,
        visibility: Result<Visibility>,
    ) -> std::result::Result<(), Box<Response>> {
        let project_id = visit.project_id;
        let vis = match visibility {
            Ok(v) => v,
            Err(Error::NotFound(_)) | Err(Error::InvalidInput(_)) => {
                return Err(Box::new(text(StatusCode::NOT_FOUND, "no such project")));
            }
            Err(e) => {
                tracing::warn!(project_id = %project_id, error = %e, "preview visibility lookup failed");
                return Err(Box::new(text(
                    StatusCode::BAD_GATEWAY,
                    "preview unavailable",
                )));
            }
        };
        if visit.path == access::AUTH_PATH {
            return Err(Box::new(self.sign_in(visit, &vis)));
        }
        if vis.public {
            return Ok(());
        }
        let Some(token) = access::session_token(visit.headers) else {
            return Err(Box::new(sign_in_page(
                visit.host,
                project_id,
                "This preview is private.",
            )));
        };
        let refused = match self.keys.verify(token, project_id, TokenUse::Session) {
            Ok(user) if user == vis.owner => return Ok(()),
            Ok(_) => text(StatusCode::NOT_FOUND, "no such project"),
            Err(TokenRefusal::Expired) => sign_in_page(
                visit.host,
                project_id,
                "Your access to this preview has expired.",
            ),
            Err(TokenRefusal::Invalid) => {
                sign_in_page(visit.host, project_id, "This preview is private.")
            }
        };
        Err(Box::new(refused))
    }

    /// `/__apna/auth?token=…`: a valid link token of the owner becomes the
    /// session cookie, then the browser goes to `/`.
    fn sign_in(&self, visit: &Visit<'_>, vis: &Visibility) -> Response {
        let (host, project_id) = (visit.host, visit.project_id);
        let token = url::form_urlencoded::parse(visit.query.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        let user = match token.map(|t| self.keys.verify(&t, project_id, TokenUse::Link)) {
            Some(Ok(user)) => user,
            Some(Err(TokenRefusal::Expired)) => {
                return sign_in_page(host, project_id, "This preview link has expired.")
            }
            Some(Err(TokenRefusal::Invalid)) | None => {
                return sign_in_page(host, project_id, "This preview link is not valid.")
            }
        };
        if user != vis.owner {
            return text(StatusCode::NOT_FOUND, "no such project");
        }
        let session = match self.keys.issue(
            project_id,
            &user,
            TokenUse::Session,
            access::SESSION_TTL_SECS,
        ) {
            Ok((t, _)) => t,
            Err(e) => {
                tracing::warn!(project_id = %project_id, error = %e, "preview session not issued");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "could not sign in");
            }
        };
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        let h = r.headers_mut();
        h.insert(header::LOCATION, HeaderValue::from_static("/"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if let Ok(v) = HeaderValue::from_str(&access::session_cookie(&session)) {
            h.insert(header::SET_COOKIE, v);
        }
        r
    }
}

/// 401: a private preview opened without (valid) access; links to the
/// project in the UI when the preview is a `*.localhost` host.
fn sign_in_page(host: &str, project_id: &str, why: &str) -> Response {
    let ui = host
        .split_once('.')
        .filter(|(_, rest)| rest.starts_with("localhost"))
        .map(|(_, rest)| format!("http://{rest}/#/p/{project_id}"));
    let link = match &ui {
        Some(u) => format!("<p><a href=\"{u}\">Open it in Apna</a> (sign in there) to see it.</p>"),
        None => "<p>Open it from Apna (sign in there) to see it.</p>".to_string(),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in to see this preview</title></head>\
         <body style=\"font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:100vh;margin:0\">\
         <div><h1>Sign in to see this preview</h1><p>{why}</p>{link}</div></body></html>"
    );
    let mut r = Response::new(Body::from(html));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
