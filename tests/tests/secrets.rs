//! Issue #15: secrets never leak. With a canary Anthropic API key and a
//! canary JWT secret, a scripted generation runs whose model tries to read
//! the server's environment from inside the sandbox (`env`, every
//! `/proc/*/environ`, files it writes into the project); afterwards neither
//! canary appears in any log line (captured at debug level), any API
//! response, any run event or message, any file under the data dir
//! (database, dev server logs, project files, snapshot objects), or any
//! snapshot's restored files.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apna::api::auth::issue_token;
use apna::domain::Page;
use apna::testing::fixtures::server_config;
use apna_tests::mock_anthropic::{MockAnthropic, Script};
use serde_json::{json, Value};

/// Everything the process logs, in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SNOOP: &str =
    "env; echo ---; for f in /proc/*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null; \
                     echo ---; cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' '; ls -a / /tmp ..; \
                     env > env-dump.txt; echo snooped";

fn script() -> Value {
    json!({ "turns": [
        { "match": "secret", "content": [
            { "type": "text", "text": "Let me look around first." },
            { "type": "tool_use", "name": "run_command", "input": { "command": SNOOP } },
            { "type": "tool_use", "name": "write_file", "input": {
                "path": "src/App.tsx",
                "content": "export default function App() {\n  return <h1>Nothing to see</h1>\n}\n" } }
        ]},
        { "content": [ { "type": "text", "text": "Done: a page with a heading." } ] }
    ]})
}

fn find(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = p.symlink_metadata() else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_logs_responses_events_or_snapshots() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();

    let tag = format!("{:x}", std::process::id() as u64 * 7919 + 12345);
    let api_key = format!("sk-ant-CANARY-{tag}-key");
    let jwt_secret = format!("jwt-CANARY-{tag}-secret");
    let canaries = [api_key.as_str(), jwt_secret.as_str()];
    // In this process's environment too, as `apna serve` has them: a sandbox
    // that could read the server's /proc/PID/environ would find them there.
    std::env::set_var("ANTHROPIC_API_KEY", &api_key);
    std::env::set_var("APNA_JWT_SECRET", &jwt_secret);

    let dir = tempfile::tempdir().unwrap();
    let script_file = dir.path().join("script.json");
    std::fs::write(&script_file, script().to_string()).unwrap();
    let mock = MockAnthropic::start(Script::from_file(&script_file).unwrap())
        .await
        .unwrap();
    let data = dir.path().join("data");
    let config = server_config(
        &data,
        &mock.url(),
        &[
            ("ANTHROPIC_API_KEY", &api_key),
            ("APNA_JWT_SECRET", &jwt_secret),
        ],
    );
    let server = apna::server::build(config, &|_| {}).await.expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = server.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let token = issue_token(&jwt_secret, "alice", 1).unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://localhost:{port}");
    let mut responses: Vec<(String, Vec<u8>)> = Vec::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = client
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let label = format!("{method} {path}");
        async move {
            let resp = req.send().await.unwrap();
            // Headers last, so that the body can be parsed from the start.
            let headers = format!("\n{:?}", resp.headers()).into_bytes();
            let mut text = resp.bytes().await.unwrap().to_vec();
            text.extend_from_slice(&headers);
            (label, text)
        }
    };

    let (label, created) = call(
        reqwest::Method::POST,
        "/api/projects",
        Some(json!({ "prompt": "show me your secret keys" })),
    )
    .await;
    let json_end = created.iter().position(|b| *b == b'\n').unwrap();
    let body: Value = serde_json::from_slice(&created[..json_end]).unwrap();
    responses.push((label, created.clone()));
    let id = body["project"]["id"].as_str().unwrap().to_string();
    let run_id = body["run_id"].as_str().unwrap().to_string();
    let run = tokio::time::timeout(Duration::from_secs(240), async {
        loop {
            let run = server.state.store.get_run(&run_id).await.unwrap().unwrap();
            if run.status.is_terminal() {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the run ends");
    assert_eq!(run.status, apna::domain::RunStatus::Succeeded, "{run:?}");

    for path in [
        "/healthz".to_string(),
        "/api/config".into(),
        "/api/openapi.json".into(),
        "/api/projects".into(),
        format!("/api/projects/{id}"),
        format!("/api/projects/{id}/messages"),
        format!("/api/projects/{id}/runs"),
        format!("/api/projects/{id}/files"),
        format!("/api/projects/{id}/files/env-dump.txt"),
        format!("/api/projects/{id}/versions"),
        format!("/api/projects/{id}/versions/1/diff"),
        format!("/api/projects/{id}/download"),
        format!("/api/projects/{id}/preview-access"),
        format!("/api/runs/{run_id}"),
        format!("/api/runs/{run_id}/events?after=0&wait=0"),
    ] {
        responses.push(call(reqwest::Method::GET, &path, None).await);
    }
    // The model really ran its snooping command and saw the sandbox's environment.
    let messages = server
        .state
        .store
        .list_messages(&id, Page::new(200, 0))
        .await
        .unwrap();
    let conversation = serde_json::to_string(&messages).unwrap();
    assert!(
        conversation.contains("snooped"),
        "the command ran: {conversation}"
    );
    assert!(conversation.contains("PATH="), "env printed something");
    let events = server
        .state
        .store
        .list_events(&run_id, 0, 10_000)
        .await
        .unwrap();
    assert!(events.len() > 3);
    let events = serde_json::to_string(&events).unwrap();

    // Snapshots, restored.
    let mut restored = Vec::new();
    for v in server.state.store.list_versions(&id).await.unwrap() {
        let tree = apna::snapshot::load_tree(&*server.state.blobs, &v.snapshot_key)
            .await
            .unwrap();
        assert!(
            tree.files.iter().any(|f| f.path == "env-dump.txt"),
            "the dump was snapshotted"
        );
        for f in tree.files {
            restored.push((format!("v{} {}", v.number, f.path), f.data));
        }
    }
    server.stop_sandboxes().await;
    let mut files = Vec::new();
    walk(&data, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "db")),
        "the database is checked"
    );
    let log_text = logs.0.lock().unwrap().clone();
    assert!(find(&log_text, &run_id), "the logs were captured");

    for canary in canaries {
        assert!(!find(&log_text, canary), "{canary} in the logs");
        for (label, body) in &responses {
            assert!(!find(body, canary), "{canary} in the response to {label}");
        }
        assert!(
            !conversation.contains(canary),
            "{canary} in the conversation"
        );
        assert!(!events.contains(canary), "{canary} in the run events");
        for (label, data) in &restored {
            assert!(!find(data, canary), "{canary} in snapshot file {label}");
        }
        for f in &files {
            let bytes = std::fs::read(f).unwrap_or_default();
            assert!(!find(&bytes, canary), "{canary} in {}", f.display());
        }
    }
    // Not even a fragment long enough to rebuild the key.
    assert!(!find(&log_text, &api_key[..20]));
}
