//! `mock-anthropic --port N --script FILE`: serves the mock Messages API and
//! prints its URL (use it as `ANTHROPIC_BASE_URL`). Port 0 picks a free one.
//!
//! `--latency-ms N` (or `MOCK_ANTHROPIC_LATENCY_MS`) delays every answer by N
//! ms before its first byte; `--chunk-latency-ms N` (or
//! `MOCK_ANTHROPIC_CHUNK_LATENCY_MS`) pauses N ms before each event of a
//! streamed answer, so load tests see a model that takes time. A flag wins
//! over its variable.

use std::net::SocketAddr;
use std::time::Duration;

use apna_tests::mock_anthropic::{MockAnthropic, Script};

const USAGE: &str = "usage: mock-anthropic [--port N] [--host IP] [--script FILE] [--latency-ms N] [--chunk-latency-ms N]";

/// Milliseconds from the environment variable `name`, 0 when unset.
fn env_ms(name: &str) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: {v:?} is not a number of milliseconds")),
        Err(_) => Ok(0),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port: u16 = 0;
    let mut host = String::from("127.0.0.1");
    let mut script = Script::default();
    let mut latency_ms = env_ms("MOCK_ANTHROPIC_LATENCY_MS")?;
    let mut chunk_latency_ms = env_ms("MOCK_ANTHROPIC_CHUNK_LATENCY_MS")?;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--port" => port = value()?.parse()?,
            "--host" => host = value()?,
            "--script" => script = Script::from_file(value()?)?,
            "--latency-ms" => latency_ms = value()?.parse()?,
            "--chunk-latency-ms" => chunk_latency_ms = value()?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let addr: SocketAddr = format!("{host}:{port}").parse()?;
    let mock = MockAnthropic::start_on(addr, script).await?;
    mock.set_latency(Duration::from_millis(latency_ms));
    mock.set_chunk_latency(Duration::from_millis(chunk_latency_ms));
    println!("{}", mock.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
