//! `apna serve`: everything on one machine — the API, the browser UI, the
//! preview proxy, the built-in workflow interpreter and the hibernation sweep —
//! assembled from the embedded default backends (or whatever the config names).

use std::sync::Arc;

use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

use crate::app::{AppState, Backends};
use crate::config::{Config, SandboxBackend};
use crate::error::{Error, Result};
use crate::preview::{PreviewProxy, StorePreviewBackend};
use crate::sandbox::local::{
    prepare_templates, Isolation, LocalOptions, LocalProvider, TemplateProgress,
};
use crate::sandbox::SandboxProvider;
use crate::site::SiteServer;
use crate::tasks::TaskRouter;
use crate::workflow::local::{LocalWorkflow, OnEnd};

/// The generation state machine, as committed.
pub const GENERATION_ASL: &str = include_str!("../../statemachines/generation.asl.json");
/// The hibernation state machine, as committed.
pub const HIBERNATION_ASL: &str = include_str!("../../statemachines/hibernation.asl.json");
/// The publish state machine, as committed.
pub const PUBLISH_ASL: &str = include_str!("../../statemachines/publish.asl.json");
/// The wake state machine, as committed.
pub const WAKE_ASL: &str = include_str!("../../statemachines/wake.asl.json");

/// A running local deployment's parts.
pub struct LocalServer {
    /// The API's state: backends and workflow.
    pub state: AppState,
    /// The workflow interpreter.
    pub workflow: Arc<LocalWorkflow>,
    /// The HTTP app: API, UI and preview proxy.
    pub router: Router,
    /// The local sandboxes (to stop their dev servers on shutdown); `None`
    /// with `APNA_SANDBOX=kube`, whose pods outlive the process.
    pub sandboxes: Option<Arc<LocalProvider>>,
}

impl LocalServer {
    /// Stops the dev servers this process started (local sandboxes only).
    pub async fn stop_sandboxes(&self) {
        if let Some(local) = &self.sandboxes {
            local.stop_all().await;
        }
    }
}

/// Connects the backends, prepares the starters (reporting progress), starts
/// the interpreter and resumes executions left running by a previous process.
pub async fn build(
    config: Config,
    progress: &(dyn Fn(TemplateProgress) + Send + Sync),
) -> Result<LocalServer> {
    if config.jwt_secret.is_none() && !config.bind.is_loopback() {
        return Err(Error::Config {
            var: "APNA_JWT_SECRET",
            message: format!(
                "required when listening on {} (not loopback): without it anyone on the network could use this Apna",
                config.bind
            ),
        });
    }
    tokio::fs::create_dir_all(&config.data_dir).await?;
    let blobs = crate::blob::connect(&config).await?;
    let store = crate::store::open(&config, blobs.clone()).await?;
    let (provider, local) = sandboxes(&config, progress).await?;
    let model = crate::agent::model_from_config(&config).await?;
    let backends = Backends::new(config, store.clone(), blobs, provider, model);
    let workflow = Arc::new(
        LocalWorkflow::new(
            store,
            Arc::new(TaskRouter::new(backends.clone())),
            [
                (crate::run::GENERATION, GENERATION_ASL),
                (crate::run::HIBERNATION, HIBERNATION_ASL),
                (crate::publish::PUBLISH, PUBLISH_ASL),
                (crate::run::WAKE, WAKE_ASL),
            ],
        )?
        .on_end(run_finisher(backends.clone())),
    );
    let state = AppState::new(backends, workflow.clone());
    let report = workflow.resume_incomplete().await?;
    tracing::info!(?report, "resumed executions left by the previous process");
    let router = app_router(state.clone());
    Ok(LocalServer {
        state,
        workflow,
        router,
        sandboxes: local,
    })
}

/// What the interpreter does at the end of every execution: a generation
/// whose run did not end (stopped, timed out, failed past MarkFailed) has its
/// run finished, as the EventBridge rule does on AWS.
pub fn run_finisher(backends: Backends) -> OnEnd {
    Arc::new(move |exec| {
        let backends = backends.clone();
        Box::pin(async move {
            if let Err(e) = crate::run::execution_ended(&backends, &exec).await {
                tracing::warn!(run_id = %exec.id, error = %e, "could not finish the run of an ended execution");
            }
        })
    })
}

/// The sandboxes `APNA_SANDBOX` names: local (the template prepared first) or
/// Kubernetes (the template is in the image; connected now, so a wrong
/// kubeconfig stops startup).
async fn sandboxes(
    config: &Config,
    progress: &(dyn Fn(TemplateProgress) + Send + Sync),
) -> Result<(Arc<dyn SandboxProvider>, Option<Arc<LocalProvider>>)> {
    match config.sandbox {
        #[cfg(feature = "kube")]
        SandboxBackend::Kube => {
            let kube = crate::sandbox::kube::KubeProvider::from_config(config);
            kube.connect().await?;
            Ok((Arc::new(kube), None))
        }
        #[cfg(not(feature = "kube"))]
        SandboxBackend::Kube => Err(Error::Config {
            var: "APNA_SANDBOX",
            message: "kube needs a build with `--features kube`".into(),
        }),
        SandboxBackend::Local => {
            // Projects of different people must not see each other or the host.
            let isolation = Isolation::detect();
            if config.jwt_secret.is_some()
                && isolation == Isolation::None
                && !config.allow_unsandboxed
            {
                return Err(Error::Config {
                    var: "APNA_JWT_SECRET",
                    message: "multi-user mode needs bubblewrap to keep projects apart and away from this machine, \
                              and it is not usable here: install the Debian package `bubblewrap` \
                              (or set APNA_ALLOW_UNSANDBOXED=1 to run without it)"
                        .into(),
                });
            }
            let templates =
                prepare_templates(&config.templates_dir, &config.template_cache, progress).await?;
            let local = Arc::new(LocalProvider::new(LocalOptions {
                data_dir: config.data_dir.clone(),
                templates,
                hmr_client_port: Some(config.port),
                ui_origins: config.cors_origins.clone(),
                isolation: Some(isolation),
                max_project_mb: config.max_project_mb,
                warm_spares: config.warm_spares,
                max_builds: config.max_builds,
                verify_build: config.verify_build,
                browser: crate::sandbox::browser::BrowserOptions {
                    executable: config.chromium.clone(),
                    no_sandbox: None,
                },
            })?);
            Ok((local.clone(), Some(local)))
        }
    }
}

/// API + UI, with preview hosts dispatched to the preview proxy first.
pub fn app_router(state: AppState) -> Router {
    let mut proxy = PreviewProxy::new(
        Arc::new(StorePreviewBackend::new(state.backends.clone())),
        state.config.caddy_domain.clone(),
    )
    .with_activity(state.backends.preview_activity.clone());
    if let Some(keys) = crate::preview::access::PreviewKeys::from_config(&state.config) {
        proxy = proxy.with_access(keys);
    }
    let web = ServeDir::new(&state.config.web_dir)
        .fallback(ServeFile::new(state.config.web_dir.join("index.html")));
    // Unknown API paths stay JSON 404s; everything else is the UI (index.html
    // for client-side routes).
    let api = crate::api::routes()
        .route("/api/{*rest}", axum::routing::any(crate::api::not_found))
        .fallback_service(web);
    let sites = SiteServer::new(
        state.blobs.clone(),
        state.config.apps_domain.clone(),
        state.config.site_hosts.clone(),
    );
    // Site hosts are checked first: `{slug}.apps.localhost` is also a
    // subdomain of `localhost`, which the preview proxy would claim.
    let hosts = crate::api::guard::HostAllowlist::for_server(&state.config);
    crate::api::with_middleware(api, state, Some(hosts))
        .layer(axum::middleware::from_fn_with_state(
            proxy,
            crate::preview::route_preview,
        ))
        .layer(axum::middleware::from_fn_with_state(sites, route_site))
}

/// Middleware sending published sites' hosts to the [`SiteServer`] (compressed
/// when the client accepts gzip or brotli) and everything else on.
async fn route_site(
    axum::extract::State(sites): axum::extract::State<SiteServer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tower::ServiceExt;
    if !sites.wants(&req) {
        return next.run(req).await;
    }
    let service = tower::ServiceBuilder::new()
        .layer(tower_http::compression::CompressionLayer::new())
        .service_fn(move |req: axum::extract::Request| {
            let sites = sites.clone();
            async move { Ok::<_, std::convert::Infallible>(sites.handle(req).await) }
        });
    match service.oneshot(req).await {
        Ok(resp) => resp.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

/// Every `CLEANUP_INTERVAL_MINUTES`: finishes runs whose workflow ended
/// without ending them ([`crate::run::reconcile_runs`]), then sweeps idle
/// projects into hibernation by running the same hibernation state machine
/// AWS runs on a schedule. Also starts [`spawn_light_sleep`].
pub fn spawn_hibernation_sweep(state: AppState) -> tokio::task::JoinHandle<()> {
    spawn_light_sleep(state.backends.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.cleanup_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            match crate::run::reconcile_runs(&state, 100).await {
                Ok(r) if r != Default::default() => tracing::warn!(?r, "reconciled stuck runs"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reconciling runs failed"),
            }
            let name = format!("hibernation-{}", crate::domain::new_run_id());
            let started = state
                .workflow
                .start(crate::run::HIBERNATION, &name, serde_json::json!({}))
                .await;
            if let Err(e) = started {
                tracing::warn!(error = %e, "hibernation sweep did not start");
            }
        }
    })
}

/// Puts idle previews to light sleep ([`crate::light_sleep`]) every
/// [`crate::light_sleep::check_interval`] of `APNA_PREVIEW_IDLE_MINUTES`:
/// more often than the hibernation sweep, whose interval is minutes.
pub fn spawn_light_sleep(backends: Backends) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = crate::light_sleep::check_interval(backends.config.preview_idle);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match crate::light_sleep::sleep_idle(&backends).await {
                Ok(r) if !r.slept.is_empty() => {
                    tracing::info!(
                        slept = r.slept.len(),
                        awake = r.awake,
                        "idle previews asleep"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "light sleep pass failed"),
            }
        }
    })
}
