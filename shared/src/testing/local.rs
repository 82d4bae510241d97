//! Shared by the sandbox and preview tests: the template installed once into
//! `target/apna-test-cache`, a local provider on a temp dir, a preview proxy on
//! a free port, and a tiny HTTP client that sets any Host header.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::preview::{PreviewBackend, PreviewProxy};
use crate::sandbox::local::template::{bundled_templates_dir, SHARED_FILES};
use crate::sandbox::local::{
    prepare_templates, LocalOptions, LocalProvider, PreparedTemplate, PreparedTemplates,
};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

static TEMPLATES: tokio::sync::OnceCell<PreparedTemplates> = tokio::sync::OnceCell::const_new();

/// A stable cache dir so repeated test runs skip `npm ci`.
pub fn test_cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("apna-test-cache")
}

/// Every starter, installed (and pre-bundled) once per lock file.
pub async fn templates() -> PreparedTemplates {
    TEMPLATES
        .get_or_init(|| async {
            let progress = |p: crate::sandbox::local::TemplateProgress| {
                if !matches!(p, crate::sandbox::local::TemplateProgress::Output(_)) {
                    eprintln!("template: {p:?}");
                }
            };
            prepare_templates(&bundled_templates_dir(), &test_cache_dir(), &progress)
                .await
                .expect("template install (needs node and npm)")
        })
        .await
        .clone()
}

/// The default starter.
pub async fn template() -> PreparedTemplate {
    templates().await.default_template().clone()
}

/// The starter called `name`.
pub async fn starter(name: &str) -> PreparedTemplate {
    templates().await.get(name).unwrap().clone()
}

/// Lays out `dir` as the sandbox image's `/opt/apna/templates`: each
/// starter's files, the files they share ([`SHARED_FILES`]) once at the top,
/// and for a starter with its own lock file a `node_modules` link to the test
/// cache's installed dependencies. Returns `dir`.
pub async fn image_templates_dir(dir: &Path) -> PathBuf {
    let all = templates().await;
    for t in &all.starters {
        let folder = dir.join(&t.name);
        for f in &t.files.files {
            let shared = SHARED_FILES.contains(&f.path.as_str());
            let full = if shared { dir } else { &folder }.join(&f.path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, &f.data).unwrap();
        }
        let own = crate::starter::find(&t.name).unwrap().base.is_none();
        if own {
            std::os::unix::fs::symlink(&t.node_modules, folder.join("node_modules")).unwrap();
        }
    }
    dir.to_path_buf()
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
    LocalProvider::new(options(data_dir, hmr_client_port, max_project_mb).await).expect("provider")
}

/// A provider keeping `warm_spares` spares and running at most `max_builds`
/// Verify checks at once.
pub async fn provider_with_capacity(
    data_dir: &Path,
    warm_spares: usize,
    max_builds: usize,
) -> LocalProvider {
    let mut opts = options(data_dir, None, 500).await;
    opts.warm_spares = warm_spares;
    opts.max_builds = max_builds;
    LocalProvider::new(opts).expect("provider")
}

async fn options(
    data_dir: &Path,
    hmr_client_port: Option<u16>,
    max_project_mb: u64,
) -> LocalOptions {
    LocalOptions {
        data_dir: data_dir.to_path_buf(),
        templates: templates().await,
        hmr_client_port,
        ui_origins: Vec::new(),
        // APNA_TEST_NO_BWRAP=1 exercises the unsandboxed path on a machine with bwrap.
        isolation: std::env::var("APNA_TEST_NO_BWRAP")
            .is_ok_and(|v| v == "1")
            .then_some(crate::sandbox::local::Isolation::None),
        max_project_mb,
        browser: crate::sandbox::browser::BrowserOptions {
            executable: std::env::var_os("APNA_CHROMIUM").map(PathBuf::from),
            no_sandbox: None,
        },
        warm_spares: 1,
        max_builds: crate::sandbox::local::build_gate::default_max_builds(),
        verify_build: false,
    }
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

/// A whole local app on a temp dir without a server: SQLite in memory, blobs
/// on disk, the local sandbox driver, no model and a workflow that records
/// what it is asked to start. Publishing tests and benches drive it.
pub struct LocalApp {
    /// The local driver (the template's dev servers run under it).
    pub provider: Arc<LocalProvider>,
    /// The store.
    pub store: Arc<dyn crate::store::Store>,
    /// The blob store.
    pub blobs: Arc<dyn crate::blob::BlobStore>,
    /// Backends over the above.
    pub backends: crate::app::Backends,
    /// What the API would start.
    pub workflow: Arc<crate::testing::workflow::RecordingWorkflow>,
    /// The API's state.
    pub state: crate::app::AppState,
    /// A ready project from the default starter, its sandbox started.
    pub project: crate::domain::Project,
    /// That project's sandbox.
    pub sandbox: Arc<dyn crate::sandbox::Sandbox>,
}

/// [`LocalApp`] under `root` with one ready project called `name`.
pub async fn app_with_project(root: &Path, name: &str) -> LocalApp {
    use crate::domain::{Project, ProjectStatus};
    use crate::sandbox::SandboxProvider;
    let provider = Arc::new(provider(&root.join("data"), None).await);
    let blobs: Arc<dyn crate::blob::BlobStore> = Arc::new(
        crate::blob::FsBlobStore::new(root.join("blobs"))
            .await
            .unwrap(),
    );
    let store: Arc<dyn crate::store::Store> = Arc::new(
        crate::store::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap(),
    );
    let config = crate::testing::fixtures::config(root, &[("PORT", "3000")]);
    let sandboxes: Arc<dyn SandboxProvider> = provider.clone();
    let backends = crate::app::Backends::new(
        config,
        store.clone(),
        blobs.clone(),
        sandboxes,
        Arc::new(crate::testing::model::NoModel),
    );
    let workflow = Arc::new(crate::testing::workflow::RecordingWorkflow::default());
    let state = crate::app::AppState::new(backends.clone(), workflow.clone());
    let project = Project::new("local", name, "vite-react");
    store.create_project(&project).await.unwrap();
    for (from, to) in [
        (ProjectStatus::Creating, ProjectStatus::Building),
        (ProjectStatus::Building, ProjectStatus::Ready),
    ] {
        store
            .set_project_status(&project.id, from, to, None)
            .await
            .unwrap();
    }
    let sandbox = provider.sandbox(&project.id).unwrap();
    sandbox.ensure().await.unwrap();
    LocalApp {
        provider,
        store,
        blobs,
        backends,
        workflow,
        state,
        project,
        sandbox,
    }
}
