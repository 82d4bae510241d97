//! Issue #16: what one Verify costs, before (`tsc` + a full `vite build`, as
//! Verify did until #16) and after (`tsc --incremental` + every module of the
//! page loaded through the running dev server), on every error fixture of
//! `apna::testing::verify_fixtures`, both in the same run and alternating.
//!
//! CPU is everything the check makes the machine do: this process (the
//! module walk's HTTP client), the commands it runs (waited-for children:
//! `tsc`, Vite's build) and the dev server's process tree (the transforms it
//! does for the walk). Under bubblewrap a command's CPU time never reaches
//! its parent (bwrap's PID namespace init is not waited for the way
//! `getrusage` counts), so the bench runs the projects unsandboxed
//! (`APNA_TEST_NO_BWRAP=1`): the same commands, minus bwrap's few ms. Before each check the fixture's files
//! are written again with a new comment, as an agent's edit would, so the
//! dev server and `tsc --incremental` have real work.
//!
//! `cargo bench -p apna --bench verify --profile dev` (`APNA_BENCH_ROUNDS`, default 5).

use std::time::{Duration, Instant};

use apna::sandbox::build_check::{check_build, check_build_with_vite_build};
use apna::sandbox::local::wait_ready;
use apna::sandbox::{ProjectPath, Sandbox};
use apna::testing::bench::{bench_rounds, percentile};
use apna::testing::local::{get, provider};
use apna::testing::verify_fixtures::FIXTURES;

/// Clock ticks per second of `/proc/*/stat` times.
fn ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (parent pid, utime + stime, cutime + cstime) of one `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .take(16)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // After the state: ppid(0) … utime(11) stime(12) cutime(13) cstime(14).
    Some((f[0] as u32, f[11] + f[12], f[13] + f[14]))
}

/// CPU seconds of this process and its waited-for children, plus the live
/// process tree under `pid` (the dev server).
fn cpu_secs(dev_server: Option<u32>) -> f64 {
    let me = std::process::id();
    let (_, own, children) = stat(me).unwrap_or((0, 0, 0));
    let mut total = own + children;
    if let Some(root) = dev_server {
        let mut kids: std::collections::HashMap<u32, Vec<u32>> = Default::default();
        let mut cpu: std::collections::HashMap<u32, u64> = Default::default();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if let Some((ppid, t, c)) = stat(p) {
                    kids.entry(ppid).or_default().push(p);
                    cpu.insert(p, t + c);
                }
            }
        }
        let mut stack = vec![root];
        while let Some(p) = stack.pop() {
            total += cpu.get(&p).copied().unwrap_or(0);
            stack.extend(kids.get(&p).cloned().unwrap_or_default());
        }
    }
    total as f64 / ticks()
}

fn p(s: &str) -> ProjectPath {
    ProjectPath::parse(s).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (rounds, _) = bench_rounds("APNA_BENCH_ROUNDS", 5, "APNA_BENCH_UNUSED", 0);
    std::env::set_var("APNA_TEST_NO_BWRAP", "1");
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local("bench-verify").unwrap();
    sb.ensure().await.unwrap();
    let st = wait_ready(&sb, Duration::from_secs(120)).await.unwrap();
    let addr: std::net::SocketAddr = st.preview_addr.unwrap().parse().unwrap();
    let _ = get(addr, "bench-verify.localhost", "/").await;
    let original: std::collections::HashMap<String, Vec<u8>> = sb
        .export_source()
        .await
        .unwrap()
        .files
        .into_iter()
        .map(|f| (f.path, f.data))
        .collect();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\n| fixture | before: wall p50 | before: CPU p50 | after: wall p50 | after: CPU p50 | CPU after ÷ before |");
    println!("|---|---|---|---|---|---|");
    let (mut all_before, mut all_after) = (Vec::new(), Vec::new());
    for fx in FIXTURES {
        // The clean template's "edit" is to App.tsx.
        let files: Vec<(&str, String)> = if fx.files.is_empty() {
            vec![(
                "src/App.tsx",
                String::from_utf8(original["src/App.tsx"].clone()).unwrap(),
            )]
        } else {
            fx.files.iter().map(|(f, t)| (*f, t.to_string())).collect()
        };
        let (mut wall, mut cpu) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
        for round in 0..rounds * 2 {
            // Alternate which check goes first.
            let which = (round + round / 2) % 2;
            for (path, text) in &files {
                let comment = if path.ends_with(".css") {
                    format!("\n/* edit {round} */\n")
                } else {
                    format!("\n// edit {round}\n")
                };
                sb.write_file(&p(path), format!("{text}{comment}").as_bytes())
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let pid = sb.dev_server_pid();
            let (c0, t0) = (cpu_secs(pid), Instant::now());
            let report = if which == 0 {
                check_build_with_vite_build(&sb).await.unwrap()
            } else {
                check_build(&sb).await.unwrap()
            };
            wall[which].push(t0.elapsed().as_secs_f64());
            cpu[which].push(cpu_secs(pid) - c0);
            assert_eq!(report.ok, fx.expect.is_empty(), "{}: {report:?}", fx.name);
        }
        for (path, _) in fx.files {
            match original.get(*path) {
                Some(data) => sb.write_file(&p(path), data).await.unwrap(),
                None => {
                    sb.delete_file(&p(path)).await.unwrap();
                }
            }
        }
        let p50 = |xs: &mut Vec<f64>| {
            xs.sort_by(|a, b| a.total_cmp(b));
            percentile(xs, 50.0)
        };
        all_before.extend(cpu[0].iter().copied());
        all_after.extend(cpu[1].iter().copied());
        let (bw, bc, aw, ac) = (
            p50(&mut wall[0]),
            p50(&mut cpu[0]),
            p50(&mut wall[1]),
            p50(&mut cpu[1]),
        );
        println!(
            "| {} | {bw:.2} s | {bc:.2} s | {aw:.2} s | {ac:.2} s | {:.2} |",
            fx.name,
            ac / bc
        );
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    println!(
        "\nCPU seconds per Verify, mean over all fixtures: before {:.2} s, after {:.2} s ({rounds} rounds each)",
        mean(&all_before),
        mean(&all_after)
    );
    println!(
        "load average before: {}, after: {}",
        load_before.trim(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    provider.stop_all().await;
}
