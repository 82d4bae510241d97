//! `mock-anthropic --port N --script FILE`: serves the mock Messages API and
//! prints its URL (use it as `ANTHROPIC_BASE_URL`). Port 0 picks a free one.

use std::net::SocketAddr;

use apna_tests::mock_anthropic::{MockAnthropic, Script};

const USAGE: &str = "usage: mock-anthropic [--port N] [--host IP] [--script FILE] [--latency-ms N]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port: u16 = 0;
    let mut host = String::from("127.0.0.1");
    let mut script = Script::default();
    let mut latency_ms: u64 = 0;
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
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let addr: SocketAddr = format!("{host}:{port}").parse()?;
    let mock = MockAnthropic::start_on(addr, script).await?;
    mock.set_latency(std::time::Duration::from_millis(latency_ms));
    println!("{}", mock.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
