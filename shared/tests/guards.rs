//! Issue #15: the API and UI answer only their own host names (DNS
//! rebinding), and cross-site forms cannot change anything (CSRF).
//!
//! Every route of the API's route table, plus `/` and a UI path, is asked
//! with hostile `Host` values and must be refused before routing; the
//! loopback names and `APNA_PUBLIC_HOSTS` are served. A plain HTML form
//! POSTed from another site to cancel or restore is refused and changes
//! nothing.

use apna::domain::RunStatus;
use apna::store::SqliteStore;
use apna::testing::api::{harness, Harness};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// Every route with its placeholders filled in, plus the UI.
fn every_route(id: &str, run_id: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = apna::api::route_table()
        .into_iter()
        .flat_map(|(_, path, _)| {
            let uri = path
                .replace(
                    "{id}",
                    if path.starts_with("/api/runs") {
                        run_id
                    } else {
                        id
                    },
                )
                .replace("{n}", "1")
                .replace("{*path}", "src/App.tsx");
            ["GET", "POST", "DELETE"].map(|m| (m.to_string(), uri.clone()))
        })
        .collect();
    for ui in ["/", "/projects/x", "/api/nope"] {
        out.push(("GET".into(), ui.into()));
    }
    out
}

/// API + UI + preview dispatch, as `apna serve` mounts them.
fn whole_app(h: &Harness) -> axum::Router {
    apna::server::app_router(h.state.clone())
}

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn hostile_hosts_are_refused_on_every_route() {
    let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    let h = harness(
        store,
        &[(
            "APNA_PUBLIC_HOSTS",
            "apna.example.com, Other.Example.com:8443",
        )],
    )
    .await;
    let r = h
        .post("/api/projects", None, r#"{"prompt":"a clock"}"#)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["project"]["id"].as_str().unwrap().to_string();
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let app = whole_app(&h);
    let routes = every_route(&id, &run_id);
    assert!(routes.len() > 60, "{} routes", routes.len());

    let hostile: &[(&str, StatusCode)] = &[
        ("evil.com", StatusCode::MISDIRECTED_REQUEST),
        ("evil.com:3000", StatusCode::MISDIRECTED_REQUEST),
        ("localhost.evil.com", StatusCode::MISDIRECTED_REQUEST),
        ("127.0.0.1.nip.io:3000", StatusCode::MISDIRECTED_REQUEST),
        ("other.example.com:80", StatusCode::MISDIRECTED_REQUEST),
        ("", StatusCode::BAD_REQUEST),
        ("localhost@evil.com", StatusCode::BAD_REQUEST),
        ("evil.com@localhost:3000", StatusCode::BAD_REQUEST),
        ("localhost:3000@evil.com", StatusCode::BAD_REQUEST),
    ];
    let before = h.state.store.count_projects("local").await.unwrap();
    for (method, uri) in &routes {
        for (host, want) in hostile {
            let (status, body) = send(
                &app,
                method,
                uri,
                &[("host", host), ("content-type", "application/json")],
                r#"{"prompt":"evil","message":"evil"}"#,
            )
            .await;
            assert_eq!(status, *want, "{method} {uri} with Host {host:?}");
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                code == "unknown_host" || code == "bad_host",
                "{method} {uri} Host {host:?}: {body}"
            );
        }
        // No Host at all (HTTP/1.0 style) is malformed too.
        let (status, _) = send(&app, method, uri, &[], "").await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {uri} without Host"
        );
        // Absolute-form request line naming another host, whatever Host says.
        let (status, _) = send(
            &app,
            method,
            &format!("http://evil.com{uri}"),
            &[("host", "localhost:3000")],
            "",
        )
        .await;
        assert_eq!(
            status,
            StatusCode::MISDIRECTED_REQUEST,
            "{method} http://evil.com{uri}"
        );
    }
    assert_eq!(
        h.state.store.count_projects("local").await.unwrap(),
        before,
        "no refused request created anything"
    );
    assert_eq!(
        h.state
            .store
            .get_run(&run_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Queued
    );

    // Served: loopback names with any port, and the listed public names.
    for host in [
        "localhost",
        "localhost:3000",
        "127.0.0.1:3000",
        "[::1]:3000",
        "apna.example.com",
        "APNA.example.com:443",
        "other.example.com:8443",
    ] {
        for (method, uri) in [
            ("GET", "/healthz".to_string()),
            ("GET", "/api/projects".to_string()),
            ("GET", format!("/api/projects/{id}")),
            ("GET", "/".to_string()),
        ] {
            let (status, body) = send(&app, method, &uri, &[("host", host)], "").await;
            assert_eq!(status, StatusCode::OK, "{method} {uri} Host {host}: {body}");
        }
    }
    // Preview hosts go to the preview proxy and its own matcher, not here.
    let (status, body) = send(
        &app,
        "GET",
        "/",
        &[("host", &format!("{id}.localhost:3000"))],
        "",
    )
    .await;
    assert_ne!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    let (status, _) = send(&app, "GET", "/", &[("host", "a.b.localhost:3000")], "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cross_site_forms_cannot_cancel_or_restore() {
    let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    let h = harness(store, &[("APNA_CORS_ORIGINS", "https://ui.example.com")]).await;
    let r = h
        .post("/api/projects", None, r#"{"prompt":"a clock"}"#)
        .await;
    let id = r.body["project"]["id"].as_str().unwrap().to_string();
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let app = whole_app(&h);

    let form = |origin: &'static str| {
        vec![
            ("host", "localhost:3000"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", origin),
        ]
    };
    for uri in [
        format!("/api/runs/{run_id}/cancel"),
        format!("/api/projects/{id}/versions/1/restore"),
        format!("/api/projects/{id}/chat"),
        "/api/projects".to_string(),
    ] {
        // What `<form method=post action=…>` on another site sends.
        for origin in ["http://evil.com", "null", "http://abc.localhost:3000"] {
            let (status, body) =
                send(&app, "POST", &uri, &form(origin), "message=x&prompt=x").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri} from {origin}: {body}");
            assert_eq!(body["error"]["code"], "cross_site");
        }
        // A text/plain form without an Origin header (some privacy modes drop it).
        let (status, _) = send(
            &app,
            "POST",
            &uri,
            &[("host", "localhost:3000"), ("content-type", "text/plain")],
            "{}",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri} text/plain");
        // JSON from a foreign origin is refused too.
        let (status, _) = send(
            &app,
            "POST",
            &uri,
            &[
                ("host", "localhost:3000"),
                ("content-type", "application/json"),
                ("origin", "http://evil.com"),
            ],
            "{}",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri} json from evil.com");
    }
    let (status, _) = send(
        &app,
        "DELETE",
        &format!("/api/projects/{id}"),
        &[("host", "localhost:3000"), ("origin", "http://evil.com")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.state
            .store
            .get_run(&run_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Queued,
        "the run was not cancelled"
    );
    assert_eq!(h.state.store.count_projects("local").await.unwrap(), 1);
    // A method the route does not have is still a 405, guard or not.
    for uri in ["/healthz", "/api/config"] {
        let (status, _) = send(&app, "POST", uri, &form("http://evil.com"), "x=1").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{uri}");
    }

    // The UI's own calls: same origin with the header, or JSON; and a listed origin.
    let (status, body) = send(
        &app,
        "POST",
        &format!("/api/runs/{run_id}/cancel"),
        &[
            ("host", "localhost:3000"),
            ("origin", "https://ui.example.com"),
            ("x-apna-request", "1"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run"]["status"], "cancelled");
    let (status, body) = send(
        &app,
        "POST",
        &format!("/api/runs/{run_id}/cancel"),
        &[
            ("host", "localhost:3000"),
            ("origin", "http://localhost:3000"),
            ("x-apna-request", "1"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
