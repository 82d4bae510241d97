//! `apna`: the command line for local use (`apna serve`, `apna token`).

use std::process::ExitCode;

use anyhow::Context;
use apna::app::AppState;
use apna::config::Config;
use clap::{Parser, Subcommand};

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
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if config.anthropic_api_key.is_none() {
        tracing::warn!(
            "ANTHROPIC_API_KEY is not set: Apna starts, but generations will fail until you set it. \
             Get a key at https://console.anthropic.com/settings/keys, then restart with: \
             ANTHROPIC_API_KEY=sk-ant-... cargo run --release -- serve"
        );
    }
    let bind = std::net::SocketAddr::new(config.bind, config.port);
    let state = AppState::connect(config).await?;
    tracing::info!(
        store = state.store.backend(),
        blob = state.blobs.backend(),
        "backends ready"
    );
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("PORT: cannot listen on {bind}"))?;
    let port = listener.local_addr()?.port();
    let app = apna::api::router(state);
    println!("Apna is running at http://localhost:{port}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = async {
        let config = Config::from_env()?;
        init_tracing();
        match cli.command {
            Command::Serve => serve(config).await,
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apna: {e:#}");
            ExitCode::FAILURE
        }
    }
}
