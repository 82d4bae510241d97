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
//!   the server, and wakes on a preview request.

use std::path::Path;
use std::time::{Duration, Instant};

use apna::domain::{Project, RunStatus, User, LOCAL_USER};
use apna::sandbox::SandboxState;
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
