//! Create → preview ready, local driver vs the seed's approach, in one run.
//!
//! "Ready" means: `GET /` answers 200 through the preview proxy and the app's
//! main module `/src/main.tsx` is served (200). The seed copied the template
//! without node_modules, ran `npm install` and started Vite; that is measured
//! side by side (npm's cache is warm, which favours the seed).
//!
//! Run: `cargo bench -p apna --bench create_to_ready` (env
//! `APNA_BENCH_CREATES`, default 10, and `APNA_BENCH_SEED_CREATES`, default 3).
//! The `app` starter (the default) and `minimal` (the template before
//! starters) are measured side by side, each with its own warm spare.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::preview::{PreviewProxy, SandboxPreviewBackend};
use apna::sandbox::local::template::bundled_templates_dir;
use apna::sandbox::{Sandbox, SandboxProvider};
use apna::testing::bench::*;
use apna::testing::local::*;

/// Polls until `path` answers 200 (through the proxy when `host` is a preview host).
async fn until_ok(addr: SocketAddr, host: &str, path: &str, deadline: Instant) {
    loop {
        if let Ok(Ok((200, _))) =
            tokio::time::timeout(Duration::from_secs(5), try_get(addr, host, path)).await
        {
            return;
        }
        assert!(Instant::now() < deadline, "{host}{path} never became ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn try_get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    // A refused connection is expected while a server starts: don't panic.
    tokio::net::TcpStream::connect(addr).await?;
    Ok(get(addr, host, path).await)
}

async fn seed_create(i: usize, dir: &Path) -> f64 {
    let started = Instant::now();
    let project = dir.join(format!("seed-{i}"));
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mkdir -p {p} && tar -C {t} --exclude=./node_modules --exclude=./.vite -cf - . | tar -C {p} -xf - \
             && cd {p} && npm install --no-audit --no-fund --loglevel=error",
            p = project.display(),
            t = bundled_templates_dir().join("app").display()
        ))
        .output()
        .await
        .expect("npm install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut vite = tokio::process::Command::new("node")
        .arg(project.join("node_modules/vite/bin/vite.js"))
        .current_dir(&project)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("vite");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    until_ok(addr, "127.0.0.1", "/", deadline).await;
    until_ok(addr, "127.0.0.1", "/src/main.tsx", deadline).await;
    let secs = started.elapsed().as_secs_f64();
    let _ = vite.kill().await;
    secs
}

/// One provider whose default starter (and so warm spare) is `starter`,
/// behind its own preview proxy: (provider, proxy address, proxy port).
async fn provider_for(
    data: &Path,
    starter: &str,
) -> (apna::sandbox::local::LocalProvider, SocketAddr, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut templates = templates().await;
    let i = templates
        .starters
        .iter()
        .position(|t| t.name == starter)
        .unwrap();
    let t = templates.starters.remove(i);
    templates.starters.insert(0, t);
    let provider = apna::sandbox::local::LocalProvider::new(apna::sandbox::local::LocalOptions {
        data_dir: data.to_path_buf(),
        templates,
        hmr_client_port: Some(port),
        ui_origins: Vec::new(),
        isolation: None,
        max_project_mb: 500,
        browser: Default::default(),
        warm_spares: 1,
        max_builds: 2,
        verify_build: false,
    })
    .unwrap();
    let shared: Arc<dyn SandboxProvider> = Arc::new(provider.clone());
    let proxy = PreviewProxy::new(Arc::new(SandboxPreviewBackend::new(shared)), None);
    let addr = serve_proxy(listener, proxy).await;
    (provider, addr, port)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (creates, seed_creates) =
        bench_rounds("APNA_BENCH_CREATES", 10, "APNA_BENCH_SEED_CREATES", 3);
    // `app` is the default starter; `minimal` is the template as it was
    // before starters. Each gets a provider whose warm spare runs it, and
    // their creates alternate, so both see the same machine load.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut setups = Vec::new();
    for (starter, dir) in ["app", "minimal"].into_iter().zip(&dirs) {
        let (provider, addr, port) = provider_for(dir.path(), starter).await;
        setups.push((starter, provider, addr, port));
    }
    println!("isolation: {:?}", setups[0].1.isolation());

    // Cold: every create starts Vite. Warm: a create adopts the running spare
    // (bubblewrap only); the bench waits for the next spares between creates,
    // as a person's creates are seconds apart.
    let mut runs: Vec<(String, Vec<f64>)> = Vec::new();
    for warm in [false, true] {
        for (_, provider, _, _) in &setups {
            provider.set_warm_spare(warm).await;
        }
        let mut times = vec![Vec::new(); setups.len()];
        let mut available = true;
        for i in 0..creates {
            for (k, (starter, provider, addr, port)) in setups.iter().enumerate() {
                if warm {
                    for (_, p, _, _) in &setups {
                        available &= p.wait_spare_ready(Duration::from_secs(60)).await;
                    }
                    if !available {
                        break;
                    }
                }
                let label = if warm { "warm" } else { "cold" };
                let id = format!("bench-{starter}-{label}-{i}");
                let host = format!("{id}.localhost:{port}");
                let sb = provider.local(&id).unwrap();
                let started = Instant::now();
                sb.ensure_from(starter).await.unwrap();
                let deadline = Instant::now() + Duration::from_secs(60);
                until_ok(*addr, &host, "/", deadline).await;
                until_ok(*addr, &host, "/src/main.tsx", deadline).await;
                let secs = started.elapsed().as_secs_f64();
                times[k].push(secs);
                println!("{starter} {label} create {i:2}: {secs:.3} s");
                sb.destroy().await.unwrap();
            }
        }
        if warm && !available {
            println!("warm spare: unavailable (no bubblewrap)");
            continue;
        }
        for ((starter, ..), t) in setups.iter().zip(times) {
            runs.push((
                format!("{starter} {}", if warm { "warm" } else { "cold" }),
                t,
            ));
        }
    }
    for (_, provider, _, _) in &setups {
        provider.set_warm_spare(false).await;
    }

    let mut seed = Vec::new();
    let seed_dir = tempfile::tempdir().unwrap();
    for i in 0..seed_creates {
        let secs = seed_create(i, seed_dir.path()).await;
        println!("seed  {i:2}: {:.3} s", secs);
        seed.push(secs);
    }

    seed.sort_by(f64::total_cmp);
    let seed_p50 = (!seed.is_empty()).then(|| percentile(&seed, 50.0));
    if let Some(s50) = seed_p50 {
        println!(
            "seed approach (copy + npm install + vite): p50 {s50:.3} s, p95 {:.3} s over {} creates",
            percentile(&seed, 95.0),
            seed.len()
        );
    }
    for (label, mut times) in runs {
        times.sort_by(f64::total_cmp);
        let (p50, p95) = (percentile(&times, 50.0), percentile(&times, 95.0));
        println!(
            "local driver ({label}): create → preview ready: p50 {p50:.3} s, p95 {p95:.3} s over {} creates; target p50 ≤ 0.500 s {}",
            times.len(),
            if p50 <= 0.5 { "met" } else { "missed" }
        );
        if let Some(s50) = seed_p50 {
            println!("  ratio seed p50 / {label} p50: {:.1}x", s50 / p50);
        }
    }
    for (_, provider, _, _) in &setups {
        provider.stop_all().await;
    }
}
