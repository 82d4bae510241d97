//! Private previews behind Caddy (the Kubernetes deployment): the real Caddy
//! running the top-level Caddyfile, the real `apna preview-gate` process as
//! its forward_auth, and a loopback server standing in for Vite, which
//! records every request it receives. The store is a SQLite file the test
//! and the gate share.

mod gate_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use gate_support::{free_port, start_caddy, start_gate, Upstream, DOMAIN, SECRET};

use apna::domain::Project;
use apna::preview::access::{PreviewKeys, TokenUse, COOKIE};

const CACHE_MS: u64 = 500;

/// A raw HTTP/1.1 GET through Caddy: status, headers (lower-cased names), body.
fn get(
    port: u16,
    project: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: {project}.{DOMAIN}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An HMR-style WebSocket upgrade through Caddy; the status line, and the
/// echo of a message when it was upgraded.
fn websocket(port: u16, project: &str, cookie: Option<&str>) -> (String, Option<Vec<u8>>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "GET /?token=hmr HTTP/1.1\r\nHost: {project}.{DOMAIN}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: vite-hmr\r\n"
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let status = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if !status.contains(" 101 ") {
        return (status, None);
    }
    s.write_all(b"hmr-through-the-gate").unwrap();
    let mut echo = vec![0u8; b"hmr-through-the-gate".len()];
    s.read_exact(&mut echo).unwrap();
    (status, Some(echo))
}

fn project(owner: &str, public: bool) -> Project {
    let mut p = Project::new(owner, "a gated app", "app");
    p.preview_public = public;
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn private_previews_pass_caddy_only_through_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("apna.db").display());
    let store = apna::store::connect(&db).await.unwrap();
    let private = project("alice", false);
    let public = project("alice", true);
    let gone = project("alice", true);
    for p in [&private, &public, &gone] {
        store.create_project(p).await.unwrap();
    }
    assert!(store.soft_delete_project(&gone.id).await.unwrap());

    let upstream = Upstream::start();
    let (_gate, gate_port) = start_gate(&db, dir.path(), CACHE_MS);
    let (_caddy, port) = start_caddy(upstream.port, Some(gate_port), dir.path());
    let keys = PreviewKeys::new(SECRET);
    let link = |user: &str, id: &str| keys.issue(id, user, TokenUse::Link, 60).unwrap().0;

    // No cookie: the sign-in page, and the dev server never hears of it.
    let before = upstream.count();
    let (status, _, body) =
        tokio::task::block_in_place(|| get(port, &private.id, "/src/main.tsx", &[]));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Sign in to see this preview"), "{body}");
    assert_eq!(
        upstream.count(),
        before,
        "a private preview reached the dev server"
    );
    // Not even as a WebSocket (HMR).
    let (ws, echo) = websocket(port, &private.id, None);
    assert!(ws.contains(" 401 ") && echo.is_none(), "{ws}");
    assert_eq!(upstream.count(), before);

    // The owner's link: 303 to / with the session cookie, from the gate.
    let auth = format!("/__apna/auth?token={}", link("alice", &private.id));
    let (status, headers, _) = get(port, &private.id, &auth, &[]);
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/"));
    let set_cookie = header(&headers, "set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(set_cookie.starts_with(&format!("{COOKIE}=")) && set_cookie.contains("HttpOnly"));
    assert_eq!(
        upstream.count(),
        before,
        "sign-in is the gate's, not the app's"
    );
    let session = set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches(&format!("{COOKIE}="))
        .to_string();

    // With the cookie: the dev server answers, gets the app's own cookies
    // but never the preview cookie.
    let cookie = format!("theme=dark; {COOKIE}={session}; cart=3");
    let (status, _, body) = get(
        port,
        &private.id,
        "/src/App.tsx?t=1",
        &[("Cookie", &cookie)],
    );
    assert_eq!((status, body.as_str()), (200, "from vite"));
    let (line, seen) = upstream.last();
    assert_eq!(line, "GET /src/App.tsx?t=1 HTTP/1.1");
    let cookies: Vec<&str> = seen
        .iter()
        .filter(|(k, _)| k == "cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["theme=dark; cart=3"], "{seen:?}");
    assert!(
        !format!("{seen:?}").contains(&session),
        "the session token reached the dev server"
    );
    assert!(
        seen.iter().all(|(k, _)| k != "x-apna-app-cookie"),
        "{seen:?}"
    );

    // Only the preview cookie: the dev server gets no Cookie at all.
    let only = format!("{COOKIE}={session}");
    let (status, _, _) = get(port, &private.id, "/", &[("Cookie", &only)]);
    assert_eq!(status, 200);
    let (_, seen) = upstream.last();
    assert!(seen.iter().all(|(k, _)| k != "cookie"), "{seen:?}");

    // A client cannot smuggle cookies past the gate in its header.
    let smuggled = format!("{COOKIE}={session}");
    let (status, _, _) = get(port, &public.id, "/", &[("X-Apna-App-Cookie", &smuggled)]);
    assert_eq!(status, 200);
    let (_, seen) = upstream.last();
    assert!(!format!("{seen:?}").contains(&session), "{seen:?}");

    // HMR with the cookie: upgraded and spliced to the dev server.
    let (ws, echo) = websocket(port, &private.id, Some(&cookie));
    assert!(ws.contains(" 101 "), "{ws}");
    assert_eq!(echo.as_deref(), Some(&b"hmr-through-the-gate"[..]));
    let (_, seen) = upstream.last();
    assert!(seen.iter().any(|(k, v)| k == "upgrade" && v == "websocket"));
    assert!(!format!("{seen:?}").contains(&session));

    // Another user's link or session: 404, as for a project that is not there.
    let before = upstream.count();
    let bob = format!("/__apna/auth?token={}", link("bob", &private.id));
    let (status, headers, _) = get(port, &private.id, &bob, &[]);
    assert_eq!(status, 404);
    assert!(header(&headers, "set-cookie").is_none());
    let bobs = keys
        .issue(&private.id, "bob", TokenUse::Session, 60)
        .unwrap()
        .0;
    let (status, _, _) = get(
        port,
        &private.id,
        "/",
        &[("Cookie", &format!("{COOKIE}={bobs}"))],
    );
    assert_eq!(status, 404);
    // A session for another project does not open this one.
    let other = keys
        .issue(&public.id, "alice", TokenUse::Session, 60)
        .unwrap()
        .0;
    let (status, _, _) = get(
        port,
        &private.id,
        "/",
        &[("Cookie", &format!("{COOKIE}={other}"))],
    );
    assert_eq!(status, 401);
    // Unknown and deleted projects: 404.
    for id in ["0b9e6c1e-8f6f-4c53-9d0c-3f0f6a1c2b7d", gone.id.as_str()] {
        let (status, _, _) = get(port, id, "/", &[]);
        assert_eq!(status, 404, "{id}");
    }
    assert_eq!(upstream.count(), before);

    // A public preview: no cookie needed.
    let (status, _, body) = get(port, &public.id, "/", &[]);
    assert_eq!((status, body.as_str()), (200, "from vite"));

    // Un-sharing takes effect within the gate's cache time.
    assert!(store.set_preview_public(&public.id, false).await.unwrap());
    let unshared = Instant::now();
    let took = loop {
        let (status, _, _) = get(port, &public.id, "/", &[]);
        if status == 401 {
            break unshared.elapsed();
        }
        assert_eq!(status, 200);
        assert!(
            unshared.elapsed() < Duration::from_secs(5),
            "still public after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        took <= Duration::from_millis(CACHE_MS + 300),
        "un-sharing took {took:?} (cache {CACHE_MS} ms)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_waking_page_comes_only_after_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("apna.db").display());
    let store = apna::store::connect(&db).await.unwrap();
    let private = project("alice", false);
    store.create_project(&private).await.unwrap();
    let (_gate, gate_port) = start_gate(&db, dir.path(), CACHE_MS);
    // Nothing listens upstream: a hibernated project has no Service.
    let (_caddy, port) = start_caddy(free_port(), Some(gate_port), dir.path());

    let (status, _, body) = get(port, &private.id, "/", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("Waking"));
    let session = PreviewKeys::new(SECRET)
        .issue(&private.id, "alice", TokenUse::Session, 60)
        .unwrap()
        .0;
    let (status, _, body) = get(
        port,
        &private.id,
        "/",
        &[("Cookie", &format!("{COOKIE}={session}"))],
    );
    assert_eq!(status, 503);
    assert!(body.contains("Waking up"), "{body}");

    // The container probe: up while the gate runs, failing on a dead port.
    let probe = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_apna"))
            .args(["preview-gate", "--healthcheck"])
            .env("APNA_PREVIEW_GATE_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(probe(gate_port));
    assert!(!probe(free_port()));
}

#[test]
fn a_dead_gate_lets_nothing_through() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let (_caddy, port) = start_caddy(upstream.port, Some(free_port()), dir.path());
    let (status, _, body) = get(port, "abc123", "/", &[]);
    assert!(status >= 500, "{status} {body}");
    assert_eq!(upstream.count(), 0);
}

/// GET /check on the gate itself, as Caddy's forward_auth sends it.
fn check(gate: u16, project: &str, cookie: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", gate)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "GET /check HTTP/1.1\r\nHost: {project}.{DOMAIN}\r\nX-Forwarded-Method: GET\r\n\
         X-Forwarded-Uri: /src/main.tsx\r\nConnection: close\r\n"
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// With PostgreSQL the gate connects as a role that may only read the
/// projects and the migration history (infra/README.md's grants), and sees
/// sharing changes made through the store.
#[tokio::test(flavor = "multi_thread")]
async fn the_gate_reads_postgres_as_a_select_only_role() {
    use sqlx::Connection;
    let Some(owner_url) = apna::testing::services::fresh_postgres_url().await else {
        return;
    };
    apna::store::migrate(&owner_url).await.unwrap();
    let store = apna::store::connect(&owner_url).await.unwrap();
    let p = project("alice", false);
    store.create_project(&p).await.unwrap();

    let role = format!("apna_gate_{}", std::process::id());
    let db = url::Url::parse(&owner_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    let mut owner = sqlx::PgConnection::connect(&owner_url).await.unwrap();
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN PASSWORD 'gate-pass' NOCREATEDB NOCREATEROLE"),
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {db} TO {role}"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON projects, _sqlx_migrations TO {role}"),
    ] {
        sqlx::query(&sql).execute(&mut owner).await.unwrap();
    }
    let mut gate_url = url::Url::parse(&owner_url).unwrap();
    gate_url.set_username(&role).unwrap();
    gate_url.set_password(Some("gate-pass")).unwrap();
    let mut as_gate = sqlx::PgConnection::connect(gate_url.as_str())
        .await
        .unwrap();
    let denied = sqlx::query("UPDATE projects SET preview_public = true")
        .execute(&mut as_gate)
        .await
        .unwrap_err()
        .to_string();
    assert!(denied.contains("permission denied"), "{denied}");

    let dir = tempfile::tempdir().unwrap();
    let (gate, gate_port) = start_gate(gate_url.as_str(), dir.path(), CACHE_MS);
    let session = PreviewKeys::new(SECRET)
        .issue(&p.id, "alice", TokenUse::Session, 60)
        .unwrap()
        .0;
    let cookie = format!("{COOKIE}={session}");
    assert_eq!(check(gate_port, &p.id, None), 401);
    assert_eq!(check(gate_port, &p.id, Some(&cookie)), 204);
    assert!(store.set_preview_public(&p.id, true).await.unwrap());
    tokio::time::sleep(Duration::from_millis(CACHE_MS + 100)).await;
    assert_eq!(check(gate_port, &p.id, None), 204);
    assert_eq!(
        check(gate_port, "0b9e6c1e-8f6f-4c53-9d0c-3f0f6a1c2b7d", None),
        404
    );
    drop(gate);
    drop(as_gate);
    let _ = sqlx::query(&format!("DROP OWNED BY {role}"))
        .execute(&mut owner)
        .await;
    let _ = sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&mut owner)
        .await;
}
