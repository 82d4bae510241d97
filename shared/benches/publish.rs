//! Publishing the template app for real — `vite build` of the version's
//! snapshot in a local sandbox, upload under the deploy's prefix, check of
//! every file, the flip — and time to first byte of the published page from
//! `apna serve`'s router on a loopback socket.
//!
//! Run: `cargo bench -p apna --bench publish` (env `APNA_BENCH_PUBLISHES`,
//! default 5; `APNA_BENCH_TTFB`, default 300 requests).

use std::time::{Duration, Instant};

use apna::publish::{PublishJob, PublishRequest};
use apna::sandbox::ProjectPath;
use apna::testing::bench::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (publishes, _) = bench_rounds("APNA_BENCH_PUBLISHES", 5, "-", 0);
    let requests = if publishes > 1 {
        env_count("APNA_BENCH_TTFB", 300)
    } else {
        20
    };
    let data = tempfile::tempdir().unwrap();
    let apna::testing::local::LocalApp {
        provider,
        store,
        blobs,
        backends,
        workflow,
        state,
        project,
        sandbox: sb,
    } = apna::testing::local::app_with_project(data.path(), "Bench App").await;

    let mut totals = Vec::new();
    let mut builds = Vec::new();
    let mut flips = Vec::new();
    let mut last = None;
    for round in 0..publishes {
        // A new version each round, so each publish builds.
        let app = format!(
            "export default function App() {{\n  return <h1 className=\"text-3xl font-bold text-indigo-600\">Published {round}</h1>\n}}\n"
        );
        sb.write_file(&ProjectPath::parse("src/App.tsx").unwrap(), app.as_bytes())
            .await
            .unwrap();
        let version =
            apna::snapshot::record_version(&*store, &*blobs, &*sb, &project.id, None, "bench")
                .await
                .unwrap();
        apna::publish::start(
            &state,
            &store.get_project(&project.id).await.unwrap().unwrap(),
            PublishRequest {
                version: Some(version.number),
                slug: Some("bench-app".into()),
            },
        )
        .await
        .unwrap();
        let job: PublishJob =
            serde_json::from_value(workflow.starts.lock().unwrap().last().unwrap().2.clone())
                .unwrap();
        let t = Instant::now();
        let deploy = apna::publish::build(&backends, &job).await.unwrap();
        let built = t.elapsed();
        apna::publish::activate(&backends, &job, &deploy)
            .await
            .unwrap();
        let total = t.elapsed();
        totals.push(total.as_secs_f64());
        builds.push(built.as_secs_f64());
        flips.push((total - built).as_secs_f64());
        last = Some((version, deploy));
    }
    let (version, deploy) = last.unwrap();
    totals.sort_by(f64::total_cmp);
    builds.sort_by(f64::total_cmp);
    flips.sort_by(f64::total_cmp);
    println!(
        "publish of the template app, {publishes} rounds: p50 {:.2} s (build + upload + verify {:.2} s, flip {:.3} s), max {:.2} s",
        percentile(&totals, 50.0),
        percentile(&builds, 50.0),
        percentile(&flips, 50.0),
        totals.last().unwrap()
    );

    // Sizes: the version's source (as stored) against the published site.
    let manifest = apna::snapshot::read_manifest(&*blobs, &version.snapshot_key)
        .await
        .unwrap();
    let source: u64 = manifest.files.iter().map(|f| f.size).sum();
    let stored: u64 = {
        let mut seen = std::collections::HashSet::new();
        manifest
            .files
            .iter()
            .filter(|f| seen.insert(f.sha256.clone()))
            .map(|f| f.stored_size)
            .sum()
    };
    let site = apna::publish::deploy::load(&*blobs, &project.id, "bench-app", &deploy)
        .await
        .unwrap()
        .unwrap();
    println!(
        "sizes: snapshot {} files, {:.1} KB of source ({:.1} KB stored, zstd); published {} files, {:.1} KB",
        manifest.files.len(),
        source as f64 / 1024.0,
        stored as f64 / 1024.0,
        site.files.len(),
        site.bytes() as f64 / 1024.0
    );

    // TTFB from apna serve's router on loopback, one keep-alive connection.
    let router = apna::server::app_router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let script = site
        .files
        .iter()
        .find(|f| f.path.ends_with(".js"))
        .map(|f| format!("/_apna/{deploy}/{}", f.path))
        .unwrap();
    for (what, path, encoding) in [
        ("index.html (deep link)", "/habits/today", "identity"),
        ("index.html, gzip", "/", "gzip"),
        ("app script, brotli", script.as_str(), "br"),
    ] {
        let mut samples = Vec::with_capacity(requests);
        let mut bytes = 0;
        for _ in 0..requests {
            let req = http::Request::builder()
                .uri(path)
                .header("host", format!("bench-app.apps.localhost:{}", addr.port()))
                .header("accept-encoding", encoding)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            sender.ready().await.unwrap();
            let t = Instant::now();
            let resp = sender.send_request(req).await.unwrap();
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(resp.status(), 200, "{path}");
            bytes = resp.into_body().collect().await.unwrap().to_bytes().len();
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "TTFB {what}: p50 {:.2} ms, p95 {:.2} ms over {requests} requests ({bytes} bytes sent)",
            percentile(&samples, 50.0),
            percentile(&samples, 95.0)
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    provider.stop_all().await;
}
