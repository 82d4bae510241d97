//! The preview proxy's host rules and its "starting…" page, with a fake backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apna::preview::{PreviewBackend, PreviewProxy};
use apna::testing::local::*;
use async_trait::async_trait;

#[derive(Default)]
struct CountingBackend {
    lookups: AtomicUsize,
    wakes: AtomicUsize,
    addr: Option<String>,
}

#[async_trait]
impl PreviewBackend for CountingBackend {
    async fn preview_addr(&self, project_id: &str) -> apna::Result<Option<String>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if project_id == "gone" {
            return Err(apna::Error::NotFound("no such project".into()));
        }
        Ok(self.addr.clone())
    }

    async fn wake(&self, _project_id: &str) -> apna::Result<()> {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn visibility(&self, _project_id: &str) -> apna::Result<apna::preview::Visibility> {
        unreachable!("single-user proxies never ask who may see a preview")
    }
}

#[tokio::test]
async fn bad_hosts_get_400_and_never_reach_a_backend() {
    // A real listener stands in for a dev server: it must see no connection.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let contacted = Arc::new(AtomicUsize::new(0));
    let c = contacted.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = upstream.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    let backend = Arc::new(CountingBackend {
        addr: Some(upstream_addr),
        ..Default::default()
    });
    let addr = start_proxy(backend.clone()).await;
    let long = "a".repeat(64);
    for host in [
        "evil.com".to_string(),
        "a.b.localhost".to_string(),
        "../x.localhost".to_string(),
        format!("{long}.localhost"),
        "localhost:3000".to_string(),
        "Proj.localhost".to_string(),
        "p.localhost:3000:1".to_string(),
        "p.localhost.evil.com".to_string(),
    ] {
        let (status, _) = get(addr, &host, "/").await;
        assert_eq!(status, 400, "{host}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.lookups.load(Ordering::SeqCst), 0);
    assert_eq!(contacted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_project_that_is_not_running_gets_a_retrying_page_and_is_woken() {
    let backend = Arc::new(CountingBackend::default());
    let addr = start_proxy(backend.clone()).await;
    // Page loads get the self-refreshing page with 200 (a 503 would be a
    // console error in the previewed app); module requests get a plain 503.
    let (status, body) = get(addr, "p1.localhost:3000", "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("Starting the preview"));
    assert!(body.contains("http-equiv=\"refresh\""));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(backend.wakes.load(Ordering::SeqCst), 1);
    let (status, _) = get(addr, "p1.localhost:3000", "/src/main.tsx").await;
    assert_eq!(status, 503);
    let (status, _) = get(addr, "gone.localhost:3000", "/").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_dead_backend_address_shows_the_starting_page() {
    // Bind then drop: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = Arc::new(CountingBackend {
        addr: Some(format!("127.0.0.1:{port}")),
        ..Default::default()
    });
    let addr = start_proxy(backend.clone()).await;
    let (status, body) = get(addr, "p2.localhost", "/").await;
    assert_eq!(status, 503);
    assert!(body.contains("Starting the preview"));
}

#[tokio::test]
async fn caddy_domain_hosts_are_accepted_when_configured() {
    let backend = Arc::new(CountingBackend::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = PreviewProxy::new(backend.clone(), Some("apps.example.com".into()));
    let addr = serve_proxy(listener, proxy).await;
    assert_eq!(get(addr, "p3.apps.example.com", "/").await.0, 200);
    assert_eq!(get(addr, "p3.x.apps.example.com", "/").await.0, 400);
    assert_eq!(get(addr, "p3.localhost:1", "/").await.0, 200);
}

#[tokio::test]
async fn middleware_routes_only_preview_hosts_to_the_proxy() {
    let backend = Arc::new(CountingBackend::default());
    let proxy = PreviewProxy::new(backend.clone(), None);
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "api" }))
        .layer(axum::middleware::from_fn_with_state(
            proxy,
            apna::preview::route_preview,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert_eq!(
        get(addr, "localhost:3000", "/").await,
        (200, "api".to_string())
    );
    assert_eq!(
        get(addr, "127.0.0.1:3000", "/").await,
        (200, "api".to_string())
    );
    assert_eq!(get(addr, "p.localhost:3000", "/").await.0, 200);
    assert_eq!(get(addr, "a.b.localhost:3000", "/").await.0, 400);
    assert_eq!(backend.lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_get_on_a_reset_keep_alive_connection_is_sent_again_on_a_new_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A dev server that answers the first request on each connection and
    // resets the connection when a second request arrives on it.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let resets = Arc::new(AtomicUsize::new(0));
    let r = resets.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = upstream.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if !matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = s.set_zero_linger();
                }
            });
        }
    });
    let backend = Arc::new(CountingBackend {
        addr: Some(upstream_addr),
        ..Default::default()
    });
    let addr = start_proxy(backend).await;
    for path in ["/", "/@vite/client", "/src/main.tsx"] {
        let (status, body) = get(addr, "p.localhost:3000", path).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "{path}");
    }
    assert!(
        resets.load(Ordering::SeqCst) >= 1,
        "the pooled connection was reused and reset"
    );
}
