//! `apna sandboxd` over loopback HTTP against the in-process local driver,
//! side by side in one run: p50/p95 of reading 1 KiB, writing 1 KiB and
//! 1 MiB, `exec true`, and export + import of the template.
//!
//! Both sides are the same `Workspace` code with the same isolation (none:
//! sandboxd has no bubblewrap in a pod), so the difference is what the HTTP
//! hop costs: `RemoteSandbox` → `DirectTransport` (reqwest) → TCP on
//! 127.0.0.1 → sandboxd's axum router → the workspace. The server runs in
//! this process on its own runtime thread pool (the wire, the serialisation
//! and the tar are the same as with the binary; a separate process would add
//! only scheduling). With bubblewrap installed, one more row gives the local
//! driver's default `exec true` for reference.
//!
//! Run: `cargo bench -p apna --bench sandboxd` (`APNA_BENCH_ROUNDS`, default
//! 200 for files, a quarter of that for exec and export + import).

use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::sandbox::local::{Isolation, LocalOptions, LocalProvider};
use apna::sandbox::remote::{DirectTransport, RemoteSandbox};
use apna::sandbox::sandboxd::{self, SandboxdOptions};
use apna::sandbox::{ExecRequest, ProjectPath, Sandbox};
use apna::testing::bench::{bench_rounds, percentile};
use apna::testing::local::{image_templates_dir, template, templates};

/// p50 and p95 in milliseconds of `rounds` runs of `op` on each sandbox,
/// interleaved (alternating which goes first) so that load from elsewhere on
/// the machine falls on both alike.
async fn compare<F, Fut>(rounds: usize, sbs: &[Arc<dyn Sandbox>; 2], op: F) -> [(f64, f64); 2]
where
    F: Fn(Arc<dyn Sandbox>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // One unmeasured round warms connections and caches.
    for sb in sbs {
        op(sb.clone()).await;
    }
    let mut samples = [Vec::with_capacity(rounds), Vec::with_capacity(rounds)];
    for i in 0..rounds {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let started = Instant::now();
            op(sbs[k].clone()).await;
            samples[k].push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    samples.map(|mut v| {
        v.sort_by(|a, b| a.total_cmp(b));
        (percentile(&v, 50.0), percentile(&v, 95.0))
    })
}

fn exec_true() -> ExecRequest {
    ExecRequest {
        command: "true".into(),
        timeout: Duration::from_secs(10),
        max_output: 1024,
    }
}

/// Every measured operation on both sandboxes: (name, [local, sandboxd]).
async fn run_all(
    sbs: [Arc<dyn Sandbox>; 2],
    rounds: usize,
) -> Vec<(&'static str, [(f64, f64); 2])> {
    let tpl = template().await.files;
    let path = ProjectPath::parse("src/bench.txt").unwrap();
    let big_path = ProjectPath::parse("src/bench-big.bin").unwrap();
    let small = Arc::new(vec![b'k'; 1024]);
    let big: Arc<Vec<u8>> = Arc::new((0..1024 * 1024).map(|i| (i % 251) as u8).collect());
    for sb in &sbs {
        sb.import_source(&tpl).await.unwrap();
        sb.write_file(&path, &small).await.unwrap();
    }
    let few = (rounds / 4).max(1);
    let mut out = Vec::new();
    let p = &path;
    out.push((
        "read 1 KiB",
        compare(rounds, &sbs, |sb| async move {
            assert_eq!(sb.read_file(p).await.unwrap().len(), 1024);
        })
        .await,
    ));
    let data = &small;
    out.push((
        "write 1 KiB",
        compare(rounds, &sbs, |sb| async move {
            sb.write_file(p, data).await.unwrap()
        })
        .await,
    ));
    let (bp, data) = (&big_path, &big);
    out.push((
        "write 1 MiB",
        compare(few, &sbs, |sb| async move {
            sb.write_file(bp, data).await.unwrap()
        })
        .await,
    ));
    out.push((
        "exec `true`",
        compare(few, &sbs, |sb| async move {
            assert_eq!(sb.exec(&exec_true()).await.unwrap().exit_code, Some(0));
        })
        .await,
    ));
    for sb in &sbs {
        sb.delete_file(&big_path).await.unwrap();
        sb.delete_file(&path).await.unwrap();
    }
    out.push((
        "export + import (template)",
        compare(few, &sbs, |sb| async move {
            let tree = sb.export_source().await.unwrap();
            sb.import_source(&tree).await.unwrap();
        })
        .await,
    ));
    out
}

/// sandboxd on a free loopback port, on its own runtime (as a separate
/// server would be), serving a workspace laid out as in the image.
fn start_sandboxd(dir: &std::path::Path, token: &str) -> std::net::SocketAddr {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let template_dir = rt.block_on(image_templates_dir(&dir.join("templates")));
    let opts = SandboxdOptions {
        workspace: dir.join("workspace"),
        templates: template_dir,
        starter: apna::domain::DEFAULT_TEMPLATE.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        dev_server: "127.0.0.1:0".parse().unwrap(),
        hmr_client_port: None,
        ui_origins: Vec::new(),
        state_dir: dir.join("state"),
        token: token.into(),
        project_id: Some("bench".into()),
        chromium: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let ws = sandboxd::open_workspace(&opts).await.unwrap();
            let listener = tokio::net::TcpListener::bind(opts.listen).await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, sandboxd::router(ws, &opts.token))
                .await
                .unwrap();
        })
    });
    rx.recv().unwrap()
}

fn main() {
    let (rounds, _) = bench_rounds("APNA_BENCH_ROUNDS", 200, "APNA_BENCH_UNUSED", 0);
    let dir = tempfile::tempdir().unwrap();
    let token = "bench-token";
    let addr = start_sandboxd(dir.path(), token);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let data = dir.path().join("local");
        let local = LocalProvider::new(LocalOptions {
            data_dir: data.clone(),
            templates: templates().await,
            hmr_client_port: None,
            ui_origins: Vec::new(),
            isolation: Some(Isolation::None),
            max_project_mb: 500,
            browser: Default::default(),
            warm_spares: 1,
            max_builds: 2,
                verify_build: false,
        })
        .unwrap();
        local.set_warm_spare(false).await;
        let transport = DirectTransport::new(&format!("http://{addr}")).unwrap();
        let remote: Arc<dyn Sandbox> =
            Arc::new(RemoteSandbox::new("bench", Arc::new(transport), token.into()));
        let rows = run_all([Arc::new(local.local("bench-local").unwrap()), remote], rounds).await;
        println!(
            "\nsandboxd over loopback vs the in-process local driver ({rounds} rounds; {} for 1 MiB, exec, export + import)\n",
            (rounds / 4).max(1)
        );
        println!("| operation | local p50 | local p95 | sandboxd p50 | sandboxd p95 | sandboxd p50 − local p50 |");
        println!("|---|---|---|---|---|---|");
        for (name, [l, r]) in &rows {
            println!(
                "| {name} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:+.3} ms |",
                l.0,
                l.1,
                r.0,
                r.1,
                r.0 - l.0
            );
        }
        if matches!(Isolation::detect(), Isolation::Bubblewrap { .. }) {
            let bw = LocalProvider::new(LocalOptions {
                data_dir: dir.path().join("local-bwrap"),
                templates: templates().await,
                hmr_client_port: None,
                ui_origins: Vec::new(),
                isolation: None,
                max_project_mb: 500,
                browser: Default::default(),
                warm_spares: 1,
                max_builds: 2,
                verify_build: false,
            })
            .unwrap();
            bw.set_warm_spare(false).await;
            let sb: Arc<dyn Sandbox> = Arc::new(bw.local("bench-bwrap").unwrap());
            sb.import_source(&template().await.files).await.unwrap();
            let [(p50, p95), _] = compare((rounds / 4).max(1), &[sb.clone(), sb], |sb| async move {
                sb.exec(&exec_true()).await.unwrap();
            })
            .await;
            println!("\nreference: local driver's default `exec true` under bubblewrap: p50 {p50:.3} ms, p95 {p95:.3} ms");
        }
        local.stop_all().await;
    });
}
