//! Shared by the sandbox and preview tests: the template installed once into
//! `target/apna-test-cache`, a local provider on a temp dir, a preview proxy on
//! a free port, and a tiny HTTP client that sets any Host header.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::preview::{PreviewBackend, PreviewProxy};
use crate::sandbox::local::template::bundled_template_dir;
use crate::sandbox::local::{prepare_template, LocalOptions, LocalProvider, PreparedTemplate};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

static TEMPLATE: tokio::sync::OnceCell<PreparedTemplate> = tokio::sync::OnceCell::const_new();

/// A stable cache dir so repeated test runs skip `npm ci`.
pub fn test_cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("apna-test-cache")
}

/// The template, installed once per lock file.
pub async fn template() -> PreparedTemplate {
    TEMPLATE
        .get_or_init(|| async {
            let progress = |p: crate::sandbox::local::TemplateProgress| {
                if !matches!(p, crate::sandbox::local::TemplateProgress::Output(_)) {
                    eprintln!("template: {p:?}");
                }
            };
            prepare_template(&bundled_template_dir(), &test_cache_dir(), &progress)
                .await
                .expect("template install (needs node and npm)")
        })
        .await
        .clone()
}

/// A provider whose data dir is `data_dir`.
pub async fn provider(data_dir: &Path, hmr_client_port: Option<u16>) -> LocalProvider {
    provider_with_budget(data_dir, hmr_client_port, 500).await
}

/// A provider whose projects may hold `max_project_mb` MiB each.
pub async fn provider_with_budget(
    data_dir: &Path,
    hmr_client_port: Option<u16>,
    max_project_mb: u64,
) -> LocalProvider {
    LocalProvider::new(LocalOptions {
        data_dir: data_dir.to_path_buf(),
        template: template().await,
        hmr_client_port,
        // APNA_TEST_NO_BWRAP=1 exercises the unsandboxed path on a machine with bwrap.
        isolation: std::env::var("APNA_TEST_NO_BWRAP")
            .is_ok_and(|v| v == "1")
            .then_some(crate::sandbox::local::Isolation::None),
        max_project_mb,
    })
    .expect("provider")
}

/// Serves `proxy` for every request on a free loopback port.
pub async fn serve_proxy(listener: tokio::net::TcpListener, proxy: PreviewProxy) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let proxy = proxy.clone();
        async move { proxy.handle(req).await }
    });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// A proxy in front of `backend`, listening on a free port.
pub async fn start_proxy(backend: Arc<dyn PreviewBackend>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_proxy(listener, PreviewProxy::new(backend, None)).await
}

/// GET `path` from `addr` with the given Host header: (status, body).
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", host)
        .header("accept", "*/*")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Whether tests must not skip for a missing optional tool.
pub fn services_required() -> bool {
    std::env::var("APNA_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}
