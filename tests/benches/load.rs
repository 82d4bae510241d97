//! Issue #15: `apna serve` under load, bounded. A server process (this binary
//! re-executed, see `apna_tests::server_process`) with the mock model:
//!
//! 1. one generation alone: run time and time to the first preview;
//! 2. N (20) generations at once, each preview polled through the proxy until
//!    it serves its app, while C (16) clients loop over GET project, list
//!    projects and the run's events.
//!
//! It fails on any error (a non-2xx API answer, a preview that never serves
//! its own app) and prints run time p50/p95 (alone vs under load), first
//! preview p50/p95, API latency p50/p99 and rate, the peak RSS of the
//! server and of all its sandbox processes, and the CPU seconds of the
//! generation alone and of the N at once by kind of process (Vite, `tsc`,
//! Chromium, the server; see `apna_tests::process_cpu`) with the floor they
//! set on this machine's cores. `APNA_LOAD_CLIENTS=0` leaves the API clients
//! out, whose reads would add to the server's CPU.
//!
//! Issue #16 runs it twice, each with its own server: "before" (Verify with
//! `tsc` + `vite build`, no build gate, one warm spare) and "after" (Verify
//! through the dev server, the build gate, `APNA_LOAD_SPARES` warm spares,
//! default 4), with the mock model answering each call after
//! `APNA_LOAD_LATENCY_MS` (default 2000). `APNA_LOAD_PHASES=after` runs one.
//!
//! `cargo bench -p apna-tests --bench load` (`APNA_LOAD_RUNS`,
//! `APNA_LOAD_CLIENTS`; `APNA_CHROMIUM` is handed to the server). The
//! bench profile is a release build, like `apna serve --release`; with
//! `--profile dev` it builds faster but the server's own CPU is about twice
//! as high. Loopback only; stops by itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use apna::testing::bench::{env_count, percentile};
use apna::testing::fixtures::repo_root;
use apna_tests::mock_anthropic::{MockAnthropic, Script, Turn};
use apna_tests::process_cpu::CpuLedger;
use apna_tests::server_process::{rss_tree, serve_if_child, ServerProcess};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(600);

fn heading(i: usize) -> String {
    format!("Load test app number {i}")
}

/// Run `i`'s first answer writes its own heading (matched on its prompt);
/// its second (after the tool result, which has no text) is any summary.
fn script(runs: usize) -> Script {
    let mut turns = Vec::new();
    for i in 0..runs {
        turns.push(
            Turn::tool(
                "Writing the page.",
                "write_file",
                json!({"path": "src/App.tsx", "content": format!(
                    "export default function App() {{\n  return <h1 className=\"p-8 text-3xl\">{}</h1>\n}}\n", heading(i))}),
            )
            .when(&format!("load app {i} please")),
        );
    }
    for i in 0..runs {
        turns.push(Turn::text(&format!("Done: page {i}.")));
    }
    Script::new(turns)
}

struct Generation {
    run_secs: f64,
    first_preview_secs: f64,
}

/// Creates app `i`, then polls its preview until it serves the app's own
/// heading and the run has ended; returns the two times.
async fn generation(
    client: reqwest::Client,
    base: String,
    port: u16,
    i: usize,
) -> anyhow::Result<Generation> {
    let t0 = Instant::now();
    let r = client
        .post(format!("{base}/api/projects"))
        .json(&json!({"prompt": format!("load app {i} please")}))
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    if status != 202 {
        bail!("create {i}: {status} {body}");
    }
    let id = body["project"]["id"].as_str().context("id")?.to_string();
    let run_id = body["run_id"].as_str().context("run id")?.to_string();
    let mut first_preview = None;
    let mut run_done = None;
    let want = heading(i);
    loop {
        if t0.elapsed() > LIMIT {
            bail!("app {i}: preview {first_preview:?}, run {run_done:?} after {LIMIT:?}");
        }
        if first_preview.is_none() {
            // The index page, then the module that holds the app's text.
            let page = client
                .get(format!("http://127.0.0.1:{port}/"))
                .header("host", format!("{id}.localhost:{port}"))
                .send()
                .await;
            if let Ok(p) = page {
                if p.status() == 200
                    && !p
                        .text()
                        .await
                        .unwrap_or_default()
                        .contains("Starting the preview")
                {
                    first_preview = Some(t0.elapsed());
                }
            }
        }
        if run_done.is_none() {
            let run: Value = client
                .get(format!("{base}/api/runs/{run_id}"))
                .send()
                .await?
                .json()
                .await?;
            match run["status"].as_str() {
                Some("succeeded") => run_done = Some(t0.elapsed()),
                Some(s @ ("failed" | "cancelled")) => bail!("app {i}: run {s}: {run}"),
                _ => {}
            }
        }
        if let (Some(p), Some(r)) = (first_preview, run_done) {
            // Every preview serves its own app (through the proxy, after the run).
            let app = client
                .get(format!("http://127.0.0.1:{port}/src/App.tsx"))
                .header("host", format!("{id}.localhost:{port}"))
                .send()
                .await?;
            let text = app.text().await?;
            if text.contains(&want) {
                return Ok(Generation {
                    run_secs: r.as_secs_f64(),
                    first_preview_secs: p.as_secs_f64(),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `clients` tasks looping over `paths` until `stop`; each returns its latencies.
fn hammer(
    client: &reqwest::Client,
    base: &str,
    paths: &[String],
    clients: usize,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Vec<(usize, f64)>>> {
    (0..clients)
        .map(|c| {
            let (client, base, paths, stop, errors) = (
                client.clone(),
                base.to_string(),
                paths.to_vec(),
                stop.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut k = c;
                while !stop.load(Ordering::Relaxed) {
                    let which = k % paths.len();
                    let path = &paths[which];
                    k += 1;
                    let t = Instant::now();
                    match client.get(format!("{base}{path}")).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push((which, t.elapsed().as_secs_f64()));
                        }
                        Ok(r) => {
                            eprintln!("GET {path}: {}", r.status());
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("GET {path}: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    serve_if_child();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench())
}

fn summary(label: &str, xs: &mut [f64]) -> String {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        return format!("{label}: none");
    }
    format!(
        "{label}: p50 {:.2} s, p95 {:.2} s, max {:.2} s",
        percentile(xs, 50.0),
        percentile(xs, 95.0),
        xs[xs.len() - 1]
    )
}

async fn bench() -> anyhow::Result<()> {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let (runs, clients) = if bench_mode {
        (
            env_count("APNA_LOAD_RUNS", 20),
            env_count("APNA_LOAD_CLIENTS", 16),
        )
    } else {
        (2, 2)
    };
    apna::testing::local::template().await;
    let mock = MockAnthropic::start(script(runs + 1)).await?;
    // A real model takes seconds per call (issue #16: 2 s).
    let latency_ms = if bench_mode {
        env_count("APNA_LOAD_LATENCY_MS", 2000)
    } else {
        0
    };
    mock.set_latency(Duration::from_millis(latency_ms as u64));
    println!("model latency {latency_ms} ms per call");
    let only = std::env::var("APNA_LOAD_PHASES").unwrap_or_else(|_| "before,after".into());
    if only.contains("before") {
        // Verify as before #16: tsc + vite build, no gate, one warm spare.
        phase(
            "before (tsc + vite build, no build gate, 1 warm spare)",
            &[
                ("APNA_VERIFY_BUILD", "1".into()),
                ("APNA_MAX_BUILDS", "1000".into()),
                ("APNA_WARM_SPARES", "1".into()),
            ],
            runs,
            clients,
            &mock,
        )
        .await?;
        mock.reset();
    }
    if only.contains("after") {
        let spares = env_count("APNA_LOAD_SPARES", 4);
        phase(
            &format!("after (Verify through the dev server, build gate of the core count, {spares} warm spares)"),
            &[("APNA_WARM_SPARES", spares.to_string())],
            runs,
            clients,
            &mock,
        )
        .await?;
    }
    Ok(())
}

/// The 1-minute load average now.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// Seconds a new server is left alone before the first generation
/// (`APNA_LOAD_SETTLE_SECS`, default 15 in bench mode).
fn settle_secs() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        env_count("APNA_LOAD_SETTLE_SECS", 15) as u64
    } else {
        0
    }
}

/// One `apna serve` with `extra` settings: one generation alone, then `runs`
/// at once under `clients` API clients; prints the figures.
async fn phase(
    label: &str,
    extra: &[(&'static str, String)],
    runs: usize,
    clients: usize,
    mock: &MockAnthropic,
) -> anyhow::Result<()> {
    println!("\n== {label}");
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let root = repo_root();
    let mut envs: Vec<(&str, String)> = vec![
        (
            "APNA_DATA_DIR",
            work.path().join("data").display().to_string(),
        ),
        ("PORT", "0".into()),
        (
            "APNA_TEMPLATE_CACHE",
            apna::testing::local::test_cache_dir().display().to_string(),
        ),
        (
            "APNA_TEMPLATES_DIR",
            root.join("images/preview/templates").display().to_string(),
        ),
        ("APNA_WEB_DIR", root.join("web").display().to_string()),
        ("ANTHROPIC_BASE_URL", mock.url()),
        ("ANTHROPIC_API_KEY", "mock-key".into()),
        ("APNA_MAX_PROJECTS", "1000".into()),
        ("APNA_MAX_ACTIVE_RUNS", "100".into()),
    ];
    // The browser to compare (the full `chromium` against the headless shell).
    if let Ok(chromium) = std::env::var("APNA_CHROMIUM") {
        envs.push(("APNA_CHROMIUM", chromium));
    }
    envs.extend(extra.iter().cloned());
    let server = ServerProcess::start(
        &envs,
        &work.path().join("apna.log"),
        Duration::from_secs(120),
    )?;
    let base = server.url();
    let port = server.port;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()?;

    // Peak memory, sampled every 200 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new(Mutex::new((0u64, 0u64)));
    let sampler = {
        let (stop, peaks, pid) = (stop.clone(), peaks.clone(), server.pid());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (own, tree) = rss_tree(pid);
                let mut p = peaks.lock().unwrap_or_else(|e| e.into_inner());
                p.0 = p.0.max(own);
                p.1 = p.1.max(tree);
                drop(p);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    // The warm spares start with the server: let them, so "alone" is alone.
    tokio::time::sleep(Duration::from_secs(settle_secs())).await;

    // 1. One generation alone (the warm spare is refilled before the next phase).
    let ledger = CpuLedger::start(server.pid());
    let alone_load = loadavg();
    let alone = generation(client.clone(), base.clone(), port, runs).await?;
    let alone_cpu = ledger.finish();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 2. N at once, with C API clients hammering reads.
    let done = Arc::new(AtomicBool::new(false));
    let api_errors = Arc::new(AtomicU64::new(0));
    let first: Value = client
        .get(format!("{base}/api/projects"))
        .send()
        .await?
        .json()
        .await?;
    let known_id = first["projects"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let known_run = client
        .get(format!("{base}/api/projects/{known_id}/runs"))
        .send()
        .await?
        .json::<Value>()
        .await?["runs"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let paths = vec![
        format!("/api/projects/{known_id}"),
        "/api/projects".to_string(),
        format!("/api/runs/{known_run}/events?after=0&wait=0"),
    ];
    // Baseline: the same clients with nothing else running.
    let idle_done = Arc::new(AtomicBool::new(false));
    let idle = hammer(
        &client,
        &base,
        &paths,
        clients,
        idle_done.clone(),
        api_errors.clone(),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    idle_done.store(true, Ordering::Relaxed);
    let mut idle_lat = Vec::new();
    for h in idle {
        idle_lat.extend(h.await?.into_iter().map(|(_, t)| t));
    }
    idle_lat.sort_by(|a, b| a.total_cmp(b));
    let hammers = hammer(
        &client,
        &base,
        &paths,
        clients,
        done.clone(),
        api_errors.clone(),
    );
    let load_started = Instant::now();
    let load_ledger = CpuLedger::start(server.pid());
    let load_at_start = loadavg();
    let gens: Vec<_> = (0..runs)
        .map(|i| tokio::spawn(generation(client.clone(), base.clone(), port, i)))
        .collect();
    let mut results = Vec::new();
    let mut gen_errors = 0;
    for g in gens {
        match g.await? {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("generation failed: {e:#}");
                gen_errors += 1;
            }
        }
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    let load_cpu = load_ledger.finish();
    done.store(true, Ordering::Relaxed);
    let mut tagged = Vec::new();
    for h in hammers {
        tagged.extend(h.await?);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (own_peak, tree_peak) = *peaks.lock().unwrap_or_else(|e| e.into_inner());
    let mut lat: Vec<f64> = tagged.iter().map(|(_, t)| *t).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let api_errors = api_errors.load(Ordering::Relaxed);
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load: {runs} concurrent generations + {clients} API clients, machine load average {}",
        load_avg.trim()
    );
    println!(
        "alone: run {:.2} s, first preview {:.2} s (load average at its start {alone_load})",
        alone.run_secs, alone.first_preview_secs
    );
    println!("CPU seconds of the one generation alone (server + its processes):");
    for l in alone_cpu.lines(1.0) {
        println!("{l}");
    }
    println!(
        "CPU seconds of the {runs} at once (load average at their start {load_at_start}), {:.1} s wall:",
        load_secs
    );
    for l in load_cpu.lines(runs.max(1) as f64) {
        println!("{l}");
    }
    println!(
        "  floor on these cores: {:.1} s of CPU / {} cores = {:.1} s",
        load_cpu.total,
        apna::sandbox::local::build_gate::default_max_builds(),
        load_cpu.total / apna::sandbox::local::build_gate::default_max_builds() as f64
    );

    println!(
        "{}",
        summary(
            "under load, run time",
            &mut results.iter().map(|g| g.run_secs).collect::<Vec<_>>()
        )
    );
    println!(
        "{}",
        summary(
            "under load, first preview",
            &mut results
                .iter()
                .map(|g| g.first_preview_secs)
                .collect::<Vec<_>>()
        )
    );
    if !idle_lat.is_empty() {
        println!(
            "API GET, nothing else running: {} requests in 5 s ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms",
            idle_lat.len(),
            idle_lat.len() as f64 / 5.0,
            percentile(&idle_lat, 50.0) * 1000.0,
            percentile(&idle_lat, 99.0) * 1000.0
        );
    }
    if !lat.is_empty() {
        println!(
            "API GET under load: {} requests in {load_secs:.1} s ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, {api_errors} errors",
            lat.len(),
            lat.len() as f64 / load_secs,
            percentile(&lat, 50.0) * 1000.0,
            percentile(&lat, 99.0) * 1000.0
        );
    }
    for (i, path) in ["GET project", "list projects", "run events"]
        .iter()
        .enumerate()
    {
        let mut xs: Vec<f64> = tagged
            .iter()
            .filter(|(w, _)| *w == i)
            .map(|(_, t)| *t)
            .collect();
        xs.sort_by(|a, b| a.total_cmp(b));
        if !xs.is_empty() {
            println!(
                "  {path}: {} requests, p50 {:.1} ms, p99 {:.1} ms",
                xs.len(),
                percentile(&xs, 50.0) * 1000.0,
                percentile(&xs, 99.0) * 1000.0
            );
        }
    }
    println!(
        "peak RSS: apna {:.0} MB, its sandbox processes together {:.0} MB",
        own_peak as f64 / 1e6,
        tree_peak as f64 / 1e6
    );
    server.kill9();
    if gen_errors > 0 || api_errors > 0 {
        bail!("{gen_errors} generation(s) and {api_errors} API request(s) failed");
    }
    Ok(())
}
