//! Issue #16, density: what a project costs awake, asleep, and coming back,
//! and what Node flags do to one Vite dev server.
//!
//! Phases (env `APNA_BENCH_PHASES`, comma-separated, default all):
//!
//! * `flags`: one dev server of the default starter per set of Node flags
//!   (warm spare off, `APNA_BENCH_FLAG_ROUNDS` rounds each, default 3): its
//!   process tree's RSS and PSS once ready, and after a page load (every
//!   module the page imports fetched through the preview proxy, as a
//!   browser would), with the time to ready and the page load's time.
//! * `sleep`: `apna serve`'s parts in this process (API, proxy, light-sleep
//!   timer; `APNA_PREVIEW_IDLE_MINUTES` from `APNA_BENCH_IDLE_MINUTES`,
//!   default 0.1): one project viewed (page loaded, HMR socket open), then
//!   left alone until it sleeps — its process tree before and after.
//! * `wake`: a project with its own App (and a starter file deleted) put to
//!   sleep and requested again `APNA_BENCH_WAKES` times (default 20) per
//!   series (`APNA_BENCH_WAKE_SERIES`, default `ready,back-to-back,off`):
//!   `ready` waits for a ready warm spare before each wake (what a sleeping
//!   user's wake, minutes after the last, finds); `back-to-back` wakes 0.5 s
//!   after the last, so the spare may not be back yet; `off` turns the warm
//!   spare off (every wake a cold Vite start, as before the hand-over). Times
//!   from the first preview request to the first 200 of the app's page, and
//!   to the project's own App module, through the proxy, split by how each
//!   woke (on the spare or cold).
//! * `hundred`: `APNA_BENCH_PROJECTS` projects (default 100) created one
//!   after another from the starter (store + the sandbox's `ensure`, what a
//!   run's EnsureSandbox does; no model), each page loaded once, then left
//!   idle: total RSS/PSS of this process and every sandbox process, at the
//!   peak and once all sleep.
//!
//! Memory is summed over a process tree from `/proc` (RSS: `VmRSS`; PSS:
//! `smaps_rollup`, which splits shared pages among their users, so the sum
//! over many processes is not inflated by Node's shared text).
//!
//! Run: `cargo bench -p apna --bench light_sleep --profile dev`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::domain::{User, LOCAL_USER};
use apna::preview::{PreviewProxy, SandboxPreviewBackend};
use apna::sandbox::local::{wait_ready, LocalOptions, LocalProvider};
use apna::sandbox::{Sandbox, SandboxProvider, SandboxState};
use apna::testing::bench::*;
use apna::testing::fixtures::{ready_project, server_config};
use apna::testing::local::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Memory of a set of processes, in KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Mem {
    procs: usize,
    rss_kb: u64,
    pss_kb: u64,
}

impl Mem {
    fn mb(kb: u64) -> f64 {
        kb as f64 / 1024.0
    }
    fn show(&self) -> String {
        format!(
            "{} proc, RSS {:.0} MB, PSS {:.0} MB",
            self.procs,
            Self::mb(self.rss_kb),
            Self::mb(self.pss_kb)
        )
    }
}

fn parents() -> HashMap<u32, u32> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        if let Some(ppid) = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse().ok())
        {
            out.insert(pid, ppid);
        }
    }
    out
}

/// `root` and all its descendants.
fn tree(root: u32) -> Vec<u32> {
    let parents = parents();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in &parents {
        children.entry(*ppid).or_default().push(*pid);
    }
    let mut out = vec![root];
    let mut queue = VecDeque::from([root]);
    while let Some(p) = queue.pop_front() {
        for c in children.get(&p).into_iter().flatten() {
            out.push(*c);
            queue.push_back(*c);
        }
    }
    out
}

fn field_kb(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mem_of(pids: &[u32]) -> Mem {
    let mut m = Mem::default();
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        m.procs += 1;
        m.rss_kb += field_kb(&status, "VmRSS:");
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        m.pss_kb += field_kb(&rollup, "Pss:");
    }
    m
}

/// Loads the app's page as a browser would: `/`, then every module it
/// imports, transitively. Returns how many were fetched.
async fn load_page(addr: SocketAddr, host: &str) -> usize {
    let quoted = regex::Regex::new(
        r#"["'](/(?:src/|node_modules/|@vite/|@react-refresh|@id/|@fs/)[^"'\s]*)["']"#,
    )
    .unwrap();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue = VecDeque::from(["/".to_string()]);
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) || seen.len() > 800 {
            continue;
        }
        let (status, body) = get(addr, host, &path).await;
        if status != 200 {
            continue;
        }
        for c in quoted.captures_iter(&body) {
            let p = c[1].to_string();
            if !seen.contains(&p) {
                queue.push_back(p);
            }
        }
    }
    seen.len()
}

/// Opens Vite's HMR socket through the proxy, as an open tab holds it.
async fn open_hmr(addr: SocketAddr, host: &str) -> tokio::net::TcpStream {
    let (_, client) = get(addr, host, "/@vite/client").await;
    let token = client
        .split("const wsToken = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /?token={token} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: vite-hmr\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101", "HMR upgrade refused");
    s
}

fn phases() -> Vec<String> {
    std::env::var("APNA_BENCH_PHASES")
        .unwrap_or_else(|_| "flags,sleep,wake,hundred".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

async fn flags_phase() {
    let rounds = env_count("APNA_BENCH_FLAG_ROUNDS", 3);
    let only = std::env::var("APNA_BENCH_FLAGS_ONLY").ok();
    let mut variants: Vec<(&str, Vec<&str>)> = vec![
        ("none (today)", vec![]),
        ("--max-semi-space-size=1", vec!["--max-semi-space-size=1"]),
        ("--max-semi-space-size=2", vec!["--max-semi-space-size=2"]),
        ("--max-old-space-size=256", vec!["--max-old-space-size=256"]),
        ("--optimize-for-size", vec!["--optimize-for-size"]),
        (
            "--max-semi-space-size=1 --max-old-space-size=256",
            vec!["--max-semi-space-size=1", "--max-old-space-size=256"],
        ),
        (
            "--max-semi-space-size=1 --optimize-for-size",
            vec!["--max-semi-space-size=1", "--optimize-for-size"],
        ),
    ];
    if let Some(only) = &only {
        variants.retain(|(name, _)| name.contains(only.as_str()));
    }
    println!(
        "\n## One dev server of the default starter, by Node flags ({rounds} rounds, medians)\n"
    );
    println!("| flags | ready RSS | ready PSS | after page load RSS | after page load PSS | start → ready | page load ({{modules}}) |");
    println!("|---|---|---|---|---|---|---|");
    for (name, flags) in variants {
        let (mut r_rss, mut r_pss, mut l_rss, mut l_pss, mut t_ready, mut t_load) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut modules = 0;
        for round in 0..rounds {
            let data = tempfile::tempdir().unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let provider = LocalProvider::with_node_args(
                LocalOptions {
                    data_dir: data.path().to_path_buf(),
                    templates: templates().await,
                    hmr_client_port: Some(port),
                    ui_origins: Vec::new(),
                    isolation: None,
                    max_project_mb: 500,
                    browser: apna::sandbox::browser::BrowserOptions {
                        executable: None,
                        no_sandbox: None,
                    },
                    warm_spares: 0,
                    max_builds: apna::sandbox::local::build_gate::default_max_builds(),
                    verify_build: false,
                },
                flags.iter().map(|f| f.to_string()).collect(),
            )
            .unwrap();
            provider.set_warm_spare(false).await;
            let provider = Arc::new(provider);
            let addr = serve_proxy(
                listener,
                PreviewProxy::new(Arc::new(SandboxPreviewBackend::new(provider.clone())), None),
            )
            .await;
            let id = format!("flags-{round}");
            let sb = provider.local(&id).unwrap();
            let started = Instant::now();
            sb.ensure().await.unwrap();
            wait_ready(&sb, Duration::from_secs(120)).await.unwrap();
            t_ready.push(started.elapsed().as_secs_f64());
            // Let startup garbage settle as an idle server's would.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let pid = sb.dev_server_pid().unwrap();
            let m = mem_of(&tree(pid));
            r_rss.push(Mem::mb(m.rss_kb));
            r_pss.push(Mem::mb(m.pss_kb));
            let host = format!("{id}.localhost:{port}");
            let t = Instant::now();
            modules = load_page(addr, &host).await;
            t_load.push(t.elapsed().as_secs_f64());
            tokio::time::sleep(Duration::from_secs(3)).await;
            let m = mem_of(&tree(pid));
            l_rss.push(Mem::mb(m.rss_kb));
            l_pss.push(Mem::mb(m.pss_kb));
            if std::env::var("APNA_BENCH_SHOW_LOG").is_ok_and(|v| v == "1") {
                eprintln!(
                    "--- dev server log ({name}):\n{}",
                    sb.logs(60).await.unwrap()
                );
            }
            provider.stop_all().await;
        }
        println!(
            "| `{name}` | {:.0} MB | {:.0} MB | {:.0} MB | {:.0} MB | {:.2} s | {:.2} s ({modules}) |",
            median(r_rss),
            median(r_pss),
            median(l_rss),
            median(l_pss),
            median(t_ready),
            median(t_load)
        );
    }
}

/// `apna serve`'s parts in this process, on a free port.
struct Served {
    server: apna::server::LocalServer,
    addr: SocketAddr,
    port: u16,
    _data: tempfile::TempDir,
}

async fn serve(idle_minutes: &str) -> Served {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let port = addr.port();
    let config = server_config(
        data.path(),
        "http://127.0.0.1:9",
        &[
            ("APNA_PREVIEW_IDLE_MINUTES", idle_minutes),
            ("PORT", &port.to_string()),
        ],
    );
    let server = apna::server::build(config, &|_| {}).await.unwrap();
    server
        .state
        .store
        .upsert_user(&User {
            id: LOCAL_USER.to_string(),
            email: None,
            created_at: apna::domain::now(),
        })
        .await
        .unwrap();
    let router = server.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    apna::server::spawn_light_sleep(server.state.backends.clone());
    if let Some(local) = &server.sandboxes {
        local.wait_spare_ready(Duration::from_secs(60)).await;
    }
    Served {
        server,
        addr,
        port,
        _data: data,
    }
}

impl Served {
    fn local(&self) -> &LocalProvider {
        self.server.sandboxes.as_deref().unwrap()
    }

    /// A new project from the starter with its dev server ready (what a run's EnsureSandbox does).
    async fn project(&self) -> String {
        let p = ready_project(&*self.server.state.store).await;
        let sb = self.server.state.sandboxes.sandbox(&p.id).unwrap();
        sb.ensure().await.unwrap();
        wait_ready(&*sb, Duration::from_secs(120)).await.unwrap();
        p.id
    }

    fn host(&self, id: &str) -> String {
        format!("{id}.localhost:{}", self.port)
    }

    fn project_mem(&self, id: &str) -> Mem {
        match self.local().local(id).unwrap().dev_server_pid() {
            Some(pid) => mem_of(&tree(pid)),
            None => Mem::default(),
        }
    }

    async fn wait_asleep(&self, id: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        let sb = self.server.state.sandboxes.sandbox(id).unwrap();
        while sb.status().await.unwrap().state != SandboxState::Stopped {
            assert!(started.elapsed() < limit, "{id} never fell asleep");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }
}

fn everything() -> Mem {
    mem_of(&tree(std::process::id()))
}

fn own() -> Mem {
    mem_of(&[std::process::id()])
}

async fn sleep_phase(idle: &str) {
    let s = serve(idle).await;
    let id = s.project().await;
    let host = s.host(&id);
    let socket = open_hmr(s.addr, &host).await;
    let modules = load_page(s.addr, &host).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let viewed = s.project_mem(&id);
    let before = everything();
    drop(socket);
    let slept_after = s.wait_asleep(&id, Duration::from_secs(600)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asleep = s.project_mem(&id);
    let after = everything();
    println!("\n## One project, viewed then left alone (idle time {idle} min)\n");
    println!("| | project's processes | everything (apna + warm spare + projects) |");
    println!("|---|---|---|");
    println!(
        "| viewed: page loaded ({modules} modules), HMR socket open | {} | {} |",
        viewed.show(),
        before.show()
    );
    println!(
        "| unviewed, asleep ({:.1} s after the socket closed) | {} | {} |",
        slept_after.as_secs_f64(),
        asleep.show(),
        after.show()
    );
    s.server.stop_sandboxes().await;
}

/// What one series of wakes measured.
#[derive(Default)]
struct Wakes {
    /// (first 200 of the page, project's App served), woken on the spare.
    spare: Vec<(f64, f64)>,
    /// The same, woken by a cold Vite start.
    cold: Vec<(f64, f64)>,
    /// Wakes whose first App module after the page was still the starter's.
    stale: usize,
}

const OWN_APP: &str =
    "export default function App() {\n  return <h1 className=\"text-3xl\">Back From Light Sleep</h1>;\n}\n";

/// `n` wakes of project `id`: put to sleep, then requested until its page
/// and its own App module are served. `spare` says whether each wake waits
/// for a ready warm spare first (as a sleeping user's wake, minutes after
/// the last, finds it) or follows the last by 0.5 s.
async fn wake_series(s: &Served, id: &str, n: usize, wait_spare: bool) -> Wakes {
    let host = s.host(id);
    let sb = s.server.state.sandboxes.sandbox(id).unwrap();
    let mut out = Wakes::default();
    for _ in 0..n {
        sb.stop().await.unwrap();
        assert_eq!(sb.status().await.unwrap().state, SandboxState::Stopped);
        if wait_spare {
            s.local().wait_spare_ready(Duration::from_secs(60)).await;
        }
        let spares = s.local().spare_pids();
        let started = Instant::now();
        let (status, body) = get(s.addr, &host, "/").await;
        assert!(
            status == 200 && body.contains("Starting the preview"),
            "{status} {body:.200}"
        );
        loop {
            let (status, body) = get(s.addr, &host, "/").await;
            if status == 200 && body.contains("id=\"root\"") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never woke");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let page = started.elapsed().as_secs_f64();
        let mut first = true;
        loop {
            let (status, body) = get(s.addr, &host, "/src/App.tsx").await;
            if status == 200 && body.contains("Back From Light Sleep") {
                break;
            }
            if first {
                out.stale += 1;
                first = false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never served its App"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let app = started.elapsed().as_secs_f64();
        let on_spare = s
            .local()
            .local(id)
            .unwrap()
            .dev_server_pid()
            .is_some_and(|p| spares.contains(&p));
        if on_spare {
            out.spare.push((page, app));
        } else {
            out.cold.push((page, app));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out
}

fn wake_rows(label: &str, w: &Wakes) {
    let n = w.spare.len() + w.cold.len();
    for (kind, v) in [
        ("on the warm spare", &w.spare),
        ("cold Vite start", &w.cold),
    ] {
        if v.is_empty() {
            continue;
        }
        let mut page: Vec<f64> = v.iter().map(|t| t.0).collect();
        let mut app: Vec<f64> = v.iter().map(|t| t.1).collect();
        page.sort_by(f64::total_cmp);
        app.sort_by(f64::total_cmp);
        println!(
            "| {label}: {kind} | {} of {n} | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
            v.len(),
            percentile(&page, 50.0),
            percentile(&page, 95.0),
            percentile(&app, 50.0),
            percentile(&app, 95.0)
        );
    }
    if w.stale > 0 {
        println!(
            "| {label}: first App module still the starter's | {} of {n} | | | | |",
            w.stale
        );
    }
}

async fn wake_phase() {
    let n = env_count("APNA_BENCH_WAKES", 20);
    let series =
        std::env::var("APNA_BENCH_WAKE_SERIES").unwrap_or_else(|_| "ready,back-to-back,off".into());
    // A long idle time: the bench puts the project to sleep itself.
    let s = serve("60").await;
    let id = s.project().await;
    let host = s.host(&id);
    // The project's own files: a hand-over has work to do, and the page must
    // be the project's, not the starter's the spare started with.
    let sb = s.server.state.sandboxes.sandbox(&id).unwrap();
    sb.write_file(
        &apna::sandbox::ProjectPath::parse("src/App.tsx").unwrap(),
        OWN_APP.as_bytes(),
    )
    .await
    .unwrap();
    sb.delete_file(&apna::sandbox::ProjectPath::parse("src/components/ui/badge.tsx").unwrap())
        .await
        .unwrap();
    load_page(s.addr, &host).await;
    println!(
        "\n## Preview back after light sleep ({n} trials per series; load average {})\n",
        loadavg()
    );
    println!(
        "| series | wakes | first 200 of the page p50 | p95 | project's App served p50 | p95 |"
    );
    println!("|---|---|---|---|---|---|");
    for name in series.split(',').map(str::trim) {
        let w = match name {
            "ready" => wake_series(&s, &id, n, true).await,
            "back-to-back" => wake_series(&s, &id, n, false).await,
            "off" => {
                s.local().set_warm_spare(false).await;
                let w = wake_series(&s, &id, n, false).await;
                s.local().set_warm_spare(true).await;
                w
            }
            other => panic!("unknown wake series {other:?}"),
        };
        wake_rows(name, &w);
    }
    println!("\nload average after: {}", loadavg());
    s.server.stop_sandboxes().await;
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn hundred_phase(idle: &str) {
    let n = env_count("APNA_BENCH_PROJECTS", 100);
    let s = serve(idle).await;
    let started = Instant::now();
    let mut peak = Mem::default();
    let mut peak_awake = 0;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = s.project().await;
        load_page(s.addr, &s.host(&id)).await;
        ids.push(id);
        let m = everything();
        let awake = s.local().awake().await.unwrap().len();
        if m.rss_kb > peak.rss_kb {
            peak = m;
            peak_awake = awake;
        }
        if (i + 1) % 10 == 0 {
            eprintln!(
                "{} projects in {:.0} s; now {awake} awake, {}",
                i + 1,
                started.elapsed().as_secs_f64(),
                m.show()
            );
        }
    }
    let created = started.elapsed();
    let wait = Instant::now();
    while !s.local().awake().await.unwrap().is_empty() {
        assert!(
            wait.elapsed() < Duration::from_secs(900),
            "projects never all slept"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_all = everything();
    let apna = own();
    let disk: u64 = ids
        .iter()
        .map(|id| dir_size(s.local().local(id).unwrap().root()))
        .sum();
    println!("\n## {n} projects created one after another, each viewed once, then left idle (idle time {idle} min)\n");
    println!("| | processes | RSS | PSS |");
    println!("|---|---|---|---|");
    println!(
        "| peak while creating ({peak_awake} awake) | {} | {:.0} MB | {:.0} MB |",
        peak.procs,
        Mem::mb(peak.rss_kb),
        Mem::mb(peak.pss_kb)
    );
    println!(
        "| all idle (asleep): apna + warm spare + projects | {} | {:.0} MB | {:.0} MB |",
        idle_all.procs,
        Mem::mb(idle_all.rss_kb),
        Mem::mb(idle_all.pss_kb)
    );
    println!(
        "| of which this process (apna) | 1 | {:.0} MB | {:.0} MB |",
        Mem::mb(apna.rss_kb),
        Mem::mb(apna.pss_kb)
    );
    println!(
        "\ncreated in {:.0} s; project folders on disk (not counted above) {:.0} MB",
        created.as_secs_f64(),
        disk as f64 / 1048576.0
    );
    s.server.stop_sandboxes().await;
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let idle = std::env::var("APNA_BENCH_IDLE_MINUTES").unwrap_or_else(|_| "0.1".into());
        templates().await;
        let phases = phases();
        println!(
            "light_sleep bench: bubblewrap {}, {} cores",
            if which_bwrap() { "on" } else { "off" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        if phases.iter().any(|p| p == "flags") {
            flags_phase().await;
        }
        if phases.iter().any(|p| p == "sleep") {
            sleep_phase(&idle).await;
        }
        if phases.iter().any(|p| p == "wake") {
            wake_phase().await;
        }
        if phases.iter().any(|p| p == "hundred") {
            hundred_phase(&idle).await;
        }
    });
}

fn which_bwrap() -> bool {
    apna::sandbox::local::Isolation::detect() != apna::sandbox::local::Isolation::None
}
