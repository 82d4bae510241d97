//! The whole generation locally: mock model, local sandbox with Vite, SQLite
//! (and again with DynamoDB on the emulator), the built-in interpreter running
//! `statemachines/generation.asl.json`.
//!
//! The scripted model writes a component with a TypeScript error; Verify
//! reports it; the model fixes it; Verify passes; Finalize records a version;
//! the project is `ready` and its preview serves the generated code.

use std::sync::Arc;
use std::time::Duration;

use apna::config::Config;
use apna::domain::{ProjectStatus, RunStatus};
use apna::server::LocalServer;
use apna_tests::mock_anthropic::{MockAnthropic, Script};

use apna::testing::fixtures::{repo_root as repo, server_config};

fn config(data: &std::path::Path, mock: &str) -> Config {
    server_config(data, mock, &[])
}

fn config_with(data: &std::path::Path, mock: &str, extra: &[(&str, &str)]) -> Config {
    server_config(data, mock, extra)
}

/// `DATABASE_URL` and `DYNAMODB_ENDPOINT` for a new table on the emulator
/// `tests/run` starts; `None` (skipped) without it, a failure with
/// `APNA_REQUIRE_SERVICES=1`.
fn dynamodb_vars() -> Option<Vec<(&'static str, String)>> {
    let endpoint = match std::env::var("APNA_TEST_DYNAMODB_URL") {
        Ok(v) if !v.is_empty() => v,
        _ => {
            assert_ne!(
                std::env::var("APNA_REQUIRE_SERVICES").as_deref(),
                Ok("1"),
                "APNA_TEST_DYNAMODB_URL is not set but APNA_REQUIRE_SERVICES=1: start it with tests/run"
            );
            eprintln!("skipped: APNA_TEST_DYNAMODB_URL is not set (tests/run sets it)");
            return None;
        }
    };
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let table = format!("apna-e2e-{}-{nanos}", std::process::id());
    // `apna serve` creates the table on the emulator (DYNAMODB_ENDPOINT) when it starts.
    Some(vec![
        ("DATABASE_URL", format!("dynamodb://{table}")),
        ("DYNAMODB_ENDPOINT", endpoint),
    ])
}

async fn build(config: Config) -> LocalServer {
    apna::server::build(config, &|_| {})
        .await
        .expect("local server")
}

/// Serves the app router on a free port; returns the port.
async fn serve(server: &LocalServer) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = server.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    port
}

async fn preview_get(port: u16, project: &str, path: &str) -> (u16, String) {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("host", format!("{project}.localhost:{port}"))
            .send()
            .await
        {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if status == 200 && !body.contains("Starting") {
                return (status, body);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("preview of {project}{path} never became ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prompt_to_ready_with_a_fixed_typescript_error() {
    prompt_to_ready(&[]).await;
}

/// The same generation with DynamoDB as the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prompt_to_ready_with_a_fixed_typescript_error_on_dynamodb() {
    if let Some(vars) = dynamodb_vars() {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        prompt_to_ready(&vars).await;
    }
}

async fn prompt_to_ready(store_vars: &[(&str, &str)]) {
    let script =
        Script::from_file(repo().join("tests/fixtures/conversations/generation_e2e.json")).unwrap();
    let mock = MockAnthropic::start(script).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = build(config_with(data.path(), &mock.url(), store_vars)).await;
    assert_eq!(
        server.state.store.backend(),
        if store_vars.is_empty() {
            "sqlite"
        } else {
            "dynamodb"
        }
    );
    let port = serve(&server).await;

    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    let run = tokio::time::timeout(
        Duration::from_secs(240),
        apna::run::generate(
            &server.state,
            "a habit tracker with a dark theme",
            move |l| sink.lock().unwrap().push(l),
        ),
    )
    .await
    .expect("generation did not finish in time")
    .unwrap();
    let progress = lines.lock().unwrap().join("\n");
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "{progress}\nerror: {:?}",
        run.error
    );
    assert!(
        progress.contains("build check found"),
        "Verify should have reported the error:\n{progress}"
    );
    assert!(progress.contains("build check passed"), "{progress}");

    // Four model calls: write, summary, fix, summary. No call repeated.
    assert_eq!(mock.answered_calls(), 4);
    let project = server
        .state
        .store
        .get_project(&run.project_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(project.status, ProjectStatus::Ready);
    assert!(server
        .state
        .store
        .run_lock_holder(&project.id)
        .await
        .unwrap()
        .is_none());
    let versions = server.state.store.list_versions(&project.id).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert!(
        versions[0].summary.contains("starts at 0"),
        "{}",
        versions[0].summary
    );
    // Against the template the project started from: only what the agent changed.
    let changed: Vec<&str> = versions[0]
        .file_diffs
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(changed, ["src/App.tsx", "src/components/Habits.tsx"]);

    // The execution history shows each state in order.
    let history = server.state.workflow.history(&run.id).await.unwrap();
    let entered: Vec<String> = history
        .iter()
        .filter(|h| h.event_type == "StateEntered")
        .filter_map(|h| h.state_name.clone())
        .filter(|s| !s.starts_with("WaitFor") && s != "CheckSandbox" && s != "IsSandboxReady")
        .collect();
    assert_eq!(
        entered,
        [
            "Init",
            "EnsureSandbox",
            "AgentStep",
            "AfterAgentStep",
            "AgentStep",
            "AfterAgentStep",
            "Verify",
            "AfterVerify",
            "AgentStep",
            "AfterAgentStep",
            "AgentStep",
            "AfterAgentStep",
            "Verify",
            "AfterVerify",
            "Smoke",
            "AfterSmoke",
            "Finalize",
            "Done"
        ],
        "{history:#?}"
    );

    // The preview serves the generated code through the proxy.
    let (_, module) = preview_get(port, &project.id, "/src/App.tsx").await;
    assert!(module.contains("Habit Tracker Ready"), "{module}");
    let (_, module) = preview_get(port, &project.id, "/src/components/Habits.tsx").await;
    assert!(module.contains("useState(0)"), "{module}");
    server
        .state
        .sandboxes
        .sandbox(&project.id)
        .unwrap()
        .stop()
        .await
        .unwrap();
}

/// The sandbox disappears (process and files gone) while the model answers
/// step 3: Verify finds it missing, rebuilds it from the template and replays
/// the run's edits and command, and the run ends with every change in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sandbox_that_dies_mid_run_is_rebuilt_with_the_runs_changes() {
    let script =
        Script::from_file(repo().join("tests/fixtures/conversations/sandbox_dies.json")).unwrap();
    let mock = MockAnthropic::start(script).await.unwrap();
    mock.handle().set_latency(Duration::from_millis(1500));
    let data = tempfile::tempdir().unwrap();
    let server = build(config(data.path(), &mock.url())).await;
    let port = serve(&server).await;

    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let state = server.state.clone();
    let generation = tokio::spawn(async move {
        apna::run::generate(&state, "a page with a note", move |l| {
            sink.lock().unwrap().push(l)
        })
        .await
    });
    // Step 3's model call is in flight: steps 1 and 2 have changed files.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while mock.requests().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "step 3 never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let project_id = lines
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.strip_prefix("project ")?
                .strip_suffix(" created")
                .map(str::to_string)
        })
        .expect("project id in the progress lines");
    let sandbox = server.state.sandboxes.sandbox(&project_id).unwrap();
    assert!(String::from_utf8(
        sandbox
            .read_file(&apna::sandbox::ProjectPath::parse("src/Note.tsx").unwrap())
            .await
            .unwrap()
    )
    .unwrap()
    .contains("revived note"));
    sandbox.destroy().await.unwrap();

    let run = tokio::time::timeout(Duration::from_secs(240), generation)
        .await
        .expect("generation did not finish in time")
        .unwrap()
        .unwrap();
    let progress = lines.lock().unwrap().join("\n");
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "{progress}\n{:?}",
        run.error
    );
    assert!(
        progress.contains(
            "rebuilt it from the last saved version and re-applied this change's 4 edit(s) and command(s)"
        ),
        "{progress}"
    );
    let read = |path: &'static str| {
        let sandbox = sandbox.clone();
        async move {
            String::from_utf8(
                sandbox
                    .read_file(&apna::sandbox::ProjectPath::parse(path).unwrap())
                    .await
                    .unwrap(),
            )
            .unwrap()
        }
    };
    assert!(read("src/Note.tsx").await.contains("revived note"));
    assert!(read("src/App.tsx").await.contains("<Note />"));
    assert_eq!(read("notes.txt").await, "kept\n");
    let versions = server.state.store.list_versions(&project_id).await.unwrap();
    let changed: Vec<&str> = versions[0]
        .file_diffs
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(changed, ["notes.txt", "src/App.tsx", "src/Note.tsx"]);
    let (status, body) = preview_get(port, &project_id, "/src/Note.tsx").await;
    assert_eq!(status, 200);
    assert!(body.contains("revived note"), "{body}");
    server.stop_sandboxes().await;
}

/// The hibernation sweep purges projects deleted longer ago than the
/// retention period (0 days here): their snapshots and every row about them
/// go; a project that is not deleted keeps everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_purges_deleted_projects_after_the_retention_period() {
    sweep_purges(&[]).await;
}

/// The same sweep with DynamoDB as the store (its purge is ordered, not one transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_purges_deleted_projects_on_dynamodb() {
    if let Some(vars) = dynamodb_vars() {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sweep_purges(&vars).await;
    }
}

async fn sweep_purges(store_vars: &[(&str, &str)]) {
    let script =
        Script::from_file(repo().join("tests/fixtures/conversations/sandbox_dies.json")).unwrap();
    let mock = MockAnthropic::start(script).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut vars = vec![("APNA_DELETED_RETENTION_DAYS", "0")];
    vars.extend_from_slice(store_vars);
    let server = build(config_with(data.path(), &mock.url(), &vars)).await;
    let state = &server.state;
    let gone = apna::run::generate(state, "a page with a note", |_| {})
        .await
        .unwrap();
    let kept = apna::run::generate(state, "another note", |_| {})
        .await
        .unwrap();
    let prefix = |id: &str| format!("projects/{id}/");
    assert!(!state
        .blobs
        .list(&prefix(&gone.project_id))
        .await
        .unwrap()
        .is_empty());
    let gone_project = state
        .store
        .get_project(&gone.project_id)
        .await
        .unwrap()
        .unwrap();
    apna::project::remove_sandbox(state, &gone_project)
        .await
        .unwrap();
    assert!(state
        .store
        .soft_delete_project(&gone.project_id)
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;

    let workflow = &state.workflow;
    workflow
        .start("hibernation", "sweep-1", serde_json::json!({}))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let execution = loop {
        let e = workflow.describe("sweep-1").await.unwrap().unwrap();
        if e.status != apna::domain::ExecutionStatus::Running {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        execution.status,
        apna::domain::ExecutionStatus::Succeeded,
        "{execution:?}"
    );
    let output = execution.output.unwrap();
    assert_eq!(
        output["purge"]["purged"],
        serde_json::json!([gone.project_id])
    );
    assert!(state
        .store
        .get_project(&gone.project_id)
        .await
        .unwrap()
        .is_none());
    assert!(state.store.get_run(&gone.id).await.unwrap().is_none());
    assert!(state
        .store
        .list_versions(&gone.project_id)
        .await
        .unwrap()
        .is_empty());
    assert!(state
        .blobs
        .list(&prefix(&gone.project_id))
        .await
        .unwrap()
        .is_empty());
    // The other project is untouched.
    assert!(state
        .store
        .get_project(&kept.project_id)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        state
            .store
            .list_versions(&kept.project_id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(!state
        .blobs
        .list(&prefix(&kept.project_id))
        .await
        .unwrap()
        .is_empty());
    server.stop_sandboxes().await;
}
