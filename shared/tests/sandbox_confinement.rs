//! Issue #15: what a model's commands and its app's dev server can reach,
//! and how runaway commands end, under bubblewrap with real Node and Vite.
//!
//! * Canary files in the server user's HOME and in a directory next to the
//!   data dir are unreadable from `run_command` and from Vite's `/@fs/` (even
//!   with `server.fs.strict` turned off by the model), while the project's
//!   own files are served; the host network is unreachable; no capabilities.
//! * A fork bomb, a 5 GB write and an endless loop each end with a clear
//!   message, while another project's preview and commands keep working.
//! * The per-project disk budget refuses writes that would exceed it and
//!   says so after a command that did.
//!
//! Skipped (with a note) where bubblewrap is not usable, unless
//! `APNA_REQUIRE_SERVICES=1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::preview::{PreviewProxy, SandboxPreviewBackend};
use apna::sandbox::local::{wait_ready, Isolation, LocalProvider, LocalSandbox};
use apna::sandbox::{ExecRequest, ProjectPath, Sandbox, SandboxProvider};
use apna::testing::local::*;

fn exec(cmd: &str, secs: u64) -> ExecRequest {
    ExecRequest {
        command: cmd.into(),
        timeout: Duration::from_secs(secs),
        max_output: 64 * 1024,
    }
}

/// A data dir outside /tmp (the sandbox's /tmp is its own), so that "next to
/// the data dir" is a real place on the host.
fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn bwrap_or_skip(provider: &LocalProvider) -> bool {
    if *provider.isolation() == Isolation::None {
        assert!(
            !services_required(),
            "bubblewrap is required here (APNA_REQUIRE_SERVICES=1)"
        );
        eprintln!("skipped: bubblewrap is not usable on this machine");
        return false;
    }
    true
}

/// A file that must never be readable from a sandbox; removed when dropped.
struct Canary {
    path: PathBuf,
    text: String,
}

impl Canary {
    fn plant(dir: &Path) -> Canary {
        std::fs::create_dir_all(dir).unwrap();
        let text = format!("CANARY-{:016x}", rand_u64());
        let path = dir.join(format!(".apna-canary-{}", &text[7..]));
        std::fs::write(&path, &text).unwrap();
        Canary { path, text }
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

async fn proxy_for(provider: &LocalProvider) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shared: Arc<dyn SandboxProvider> = Arc::new(provider.clone());
    serve_proxy(
        listener,
        PreviewProxy::new(Arc::new(SandboxPreviewBackend::new(shared)), None),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_files_and_network_are_out_of_reach() {
    let data = data_dir();
    let provider = provider(data.path(), None).await;
    if !bwrap_or_skip(&provider) {
        return;
    }
    provider.set_warm_spare(false).await;
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    let in_home = Canary::plant(&home);
    let neighbour = PathBuf::from(format!("{}-neighbour", data.path().display()));
    let next_to_data = Canary::plant(&neighbour);
    let in_data = Canary::plant(data.path());
    // A server on the host's loopback, which the sandbox must not reach.
    let host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host_listener.local_addr().unwrap().port();

    let sb = provider.local("proj-canary").unwrap();
    sb.ensure().await.unwrap();
    for canary in [&in_home, &next_to_data, &in_data] {
        let path = canary.path.display();
        let dir = canary.path.parent().unwrap().display();
        let out = sb
            .exec(&exec(&format!("cat '{path}' 2>&1; ls -a '{dir}' 2>&1; find / -xdev -name '.apna-canary-*' -printf 'FOUND %p\\n' 2>/dev/null; echo done"), 30))
            .await
            .unwrap();
        assert!(out.output.contains("done"), "{}", out.output);
        assert!(
            !out.output.contains(&canary.text),
            "{path} readable: {}",
            out.output
        );
        assert!(
            !out.output.contains("FOUND"),
            "{path} visible: {}",
            out.output
        );
    }
    let out = sb
        .exec(&exec(
            &format!(
                "ls /root /home /srv /opt 2>&1; cat /etc/shadow /etc/passwd 2>&1 | head -3; \
                 grep CapEff /proc/self/status; ls /proc | grep -c '^[0-9]'; \
                 node -e \"fetch('http://127.0.0.1:{host_port}/').then(()=>console.log('NET-OPEN'),e=>console.log('NET-CLOSED',e.cause&&e.cause.code))\""
            ),
            30,
        ))
        .await
        .unwrap();
    assert!(
        out.output.contains("CapEff:\t0000000000000000"),
        "{}",
        out.output
    );
    assert!(out.output.contains("NET-CLOSED"), "{}", out.output);
    assert!(
        !out.output.contains("root:"),
        "/etc/passwd is not the host's: {}",
        out.output
    );
    drop(host_listener);

    // The dev server: the model turns Vite's own file guard off, and still
    // nothing outside the project is there to serve.
    sb.write_file(
        &ProjectPath::parse("vite.config.ts").unwrap(),
        b"import { defineConfig } from 'vite';\n\
          export default defineConfig({ server: { host: process.env.HOST, port: Number(process.env.PORT), strictPort: true, \
          allowedHosts: true, fs: { strict: false, allow: ['/'] } } });\n",
    )
    .await
    .unwrap();
    sb.stop().await.unwrap();
    sb.ensure().await.unwrap();
    wait_ready(&sb, Duration::from_secs(60)).await.unwrap();
    let addr = proxy_for(&provider).await;
    let host = "proj-canary.localhost";
    // Control: /@fs/ works for the project's own files (where the sandbox
    // mounts them: one path for every project, so pre-bundles are shared;
    // `?raw` because this test project lacks the kit main.tsx imports).
    let mount = apna::testing::local::templates().await.workspace;
    let (status, body) = get(
        addr,
        host,
        &format!("/@fs{}/src/main.tsx?raw", mount.display()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("createRoot"), "{body}");
    for canary in [&in_home, &next_to_data, &in_data] {
        for path in [
            format!("/@fs{}", canary.path.display()),
            format!("/@fs{}?raw", canary.path.display()),
        ] {
            let (status, body) = get(addr, host, &path).await;
            assert!(
                !body.contains(&canary.text),
                "{path} served the canary ({status})"
            );
        }
    }
    let (_, body) = get(addr, host, "/@fs/etc/shadow").await;
    assert!(!body.contains("root:"), "{body}");
    provider.stop_all().await;
}

async fn preview_ok(addr: std::net::SocketAddr, host: &str) -> bool {
    let (status, body) = get(addr, host, "/src/main.tsx").await;
    status == 200 && body.contains("createRoot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runaway_commands_end_clearly_and_others_keep_working() {
    let data = data_dir();
    let provider = provider_with_budget(data.path(), None, 64).await;
    if !bwrap_or_skip(&provider) {
        return;
    }
    provider.set_warm_spare(false).await;
    let addr = proxy_for(&provider).await;
    let victim = provider.local("proj-victim").unwrap();
    let bystander = provider.local("proj-bystander").unwrap();
    for sb in [&victim, &bystander] {
        sb.ensure().await.unwrap();
        wait_ready(sb, Duration::from_secs(60)).await.unwrap();
    }
    assert!(preview_ok(addr, "proj-bystander.localhost").await);

    // Each runaway runs while the bystander's preview and commands are checked.
    let cases: &[(&str, &str, u64, &[&str])] = &[
        ("fork bomb", "b() { b | b; }; b", 20, &["processes"]),
        (
            "5 GB write",
            "dd if=/dev/zero of=big.bin bs=1M count=5120 2>&1; ls -la big.bin",
            120,
            &["larger than 64 MB", "disk budget of 64 MB"],
        ),
        ("endless loop", "while :; do :; done", 5, &["timeout"]),
        (
            "5 GB into /tmp",
            "dd if=/dev/zero of=/tmp/big bs=1M count=5120 2>&1; echo rc=$?",
            120,
            &[
                "No space left",
                "larger than 64 MB",
                "File size limit exceeded",
            ],
        ),
    ];
    for (name, command, secs, expect) in cases {
        let started = Instant::now();
        let runaway = {
            let victim = victim.clone();
            let req = exec(command, *secs);
            tokio::spawn(async move { victim.exec(&req).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = Instant::now();
        assert!(
            preview_ok(addr, "proj-bystander.localhost").await,
            "{name}: the other preview stopped"
        );
        let out = bystander
            .exec(&exec("echo still-here && ls src | head -1", 30))
            .await
            .unwrap();
        assert!(
            out.output.contains("still-here"),
            "{name}: the other project's command: {}",
            out.output
        );
        let other_wait = during.elapsed();
        let out = runaway.await.unwrap().unwrap();
        eprintln!(
            "{name}: ended after {:?} (bystander answered in {other_wait:?}): {}",
            started.elapsed(),
            out.output
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        assert!(
            other_wait < Duration::from_secs(15),
            "{name}: bystander took {other_wait:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(secs + 30),
            "{name} did not end"
        );
        let clear = expect.iter().any(|e| out.output.contains(e));
        if *name == "fork bomb" && !provider.cgroups_enabled() {
            // Without a pids cgroup there is no counter to report: the timeout ends it.
            assert!(out.timed_out || clear, "{name}: {}", out.output);
        } else {
            assert!(clear, "{name}: no clear message in {}", out.output);
        }
        if *name == "5 GB write" {
            let size = std::fs::metadata(victim.root().join("big.bin"))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(size <= 64 * 1024 * 1024, "the file grew to {size} bytes");
            // Over budget now: writes are refused with the reason, deleting works.
            let err = victim
                .write_file(&ProjectPath::parse("src/more.txt").unwrap(), b"more")
                .await
                .unwrap_err();
            assert!(err.to_string().contains("disk budget"), "{err}");
            assert!(victim
                .delete_file(&ProjectPath::parse("big.bin").unwrap())
                .await
                .unwrap());
            victim
                .write_file(&ProjectPath::parse("src/more.txt").unwrap(), b"more")
                .await
                .unwrap();
        }
    }
    // Nothing of the runaways is left running, and the victim still works.
    let out = victim
        .exec(&exec("echo alive; ls /proc | grep -c '^[0-9]'", 30))
        .await
        .unwrap();
    assert!(out.output.contains("alive"), "{}", out.output);
    let procs: u32 = out
        .output
        .lines()
        .nth(1)
        .unwrap_or("99")
        .trim()
        .parse()
        .unwrap_or(99);
    assert!(
        procs < 10,
        "left-over processes in the sandbox: {}",
        out.output
    );
    assert!(preview_ok(addr, "proj-victim.localhost").await);
    provider.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_disk_budget_are_refused() {
    let data = data_dir();
    let provider = provider_with_budget(data.path(), None, 1).await;
    let sb: LocalSandbox = provider.local("proj-budget").unwrap();
    sb.import_source(&template().await.files).await.unwrap();
    let big = vec![b'x'; 2 * 1024 * 1024];
    let err = sb
        .write_file(&ProjectPath::parse("public/big.txt").unwrap(), &big)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("over its disk budget of 1 MB"),
        "{err}"
    );
    assert!(
        !sb.root().join("public/big.txt").exists(),
        "nothing was written"
    );
    sb.write_file(&ProjectPath::parse("src/small.ts").unwrap(), b"export {}\n")
        .await
        .unwrap();
    let out = sb
        .exec(&exec(
            "head -c 3000000 /dev/zero > blob.bin; echo wrote",
            30,
        ))
        .await
        .unwrap();
    assert!(out.output.contains("disk budget of 1 MB"), "{}", out.output);
}
