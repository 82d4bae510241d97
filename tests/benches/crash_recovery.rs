//! Issue #15: `kill -9` of `apna serve` at random moments, over and over.
//!
//! One data dir, one mock model (in this process, so it outlives every
//! crash), and a server process (this binary re-executed, see
//! `apna_tests::server_process`) killed with SIGKILL at a random moment of
//! whatever it is doing: generations and chats (model calls, tools, Verify's
//! `tsc` and `vite build`, snapshots), restores, wakes, and hibernations (the
//! sweep runs every ~2 s and hibernates projects idle for ~2 s). After each
//! restart it checks, and fails the bench otherwise:
//!
//! * every run reaches a terminal state within a bound (120 s);
//! * no project is left `creating` or `building`;
//! * every version's snapshot restores byte-identical (checksums of every
//!   object, and a restore into a fresh sandbox equals the stored tree);
//! * the next chat is accepted (202).
//!
//! `cargo bench -p apna-tests --bench crash_recovery --profile dev` runs 50
//! trials (`APNA_CRASH_TRIALS`), prints the outcome of every interrupted run
//! and the worst recovery time (restart → every run terminal), and exits
//! non-zero on any broken invariant. `APNA_CRASH_SEED` fixes the random
//! moments. Loopback only.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use apna::blob::BlobStore;
use apna::sandbox::Sandbox;
use apna::testing::bench::{env_count, percentile};
use apna::testing::fixtures::repo_root;
use apna::testing::memory::MemorySandbox;
use apna_tests::mock_anthropic::{MockAnthropic, Script, Turn};
use apna_tests::server_process::{serve_if_child, ServerProcess};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const RECOVERY_BOUND: Duration = Duration::from_secs(120);

/// Model turns for every run the bench can start: a write, then a summary
/// (in whatever order retries hand them out, every run ends within two calls).
fn script(runs: usize) -> Script {
    let mut turns = Vec::new();
    for i in 0..runs {
        let mut write = Turn::tool(
            "Updating the page.",
            "write_file",
            json!({"path": "src/App.tsx", "content": format!(
                "export default function App() {{\n  return <h1 className=\"p-8 text-3xl\">Crash test page {i}</h1>\n}}\n")}),
        );
        write.delay_ms = Some((i as u64 * 137) % 900);
        turns.push(write);
        let mut done = Turn::text(&format!("Done: page {i}."));
        done.delay_ms = Some((i as u64 * 71) % 400);
        turns.push(done);
    }
    Script::new(turns)
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-apna-request", "1")
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}

/// Every project with its status and runs.
async fn state(api: &Api) -> anyhow::Result<Vec<(Value, Vec<Value>)>> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = api
            .get(&format!("/api/projects?limit=200&offset={offset}"))
            .await?;
        let projects = page["projects"].as_array().cloned().unwrap_or_default();
        for p in &projects {
            let id = p["id"].as_str().unwrap_or_default();
            let runs = api
                .get(&format!("/api/projects/{id}/runs?limit=200"))
                .await?;
            out.push((
                p.clone(),
                runs["runs"].as_array().cloned().unwrap_or_default(),
            ));
        }
        if page["next_offset"].is_null() {
            return Ok(out);
        }
        offset += 200;
    }
}

fn terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// Checks one version's snapshot: every object present and matching its
/// checksum (load_tree verifies), and a restore into a fresh sandbox equal to it.
async fn check_snapshot(blobs: &dyn BlobStore, project: &str, key: &str) -> anyhow::Result<()> {
    let tree = apna::snapshot::load_tree(blobs, key)
        .await
        .with_context(|| format!("snapshot {key} of {project}"))?;
    let sandbox = MemorySandbox::new(project);
    apna::snapshot::restore(blobs, &sandbox, key).await?;
    let back = sandbox.export_source().await?;
    if back != tree {
        bail!("snapshot {key} of {project} did not restore byte-identical");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    serve_if_child();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let trials = if bench_mode {
        env_count("APNA_CRASH_TRIALS", 50)
    } else {
        2
    };
    let seed = env_count("APNA_CRASH_SEED", 20261129) as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Installs the template once (npm ci) if this machine has not yet.
    let template = apna::testing::local::template().await;
    let mock = MockAnthropic::start(script(trials * 4 + 20)).await?;
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let data = work.path().join("data");
    let log = work.path().join("apna.log");
    let root = repo_root();
    let envs: Vec<(&str, String)> = vec![
        ("APNA_DATA_DIR", data.display().to_string()),
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
        ("APNA_MAX_ACTIVE_RUNS", "50".into()),
        // Hibernate projects idle for ~2 s, sweeping every ~2 s.
        ("POD_TTL_HOURS", "0.0006".into()),
        ("CLEANUP_INTERVAL_MINUTES", "0.035".into()),
    ];
    drop(template);
    let blobs = apna::blob::FsBlobStore::new(data.join("blobs")).await?;
    let blobs: Arc<dyn BlobStore> = Arc::new(blobs);
    let client = reqwest::Client::builder().no_proxy().build()?;

    let mut recoveries = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut checked_snapshots: HashSet<String> = HashSet::new();
    let mut actions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut interrupted: HashSet<String> = HashSet::new();
    let started = Instant::now();
    for trial in 0..trials {
        let server = ServerProcess::start(&envs, &log, Duration::from_secs(120))
            .with_context(|| format!("trial {trial}: restart"))?;
        let api = Api {
            client: client.clone(),
            base: server.url(),
        };
        // Recovery: every run terminal, nothing building.
        let projects = loop {
            let s = state(&api).await?;
            let busy = s.iter().any(|(p, runs)| {
                matches!(p["status"].as_str(), Some("creating" | "building"))
                    || runs
                        .iter()
                        .any(|r| !terminal(r["status"].as_str().unwrap_or("")))
            });
            if !busy {
                break s;
            }
            if server.started.elapsed() > RECOVERY_BOUND {
                bail!("trial {trial}: runs still not terminal after {RECOVERY_BOUND:?}: {s:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let recovery = server.started.elapsed();
        recoveries.push(recovery.as_secs_f64());
        // What became of the runs the last crash interrupted.
        for (_, runs) in &projects {
            for r in runs {
                if interrupted.contains(r["id"].as_str().unwrap_or_default()) {
                    let status = r["status"].as_str().unwrap_or("?").to_string();
                    *outcomes.entry(status).or_default() += 1;
                }
            }
        }
        // Snapshots of every version, each checked once.
        for (p, _) in &projects {
            let id = p["id"].as_str().unwrap_or_default();
            let versions = api.get(&format!("/api/projects/{id}/versions")).await?;
            for v in versions["versions"].as_array().cloned().unwrap_or_default() {
                let key = v["snapshot_key"].as_str().unwrap_or_default().to_string();
                if checked_snapshots.insert(key.clone()) {
                    check_snapshot(&*blobs, id, &key).await?;
                }
            }
        }
        // The next chat is accepted (a hibernation or wake may hold the lock briefly).
        if let Some((p, _)) = projects.get(rng.gen_range(0..projects.len().max(1))) {
            let id = p["id"].as_str().unwrap_or_default();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (status, body) = api
                    .post(
                        &format!("/api/projects/{id}/chat"),
                        Some(json!({"message": format!("trial {trial}: change the heading")})),
                    )
                    .await?;
                match status {
                    202 => break,
                    409 | 503 if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    _ => bail!("trial {trial}: chat refused: {status} {body}"),
                }
            }
            *actions.entry("chat").or_default() += 1;
        }
        // Something else going on, then the crash at a random moment.
        match rng.gen_range(0..4) {
            0 => {
                let (status, body) = api
                    .post(
                        "/api/projects",
                        Some(json!({"prompt": format!("crash test page {trial}")})),
                    )
                    .await?;
                if status != 202 {
                    bail!("trial {trial}: create refused: {status} {body}");
                }
                *actions.entry("create").or_default() += 1;
            }
            1 => {
                // Opening a hibernated project wakes it.
                if let Some((p, _)) = projects.iter().find(|(p, _)| p["status"] == "hibernated") {
                    api.get(&format!(
                        "/api/projects/{}",
                        p["id"].as_str().unwrap_or_default()
                    ))
                    .await?;
                    *actions.entry("wake").or_default() += 1;
                }
            }
            2 => {
                if let Some((p, _)) = projects.iter().find(|(p, _)| {
                    p["latest_version"].as_i64().unwrap_or(0) >= 1 && p["id"] != projects[0].0["id"]
                }) {
                    let id = p["id"].as_str().unwrap_or_default();
                    let _ = api
                        .post(&format!("/api/projects/{id}/versions/1/restore"), None)
                        .await?;
                    *actions.entry("restore").or_default() += 1;
                }
            }
            _ => {}
        }
        let wait = Duration::from_millis(rng.gen_range(0..4000));
        tokio::time::sleep(wait).await;
        let before = state(&api).await.unwrap_or_default();
        interrupted = before
            .iter()
            .flat_map(|(_, runs)| runs.iter())
            .filter(|r| !terminal(r["status"].as_str().unwrap_or("")))
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        server.kill9();
        eprintln!(
            "trial {trial}: recovered in {:.2} s; killed after {:.1} s with {} run(s) in progress",
            recovery.as_secs_f64(),
            wait.as_secs_f64(),
            interrupted.len()
        );
    }
    recoveries.sort_by(|a, b| a.total_cmp(b));
    // One last restart: the runs of the last crash end too.
    let (projects, runs) = {
        let server = ServerProcess::start(&envs, &log, Duration::from_secs(120))?;
        let api = Api {
            client: client.clone(),
            base: server.url(),
        };
        let s = loop {
            let s = state(&api).await?;
            if s.iter().all(|(_, runs)| {
                runs.iter()
                    .all(|r| terminal(r["status"].as_str().unwrap_or("")))
            }) {
                break s;
            }
            if server.started.elapsed() > RECOVERY_BOUND {
                bail!("after the last crash, runs still not terminal");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for (_, runs) in &s {
            for r in runs {
                if interrupted.contains(r["id"].as_str().unwrap_or_default()) {
                    *outcomes
                        .entry(r["status"].as_str().unwrap_or("?").to_string())
                        .or_default() += 1;
                }
            }
        }
        (s.len(), s.iter().map(|(_, r)| r.len()).sum::<usize>())
    };
    println!(
        "crash_recovery: {trials} trials (seed {seed}) in {:.0} s; {projects} projects, {runs} runs, {} snapshots checked; actions {actions:?}",
        started.elapsed().as_secs_f64(),
        checked_snapshots.len()
    );
    println!("interrupted runs, after restart: {outcomes:?}");
    println!(
        "recovery (restart → every run terminal): p50 {:.2} s, p95 {:.2} s, worst {:.2} s",
        percentile(&recoveries, 50.0),
        percentile(&recoveries, 95.0),
        recoveries.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
