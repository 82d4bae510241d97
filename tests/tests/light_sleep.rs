//! Issue #16, light sleep, with real processes: `apna serve`'s parts in this
//! process (API, preview proxy, interpreter, the light-sleep timer), Vite dev
//! servers under bubblewrap when it is installed, SQLite on disk and the mock
//! model. The idle time is 3 s (`APNA_PREVIEW_IDLE_MINUTES=0.05`), so the
//! timer looks every second.
//!
//! * an open HMR socket keeps a preview awake (while an unviewed one next to
//!   it falls asleep), and closing it lets it sleep;
//! * a sleeping project wakes on a preview request (starting page first);
//! * a chat wakes a sleeping project, and its run — longer than the idle
//!   time, with nobody viewing the preview — never finds its dev server
//!   asleep or restarted;
//! * a sleeping project is still a project with its files after a restart of
//!   the server, and wakes on a preview request;
//! * a sleeping project of the warm spare's dependencies wakes on the spare's
//!   running dev server (preview and chat at once wake it once), serves its
//!   own files (not the starter's), keeps files it deleted deleted and keeps
//!   its state (`.apna-build`, `.git`); one with other dependencies wakes
//!   cold; a hand-over failing at any step falls back to a cold start and
//!   loses nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use apna::domain::{Project, ProjectStatus, RunStatus, User, LOCAL_USER};
use apna::sandbox::local::{HandoverFault, LocalProvider};
use apna::sandbox::{ProjectPath, Sandbox, SandboxState, SourceTree};
use apna::server::LocalServer;
use apna::testing::fixtures::{ready_project, server_config};
use apna_tests::mock_anthropic::{MockAnthropic, Script, Turn};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IDLE_MINUTES: &str = "0.05";
const IDLE: Duration = Duration::from_secs(3);

/// A server on a free port, its light-sleep timer running.
struct Served {
    server: LocalServer,
    port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Served {
    async fn start(data: &Path, mock: &str) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = server_config(
            data,
            mock,
            &[
                ("APNA_PREVIEW_IDLE_MINUTES", IDLE_MINUTES),
                ("APNA_SMOKE_CHECK", "0"),
                ("PORT", &port.to_string()),
            ],
        );
        let server = apna::server::build(config, &|_| {}).await.expect("server");
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
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let sleeper = apna::server::spawn_light_sleep(server.state.backends.clone());
        Served {
            server,
            port,
            tasks: vec![serve, sleeper],
        }
    }

    /// Stops serving and every dev server (a clean `apna serve` shutdown).
    async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.server.stop_sandboxes().await;
    }

    /// A ready project whose dev server is serving.
    async fn awake_project(&self) -> Project {
        let p = ready_project(&*self.server.state.store).await;
        let sb = self.server.state.sandboxes.sandbox(&p.id).unwrap();
        sb.ensure().await.unwrap();
        self.wait_state(&p.id, SandboxState::Ready, Duration::from_secs(60))
            .await;
        p
    }

    async fn state_of(&self, id: &str) -> SandboxState {
        self.server
            .state
            .sandboxes
            .sandbox(id)
            .unwrap()
            .status()
            .await
            .unwrap()
            .state
    }

    async fn wait_state(&self, id: &str, want: SandboxState, limit: Duration) {
        let started = Instant::now();
        loop {
            let st = self.state_of(id).await;
            if st == want {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "project {id}: {st:?}, not {want:?}, after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /api/projects/{id}` as the UI sends it.
    async fn api_project(&self, id: &str) -> Value {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/projects/{id}", self.port))
            .header("host", format!("localhost:{}", self.port))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    /// `GET /api/projects` as the UI sends it: each project's `sandbox_state`.
    async fn api_list_states(&self) -> std::collections::HashMap<String, Value> {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/projects", self.port))
            .header("host", format!("localhost:{}", self.port))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let list: Value = r.json().await.unwrap();
        list["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["sandbox_state"].clone(),
                )
            })
            .collect()
    }

    /// One preview request for `path` as a browser's page load: (status, body).
    async fn preview(&self, id: &str, path: &str) -> (u16, String) {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .header("host", format!("{id}.localhost:{}", self.port))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Polls the preview until the app itself answers 200 (not the starting page).
    async fn wait_preview(&self, id: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let (status, body) = self.preview(id, "/").await;
            if status == 200 && body.contains("id=\"root\"") {
                return body;
            }
            assert!(
                started.elapsed() < limit,
                "preview of {id} not served after {limit:?}: {status} {body:.200}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens Vite's HMR WebSocket through the proxy (what an open tab holds).
    async fn open_hmr(&self, id: &str) -> tokio::net::TcpStream {
        let (_, client) = self.preview(id, "/@vite/client").await;
        let token = client
            .split("const wsToken = \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("wsToken in /@vite/client")
            .to_string();
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let req = format!(
            "GET /?token={token} HTTP/1.1\r\nHost: {id}.localhost:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: vite-hmr\r\n\r\n",
            self.port
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
                .await
                .expect("upgrade answer")
                .unwrap();
            assert!(n > 0, "closed before the upgrade answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s
    }
}

fn quiet_script() -> Script {
    Script::new(vec![Turn::text("Nothing to change.")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_hmr_socket_keeps_the_preview_awake() {
    let mock = MockAnthropic::start(quiet_script()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = Served::start(data.path(), &mock.url()).await;
    let viewed = s.awake_project().await;
    let socket = s.open_hmr(&viewed.id).await;
    let unviewed = s.awake_project().await;
    let pid = s
        .server
        .sandboxes
        .as_ref()
        .unwrap()
        .local(&viewed.id)
        .unwrap()
        .dev_server_pid();
    assert!(pid.is_some());
    // The unviewed one falls asleep meanwhile: the timer runs, and a preview
    // without a socket does not stay up.
    s.wait_state(&unviewed.id, SandboxState::Stopped, IDLE * 4)
        .await;
    tokio::time::sleep(IDLE * 3).await;
    assert_eq!(s.state_of(&viewed.id).await, SandboxState::Ready);
    let local = s
        .server
        .sandboxes
        .as_ref()
        .unwrap()
        .local(&viewed.id)
        .unwrap();
    assert_eq!(local.dev_server_pid(), pid, "the dev server was restarted");
    let v = s.api_project(&viewed.id).await;
    assert_eq!(v["sandbox_state"], "ready", "{v}");
    let u = s.api_project(&unviewed.id).await;
    assert_eq!(u["sandbox_state"], "stopped", "{u}");
    assert_eq!(u["status"], "ready", "{u}");
    // The list reads the page's states in one call to the provider: the
    // same states, `null` for a hibernated project (whose sandbox would say
    // `missing`), `missing` for one whose sandbox was never made.
    let store = &s.server.state.store;
    let hibernated = ready_project(&**store).await;
    assert!(store
        .set_project_status(
            &hibernated.id,
            ProjectStatus::Ready,
            ProjectStatus::Hibernated,
            None
        )
        .await
        .unwrap());
    let never_made = ready_project(&**store).await;
    let listed = s.api_list_states().await;
    assert_eq!(listed[&viewed.id], "ready", "{listed:?}");
    assert_eq!(listed[&unviewed.id], "stopped", "{listed:?}");
    assert_eq!(listed[&hibernated.id], Value::Null, "{listed:?}");
    assert_eq!(listed[&never_made.id], "missing", "{listed:?}");
    assert_eq!(listed.len(), 4, "{listed:?}");

    // The tab closes: the preview sleeps an idle time later.
    drop(socket);
    s.wait_state(&viewed.id, SandboxState::Stopped, IDLE * 4)
        .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sleeping_project_wakes_on_a_preview_request() {
    let mock = MockAnthropic::start(quiet_script()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = Served::start(data.path(), &mock.url()).await;
    let p = s.awake_project().await;
    s.wait_state(&p.id, SandboxState::Stopped, IDLE * 4).await;
    assert!(
        s.server
            .state
            .sandboxes
            .sandbox(&p.id)
            .unwrap()
            .list_files()
            .await
            .unwrap()
            .iter()
            .any(|f| f.path == "src/App.tsx"),
        "files kept while asleep"
    );
    // The first request gets the starting page (and wakes it); the page
    // reloads until the app answers.
    let (status, body) = s.preview(&p.id, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("Starting the preview"), "{body:.300}");
    let started = Instant::now();
    s.wait_preview(&p.id, Duration::from_secs(30)).await;
    eprintln!("preview back after light sleep in {:?}", started.elapsed());
    assert_eq!(s.state_of(&p.id).await, SandboxState::Ready);
    assert_eq!(s.api_project(&p.id).await["sandbox_state"], "ready");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chat_wakes_a_sleeping_project_and_its_run_never_finds_it_asleep() {
    // Three model calls 2.5 s apart: the run lasts well past the idle time,
    // and nobody requests the preview while it runs.
    let slow = |t: Turn| Turn {
        delay_ms: Some(2500),
        ..t
    };
    let script = Script::new(vec![
        slow(Turn::tool(
            "Adding a title.",
            "write_file",
            json!({"path": "src/Title.tsx", "content": "export function Title() { return <h1>Habits</h1>; }\n"}),
        )),
        slow(Turn::tool(
            "And a footer.",
            "write_file",
            json!({"path": "src/Footer.tsx", "content": "export function Footer() { return <footer>ok</footer>; }\n"}),
        )),
        slow(Turn::text("Added a title and a footer.")),
    ]);
    let mock = MockAnthropic::start(script).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = Served::start(data.path(), &mock.url()).await;
    let p = s.awake_project().await;
    s.wait_state(&p.id, SandboxState::Stopped, IDLE * 4).await;

    let run = apna::run::start_run(&s.server.state, &p, "add a title and a footer")
        .await
        .expect("run starts");
    let local = s.server.sandboxes.as_ref().unwrap().local(&p.id).unwrap();
    let started = Instant::now();
    let mut awake_pid = None;
    let mut samples = 0;
    let status = loop {
        let r = s
            .server
            .state
            .store
            .get_run(&run.id)
            .await
            .unwrap()
            .unwrap();
        if r.status.is_terminal() {
            break r.status;
        }
        let st = s.state_of(&p.id).await;
        match (awake_pid, st) {
            (None, SandboxState::Ready) => awake_pid = local.dev_server_pid(),
            (Some(pid), _) => {
                samples += 1;
                assert!(
                    !matches!(st, SandboxState::Stopped | SandboxState::Missing),
                    "the dev server fell asleep mid-run after {:?}",
                    started.elapsed()
                );
                assert_eq!(local.dev_server_pid(), Some(pid), "restarted mid-run");
            }
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(300), "run too slow");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, RunStatus::Succeeded);
    assert!(
        awake_pid.is_some(),
        "EnsureSandbox never started the dev server"
    );
    assert!(
        started.elapsed() > IDLE * 2 && samples > 20,
        "the run must outlast the idle time for this test to mean anything ({:?}, {samples} samples)",
        started.elapsed()
    );
    assert_eq!(mock.handle().answered_calls(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn light_sleep_survives_a_restart() {
    let mock = MockAnthropic::start(quiet_script()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let a = Served::start(data.path(), &mock.url()).await;
    let p = a.awake_project().await;
    let marker = apna::sandbox::ProjectPath::parse("src/marker.txt").unwrap();
    a.server
        .state
        .sandboxes
        .sandbox(&p.id)
        .unwrap()
        .write_file(&marker, b"kept\n")
        .await
        .unwrap();
    a.wait_state(&p.id, SandboxState::Stopped, IDLE * 4).await;
    a.stop().await;

    let b = Served::start(data.path(), &mock.url()).await;
    // Listed before anything asked for its sandbox: no supervisor in memory,
    // the files on disk say asleep.
    assert_eq!(b.api_list_states().await[&p.id], "stopped");
    let v = b.api_project(&p.id).await;
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["sandbox_state"], "stopped", "{v}");
    let sb = b.server.state.sandboxes.sandbox(&p.id).unwrap();
    assert_eq!(sb.read_file(&marker).await.unwrap(), b"kept\n");
    let (_, first) = b.preview(&p.id, "/").await;
    assert!(first.contains("Starting the preview"), "{first:.300}");
    b.wait_preview(&p.id, Duration::from_secs(30)).await;
    assert_eq!(b.api_project(&p.id).await["sandbox_state"], "ready");
    b.stop().await;
}

const OWN_APP: &str = "export default function App() {\n  return <h1 className=\"tracking-[0.37em]\">Slept And Woke Intact</h1>;\n}\n";
/// A starter file the project deleted (nothing imports it).
const DELETED: &str = "src/components/ui/badge.tsx";

impl Served {
    fn local(&self) -> &LocalProvider {
        self.server.sandboxes.as_deref().unwrap()
    }

    fn sandbox(&self, id: &str) -> std::sync::Arc<dyn Sandbox> {
        self.server.state.sandboxes.sandbox(id).unwrap()
    }

    /// The spare's dev server pid once it is ready.
    async fn ready_spare(&self) -> u32 {
        assert!(
            self.local().wait_spare_ready(Duration::from_secs(60)).await,
            "no warm spare (is bubblewrap installed?)"
        );
        let pids = self.local().spare_pids();
        assert_eq!(pids.len(), 1, "{pids:?}");
        pids[0]
    }

    /// An awake project with its own App, a deleted starter file, and the
    /// state a Verify and git leave (outside the sources), put to sleep.
    async fn sleeping_project_of_its_own(&self) -> (Project, SourceTree) {
        let p = self.awake_project().await;
        let sb = self.sandbox(&p.id);
        sb.write_file(
            &ProjectPath::parse("src/App.tsx").unwrap(),
            OWN_APP.as_bytes(),
        )
        .await
        .unwrap();
        sb.write_file(
            &ProjectPath::parse("src/pages/Notes.tsx").unwrap(),
            b"export const notes = 1;\n",
        )
        .await
        .unwrap();
        assert!(sb
            .delete_file(&ProjectPath::parse(DELETED).unwrap())
            .await
            .unwrap());
        let root = self.local().local(&p.id).unwrap().root().to_path_buf();
        for (rel, data) in [
            (".apna-build/tsc.tsbuildinfo", "{\"version\":\"7\"}\n"),
            (".git/HEAD", "ref: refs/heads/main\n"),
        ] {
            std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
            std::fs::write(root.join(rel), data).unwrap();
        }
        sb.stop().await.unwrap();
        assert_eq!(self.state_of(&p.id).await, SandboxState::Stopped);
        let tree = sb.export_source().await.unwrap();
        (p, tree)
    }

    /// What a sleeping project must still have after any wake.
    async fn assert_intact(&self, id: &str, tree: &SourceTree) {
        let sb = self.sandbox(id);
        assert_eq!(&sb.export_source().await.unwrap(), tree, "sources changed");
        let root = self.local().local(id).unwrap().root().to_path_buf();
        assert!(!root.join(DELETED).exists(), "a deleted file came back");
        assert_eq!(
            std::fs::read_to_string(root.join(".apna-build/tsc.tsbuildinfo")).unwrap(),
            "{\"version\":\"7\"}\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(".git/HEAD")).unwrap(),
            "ref: refs/heads/main\n"
        );
    }

    /// Polls the preview's App module until it is the project's own.
    async fn wait_own_app(&self, id: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            let (status, body) = self.preview(id, "/src/App.tsx").await;
            if status == 200 && body.contains("Slept And Woke Intact") {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "the preview's App is not the project's after {limit:?}: {status} {body:.300}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid_of(&self, id: &str) -> Option<u32> {
        self.local().local(id).unwrap().dev_server_pid()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sleeping_project_wakes_on_the_warm_spare_with_its_own_files() {
    let mock = MockAnthropic::start(quiet_script()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = Served::start(data.path(), &mock.url()).await;
    let (p, tree) = s.sleeping_project_of_its_own().await;
    let spare = s.ready_spare().await;

    let (_, first) = s.preview(&p.id, "/").await;
    assert!(first.contains("Starting the preview"), "{first:.300}");
    let started = Instant::now();
    s.wait_preview(&p.id, Duration::from_secs(30)).await;
    eprintln!("preview back on the warm spare in {:?}", started.elapsed());
    assert_eq!(s.pid_of(&p.id), Some(spare), "did not wake on the spare");
    // The spare's server now serves the project's files, not the starter's.
    s.wait_own_app(&p.id, Duration::from_secs(5)).await;
    // (A missing path gets the app's page, Vite's fallback for a browser.)
    let (_, body) = s.preview(&p.id, &format!("/{DELETED}")).await;
    assert!(
        !body.contains("badgeVariants"),
        "the deleted starter file is served"
    );
    // Tailwind's CSS has the project's classes, which the starter does not use.
    let started = Instant::now();
    loop {
        let (status, css) = s.preview(&p.id, "/src/index.css").await;
        if status == 200 && css.contains("0.37em") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the CSS lacks the project's class: {status} {css:.300}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = s.preview(&p.id, "/src/pages/Notes.tsx").await;
    assert!(
        status == 200 && body.contains("notes"),
        "{status} {body:.200}"
    );
    s.assert_intact(&p.id, &tree).await;
    // The old directory is gone, and a new spare is made.
    let next = s.ready_spare().await;
    assert_ne!(next, spare);
    let projects = s
        .local()
        .local(&p.id)
        .unwrap()
        .root()
        .parent()
        .unwrap()
        .to_path_buf();
    let started = Instant::now();
    loop {
        let dirs: Vec<String> = std::fs::read_dir(&projects)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if dirs.len() == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{dirs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Asleep again, a preview request and a chat's EnsureSandbox at once wake it once.
    s.sandbox(&p.id).stop().await.unwrap();
    let spare = s.ready_spare().await;
    let sb = s.sandbox(&p.id);
    let (ensured, (status, _)) = tokio::join!(sb.ensure(), s.preview(&p.id, "/"));
    ensured.unwrap();
    assert_eq!(status, 200);
    s.wait_preview(&p.id, Duration::from_secs(30)).await;
    assert_eq!(s.pid_of(&p.id), Some(spare));
    s.wait_own_app(&p.id, Duration::from_secs(5)).await;
    s.assert_intact(&p.id, &tree).await;
    assert_ne!(s.ready_spare().await, spare);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sleeping_project_with_other_dependencies_wakes_cold() {
    let mock = MockAnthropic::start(quiet_script()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = Served::start(data.path(), &mock.url()).await;
    let p = s.awake_project().await;
    let sb = s.sandbox(&p.id);
    let path = ProjectPath::parse("package.json").unwrap();
    let mut package: Value = serde_json::from_slice(&sb.read_file(&path).await.unwrap()).unwrap();
    package["dependencies"]["left-pad"] = json!("1.3.0");
    sb.write_file(&path, &serde_json::to_vec_pretty(&package).unwrap())
        .await
        .unwrap();
    sb.write_file(
        &ProjectPath::parse("src/App.tsx").unwrap(),
        OWN_APP.as_bytes(),
    )
    .await
    .unwrap();
    sb.stop().await.unwrap();
    let tree = sb.export_source().await.unwrap();
    let spare = s.ready_spare().await;

    s.preview(&p.id, "/").await;
    s.wait_preview(&p.id, Duration::from_secs(30)).await;
    let pid = s.pid_of(&p.id);
    assert!(pid.is_some() && pid != Some(spare), "woke on the spare");
    assert_eq!(s.local().spare_pids(), vec![spare], "the spare was used up");
    s.wait_own_app(&p.id, Duration::from_secs(10)).await;
    assert_eq!(sb.export_source().await.unwrap(), tree);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_handover_falls_back_to_a_cold_start_and_loses_nothing() {
    let mock = MockAnthropic::start(quiet_script()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = Served::start(data.path(), &mock.url()).await;
    let (p, tree) = s.sleeping_project_of_its_own().await;
    for fault in [
        HandoverFault::AfterSources,
        HandoverFault::AfterState,
        HandoverFault::Exchange,
    ] {
        let spare = s.ready_spare().await;
        s.local().fail_next_handover(fault);
        s.preview(&p.id, "/").await;
        s.wait_preview(&p.id, Duration::from_secs(30)).await;
        let pid = s.pid_of(&p.id);
        assert!(
            pid.is_some() && pid != Some(spare),
            "{fault:?}: woke on the spare"
        );
        s.wait_own_app(&p.id, Duration::from_secs(10)).await;
        s.assert_intact(&p.id, &tree).await;
        s.sandbox(&p.id).stop().await.unwrap();
    }
    // Unarmed, the next wake takes the spare.
    let spare = s.ready_spare().await;
    s.preview(&p.id, "/").await;
    s.wait_preview(&p.id, Duration::from_secs(30)).await;
    assert_eq!(s.pid_of(&p.id), Some(spare));
    s.wait_own_app(&p.id, Duration::from_secs(5)).await;
    s.assert_intact(&p.id, &tree).await;
    s.stop().await;
}
