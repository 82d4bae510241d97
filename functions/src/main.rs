//! `apna`: the command line for local use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use apna::config::Config;
use apna::sandbox::local::TemplateProgress;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// Apna: a self-hostable AI app builder.
#[derive(Parser)]
#[command(name = "apna", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start Apna on this machine (API, UI, preview proxy, workflow interpreter).
    Serve,
    /// Print an API token for a user (needs APNA_JWT_SECRET).
    Token {
        /// User id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// Hours until it expires.
        #[arg(long, default_value_t = 24 * 30)]
        hours: i64,
    },
    /// Create a project from a prompt and generate it to the end, printing progress.
    Generate {
        /// What to build.
        prompt: String,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Apply the database schema migrations (PostgreSQL: as a role that may
    /// create tables, once per upgrade when the app runs with APNA_DB_MIGRATIONS=check).
    Migrate,
    /// Serve one project's workspace over HTTP (the entrypoint of a sandbox pod).
    Sandboxd(SandboxdArgs),
    /// Check preview requests for Caddy's forward_auth (a sidecar of Caddy on
    /// Kubernetes): private previews only with the owner's cookie. Needs
    /// APNA_PREVIEW_SECRET (or APNA_JWT_SECRET) and DATABASE_URL.
    PreviewGate {
        /// Address to listen on (loopback: only Caddy in the same pod asks).
        #[arg(
            long,
            env = "APNA_PREVIEW_GATE_LISTEN",
            default_value = "127.0.0.1:9180"
        )]
        listen: SocketAddr,
        /// Milliseconds an owner and share flag are reused (sharing changes
        /// take effect within this).
        #[arg(long, env = "APNA_PREVIEW_GATE_CACHE_MS", default_value_t = 2000)]
        cache_ms: u64,
        /// Ask a running gate at `--listen` whether it is up and exit (the
        /// container's probe: the gate is out of the kubelet's reach).
        #[arg(long)]
        healthcheck: bool,
    },
}

/// `apna sandboxd`: flags with environment fallbacks. The token is read from
/// `APNA_SANDBOXD_TOKEN` only (a flag would show in `ps`).
#[derive(clap::Args)]
struct SandboxdArgs {
    /// The project's files (the pod's volume); seeded from its starter when empty.
    #[arg(long, env = "APNA_WORKSPACE", default_value = "/workspace")]
    workspace: PathBuf,
    /// The starters, each with its node_modules installed.
    #[arg(
        long,
        env = "APNA_TEMPLATES_DIR",
        default_value = "/opt/apna/templates"
    )]
    templates: PathBuf,
    /// The starter an empty workspace is seeded from.
    #[arg(long, env = "APNA_STARTER", default_value = apna::domain::DEFAULT_TEMPLATE)]
    starter: String,
    /// Address of the sandboxd API.
    #[arg(long, env = "APNA_SANDBOXD_LISTEN", default_value = "0.0.0.0:7070")]
    listen: SocketAddr,
    /// Address Vite listens on (port 0: a free port on every start).
    #[arg(long, env = "APNA_DEV_SERVER_ADDR", default_value = "0.0.0.0:5173")]
    dev_server: SocketAddr,
    /// Port the browser's HMR socket uses (443 behind Caddy).
    #[arg(long, env = "APNA_HMR_CLIENT_PORT")]
    hmr_client_port: Option<u16>,
    /// Origins of the Apna UI that may drive Select in the preview, comma-separated.
    #[arg(long, env = "APNA_UI_ORIGINS", value_delimiter = ',')]
    ui_origins: Vec<String>,
    /// Writable scratch for the dev server's log.
    #[arg(
        long,
        env = "APNA_SANDBOXD_STATE_DIR",
        default_value = "/tmp/apna-sandboxd"
    )]
    state_dir: PathBuf,
    /// The headless browser for the page check (default: Chromium on PATH).
    #[arg(long, env = "APNA_CHROMIUM")]
    chromium: Option<PathBuf>,
}

async fn sandboxd(args: SandboxdArgs) -> anyhow::Result<()> {
    let opts = apna::sandbox::sandboxd::SandboxdOptions {
        workspace: args.workspace,
        templates: args.templates,
        starter: args.starter,
        listen: args.listen,
        dev_server: args.dev_server,
        hmr_client_port: args.hmr_client_port,
        ui_origins: args.ui_origins,
        state_dir: args.state_dir,
        token: apna::sandbox::sandboxd::token_from_env()?,
        project_id: std::env::var("APNA_PROJECT_ID")
            .ok()
            .filter(|v| !v.is_empty()),
        chromium: args.chromium,
    };
    apna::sandbox::sandboxd::run(opts, shutdown_signal()).await?;
    Ok(())
}

/// Logs to stderr; `RUST_LOG` overrides `default` (e.g. `apna=debug`).
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

/// A spinner for the one-time starter installs; silent when they are cached.
fn template_progress() -> impl Fn(TemplateProgress) + Send + Sync {
    // Cleared when the closure is dropped (the server is built by then).
    let bar = ProgressBar::new_spinner().with_finish(indicatif::ProgressFinish::AndClear);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    move |p| match p {
        TemplateProgress::Installing { .. } => {
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message(
                "Installing the starters' dependencies (once; later starts reuse them)…",
            );
        }
        TemplateProgress::Prebundling { .. } => {
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message("Pre-bundling the starters' dependencies with Vite (once)…");
        }
        TemplateProgress::Output(line) => {
            let line: String = line.chars().take(100).collect();
            bar.set_message(format!("npm: {line}"));
        }
        TemplateProgress::Cached { .. } => {}
        TemplateProgress::Installed { .. } | TemplateProgress::Prebundled { .. } => {
            bar.disable_steady_tick();
            bar.set_message("");
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if !config.model_configured() {
        tracing::warn!("{}", apna::api::SETUP_HINT);
    }
    if config.jwt_secret.is_none() {
        tracing::info!("single-user mode: no APNA_JWT_SECRET, listening on loopback only");
    }
    let bind = std::net::SocketAddr::new(config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("PORT: cannot listen on {bind}"))?;
    let port = listener.local_addr()?.port();
    let mut config = config;
    config.port = port;
    let server = apna::server::build(config, &template_progress()).await?;
    apna::server::spawn_hibernation_sweep(server.state.clone());
    tracing::info!(
        store = server.state.store.backend(),
        blob = server.state.blobs.backend(),
        sandbox = server.state.sandboxes.backend(),
        "backends ready"
    );
    println!("Apna is running at http://localhost:{port}/");
    let served = axum::serve(listener, server.router.clone())
        .with_graceful_shutdown(shutdown_signal())
        .await;
    // Dev servers are children of this process: stop them with it.
    server.stop_sandboxes().await;
    served?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

async fn generate(config: Config, prompt: &str) -> anyhow::Result<()> {
    let server = apna::server::build(config, &template_progress()).await?;
    let run = apna::run::generate(&server.state, prompt, |line| println!("{line}")).await;
    server.stop_sandboxes().await;
    let run = run?;
    // The dev server stopped with this process: the preview needs `apna serve`.
    println!(
        "{} — project {}. To see it, start Apna (cargo run --release -- serve) and open {}",
        run.status.as_str(),
        run.project_id,
        server.state.config.preview_url(&run.project_id)
    );
    if run.status != apna::domain::RunStatus::Succeeded {
        anyhow::bail!(run
            .error
            .unwrap_or_else(|| "generation did not succeed".into()));
    }
    Ok(())
}

/// The default log filter.
// chromiumoxide warns about every CDP event newer than its bindings; they are
// skipped and harmless.
const LOG_DEFAULT: &str = "info,sqlx=warn,tower_http=warn,aws_config=warn,chromiumoxide=error";

async fn run(command: Command) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    // `generate` prints its own progress lines; only problems are logged.
    init_tracing(match command {
        Command::Generate { .. } => "warn,chromiumoxide=error",
        _ => LOG_DEFAULT,
    });
    match command {
        Command::Serve => serve(config).await,
        Command::Token { user, hours } => {
            let secret = config.jwt_secret.as_deref().ok_or_else(|| {
                anyhow::anyhow!("APNA_JWT_SECRET: set it to sign tokens (and start apna serve with the same value)")
            })?;
            println!("{}", apna::api::auth::issue_token(secret, &user, hours)?);
            Ok(())
        }
        Command::Generate { prompt } => generate(config, &prompt).await,
        Command::Openapi => {
            print!("{}", apna::api::openapi::document());
            Ok(())
        }
        Command::Migrate => {
            match apna::store::migrate(&config.database_url).await? {
                Some(m) if m.applied.is_empty() => {
                    println!("the schema is up to date (version {})", m.version)
                }
                Some(m) => println!(
                    "applied migrations {:?}; the schema is at version {}",
                    m.applied, m.version
                ),
                None => println!("nothing to migrate for this database"),
            }
            Ok(())
        }
        Command::Sandboxd(args) => sandboxd(args).await,
        Command::PreviewGate {
            listen,
            healthcheck: true,
            ..
        } => gate_healthcheck(listen),
        Command::PreviewGate {
            listen, cache_ms, ..
        } => preview_gate(config, listen, cache_ms).await,
    }
}

fn gate_healthcheck(listen: SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&listen, timeout)
        .with_context(|| format!("preview gate at {listen}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: gate\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    anyhow::ensure!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "preview gate at {listen}: {}",
        answer.lines().next().unwrap_or("no answer")
    );
    Ok(())
}

async fn preview_gate(config: Config, listen: SocketAddr, cache_ms: u64) -> anyhow::Result<()> {
    let keys = apna::preview::access::PreviewKeys::from_config(&config).ok_or_else(|| {
        anyhow::anyhow!(
            "APNA_PREVIEW_SECRET: set it (or APNA_JWT_SECRET) to the secret the API signs preview links with"
        )
    })?;
    let gate = apna::preview::gate::open(&config, keys, Duration::from_millis(cache_ms)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("APNA_PREVIEW_GATE_LISTEN: cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "preview gate ready");
    println!("apna preview-gate listening on {addr}");
    axum::serve(listener, gate.router())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // As a container's first process: reap orphans, forward signals, and
        // run the real sandboxd as the only child (see `pid1`).
        Command::Sandboxd(_) if apna::sandbox::pid1::is_init() => {
            return match apna::sandbox::pid1::run_as_init() {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("apna: sandboxd as PID 1: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        // A pod's entrypoint: none of `apna serve`'s settings apply.
        Command::Sandboxd(args) => {
            init_tracing(LOG_DEFAULT);
            sandboxd(args).await
        }
        other => run(other).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apna: {e:#}");
            ExitCode::FAILURE
        }
    }
}
