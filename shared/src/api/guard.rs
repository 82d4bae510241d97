//! Request guards that run before routing: the `Host` allowlist (DNS
//! rebinding) and the refusal of cross-site state changes (CSRF).
//!
//! In single-user mode the API has no credentials at all, so a web page whose
//! name rebinds to 127.0.0.1 could otherwise use it with the person's model
//! key; Vite closed the same hole in its dev server (CVE-2025-24010). The API
//! and UI answer only on the loopback names and `APNA_PUBLIC_HOSTS`; preview
//! hosts never reach these guards (the preview proxy has its own strict
//! matcher and runs first).
//!
//! A browser sends a cross-site `POST` without asking first only when its
//! content type is a form's or `text/plain` and it carries no custom header.
//! So a `POST` must be JSON or carry [`REQUEST_HEADER`] (which the UI sends on
//! body-less calls such as cancel and restore), and any state change carrying
//! an `Origin` other than this host or one of `APNA_CORS_ORIGINS` is refused.
//! `DELETE` and `PUT` always need a CORS preflight, which only the listed
//! origins pass.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ErrorBody, ErrorDetail};
use crate::config::Config;

/// The header the UI sends on state changes without a JSON body.
pub const REQUEST_HEADER: &str = "x-apna-request";

/// Names the API answers on whatever the port.
const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// Which `Host` values the API and UI answer.
#[derive(Debug, Clone)]
pub struct HostAllowlist {
    loopback: bool,
    /// `(name, port)`; no port matches any.
    public: Vec<(String, Option<u16>)>,
}

/// Why a `Host` was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HostRefusal {
    /// Empty, or not a plain `name[:port]` (userinfo, path, spaces, bad port).
    Malformed,
    /// Well formed, but not one of ours.
    NotServed,
}

/// `name[:port]` of a Host value, lower-cased; `None` when it is not exactly that.
pub fn parse_host(value: &str) -> Option<(String, Option<u16>)> {
    let v = value.trim_end_matches('.').to_ascii_lowercase();
    if v.is_empty() || v.len() > 260 {
        return None;
    }
    let (name, port) = if let Some(rest) = v.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{inner}]"), port)
    } else {
        let (name, port) = match v.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (v.as_str(), None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !name.split('.').all(label_ok) {
            return None;
        }
        (name.to_string(), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((name, port))
}

impl HostAllowlist {
    /// `apna serve`: the loopback names plus `APNA_PUBLIC_HOSTS`.
    pub fn for_server(config: &Config) -> Self {
        HostAllowlist {
            loopback: true,
            public: config
                .public_hosts
                .iter()
                .filter_map(|h| parse_host(h))
                .collect(),
        }
    }

    /// Behind API Gateway: only `APNA_PUBLIC_HOSTS` (the gateway or CloudFront
    /// names); `None` (no check) when it is unset, since the gateway only
    /// routes its own names to the function.
    pub fn for_gateway(config: &Config) -> Option<Self> {
        let public: Vec<_> = config
            .public_hosts
            .iter()
            .filter_map(|h| parse_host(h))
            .collect();
        (!public.is_empty()).then_some(HostAllowlist {
            loopback: false,
            public,
        })
    }

    /// Whether `host` (a `Host` header value) is served.
    pub fn check(&self, host: &str) -> Result<(), HostRefusal> {
        let (name, port) = parse_host(host).ok_or(HostRefusal::Malformed)?;
        if self.loopback && LOOPBACK_NAMES.contains(&name.as_str()) {
            return Ok(());
        }
        let listed = self
            .public
            .iter()
            .any(|(n, p)| *n == name && (p.is_none() || *p == port));
        if listed {
            Ok(())
        } else {
            Err(HostRefusal::NotServed)
        }
    }

    /// Checks every host a request names: the `Host` header and, when the
    /// request line is in absolute form, its authority (which wins over `Host`).
    pub fn check_request(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), HostRefusal> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let first = hosts.next();
        if hosts.next().is_some() {
            return Err(HostRefusal::Malformed);
        }
        let from_header = match first {
            Some(v) => Some(v.to_str().map_err(|_| HostRefusal::Malformed)?),
            None => None,
        };
        let authority = uri.authority().map(|a| a.as_str());
        if from_header.is_none() && authority.is_none() {
            return Err(HostRefusal::Malformed);
        }
        for h in [from_header, authority].into_iter().flatten() {
            self.check(h)?;
        }
        Ok(())
    }
}

fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
            },
        }),
    )
        .into_response()
}

/// Middleware: 400 for a malformed or missing `Host`, 421 for one that is not ours.
pub async fn host_guard(
    State(allow): State<Arc<HostAllowlist>>,
    req: Request,
    next: Next,
) -> Response {
    match allow.check_request(req.headers(), req.uri()) {
        Ok(()) => next.run(req).await,
        Err(HostRefusal::Malformed) => refusal(
            StatusCode::BAD_REQUEST,
            "bad_host",
            "the Host header is missing or is not a plain host name".into(),
        ),
        Err(HostRefusal::NotServed) => {
            tracing::warn!(host = ?req.headers().get(header::HOST), "refused a request for a host name that is not ours");
            refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                "this Apna does not answer on that host name; its operator can add it to APNA_PUBLIC_HOSTS".into(),
            )
        }
    }
}

/// The origins allowed to change state besides this host's own.
#[derive(Debug, Clone)]
pub struct CrossSiteRules {
    allowed_origins: Vec<String>,
}

impl CrossSiteRules {
    /// From `APNA_CORS_ORIGINS`.
    pub fn new(config: &Config) -> Self {
        CrossSiteRules {
            allowed_origins: config
                .cors_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// `Err(reason)` when a request would change state on behalf of another site.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), &'static str> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin
                .to_str()
                .map_err(|_| "the Origin header is malformed")?
                .trim_end_matches('/')
                .to_ascii_lowercase();
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_ascii_lowercase);
            let same = origin
                .split_once("://")
                .is_some_and(|(_, authority)| Some(authority) == host.as_deref());
            if !same && !self.allowed_origins.contains(&origin) {
                return Err("requests from other sites cannot change anything here (their origin is not in APNA_CORS_ORIGINS)");
            }
        }
        if *method == Method::POST {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
            if !json && !headers.contains_key(REQUEST_HEADER) {
                return Err(
                    "a POST must have Content-Type: application/json or an X-Apna-Request header",
                );
            }
        }
        Ok(())
    }
}

/// Middleware on each route: 403 for a cross-site state change. The rules
/// come as a request extension (set by `api::with_middleware`); without
/// them no other origin is allowed.
pub async fn csrf_guard(req: Request, next: Next) -> Response {
    let none = CrossSiteRules {
        allowed_origins: Vec::new(),
    };
    let checked = match req.extensions().get::<Arc<CrossSiteRules>>() {
        Some(rules) => rules.check(req.method(), req.headers()),
        None => none.check(req.method(), req.headers()),
    };
    match checked {
        Ok(()) => next.run(req).await,
        Err(why) => refusal(StatusCode::FORBIDDEN, "cross_site", why.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn allow(public: &[&str]) -> HostAllowlist {
        HostAllowlist {
            loopback: true,
            public: public.iter().filter_map(|h| parse_host(h)).collect(),
        }
    }

    #[test]
    fn loopback_and_listed_hosts_only() {
        let a = allow(&["apna.example.com", "other.example.com:8443"]);
        for ok in [
            "localhost",
            "localhost:3000",
            "LOCALHOST:3000",
            "127.0.0.1:3000",
            "[::1]:3000",
            "[::1]",
            "apna.example.com",
            "apna.example.com:443",
            "other.example.com:8443",
        ] {
            assert_eq!(a.check(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("evil.com", HostRefusal::NotServed),
            ("localhost.evil.com", HostRefusal::NotServed),
            ("127.0.0.1.nip.io:3000", HostRefusal::NotServed),
            ("other.example.com:8444", HostRefusal::NotServed),
            ("127.0.0.2:3000", HostRefusal::NotServed),
            ("", HostRefusal::Malformed),
            ("localhost@evil.com", HostRefusal::Malformed),
            ("evil.com@localhost:3000", HostRefusal::Malformed),
            ("localhost:3000@evil.com", HostRefusal::Malformed),
            ("localhost:", HostRefusal::Malformed),
            ("localhost:99999", HostRefusal::Malformed),
            ("localhost:3000/x", HostRefusal::Malformed),
            ("local host", HostRefusal::Malformed),
            ("[::1", HostRefusal::Malformed),
        ] {
            assert_eq!(a.check(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn behind_the_gateway_only_listed_names_and_only_when_listed() {
        let none = Config::from_vars(Default::default()).unwrap();
        assert!(HostAllowlist::for_gateway(&none).is_none());
        let vars = [(
            "APNA_PUBLIC_HOSTS".to_string(),
            "abc.execute-api.us-east-1.amazonaws.com, apna.example.com".to_string(),
        )];
        let listed = Config::from_vars(vars.into_iter().collect()).unwrap();
        let a = HostAllowlist::for_gateway(&listed).unwrap();
        assert_eq!(a.check("abc.execute-api.us-east-1.amazonaws.com"), Ok(()));
        assert_eq!(a.check("apna.example.com:443"), Ok(()));
        assert_eq!(a.check("localhost:3000"), Err(HostRefusal::NotServed));
        let s = HostAllowlist::for_server(&listed);
        assert_eq!(s.check("localhost:3000"), Ok(()));
        assert_eq!(s.check("apna.example.com"), Ok(()));
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let rules = CrossSiteRules {
            allowed_origins: vec!["https://ui.example.com".into()],
        };
        let req = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("localhost:3000"));
            for (k, v) in pairs {
                h.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let post = Method::POST;
        // A plain HTML form: urlencoded, foreign origin.
        let form = req(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "http://evil.com"),
        ]);
        assert!(rules.check(&post, &form).is_err());
        // The same form with no Origin (old browsers, privacy modes) still lacks JSON.
        assert!(rules
            .check(&post, &req(&[("content-type", "text/plain")]))
            .is_err());
        assert!(rules.check(&post, &req(&[])).is_err());
        // JSON from a foreign origin (after a preflight CORS would refuse anyway).
        assert!(rules
            .check(
                &post,
                &req(&[
                    ("content-type", "application/json"),
                    ("origin", "http://abc.localhost:3000")
                ])
            )
            .is_err());
        assert!(rules
            .check(&Method::DELETE, &req(&[("origin", "null")]))
            .is_err());
        // Served: the UI's own calls, API clients, listed origins, safe methods.
        assert!(rules
            .check(
                &post,
                &req(&[
                    ("content-type", "application/json; charset=utf-8"),
                    ("origin", "http://localhost:3000")
                ])
            )
            .is_ok());
        assert!(rules
            .check(
                &post,
                &req(&[(REQUEST_HEADER, "1"), ("origin", "http://localhost:3000")])
            )
            .is_ok());
        assert!(rules.check(&post, &req(&[(REQUEST_HEADER, "1")])).is_ok());
        assert!(rules
            .check(
                &post,
                &req(&[
                    ("content-type", "application/json"),
                    ("origin", "https://ui.example.com/")
                ])
            )
            .is_ok());
        assert!(rules.check(&Method::DELETE, &req(&[])).is_ok());
        assert!(rules
            .check(&Method::GET, &req(&[("origin", "http://evil.com")]))
            .is_ok());
    }
}
