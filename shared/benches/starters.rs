//! What each starter costs, and what the `app` starter saves.
//!
//! Per starter: its `node_modules` in the shared cache (disk and files) and
//! its Vite pre-bundle; the first preview (create → every module the first
//! page loads served through the proxy): adopting the warm spare (starters
//! built on the default one), and cold (Vite started for the project) with
//! the shared pre-bundle and without it, i.e. Vite bundling the dependencies
//! itself as before; the dev server's memory (RSS of its process tree after
//! that load); the size of a fresh project's snapshot.
//!
//! Then a chart library (recharts) installed by `run_command`: on `app` the
//! install is answered from the shared `node_modules`; the same install run
//! for real on `app` (what the answer avoids: the private copy and npm); and
//! on `minimal`, which lacks it (npm downloads it, and Vite bundles again when
//! the page first imports it). For each: time, disk, npm's peak memory.
//!
//! With `APNA_BENCH_KIT=1`, what each package of the `app` kit adds to the
//! `minimal` starter: `node_modules` size, install time (npm cache warm),
//! Vite's pre-bundle time and the production build's JS size for a page using it.
//!
//! Run: `cargo bench -p apna --bench starters` (env `APNA_BENCH_ROUNDS`,
//! default 3; `APNA_BENCH_INSTALLS=0` skips the installs, which need the npm
//! registry). Needs bubblewrap for the shared pre-bundle.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::preview::{PreviewProxy, SandboxPreviewBackend};
use apna::sandbox::local::{wait_ready, LocalProvider, LocalSandbox};
use apna::sandbox::{ExecRequest, ProjectPath, Sandbox, SandboxProvider};
use apna::testing::bench::*;
use apna::testing::local::*;

const STARTERS: [&str; 4] = ["app", "dashboard", "landing", "minimal"];

/// A page using a chart, as the model would write it.
const CHART_APP: &str = "import { Line, LineChart, XAxis } from \"recharts\";\n\
export default function App() {\n  return <LineChart width={300} height={120} data={[{ d: \"a\", v: 1 }, { d: \"b\", v: 3 }]}><XAxis dataKey=\"d\" /><Line dataKey=\"v\" /></LineChart>;\n}\n";

/// Disk used by a tree (blocks, as `du`) and its file count; symlinks not followed.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
            }
        }
    }
    (bytes, files)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// Every module the first page load asks for (`/`, then the scripts and what
/// they import, transitively), each answered 200 through the proxy. Returns
/// (modules, bytes).
async fn load_page(addr: SocketAddr, host: &str, deadline: Instant) -> (usize, usize) {
    let import = regex::Regex::new(r#"(?:from|import)\s*\(?\s*"(/[^"]+)""#).unwrap();
    let script = regex::Regex::new(r#"<script type="module" src="(/[^"]+)""#).unwrap();
    let html = fetch(addr, host, "/", deadline).await;
    let mut queue: VecDeque<String> = script
        .captures_iter(&html)
        .map(|c| c[1].to_string())
        .collect();
    let mut seen: BTreeSet<String> = queue.iter().cloned().collect();
    let mut bytes = html.len();
    while let Some(path) = queue.pop_front() {
        let body = fetch(addr, host, &path, deadline).await;
        bytes += body.len();
        for c in import.captures_iter(&body) {
            let next = c[1].to_string();
            if seen.insert(next.clone()) {
                queue.push_back(next);
            }
        }
    }
    (seen.len() + 1, bytes)
}

async fn fetch(addr: SocketAddr, host: &str, path: &str, deadline: Instant) -> String {
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            if let Ok((200, body)) =
                tokio::time::timeout(Duration::from_secs(60), get(addr, host, path)).await
            {
                if !body.contains("Starting the preview") {
                    return body;
                }
            }
        }
        assert!(Instant::now() < deadline, "{host}{path} never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(pid, parent pid, RSS bytes)` of every process.
fn processes() -> Vec<(u32, u32, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(ppid), Some(rss_pages)) = (
            f.get(1).and_then(|s| s.parse().ok()),
            f.get(21).and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        out.push((pid, ppid, rss_pages * 4096));
    }
    out
}

/// Whether `pid` is `root` or one of its descendants.
fn in_tree(parent: &HashMap<u32, u32>, mut pid: u32, root: u32) -> bool {
    loop {
        if pid == root {
            return true;
        }
        match parent.get(&pid) {
            Some(&pp) if pp > 1 => pid = pp,
            _ => return false,
        }
    }
}

/// RSS of a process and its descendants (a dev server: bubblewrap, node and
/// its helpers; bubblewrap starts node in a session of its own).
fn tree_rss(root: u32) -> u64 {
    let procs = processes();
    let parent: HashMap<u32, u32> = procs.iter().map(|p| (p.0, p.1)).collect();
    procs
        .iter()
        .filter(|p| in_tree(&parent, p.0, root))
        .map(|p| p.2)
        .sum()
}

/// RSS of this process's descendants outside the trees of `skip`.
fn children_rss(skip: &[u32]) -> u64 {
    let procs = processes();
    let parent: HashMap<u32, u32> = procs.iter().map(|p| (p.0, p.1)).collect();
    let me = std::process::id();
    procs
        .iter()
        .filter(|p| {
            p.0 != me
                && in_tree(&parent, p.0, me)
                && !skip.iter().any(|&s| in_tree(&parent, p.0, s))
        })
        .map(|p| p.2)
        .sum()
}

/// Runs `command` in the sandbox; returns (seconds, peak RSS of the command's
/// processes, output).
async fn timed_exec(sb: &LocalSandbox, command: &str) -> (f64, u64, String) {
    let skip: Vec<u32> = sb.dev_server_pid().into_iter().collect();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::task::spawn_blocking(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(children_rss(&skip), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let out = sb
        .exec(&ExecRequest {
            command: command.into(),
            timeout: Duration::from_secs(600),
            max_output: 64 * 1024,
        })
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    assert_eq!(out.exit_code, Some(0), "{command}: {}", out.output);
    (secs, peak.load(Ordering::SeqCst), out.output)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

struct Bench {
    provider: LocalProvider,
    addr: SocketAddr,
    port: u16,
}

impl Bench {
    /// A create of `starter` until its first page has loaded; with
    /// `shared == false` the project's link to the shared pre-bundle is
    /// removed first, so Vite bundles the dependencies itself. With
    /// `warm`, the provider's warm spare is on (and ready) first.
    async fn first_preview(
        &self,
        id: &str,
        starter: &str,
        shared: bool,
        warm: bool,
    ) -> (f64, u64, usize) {
        self.provider.set_warm_spare(warm).await;
        if warm {
            self.provider
                .wait_spare_ready(Duration::from_secs(120))
                .await;
        }
        let sb = self.provider.local(id).unwrap();
        let host = format!("{id}.localhost:{}", self.port);
        let started = Instant::now();
        if shared {
            sb.ensure_from(starter).await.unwrap();
        } else {
            sb.import_source(&starter_files(starter).await)
                .await
                .unwrap();
            let _ = std::fs::remove_file(sb.root().join(".vite/deps"));
            sb.ensure().await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        let (modules, _) = load_page(self.addr, &host, deadline).await;
        let secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = sb.dev_server_pid().map(tree_rss).unwrap_or(0);
        sb.destroy().await.unwrap();
        self.provider.set_warm_spare(false).await;
        (secs, rss, modules)
    }
}

async fn starter_files(name: &str) -> apna::sandbox::SourceTree {
    starter(name).await.files
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (rounds, installs) = bench_rounds("APNA_BENCH_ROUNDS", 3, "APNA_BENCH_INSTALLS", 1);
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider = provider(data.path(), Some(port)).await;
    provider.set_warm_spare(false).await;
    println!("isolation: {:?}", provider.isolation());
    let shared: Arc<dyn SandboxProvider> = Arc::new(provider.clone());
    let proxy = PreviewProxy::new(Arc::new(SandboxPreviewBackend::new(shared)), None);
    let addr = serve_proxy(listener, proxy).await;
    let bench = Bench {
        provider: provider.clone(),
        addr,
        port,
    };
    let (fs_blobs, _blob_dir) = apna::testing::fixtures::fs_blobs().await;

    println!("\n| starter | node_modules (shared) | pre-bundle | first preview: warm spare | cold, shared pre-bundle | cold, Vite bundles | modules | dev server RSS | fresh snapshot |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for name in STARTERS {
        let t = starter(name).await;
        let (nm_bytes, nm_files) = disk_usage(&t.node_modules);
        let bundle = t
            .vite_deps
            .as_deref()
            .map(|d| mb(disk_usage(d).0))
            .unwrap_or_else(|| "none (no bubblewrap)".into());
        let mut warm = Vec::new();
        let mut with = Vec::new();
        let mut without = Vec::new();
        let mut rss = Vec::new();
        let mut modules = 0;
        let fits = apna::starter::find(name).unwrap().base.is_some() || name == "app";
        for i in 0..rounds {
            if fits {
                let (s, _, _) = bench
                    .first_preview(&format!("fp-{name}-warm-{i}"), name, true, true)
                    .await;
                println!("  {name} {i}: warm spare {s:.3} s");
                warm.push(s);
            }
            let (s, r, m) = bench
                .first_preview(&format!("fp-{name}-shared-{i}"), name, true, false)
                .await;
            println!(
                "  {name} {i}: shared pre-bundle {s:.3} s, {m} modules, RSS {}",
                mb(r)
            );
            with.push(s);
            rss.push(r as f64);
            modules = m;
            let (s, r, _) = bench
                .first_preview(&format!("fp-{name}-own-{i}"), name, false, false)
                .await;
            println!("  {name} {i}: Vite bundles {s:.3} s, RSS {}", mb(r));
            without.push(s);
        }
        let snap =
            apna::snapshot::write_snapshot(&*fs_blobs, &format!("snap-{name}"), name, &t.files)
                .await
                .unwrap();
        println!(
            "| {name} | {} ({nm_files} files) | {bundle} | {} | {:.2} s | {:.2} s | {modules} | {} | {:.1} KB ({} files) |",
            mb(nm_bytes),
            if warm.is_empty() {
                "— (spare runs `app`)".to_string()
            } else {
                format!("{:.2} s", median(warm))
            },
            median(with),
            median(without),
            mb(median(rss) as u64),
            snap.bytes_stored as f64 / 1000.0,
            t.files.files.len()
        );
    }

    if installs > 0 {
        chart_install(&bench).await;
    }
    if std::env::var("APNA_BENCH_KIT").is_ok_and(|v| v == "1") {
        kit_cost().await;
    }
    provider.stop_all().await;
}

/// A recharts install through `run_command`, three ways.
async fn chart_install(bench: &Bench) {
    println!("\n| recharts install | run_command time | page with a chart served after | project node_modules | npm peak RSS |");
    println!("|---|---|---|---|---|");
    for (label, starter, command) in [
        (
            "app: answered from the shared node_modules",
            "app",
            "npm install recharts",
        ),
        (
            "app: run anyway (what the answer avoids)",
            "app",
            "npm install recharts --ignore-scripts",
        ),
        (
            "minimal: a new package",
            "minimal",
            "npm install recharts@3.11.1",
        ),
    ] {
        let id = format!("chart-{}", label.split(':').next().unwrap_or("x"));
        let id = format!("{id}-{}", rand_suffix());
        let sb = bench.provider.local(&id).unwrap();
        sb.ensure_from(starter).await.unwrap();
        wait_ready(&sb, Duration::from_secs(120)).await.unwrap();
        let host = format!("{id}.localhost:{}", bench.port);
        let deadline = Instant::now() + Duration::from_secs(300);
        load_page(bench.addr, &host, deadline).await;
        let (secs, peak, out) = timed_exec(&sb, command).await;
        let (disk, _) = if std::fs::symlink_metadata(sb.root().join("node_modules"))
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            (0, 0)
        } else {
            disk_usage(&sb.root().join("node_modules"))
        };
        // The page now imports the chart: until every module is served
        // (where Vite has to, it bundles the new package and reloads first).
        let started = Instant::now();
        sb.write_file(
            &ProjectPath::parse("src/App.tsx").unwrap(),
            CHART_APP.as_bytes(),
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let body = fetch(bench.addr, &host, "/src/App.tsx", deadline).await;
            if body.contains("recharts") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        load_page(bench.addr, &host, deadline).await;
        let page = started.elapsed().as_secs_f64();
        println!(
            "| {label} | {secs:.2} s | {page:.2} s | {} | {} |",
            if disk == 0 {
                "0 (link kept)".to_string()
            } else {
                mb(disk)
            },
            if peak == 0 {
                "—".to_string()
            } else {
                mb(peak)
            }
        );
        if label.starts_with("app: answered") {
            assert!(out.contains("Already installed"), "{out}");
        }
        sb.destroy().await.unwrap();
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

/// One package group of the kit: its packages (from `app`'s package.json)
/// and a line of code using it.
const KIT: &[(&str, &[&str], &str)] = &[
    (
        "Radix primitives (12) + class-variance-authority",
        &[
            "@radix-ui/react-avatar", "@radix-ui/react-checkbox", "@radix-ui/react-dialog",
            "@radix-ui/react-dropdown-menu", "@radix-ui/react-label", "@radix-ui/react-progress",
            "@radix-ui/react-select", "@radix-ui/react-separator", "@radix-ui/react-slot",
            "@radix-ui/react-switch", "@radix-ui/react-tabs", "@radix-ui/react-tooltip",
            "class-variance-authority",
        ],
        "import * as D from \"@radix-ui/react-dialog\"; import { cva } from \"class-variance-authority\"; console.log(D.Root, cva(\"a\"));",
    ),
    ("lucide-react", &["lucide-react"], "import { Star, Plus, Trash2 } from \"lucide-react\"; console.log(Star, Plus, Trash2);"),
    ("recharts", &["recharts"], "import { LineChart, Line, XAxis } from \"recharts\"; console.log(LineChart, Line, XAxis);"),
    ("react-router-dom", &["react-router-dom"], "import { BrowserRouter, Routes, Route } from \"react-router-dom\"; console.log(BrowserRouter, Routes, Route);"),
    (
        "react-hook-form + zod + @hookform/resolvers",
        &["react-hook-form", "zod", "@hookform/resolvers"],
        "import { useForm } from \"react-hook-form\"; import { z } from \"zod\"; import { zodResolver } from \"@hookform/resolvers/zod\"; console.log(useForm, zodResolver(z.object({ a: z.string() })));",
    ),
    ("date-fns", &["date-fns"], "import { format } from \"date-fns\"; console.log(format(new Date(), \"PPP\"));"),
    ("sonner", &["sonner"], "import { toast, Toaster } from \"sonner\"; console.log(toast, Toaster);"),
    ("clsx + tailwind-merge", &["clsx", "tailwind-merge"], "import { clsx } from \"clsx\"; import { twMerge } from \"tailwind-merge\"; console.log(twMerge(clsx(\"p-1\", \"p-2\")));"),
    ("tw-animate-css (CSS only)", &["tw-animate-css"], ""),
];

/// What each kit group adds to `minimal`, in scratch copies outside the sandbox.
async fn kit_cost() {
    let templates = apna::sandbox::local::template::bundled_templates_dir();
    let app: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(templates.join("app/package.json")).unwrap())
            .unwrap();
    let version = |p: &str| {
        app["dependencies"][p]
            .as_str()
            .or_else(|| app["devDependencies"][p].as_str())
            .unwrap()
            .to_string()
    };
    let scratch = tempfile::tempdir().unwrap();
    let baseline = measure_group(
        &templates.join("minimal"),
        scratch.path(),
        "baseline",
        &[],
        "",
    )
    .await;
    println!("\n| kit part (added to minimal) | node_modules | install (npm cache warm) | Vite pre-bundle | build JS (gzip) |");
    println!("|---|---|---|---|---|");
    println!(
        "| minimal itself | {} | {:.1} s | {:.2} s | {:.1} kB |",
        mb(baseline.0),
        baseline.1,
        baseline.2,
        baseline.3 as f64 / 1000.0
    );
    for (label, packages, code) in KIT {
        let specs: Vec<String> = packages
            .iter()
            .map(|p| format!("{p}@{}", version(p)))
            .collect();
        let m = measure_group(
            &templates.join("minimal"),
            scratch.path(),
            label,
            &specs,
            code,
        )
        .await;
        println!(
            "| {label} | +{} | +{:.1} s | +{:.2} s | {} |",
            mb(m.0.saturating_sub(baseline.0)),
            m.1 - baseline.1,
            m.2 - baseline.2,
            if code.is_empty() {
                "—".to_string()
            } else {
                format!("+{:.1} kB", (m.3 as f64 - baseline.3 as f64) / 1000.0)
            }
        );
    }
}

/// Installs `minimal` plus `specs` in a scratch dir; returns (node_modules
/// disk, install seconds, `vite optimize` seconds, gzip size of the built JS).
async fn measure_group(
    minimal: &Path,
    scratch: &Path,
    label: &str,
    specs: &[String],
    code: &str,
) -> (u64, f64, f64, u64) {
    let dir: PathBuf = scratch.join(label.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    let copy = std::process::Command::new("cp")
        .args(["-r"])
        .arg(minimal)
        .arg(&dir)
        .status()
        .unwrap();
    assert!(copy.success());
    let _ = std::fs::remove_dir_all(dir.join("node_modules"));
    let sh = |cmd: &str| {
        let dir = dir.clone();
        let cmd = cmd.to_string();
        async move {
            let started = Instant::now();
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .current_dir(&dir)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{cmd}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            started.elapsed().as_secs_f64()
        }
    };
    let flags = "--no-audit --no-fund --prefer-offline --loglevel=error";
    let mut install = sh(&format!("npm ci {flags}")).await;
    if !specs.is_empty() {
        install += sh(&format!(
            "npm install {flags} --save-exact {}",
            specs.join(" ")
        ))
        .await;
    }
    let main = format!(
        "import {{ createRoot }} from \"react-dom/client\";\n{code}\ncreateRoot(document.getElementById(\"root\")!).render(null);\n"
    );
    std::fs::write(dir.join("src/main.tsx"), main).unwrap();
    let optimize = sh("node node_modules/vite/bin/vite.js optimize --force --logLevel error").await;
    sh("node node_modules/vite/bin/vite.js build --logLevel error --outDir dist").await;
    let mut js = 0;
    for e in std::fs::read_dir(dir.join("dist/assets"))
        .unwrap()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "js") {
            let data = std::fs::read(e.path()).unwrap();
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut enc, &data).unwrap();
            js += enc.finish().unwrap().len() as u64;
        }
    }
    (
        disk_usage(&dir.join("node_modules")).0,
        install,
        optimize,
        js,
    )
}
