//! Issue #15: in multi-user mode a preview is its owner's unless shared.
//!
//! The proxy runs in front of a stand-in dev server that echoes the cookies
//! it receives. Without a token → 401 sign-in page; another user's token →
//! 404; an expired, forged, mis-used or other project's token → refused; the
//! owner's link token → a host-only HttpOnly cookie and a redirect, after
//! which the app (and its WebSocket) is served and the dev server never
//! sees Apna's cookie; a public preview → open. The API hands out the link
//! and toggles sharing, for the owner only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use apna::api::auth::issue_token;
use apna::preview::access::{PreviewKeys, TokenUse};
use apna::preview::{PreviewBackend, PreviewProxy, Visibility};
use apna::store::SqliteStore;
use apna::testing::api::harness;
use apna::testing::local::serve_proxy;
use async_trait::async_trait;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

const SECRET: &str = "preview-test-secret";

struct Owned {
    addr: String,
    public: AtomicBool,
    forwarded: AtomicUsize,
}

#[async_trait]
impl PreviewBackend for Owned {
    async fn preview_addr(&self, project_id: &str) -> apna::Result<Option<String>> {
        if project_id == "gone" {
            return Err(apna::Error::NotFound("no such project".into()));
        }
        self.forwarded.fetch_add(1, Ordering::SeqCst);
        Ok(Some(self.addr.clone()))
    }

    async fn wake(&self, _project_id: &str) -> apna::Result<()> {
        Ok(())
    }

    async fn visibility(&self, project_id: &str) -> apna::Result<Visibility> {
        match project_id {
            "gone" => Err(apna::Error::NotFound("no such project".into())),
            "palice" => Ok(Visibility {
                owner: "alice".into(),
                public: self.public.load(Ordering::SeqCst),
            }),
            _ => Ok(Visibility {
                owner: "bob".into(),
                public: false,
            }),
        }
    }
}

/// A dev server stand-in answering every request with the Cookie header it got.
async fn echo_server() -> String {
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let cookies = headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        format!("APP cookies=[{cookies}]")
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(addr: SocketAddr, host: &str, path: &str, extra: &[(&str, &str)]) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .uri(path)
        .header("host", host)
        .header("accept", "text/html");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test]
async fn private_previews_need_the_owners_token() {
    let backend = Arc::new(Owned {
        addr: echo_server().await,
        public: AtomicBool::new(false),
        forwarded: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = PreviewProxy::new(backend.clone(), None).with_access(PreviewKeys::new(SECRET));
    let addr = serve_proxy(listener, proxy).await;
    let host = "palice.localhost:3000";
    let keys = PreviewKeys::new(SECRET);

    // No token: a sign-in page pointing at the project in the UI; nothing forwarded.
    let r = get(addr, host, "/", &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("Sign in"), "{}", r.body);
    assert!(
        r.body.contains("http://localhost:3000/#/p/palice"),
        "{}",
        r.body
    );
    for path in [
        "/src/main.tsx",
        "/@fs/etc/passwd",
        "/@vite/client",
        "/src/App.tsx.map",
    ] {
        assert_eq!(get(addr, host, path, &[]).await.status, 401, "{path}");
    }
    let ws = get(
        addr,
        host,
        "/",
        &[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(ws.status, 401, "the HMR socket needs the cookie too");
    assert_eq!(backend.forwarded.load(Ordering::SeqCst), 0);

    // The owner's link token: a host-only, HttpOnly cookie and a redirect to the app.
    let (link, _) = keys.issue("palice", "alice", TokenUse::Link, 60).unwrap();
    let r = get(addr, host, &format!("/__apna/auth?token={link}"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.headers["location"], "/");
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    for part in [
        "apna_preview=",
        "HttpOnly",
        "SameSite=None",
        "Secure",
        "Path=/",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert!(
        !set.to_ascii_lowercase().contains("domain="),
        "host-only: {set}"
    );
    let session = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("apna_preview=")
        .to_string();
    assert_ne!(session, link, "the link token is exchanged, not reused");
    let cookie = format!("theme=dark; apna_preview={session}");
    let r = get(addr, host, "/", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body, "APP cookies=[theme=dark]",
        "the dev server never sees Apna's cookie"
    );

    // Another user's token for this project: 404, as for any project not theirs.
    let (bob_link, _) = keys.issue("palice", "bob", TokenUse::Link, 60).unwrap();
    let r = get(addr, host, &format!("/__apna/auth?token={bob_link}"), &[]).await;
    assert_eq!(r.status, 404);
    let (bob_session, _) = keys.issue("palice", "bob", TokenUse::Session, 60).unwrap();
    let r = get(
        addr,
        host,
        "/",
        &[("cookie", &format!("apna_preview={bob_session}"))],
    )
    .await;
    assert_eq!(r.status, 404);

    // Expired, forged, another project's, the wrong use, an API token: refused.
    let (expired_link, _) = keys.issue("palice", "alice", TokenUse::Link, -5).unwrap();
    let r = get(
        addr,
        host,
        &format!("/__apna/auth?token={expired_link}"),
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
    let (expired_session, _) = keys
        .issue("palice", "alice", TokenUse::Session, -5)
        .unwrap();
    let r = get(
        addr,
        host,
        "/",
        &[("cookie", &format!("apna_preview={expired_session}"))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
    let (forged, _) = PreviewKeys::new("not-the-secret")
        .issue("palice", "alice", TokenUse::Session, 60)
        .unwrap();
    let (other_project, _) = keys.issue("pbob", "alice", TokenUse::Session, 60).unwrap();
    let api_token = issue_token(SECRET, "alice", 1).unwrap();
    for bad in [
        forged.as_str(),
        other_project.as_str(),
        link.as_str(),
        api_token.as_str(),
        "x",
    ] {
        let r = get(
            addr,
            host,
            "/",
            &[("cookie", &format!("apna_preview={bad}"))],
        )
        .await;
        assert_eq!(r.status, 401, "cookie {bad}");
    }
    let r = get(addr, host, &format!("/__apna/auth?token={session}"), &[]).await;
    assert_eq!(r.status, 401, "a session token is not a link token");
    let r = get(addr, host, "/__apna/auth", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(get(addr, "gone.localhost:3000", "/", &[]).await.status, 404);

    // Shared: open to anyone, still without Apna's cookie reaching the app.
    backend.public.store(true, Ordering::SeqCst);
    let r = get(addr, host, "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "APP cookies=[]");
    backend.public.store(false, Ordering::SeqCst);
    assert_eq!(
        get(addr, host, "/", &[]).await.status,
        401,
        "unshared again"
    );
}

#[tokio::test]
async fn the_api_hands_out_links_and_shares_for_the_owner_only() {
    let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    let h = harness(store, &[("APNA_JWT_SECRET", SECRET)]).await;
    let alice = issue_token(SECRET, "alice", 1).unwrap();
    let bob = issue_token(SECRET, "bob", 1).unwrap();
    let r = h
        .post("/api/projects", Some(&alice), r#"{"prompt":"a clock"}"#)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["project"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["project"]["preview_public"], false);

    let r = h
        .get(&format!("/api/projects/{id}/preview-access"), Some(&alice))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let token = r.body["token"].as_str().unwrap();
    assert_eq!(
        PreviewKeys::new(SECRET).verify(token, &id, TokenUse::Link),
        Ok("alice".to_string())
    );
    assert_eq!(
        r.body["url"],
        format!("http://{id}.localhost:3000/__apna/auth?token={token}")
    );
    assert!(r.body["expires_at"].is_string());
    for (method, uri, body) in [
        ("GET", format!("/api/projects/{id}/preview-access"), None),
        (
            "PUT",
            format!("/api/projects/{id}/share"),
            Some(r#"{"public":true}"#),
        ),
    ] {
        let r = h.call(method, &uri, Some(&bob), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {uri} as bob");
        let r = h.call(method, &uri, None, body).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} without a token"
        );
    }

    let r = h
        .call(
            "PUT",
            &format!("/api/projects/{id}/share"),
            Some(&alice),
            Some(r#"{"public":true}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["preview_public"], true);
    let r = h
        .get(&format!("/api/projects/{id}/preview-access"), Some(&alice))
        .await;
    assert_eq!(r.body["public"], true);
    assert!(r.body["token"].is_null(), "a public preview needs no token");
    assert_eq!(r.body["url"], format!("http://{id}.localhost:3000/"));
    let r = h
        .call(
            "PUT",
            &format!("/api/projects/{id}/share"),
            Some(&alice),
            Some(r#"{"public":"yes"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .call(
            "PUT",
            &format!("/api/projects/{id}/share"),
            Some(&alice),
            Some(r#"{"public":false}"#),
        )
        .await;
    assert_eq!(r.body["preview_public"], false);

    // Single-user mode: previews are open on loopback, no token.
    let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    let h = harness(store, &[]).await;
    let r = h
        .post("/api/projects", None, r#"{"prompt":"a clock"}"#)
        .await;
    let id = r.body["project"]["id"].as_str().unwrap().to_string();
    let r = h
        .get(&format!("/api/projects/{id}/preview-access"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["token"].is_null());
    assert_eq!(r.body["url"], format!("http://{id}.localhost:3000/"));
}
