//! The local sandbox driver against real Node/Vite processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::preview::SandboxPreviewBackend;
use apna::sandbox::local::{wait_ready, Isolation, PreparedTemplate};
use apna::sandbox::{ExecRequest, ProjectPath, Sandbox, SandboxProvider, SandboxState, SourceFile};
use apna::testing::local::*;
use apna::testing::services::services_required;
use apna::Error;
use futures::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn p(s: &str) -> ProjectPath {
    ProjectPath::parse(s).unwrap()
}

fn exec(cmd: &str) -> ExecRequest {
    ExecRequest {
        command: cmd.into(),
        timeout: Duration::from_secs(30),
        max_output: 64 * 1024,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projects_preview_edit_and_hmr_through_the_proxy() {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let provider = provider(data.path(), Some(proxy_port)).await;
    let shared: Arc<dyn SandboxProvider> = Arc::new(provider.clone());
    let proxy =
        apna::preview::PreviewProxy::new(Arc::new(SandboxPreviewBackend::new(shared)), None);
    let addr = serve_proxy(listener, proxy).await;

    let a = provider.local("proj-a").unwrap();
    let b = provider.local("proj-b").unwrap();
    a.ensure().await.unwrap();
    b.ensure().await.unwrap();
    let sa = wait_ready(&a, Duration::from_secs(30)).await.unwrap();
    let sb = wait_ready(&b, Duration::from_secs(30)).await.unwrap();
    assert_ne!(sa.preview_addr, sb.preview_addr);

    let host_a = format!("proj-a.localhost:{proxy_port}");
    let host_b = format!("proj-b.localhost:{proxy_port}");
    for host in [&host_a, &host_b] {
        let (status, body) = get(addr, host, "/").await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains("/src/main.tsx"), "{body}");
    }

    // An edit through the trait shows up in the transformed module, for A only.
    let marker = format!("edited-{}", std::process::id());
    let app = format!("export default function App() {{ return <h1>{marker}</h1>; }}\n");
    a.write_file(&p("src/App.tsx"), app.as_bytes())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(addr, &host_a, "/src/App.tsx").await;
        if status == 200 && body.contains(&marker) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "edit not served: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body_b) = get(addr, &host_b, "/src/App.tsx").await;
    assert!(!body_b.contains(&marker));

    // HMR: Vite's client script names the socket's token; connect through the proxy.
    let (_, client) = get(addr, &host_a, "/@vite/client").await;
    assert!(
        client.contains(&format!("const hmrPort = {proxy_port};")),
        "HMR client port not set to the proxy's"
    );
    let token = client
        .split("const wsToken = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("wsToken in /@vite/client")
        .to_string();
    let mut req = format!("ws://{addr}/?token={token}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("host", host_a.parse().unwrap());
    req.headers_mut()
        .insert("sec-websocket-protocol", "vite-hmr".parse().unwrap());
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("ws connect timed out")
    .expect("ws connect");
    assert_eq!(resp.status().as_u16(), 101);
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("no HMR message")
        .expect("stream ended")
        .expect("ws error");
    let text = msg.into_text().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "connected", "{text}");

    // An HMR update for the next edit arrives on that socket. A browser
    // imports the module after its socket connects; do the same, so the edit
    // finds it transformed. Under load an update was once not seen within 10 s
    // of an edit (one run in three, never alone); a second, different edit
    // tells a lost watcher event apart from an HMR path the proxy broke.
    let (status, _) = get(addr, &host_a, "/src/App.tsx").await;
    assert_eq!(status, 200);
    let mut got_update = false;
    for attempt in 0..2 {
        let body = format!("export default function App() {{ return <p>again {attempt}</p>; }}\n");
        a.write_file(&p("src/App.tsx"), body.as_bytes())
            .await
            .unwrap();
        got_update = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(m)) = ws.next().await {
                if let Ok(t) = m.into_text() {
                    if t.contains("\"update\"") || t.contains("full-reload") {
                        return true;
                    }
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if got_update {
            break;
        }
    }
    assert!(got_update, "no HMR update after an edit");

    provider.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_restarts_a_killed_dev_server_and_status_survives_restart() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local("proj-kill").unwrap();
    assert_eq!(sb.status().await.unwrap().state, SandboxState::Missing);
    sb.ensure().await.unwrap();
    wait_ready(&sb, Duration::from_secs(30)).await.unwrap();
    let pid = sb.dev_server_pid().expect("pid");
    // SAFETY: test code signalling a child it started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = sb.status().await.unwrap();
        if st.state != SandboxState::Ready || sb.dev_server_pid() != Some(pid) {
            break;
        }
        assert!(Instant::now() < deadline, "kill not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = wait_ready(&sb, Duration::from_secs(30)).await.unwrap();
    assert_eq!(st.state, SandboxState::Ready);
    assert_ne!(sb.dev_server_pid(), Some(pid));
    assert!(sb.logs(200).await.unwrap().contains("dev server exited"));

    // A new process (new supervisor table) sees the files but no server.
    let other = provider_again(data.path()).await;
    let st = other.local("proj-kill").unwrap().status().await.unwrap();
    assert_eq!(st.state, SandboxState::Stopped);

    let pid = sb.dev_server_pid().unwrap();
    sb.stop().await.unwrap();
    assert_eq!(sb.status().await.unwrap().state, SandboxState::Stopped);
    assert!(
        !apna::sandbox::local::process::is_alive(pid),
        "vite survived stop"
    );
    assert!(
        !sb.logs(50).await.unwrap().is_empty(),
        "log file kept after stop"
    );
    sb.destroy().await.unwrap();
    assert_eq!(sb.status().await.unwrap().state, SandboxState::Missing);
    assert!(
        template()
            .await
            .node_modules
            .join("vite/package.json")
            .exists(),
        "destroy touched the cache"
    );
}

async fn provider_again(data: &std::path::Path) -> apna::sandbox::local::LocalProvider {
    provider(data, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_exec_and_source_round_trip() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local("proj-files").unwrap();
    let e = sb.read_file(&p("src/App.tsx")).await.unwrap_err();
    assert!(matches!(e, Error::NotReady(_)), "{e}");
    sb.import_source(&template().await.files).await.unwrap();

    // Listing: template sources, never node_modules or caches.
    let listed: Vec<String> = sb
        .list_files()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert!(listed.contains(&"src/App.tsx".to_string()));
    assert!(listed.contains(&"package.json".to_string()));
    assert!(listed
        .iter()
        .all(|f| !f.starts_with("node_modules") && !f.starts_with(".vite")));

    // Reads through node_modules (into the cache) work; writes there are refused.
    let pkg = sb
        .read_file(&p("node_modules/vite/package.json"))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&pkg).contains("\"name\": \"vite\""));
    let e = sb
        .write_file(&p("node_modules/vite/x.js"), b"x")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)));

    // Symlink escapes made by a command are refused for read, write and delete.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    let out = sb
        .exec(&exec(&format!("ln -s {} esc", outside.path().display())))
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    if sb.root().join("esc").symlink_metadata().is_ok() {
        for r in [
            sb.read_file(&p("esc/secret")).await.map(|_| ()),
            sb.write_file(&p("esc/secret"), b"pwned").await,
            sb.write_file(&p("esc/new.txt"), b"pwned").await,
            sb.delete_file(&p("esc/secret")).await.map(|_| ()),
        ] {
            let e = r.unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{e}");
            assert!(e.to_string().contains("outside the project"), "{e}");
        }
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "s"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    } else {
        panic!("ln -s did not create the link");
    }

    // Export → import round trip replaces the tree.
    sb.write_file(&p("src/extra.ts"), b"export const x = 1;\n")
        .await
        .unwrap();
    let tree = sb.export_source().await.unwrap();
    assert!(tree.files.iter().any(|f| f.path == "src/extra.ts"));
    assert!(tree
        .files
        .iter()
        .all(|f| !f.path.starts_with("node_modules")));
    let mut smaller = tree.clone();
    smaller.files.retain(|f| f.path != "src/extra.ts");
    smaller.files.push(SourceFile {
        path: "src/new.ts".into(),
        data: b"export {}\n".to_vec(),
        executable: false,
    });
    sb.import_source(&smaller).await.unwrap();
    assert!(sb.read_file(&p("src/extra.ts")).await.is_err());
    assert_eq!(
        sb.read_file(&p("src/new.ts")).await.unwrap(),
        b"export {}\n"
    );
    assert!(sb.delete_file(&p("src/new.ts")).await.unwrap());
    assert!(!sb.delete_file(&p("src/new.ts")).await.unwrap());

    // exec: exit codes, output cap with marker, timeout kills the group.
    let out = sb.exec(&exec("echo hi; exit 3")).await.unwrap();
    assert_eq!((out.exit_code, out.output.trim()), (Some(3), "hi"));
    let out = sb
        .exec(&ExecRequest {
            command: "yes | head -c 100000".into(),
            timeout: Duration::from_secs(10),
            max_output: 1000,
        })
        .await
        .unwrap();
    assert!(out.truncated);
    assert!(out.output.contains("output truncated"));
    assert!(out.output.len() < 1200);
    let started = Instant::now();
    let out = sb
        .exec(&ExecRequest {
            command: "sleep 30 & sleep 30; echo never".into(),
            timeout: Duration::from_secs(1),
            max_output: 1000,
        })
        .await
        .unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let leftover = std::process::Command::new("sh")
        .args(["-c", "pgrep -f '^sleep 30$' || true"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&leftover.stdout).trim().is_empty(),
        "background sleep survived the timeout"
    );
    // The server's environment does not leak into commands.
    let out = sb.exec(&exec("env")).await.unwrap();
    assert!(
        !out.output.lines().any(|l| l.starts_with("CARGO")),
        "{}",
        out.output
    );

    // A package-manager command first gets the project its own node_modules copy.
    assert!(sb
        .root()
        .join("node_modules")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    let out = sb.exec(&exec("npm --version")).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    let nm = sb.root().join("node_modules").symlink_metadata().unwrap();
    assert!(nm.is_dir(), "node_modules still shared");
    assert!(sb.root().join("node_modules/vite/package.json").is_file());
    assert!(sb.root().join("node_modules/.bin/vite").exists());
    sb.destroy().await.unwrap();
    assert!(template()
        .await
        .node_modules
        .join("vite/package.json")
        .is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bubblewrap_confines_commands_to_the_project() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    if *provider.isolation() == Isolation::None {
        assert!(
            !services_required(),
            "bubblewrap is required (APNA_REQUIRE_SERVICES=1): apt-get install bubblewrap"
        );
        eprintln!("skipped: bubblewrap not installed");
        return;
    }
    std::fs::write(data.path().join("apna.db"), "secret-db").unwrap();
    let sb = provider.local("proj-bwrap").unwrap();
    let other = provider.local("proj-other").unwrap();
    sb.import_source(&template().await.files).await.unwrap();
    other.import_source(&template().await.files).await.unwrap();
    let db = data.path().join("apna.db");
    let out = sb
        .exec(&exec(&format!("cat {} 2>&1; echo rc=$?", db.display())))
        .await
        .unwrap();
    assert!(
        !out.output.contains("secret-db"),
        "data dir visible: {}",
        out.output
    );
    let out = sb
        .exec(&exec(&format!(
            "ls {} 2>&1; echo rc=$?",
            other.root().display()
        )))
        .await
        .unwrap();
    assert!(
        !out.output.contains("package.json"),
        "other project visible: {}",
        out.output
    );
    let out = sb
        .exec(&exec("touch /usr/apna-x 2>&1; echo rc=$?"))
        .await
        .unwrap();
    assert!(out.output.contains("rc=1"), "{}", out.output);
    let out = sb
        .exec(&exec(
            "touch ok.txt /tmp/ok && node --version && echo rc=$?",
        ))
        .await
        .unwrap();
    assert!(out.output.contains("rc=0"), "{}", out.output);
    assert!(sb.root().join("ok.txt").exists());
    // Vite runs inside it too.
    sb.ensure().await.unwrap();
    wait_ready(&sb, Duration::from_secs(30)).await.unwrap();
    provider.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_dev_server_is_reported_and_recovers_once_fixed() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local("proj-crash").unwrap();
    sb.import_source(&template().await.files).await.unwrap();
    let config = sb.read_file(&p("vite.config.ts")).await.unwrap();
    sb.write_file(
        &p("vite.config.ts"),
        b"throw new Error(\"config exploded\");\n",
    )
    .await
    .unwrap();
    sb.ensure().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = sb.status().await.unwrap();
        if st.state == SandboxState::Crashed {
            assert!(st.detail.unwrap_or_default().contains("exited"));
            break;
        }
        assert_ne!(st.state, SandboxState::Ready);
        assert!(Instant::now() < deadline, "never reported Crashed: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sb.logs(100).await.unwrap().contains("config exploded"));
    // The supervisor keeps retrying with backoff; a fixed config comes up.
    sb.write_file(&p("vite.config.ts"), &config).await.unwrap();
    wait_ready(&sb, Duration::from_secs(30)).await.unwrap();
    provider.stop_all().await;
}

#[tokio::test]
async fn starters_are_installed_once_per_lock_file() {
    let first = templates().await;
    let events = std::sync::Mutex::new(Vec::new());
    let again = apna::sandbox::local::prepare_templates(
        &apna::sandbox::local::template::bundled_templates_dir(),
        &test_cache_dir(),
        &|e| events.lock().unwrap().push(e),
    )
    .await
    .unwrap();
    let names: Vec<&str> = again.starters.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["app", "dashboard", "landing", "minimal"]);
    let events = events.into_inner().unwrap();
    // Nothing is installed or bundled again; starters built on `app` share its entry.
    assert!(
        events
            .iter()
            .all(|e| matches!(e, apna::sandbox::local::TemplateProgress::Cached { .. })),
        "{events:?}"
    );
    assert_eq!(events.len(), 2, "one per lock file: {events:?}");
    let (app, dashboard, minimal) = (
        first.get("app").unwrap(),
        first.get("dashboard").unwrap(),
        first.get("minimal").unwrap(),
    );
    assert_eq!(again.get("app").unwrap().hash, app.hash);
    assert_eq!(dashboard.node_modules, app.node_modules);
    assert_ne!(minimal.node_modules, app.node_modules);
    assert!(app.node_modules.join(".bin/vite").exists());
    assert!(app.node_modules.join("recharts/package.json").exists());
    assert!(!minimal.node_modules.join("recharts").exists());
    // Only sources travel with a starter; dependencies and metadata stay out.
    for t in &first.starters {
        let paths: Vec<&str> = t.files.files.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"src/App.tsx"), "{}", t.name);
        assert!(paths.contains(&"package-lock.json"), "{}", t.name);
        assert!(
            paths.iter().all(|p| !p.starts_with("node_modules")
                && !p.starts_with(".vite")
                && !["template.json", "prompt.md", "preview.png"].contains(p)),
            "{}: {paths:?}",
            t.name
        );
    }
    // A starter with a base has the base's files, its own where they differ.
    let file = |t: &PreparedTemplate, p: &str| {
        t.files
            .files
            .iter()
            .find(|f| f.path == p)
            .map(|f| f.data.clone())
    };
    assert!(file(dashboard, "src/components/ui/button.tsx").is_some());
    assert!(file(dashboard, "src/pages/overview.tsx").is_some());
    assert_ne!(file(dashboard, "src/App.tsx"), file(app, "src/App.tsx"));
    assert!(file(minimal, "src/components/ui/button.tsx").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_a_project_with_extra_dependencies_installs_them() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = provider.local("proj-deps").unwrap();
    let mut tree = template().await.files;
    // A local (file:) dependency: installable without the network.
    let pkg = tree
        .files
        .iter_mut()
        .find(|f| f.path == "package.json")
        .unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&pkg.data).unwrap();
    json["dependencies"]["apna-local-dep"] = "file:./local-dep".into();
    pkg.data = serde_json::to_vec_pretty(&json).unwrap();
    tree.files.push(SourceFile {
        path: "local-dep/package.json".into(),
        data: br#"{"name":"apna-local-dep","version":"1.0.0","main":"index.js"}"#.to_vec(),
        executable: false,
    });
    tree.files.push(SourceFile {
        path: "local-dep/index.js".into(),
        data: b"module.exports = 42;\n".to_vec(),
        executable: false,
    });
    let installed = apna::snapshot::import_with_dependencies(&sb, &tree)
        .await
        .unwrap();
    assert!(installed);
    let nm = sb.root().join("node_modules");
    assert!(
        nm.symlink_metadata().unwrap().is_dir(),
        "node_modules not detached"
    );
    assert!(
        nm.join("apna-local-dep/package.json").exists(),
        "dependency not installed"
    );
    assert!(!template()
        .await
        .node_modules
        .join("apna-local-dep")
        .exists());

    // The template's own manifest needs no install: node_modules stays a link.
    let plain = provider.local("proj-nodeps").unwrap();
    let installed = apna::snapshot::import_with_dependencies(&plain, &template().await.files)
        .await
        .unwrap();
    assert!(!installed);
    let link = plain
        .root()
        .join("node_modules")
        .symlink_metadata()
        .unwrap();
    assert!(link.file_type().is_symlink());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_adopts_the_warm_spare_under_bubblewrap() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    if *provider.isolation() == Isolation::None {
        assert!(!provider.wait_spare_ready(Duration::from_millis(50)).await);
        eprintln!("skipped: no bubblewrap, no warm spare");
        return;
    }
    assert!(provider.wait_spare_ready(Duration::from_secs(30)).await);
    let sb = provider.local("proj-warm").unwrap();
    let started = Instant::now();
    let st = sb.ensure().await.unwrap();
    let took = started.elapsed();
    assert_eq!(st.state, SandboxState::Ready, "spare not adopted: {st:?}");
    assert!(took < Duration::from_millis(200), "adoption took {took:?}");
    let addr: std::net::SocketAddr = st.preview_addr.unwrap().parse().unwrap();

    // The running server serves the renamed directory, edits included.
    sb.write_file(
        &p("src/App.tsx"),
        b"export default function App() { return <p>warm-edit</p>; }\n",
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(addr, "proj-warm.localhost", "/src/App.tsx").await;
        if status == 200 && body.contains("warm-edit") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "edit not served: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A restart after adoption runs in the project's own directory.
    let pid = sb.dev_server_pid().unwrap();
    // SAFETY: test code signalling a child it started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = wait_ready(&sb, Duration::from_secs(30)).await.unwrap();
    let addr: std::net::SocketAddr = st.preview_addr.unwrap().parse().unwrap();
    let (status, body) = get(addr, "proj-warm.localhost", "/src/App.tsx").await;
    assert_eq!(status, 200);
    assert!(body.contains("warm-edit"));
    assert!(sb.logs(500).await.unwrap().contains("dev server exited"));
    assert!(data.path().join("logs/proj-warm.log").is_file());

    // The next spare is made; stop_all removes it.
    assert!(provider.wait_spare_ready(Duration::from_secs(30)).await);
    provider.stop_all().await;
    let left: Vec<String> = std::fs::read_dir(data.path().join("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["proj-warm".to_string()]);
}

/// Destroying a sandbox ends the commands still running in it (a cancelled
/// run's build), so the directory can go; their late writes do not stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_ends_commands_still_writing_into_the_project() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let sb = Arc::new(provider.local("proj-busy").unwrap());
    sb.import_source(&template().await.files).await.unwrap();
    let busy = {
        let sb = sb.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let out = sb
                .exec(&exec(
                    "mkdir -p out && i=0; while true; do i=$((i+1)); echo $i > out/f$((i % 50)); done",
                ))
                .await;
            (out, started.elapsed())
        })
    };
    let root = sb.root().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !root.join("out/f1").exists() {
        assert!(Instant::now() < deadline, "the command never wrote");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sb.destroy().await.unwrap();
    assert!(!root.exists());
    let (out, took) = busy.await.unwrap();
    let out = out.unwrap();
    assert!(!out.timed_out && out.exit_code.is_none(), "{out:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!root.exists(), "a killed command recreated the directory");
}

/// Command lines of this test process's descendants that run Vite.
fn dev_server_command_lines() -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let mut at = pid;
        while let Some(parent) = apna::sandbox::local::process::parent_pid(at).filter(|p| *p > 1) {
            if parent == me {
                if cmd.contains("vite/bin/vite.js") {
                    found.push(cmd.clone());
                }
                break;
            }
            at = parent;
        }
    }
    found
}

/// Polls `path` on a dev server until it answers 200 with `needle` in the body.
async fn until_served(addr: std::net::SocketAddr, host: &str, path: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(addr, host, path).await;
        if status == 200 && body.contains(needle) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never served {needle:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starters_create_their_own_files_and_share_the_spare_when_they_can() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    let bwrap = *provider.isolation() != Isolation::None;
    if bwrap {
        assert!(provider.wait_spare_ready(Duration::from_secs(60)).await);
    }
    // Built on the default starter: adopts the running spare, its own files on top.
    let dash = provider.local("proj-dash").unwrap();
    let started = Instant::now();
    let st = dash.ensure_from("dashboard").await.unwrap();
    let took = started.elapsed();
    if bwrap {
        assert_eq!(st.state, SandboxState::Ready, "spare not adopted: {st:?}");
        assert!(took < Duration::from_millis(500), "adoption took {took:?}");
    }
    let st = wait_ready(&dash, Duration::from_secs(60)).await.unwrap();
    let addr: std::net::SocketAddr = st.preview_addr.unwrap().parse().unwrap();
    until_served(addr, "proj-dash.localhost", "/src/App.tsx", "AppSidebar").await;
    let listed: Vec<String> = dash
        .list_files()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert!(listed.contains(&"src/pages/overview.tsx".to_string()));
    assert!(listed.contains(&"src/components/ui/dialog.tsx".to_string()));
    assert!(!listed
        .iter()
        .any(|p| p == "template.json" || p == "preview.png"));

    // Other dependencies: its own node_modules, a dev server of its own.
    let min = provider.local("proj-min").unwrap();
    min.ensure_from("minimal").await.unwrap();
    let st = wait_ready(&min, Duration::from_secs(60)).await.unwrap();
    let addr: std::net::SocketAddr = st.preview_addr.unwrap().parse().unwrap();
    until_served(addr, "proj-min.localhost", "/src/main.tsx", "createRoot").await;
    let link = std::fs::canonicalize(min.root().join("node_modules")).unwrap();
    assert_eq!(link, starter("minimal").await.node_modules);
    assert!(!min.root().join("src/components/ui").exists());

    let err = provider
        .local("proj-x")
        .unwrap()
        .ensure_from("nope")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("available: app, dashboard"),
        "{err}"
    );
    assert!(!provider.local("proj-x").unwrap().root().exists());
    provider.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_share_the_dependency_prebundle_and_never_change_it() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    if *provider.isolation() == Isolation::None {
        assert!(
            template().await.vite_deps.is_none()
                || !provider.local("p").unwrap().root().join(".vite").exists()
        );
        eprintln!("skipped: the pre-bundle is shared under bubblewrap only");
        return;
    }
    provider.set_warm_spare(false).await;
    let shared = template()
        .await
        .vite_deps
        .expect("a pre-bundle under bubblewrap");
    let count = |d: &std::path::Path| std::fs::read_dir(d).unwrap().count();
    let shared_files = count(&shared);
    assert!(shared.join("recharts.js").is_file() && shared.join("lucide-react.js").is_file());
    // Without their maps: a dev server would combine each with its own on first use.
    let maps: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".map"))
        .collect();
    assert!(
        maps.is_empty(),
        "source maps left in the pre-bundle: {maps:?}"
    );

    let sb = provider.local("proj-deps").unwrap();
    sb.ensure().await.unwrap();
    let deps_link = sb.root().join(".vite/deps");
    assert_eq!(std::fs::read_link(&deps_link).unwrap(), shared);
    let st = wait_ready(&sb, Duration::from_secs(60)).await.unwrap();
    let addr: std::net::SocketAddr = st.preview_addr.unwrap().parse().unwrap();
    let host = "proj-deps.localhost";
    // The dev server runs with apna's Node flags (Maglev as V8's top tier).
    let servers = dev_server_command_lines();
    assert!(
        servers.iter().any(|c| c.contains("node --max-opt=2 ")),
        "{servers:?}"
    );
    // A page using a chart and icons: served from the pre-bundle, no re-optimising.
    sb.write_file(
        &p("src/App.tsx"),
        b"import { Line, LineChart } from \"recharts\";\nimport { Star } from \"lucide-react\";\n\
export default function App() { return <div><Star /><LineChart width={100} height={50} data={[{v:1},{v:2}]}><Line dataKey=\"v\" /></LineChart></div>; }\n",
    )
    .await
    .unwrap();
    let app = until_served(addr, host, "/src/App.tsx", "/.vite/deps/recharts.js").await;
    let url = app
        .split('"')
        .find(|s| s.starts_with("/.vite/deps/recharts.js"))
        .unwrap()
        .to_string();
    let (status, body) = get(addr, host, &url).await;
    assert_eq!(status, 200);
    assert!(
        body.len() > 100_000,
        "the bundled chart library: {} bytes",
        body.len()
    );
    let log = sb.logs(200).await.unwrap();
    assert!(
        !log.to_lowercase().contains("optimiz"),
        "Vite bundled again:\n{log}"
    );
    assert!(std::fs::symlink_metadata(&deps_link)
        .unwrap()
        .file_type()
        .is_symlink());

    // An import outside the pre-bundle: Vite bundles again for this project
    // only, replacing the link with its own folder; the shared one is intact.
    sb.write_file(
        &p("src/App.tsx"),
        b"import { de } from \"date-fns/locale/de\";\nexport default function App() { return <p>{de.code}</p>; }\n",
    )
    .await
    .unwrap();
    until_served(addr, host, "/src/App.tsx", "date-fns_locale_de").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::symlink_metadata(&deps_link)
        .unwrap()
        .file_type()
        .is_symlink()
    {
        assert!(
            Instant::now() < deadline,
            "Vite never re-bundled: {}",
            sb.logs(50).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&shared), shared_files);
    assert!(shared.join("_metadata.json").is_file());
    provider.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_a_package_the_starter_has_keeps_the_shared_node_modules() {
    let data = tempfile::tempdir().unwrap();
    let provider = provider(data.path(), None).await;
    provider.set_warm_spare(false).await;
    let sb = provider.local("proj-npm").unwrap();
    sb.import_source(&template().await.files).await.unwrap();
    let run = |command: &str| ExecRequest {
        command: command.into(),
        timeout: Duration::from_secs(120),
        max_output: 64 * 1024,
    };
    let started = Instant::now();
    let out = sb
        .exec(&run("npm install recharts lucide-react@^1 -D"))
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    assert!(out.output.contains("recharts@3.11.1"), "{}", out.output);
    assert!(out.output.contains("lucide-react@1.81.0"), "{}", out.output);
    assert!(started.elapsed() < Duration::from_secs(1));
    let link = sb.root().join("node_modules");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let out = sb.exec(&run("npm install")).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    // (Another version, a new package or an unknown flag run npm as before:
    // see `packages` unit tests and the restore test above.)
    provider.stop_all().await;
}
