//! Generations on the `app` starter with the mock model and a real local
//! sandbox: an app using a chart, icons, a dialog and a routed page needs no
//! package install (the model's habitual `npm install` of what the starter
//! ships is answered from the shared `node_modules`); a package the starter
//! lacks is installed as before and the app using it builds and renders.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apna::domain::{ContentBlock, RunStatus};
use apna::server::LocalServer;
use apna::testing::browser::{browser_available, render};
use apna::testing::fixtures::{repo_root as repo, server_config};
use apna_tests::mock_anthropic::{MockAnthropic, Script};
use serde_json::Value;

async fn serve(server: &LocalServer) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = server.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    port
}

/// Runs one generation of `prompt` against `script`; returns the server,
/// its port, the project id and the text of every tool result.
async fn generate(
    data: &Path,
    script: &str,
    prompt: &str,
) -> (LocalServer, u16, String, Vec<String>) {
    let script =
        Script::from_file(repo().join("tests/fixtures/conversations").join(script)).unwrap();
    let mock = MockAnthropic::start(script).await.unwrap();
    let server = apna::server::build(server_config(data, &mock.url(), &[]), &|_| {})
        .await
        .expect("local server");
    let port = serve(&server).await;
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    let run = tokio::time::timeout(
        Duration::from_secs(300),
        apna::run::generate(&server.state, prompt, move |l| sink.lock().unwrap().push(l)),
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
    assert!(progress.contains("build check passed"), "{progress}");
    let messages = server
        .state
        .store
        .list_messages(
            &run.project_id,
            apna::domain::Page {
                limit: 100,
                offset: 0,
            },
        )
        .await
        .unwrap();
    let results = messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|b| match b {
            ContentBlock::ToolResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect();
    (server, port, run.project_id, results)
}

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chart_icons_dialog_and_routes_app_installs_nothing() {
    let data = tempfile::tempdir().unwrap();
    let (server, port, id, results) =
        generate(data.path(), "kit_app.json", "a habit streak tracker").await;
    let root = server
        .sandboxes
        .as_ref()
        .unwrap()
        .local(&id)
        .unwrap()
        .root()
        .to_path_buf();
    // The model's `npm install` of packages the starter has: answered, not run.
    let install = results
        .iter()
        .find(|r| r.contains("npm install") || r.contains("Already installed"))
        .expect("the install's result");
    assert!(install.contains("Already installed"), "{install}");
    assert!(install.contains("recharts@3.11.1"), "{install}");
    // No private node_modules copy, no change to package.json, and Vite still
    // uses the shared pre-bundle (it did not bundle the dependencies again).
    assert!(
        is_link(&root.join("node_modules")),
        "node_modules was copied"
    );
    let starter = apna::starter::find("app").unwrap();
    let package = std::fs::read(root.join("package.json")).unwrap();
    assert!(!apna::starter::dependencies_differ(
        &package,
        starter.package_json.as_bytes()
    ));
    let log = std::fs::read_to_string(data.path().join(format!("logs/{id}.log"))).unwrap();
    if matches!(
        server.sandboxes.as_ref().unwrap().isolation(),
        apna::sandbox::local::Isolation::Bubblewrap { .. }
    ) {
        assert!(
            is_link(&root.join(".vite/deps")),
            "Vite bundled again:\n{log}"
        );
        assert!(!log.to_lowercase().contains("optimiz"), "{log}");
    }

    if browser_available() {
        let base = format!("http://{id}.localhost:{port}");
        let home = render(
            &format!("{base}/"),
            &[
                "--wait-text",
                "Weekly streaks",
                "--click",
                "Add habit",
                "--selector",
                ".recharts-surface",
                "--selector",
                "svg.lucide",
            ],
        )
        .await;
        assert_eq!(home["errors"], Value::Array(vec![]), "{home}");
        assert!(home["matched"][".recharts-surface"].as_u64().unwrap() >= 1);
        assert!(home["matched"]["svg.lucide"].as_u64().unwrap() >= 2);
        assert!(
            home["slots"]
                .as_array()
                .unwrap()
                .contains(&Value::from("dialog-content")),
            "the dialog opened: {home}"
        );
        let about = render(&format!("{base}/about"), &["--wait-text", "About Streaks"]).await;
        assert_eq!(about["errors"], Value::Array(vec![]), "{about}");
        assert!(about["text"].as_str().unwrap().contains("January 5, 2026"));
    }
    server.sandboxes.as_ref().unwrap().stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_package_the_starter_lacks_is_installed_and_used() {
    let data = tempfile::tempdir().unwrap();
    let (server, port, id, results) =
        generate(data.path(), "new_package.json", "invite codes for my club").await;
    let root = server
        .sandboxes
        .as_ref()
        .unwrap()
        .local(&id)
        .unwrap()
        .root()
        .to_path_buf();
    let install = results
        .iter()
        .find(|r| r.contains("added") || r.contains("exit code"))
        .cloned()
        .unwrap_or_default();
    // npm really ran, on the project's own copy of node_modules.
    assert!(!is_link(&root.join("node_modules")), "{results:?}");
    assert!(
        root.join("node_modules/nanoid/package.json").is_file(),
        "{install}"
    );
    let package = std::fs::read_to_string(root.join("package.json")).unwrap();
    assert!(package.contains("\"nanoid\""), "{package}");
    // The shared cache is untouched.
    let app = apna::starter::find("app").unwrap();
    assert!(!app.package_json.contains("nanoid"));
    // (It has nanoid 3 only as postcss's dependency; the project got 5.)
    let version = |nm: &Path| {
        let meta = std::fs::read_to_string(nm.join("nanoid/package.json")).unwrap_or_default();
        serde_json::from_str::<Value>(&meta).unwrap_or_default()["version"].clone()
    };
    let shared = apna::testing::local::template().await.node_modules;
    assert_ne!(
        version(&shared),
        "5.1.12",
        "the shared node_modules changed"
    );
    assert_eq!(version(&root.join("node_modules")), "5.1.12");

    if browser_available() {
        let seen = render(
            &format!("http://{id}.localhost:{port}/"),
            &["--wait-text", "Invite Codes"],
        )
        .await;
        assert_eq!(seen["errors"], Value::Array(vec![]), "{seen}");
    }
    server.sandboxes.as_ref().unwrap().stop_all().await;
}
