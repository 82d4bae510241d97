//! The browser check after Verify (issue #17) on the local driver, with the
//! host's Chromium and a real Vite dev server:
//!
//! - one check (load, settle, desktop + phone screenshots) with the browser
//!   already running (warm: back to back, and a second apart as in a run)
//!   and with the browser started by the check (cold), p50/p95;
//! - memory of the warm browser (PSS of Chromium and its children);
//! - the broken apps of `tests/fixtures/conversations/smoke_*.json` (what the
//!   model writes first) through Verify (`tsc` + `vite build` + dev-server
//!   log) and then the browser check: how many each catches, and that the
//!   healthy app passes both.
//!
//! Run: `cargo bench -p apna --features browser --bench smoke_check` (env
//! `APNA_BENCH_WARM_CHECKS`, default 20 of each kind, `APNA_BENCH_COLD_CHECKS`,
//! default 5, `APNA_BENCH_CHECK_GAP_MS`, default 1000;
//! `RUST_LOG=apna::sandbox::browser=debug` logs each check's phases).

use std::time::{Duration, Instant};

use apna::sandbox::build_check::check_build;
use apna::sandbox::local::wait_ready;
use apna::sandbox::{ProjectPath, Sandbox, SmokeRequest};
use apna::testing::bench::*;
use apna::testing::fixtures::repo_root;
use apna::testing::local::provider;
use serde_json::Value;

/// The broken fixtures, in the order of the issue, then the healthy one.
const FIXTURES: &[&str] = &[
    "smoke_throws",
    "smoke_console_error",
    "smoke_missing_asset",
    "smoke_blank",
    "smoke_healthy",
];

/// The files the model writes in its first turn (the app before any fix).
fn first_writes(fixture: &str) -> Vec<(String, String)> {
    let path = repo_root()
        .join("tests/fixtures/conversations")
        .join(format!("{fixture}.json"));
    let script: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    script["turns"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "tool_use" && c["name"] == "write_file")
        .map(|c| {
            (
                c["input"]["path"].as_str().unwrap().to_string(),
                c["input"]["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{label}: n={} p50 {:.0} ms, p95 {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        ms[0],
        ms[ms.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `RUST_LOG=apna::sandbox::browser=debug` shows where each check's time goes.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let warm_n = env_count("APNA_BENCH_WARM_CHECKS", 20);
    let cold_n = env_count("APNA_BENCH_COLD_CHECKS", 5);
    let data = tempfile::tempdir().unwrap();
    // The Vite client's HMR socket goes to a port that accepts and closes, as
    // `apna serve`'s does for a dev server's own address.
    let hmr = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hmr_port = hmr.local_addr().unwrap().port();
    std::thread::spawn(move || hmr.incoming().for_each(drop));
    let p = provider(data.path(), Some(hmr_port)).await;
    p.set_warm_spare(false).await;
    println!(
        "isolation: {:?}; browser: {:?}",
        p.isolation(),
        p.browser().executable()
    );
    let sb = p.local("bench-smoke").unwrap();
    sb.ensure().await.unwrap();
    wait_ready(&sb, Duration::from_secs(120)).await.unwrap();
    let req = SmokeRequest::default();

    // Verify alone vs Verify + the browser check, per fixture.
    let (mut by_verify, mut by_smoke, mut broken) = (0, 0, 0);
    for fixture in FIXTURES {
        for (path, content) in first_writes(fixture) {
            sb.write_file(&ProjectPath::parse(&path).unwrap(), content.as_bytes())
                .await
                .unwrap();
        }
        let verify = check_build(&sb).await.unwrap();
        let smoke = sb.smoke_check(&req).await.unwrap();
        assert!(smoke.checked, "the browser check ran: {:?}", smoke.note);
        let where_ = smoke
            .diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.file, d.line, d.message))
            .collect::<Vec<_>>()
            .join(" | ");
        println!(
            "{fixture:22} verify {:5} browser {:5} {where_}",
            if verify.ok { "ok" } else { "FOUND" },
            if smoke.ok() { "ok" } else { "FOUND" },
        );
        if *fixture == "smoke_healthy" {
            assert!(verify.ok && smoke.ok(), "the healthy app passes both");
            continue;
        }
        broken += 1;
        by_verify += usize::from(!verify.ok);
        by_smoke += usize::from(!verify.ok || !smoke.ok());
    }
    println!(
        "fixture errors caught: Verify alone {by_verify}/{broken}, Verify + browser check {by_smoke}/{broken}"
    );

    // The healthy app is in place: time the check itself.
    let mut cold = Vec::new();
    for i in 0..cold_n {
        p.browser().close().await;
        let t = Instant::now();
        let r = sb.smoke_check(&req).await.unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(r.checked && r.ok(), "{:?} {:?}", r.note, r.diagnostics);
        println!("cold check {i:2}: {ms:.0} ms");
        cold.push(ms);
    }
    // Back to back, the context the last check opens ahead for the next is
    // still opening when the next starts; in a run an agent turn and Verify
    // (seconds) always come between two checks of a project.
    let gap = Duration::from_millis(env_count("APNA_BENCH_CHECK_GAP_MS", 1000) as u64);
    let mut warm = Vec::new();
    let mut spaced = Vec::new();
    for i in 0..warm_n * 2 {
        let apart = i % 2 == 1;
        if apart {
            tokio::time::sleep(gap).await;
        }
        let t = Instant::now();
        let r = sb.smoke_check(&req).await.unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(r.checked && r.ok(), "{:?} {:?}", r.note, r.diagnostics);
        assert_eq!(r.screenshots.len(), 2);
        let what = if apart { "apart" } else { "back to back" };
        println!("warm check {:2} ({what}): {ms:.0} ms", i / 2);
        if apart {
            spaced.push(ms);
        } else {
            warm.push(ms);
        }
    }
    let last = sb.smoke_check(&req).await.unwrap();
    for shot in &last.screenshots {
        println!(
            "screenshot {} {}×{}: {} bytes",
            shot.viewport,
            shot.width,
            shot.height,
            shot.png.len()
        );
    }
    let memory = p.browser().memory_bytes().await;
    println!();
    summary("cold (browser started by the check)", cold);
    summary("warm (browser running), back to back", warm);
    summary(
        &format!(
            "warm (browser running), {} ms after the last",
            gap.as_millis()
        ),
        spaced,
    );
    match memory {
        Some(b) => println!(
            "warm browser memory (PSS, all processes): {:.0} MiB",
            b as f64 / 1048576.0
        ),
        None => println!("warm browser memory: no browser running"),
    }
    p.stop_all().await;
}
