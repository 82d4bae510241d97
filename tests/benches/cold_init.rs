//! Cold init of a Lambda function: from starting its `bootstrap` until its
//! first `GET /2018-06-01/runtime/invocation/next`, against a minimal Lambda
//! Runtime API emulator on loopback (this file), with PostgreSQL on loopback
//! as the store (`APNA_DB_MIGRATIONS=check`, as on AWS: connect and check the
//! schema) and S3 on moto. 20 starts per function, p50 and p95.
//!
//! The functions are the host builds in `$CARGO_TARGET_DIR/$PROFILE/` (build
//! them first, e.g. `cargo build --release -p apna-functions --features
//! lambda,bedrock --bin api-get-project --bin step-agent-step`). Needs
//! APNA_TEST_POSTGRES_URL and APNA_TEST_MOTO_URL (tests/run's services).
//!
//!   PROFILE=release cargo bench -p apna-tests --bench cold_init
//!   FUNCTIONS=api-get-project,api-healthz STARTS=20 …

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::mpsc;

/// What the emulator saw: the first `next` call, or an init error.
enum Seen {
    Next,
    InitError(String),
}

async fn next(State(tx): State<Arc<mpsc::UnboundedSender<Seen>>>) -> &'static str {
    let _ = tx.send(Seen::Next);
    // A real Runtime API holds `next` until an invocation arrives; the
    // function is stopped before that.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    ""
}

async fn init_error(
    State(tx): State<Arc<mpsc::UnboundedSender<Seen>>>,
    body: String,
) -> &'static str {
    let _ = tx.send(Seen::InitError(body));
    "{}"
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let pg = std::env::var("APNA_TEST_POSTGRES_URL")
        .expect("APNA_TEST_POSTGRES_URL (tests/run starts PostgreSQL)");
    let moto =
        std::env::var("APNA_TEST_MOTO_URL").expect("APNA_TEST_MOTO_URL (tests/run starts moto)");
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "release".into());
    let starts: usize = std::env::var("STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let functions =
        std::env::var("FUNCTIONS").unwrap_or_else(|_| "api-get-project,step-agent-step".into());
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| apna::testing::fixtures::repo_root().join("target"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The schema, once, as the migrate step would.
        apna::store::migrate(&pg).await.unwrap();
        let bucket = format!("apna-cold-init-{}", std::process::id());
        reqwest::Client::new()
            .put(format!("{moto}/{bucket}"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();

        let (tx, mut rx) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::new(tx));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });

        for function in functions.split(',') {
            let bin = target.join(&profile).join(function);
            assert!(bin.exists(), "{} is not built", bin.display());
            let mut times = Vec::with_capacity(starts);
            for _ in 0..starts {
                let started = Instant::now();
                let mut child = tokio::process::Command::new(&bin)
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("AWS_LAMBDA_RUNTIME_API", &api)
                    .env("AWS_LAMBDA_FUNCTION_NAME", function)
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                    .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}"))
                    .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
                    .env("AWS_REGION", "us-east-1")
                    .env("AWS_ACCESS_KEY_ID", "testing")
                    .env("AWS_SECRET_ACCESS_KEY", "testing")
                    .env("DATABASE_URL", &pg)
                    .env("APNA_DB_MIGRATIONS", "check")
                    .env("APNA_DB_POOL_SIZE", "2")
                    .env("S3_BUCKET", &bucket)
                    .env("S3_REGION", "us-east-1")
                    .env("S3_ENDPOINT", &moto)
                    .env("ANTHROPIC_API_KEY", "not-called")
                    .env("GENERATION_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:apna-generation")
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .unwrap();
                let seen = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("no call to the Runtime API within 30 s")
                    .unwrap();
                let took = started.elapsed();
                child.kill().await.unwrap();
                let out = child.wait_with_output().await.unwrap();
                match seen {
                    Seen::Next => times.push(took),
                    Seen::InitError(e) => panic!(
                        "{function} failed to start: {e}\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    ),
                }
            }
            times.sort();
            println!(
                "{function} ({profile}): cold init to the first invocation/next p50 {:.1} ms, p95 {:.1} ms, min {:.1} ms over {starts} starts",
                percentile(&times, 0.5).as_secs_f64() * 1000.0,
                percentile(&times, 0.95).as_secs_f64() * 1000.0,
                times[0].as_secs_f64() * 1000.0,
            );
        }
    });
}
