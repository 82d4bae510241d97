//! Wake → preview ready: a hibernated project restored from its snapshot
//! into a fresh local sandbox until the preview proxy serves its App module,
//! side by side with the seed's resume (extract the whole-folder tar.gz with
//! node_modules, start Vite).
//!
//! Run: `cargo bench -p apna --bench wake` (env `APNA_BENCH_WAKES`, default 10,
//! `APNA_BENCH_SEED_WAKES`, default 3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::blob::FsBlobStore;
use apna::domain::{Project, ProjectStatus};
use apna::preview::{PreviewProxy, SandboxPreviewBackend};
use apna::sandbox::{ProjectPath, Sandbox, SandboxProvider};
use apna::store::{SqliteStore, Store};
use apna::testing::bench::*;
use apna::testing::local::*;

async fn until_body(addr: SocketAddr, host: &str, path: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            if let Ok((200, body)) =
                tokio::time::timeout(Duration::from_secs(5), get(addr, host, path)).await
            {
                if body.contains(needle) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{host}{path} never served {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const APP: &str = "export default function App() {\n  return <h1 className=\"text-3xl\">Woken Up Intact</h1>\n}\n";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (wakes, seed_wakes) = bench_rounds("APNA_BENCH_WAKES", 10, "APNA_BENCH_SEED_WAKES", 3);
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider = provider(data.path(), Some(port)).await;
    let shared: Arc<dyn SandboxProvider> = Arc::new(provider.clone());
    let proxy = PreviewProxy::new(Arc::new(SandboxPreviewBackend::new(shared.clone())), None);
    let addr = serve_proxy(listener, proxy).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    let blobs = FsBlobStore::new(data.path().join("blobs")).await.unwrap();

    // As in `apna serve`: a warm spare (bubblewrap only) that a wake can adopt;
    // the bench waits for the next one, as wakes are seconds apart in use.
    provider.set_warm_spare(true).await;
    let warm = provider.wait_spare_ready(Duration::from_secs(60)).await;
    println!(
        "warm spare: {}",
        if warm {
            "on"
        } else {
            "unavailable (no bubblewrap)"
        }
    );
    let mut times = Vec::new();
    for i in 0..wakes {
        // A ready project with its own App, snapshotted and hibernated.
        let mut p = Project::new(
            "bench",
            &format!("wake {i}"),
            apna::domain::DEFAULT_TEMPLATE,
        );
        p.status = ProjectStatus::Ready;
        store.create_project(&p).await.unwrap();
        let sb = provider.local(&p.id).unwrap();
        sb.ensure().await.unwrap();
        sb.write_file(&ProjectPath::parse("src/App.tsx").unwrap(), APP.as_bytes())
            .await
            .unwrap();
        let out = apna::snapshot::hibernate_project(&*store, &blobs, &*shared, &p.id)
            .await
            .unwrap();
        assert!(
            matches!(out, apna::snapshot::HibernateOutcome::Hibernated { .. }),
            "{out:?}"
        );

        if warm {
            provider.wait_spare_ready(Duration::from_secs(60)).await;
        }
        let host = format!("{}.localhost:{port}", p.id);
        let started = Instant::now();
        apna::snapshot::wake_project(&*store, &blobs, &*shared, &p.id)
            .await
            .unwrap();
        until_body(addr, &host, "/src/App.tsx", "Woken Up Intact").await;
        let secs = started.elapsed().as_secs_f64();
        println!("wake {i:2}: {secs:.3} s");
        times.push(secs);
        provider.local(&p.id).unwrap().destroy().await.unwrap();
    }

    // The seed: a whole-folder tar.gz (node_modules included) restored and Vite started.
    let mut seed = Vec::new();
    if seed_wakes > 0 {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        let nm = template().await.node_modules;
        let template = apna::sandbox::local::template::bundled_templates_dir().join("app");
        let script = format!(
            "mkdir -p {p} && tar -C {t} --exclude=./node_modules -cf - . | tar -C {p} -xf - && cp -r {nm} {p}/node_modules \
             && printf '%s' '{app}' > {p}/src/App.tsx && tar -C {p} -czf {d}/snapshot.tar.gz . && rm -rf {p}",
            p = project.display(), t = template.display(), nm = nm.display(), d = dir.path().display(),
            app = APP.replace('\'', "")
        );
        let ok = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .await
            .unwrap();
        assert!(ok.success());
        for i in 0..seed_wakes {
            let target = dir.path().join(format!("wake-{i}"));
            let started = Instant::now();
            let ok = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "mkdir -p {t} && tar -C {t} -xzf {d}/snapshot.tar.gz",
                    t = target.display(),
                    d = dir.path().display()
                ))
                .status()
                .await
                .unwrap();
            assert!(ok.success());
            let vport = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut vite = tokio::process::Command::new("node")
                .arg(target.join("node_modules/vite/bin/vite.js"))
                .current_dir(&target)
                .env("PORT", vport.to_string())
                .env("HOST", "127.0.0.1")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let vaddr: SocketAddr = format!("127.0.0.1:{vport}").parse().unwrap();
            until_body(vaddr, "127.0.0.1", "/src/App.tsx", "Woken Up Intact").await;
            let secs = started.elapsed().as_secs_f64();
            println!("seed wake {i:2}: {secs:.3} s");
            seed.push(secs);
            let _ = vite.kill().await;
        }
    }

    times.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&times, 50.0), percentile(&times, 95.0));
    println!(
        "wake → preview ready: p50 {p50:.3} s, p95 {p95:.3} s over {} wakes; target p50 ≤ 1.000 s {}",
        times.len(),
        if p50 <= 1.0 { "met" } else { "missed" }
    );
    if !seed.is_empty() {
        seed.sort_by(f64::total_cmp);
        let s50 = percentile(&seed, 50.0);
        println!("seed resume (whole-folder tar.gz + vite): p50 {s50:.3} s over {} wakes; ratio seed/apna {:.1}x", seed.len(), s50 / p50);
    }
    provider.stop_all().await;
}
