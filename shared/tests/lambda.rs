//! Each Lambda function, the way API Gateway (HTTP API, payload v2) calls it:
//! an event fixture through `lambda_http` reaches the function's handler with
//! its path parameters and the authorizer's `sub` claim, and nothing else.

use std::sync::Arc;

use apna::store::SqliteStore;
use apna::testing::api::harness;
use apna::testing::lambda::http_event;
use axum::http::StatusCode;
use serde_json::{json, Value};

fn event(
    method: &str,
    path: &str,
    sub: Option<&str>,
    body: Option<Value>,
    path_params: Value,
) -> String {
    http_event(method, path, sub, &[], body, path_params)
}

async fn invoke(name: &str, state: &apna::app::AppState, event: &str) -> (StatusCode, Value) {
    let a = apna::testing::lambda::invoke(name, state, event).await;
    (a.status, a.body)
}

#[tokio::test]
async fn every_endpoint_function_reaches_its_handler() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let s = &h.state;

    let (status, body) = invoke(
        "api-create-project",
        s,
        &event(
            "POST",
            "/api/projects",
            Some("alice"),
            Some(json!({"prompt": "a lambda app"})),
            json!({}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["project"]["owner"], "alice",
        "the authorizer's sub is the caller"
    );
    let id = body["project"]["id"].as_str().unwrap().to_string();
    let run = body["run_id"].as_str().unwrap().to_string();
    let pid = json!({ "id": id });
    let rid = json!({ "id": run });

    type Case<'a> = (&'a str, &'a str, String, Option<Value>, Value, StatusCode);
    let cases: Vec<Case> = vec![
        (
            "api-healthz",
            "GET",
            "/healthz".into(),
            None,
            json!({}),
            StatusCode::OK,
        ),
        (
            "api-config",
            "GET",
            "/api/config".into(),
            None,
            json!({}),
            StatusCode::OK,
        ),
        (
            "api-openapi",
            "GET",
            "/api/openapi.json".into(),
            None,
            json!({}),
            StatusCode::OK,
        ),
        (
            "api-list-templates",
            "GET",
            "/api/templates".into(),
            None,
            json!({}),
            StatusCode::OK,
        ),
        (
            "api-list-templates",
            "GET",
            "/api/templates/dashboard/preview.png".into(),
            None,
            json!({"name": "dashboard"}),
            StatusCode::OK,
        ),
        (
            "api-create-project",
            "POST",
            "/api/projects/create".into(),
            Some(json!({"prompt": "alias"})),
            json!({}),
            StatusCode::ACCEPTED,
        ),
        (
            "api-list-projects",
            "GET",
            "/api/projects?limit=5".into(),
            None,
            json!({}),
            StatusCode::OK,
        ),
        (
            "api-get-project",
            "GET",
            format!("/api/projects/{id}"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-chat",
            "POST",
            format!("/api/projects/{id}/chat"),
            Some(json!({"message": "more"})),
            pid.clone(),
            StatusCode::CONFLICT,
        ),
        (
            "api-list-messages",
            "GET",
            format!("/api/projects/{id}/messages"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-list-runs",
            "GET",
            format!("/api/projects/{id}/runs"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-list-files",
            "GET",
            format!("/api/projects/{id}/files"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-read-file",
            "GET",
            format!("/api/projects/{id}/files/src/App.tsx"),
            None,
            json!({"id": id, "path": "src/App.tsx"}),
            StatusCode::OK,
        ),
        (
            "api-get-run",
            "GET",
            format!("/api/runs/{run}"),
            None,
            rid.clone(),
            StatusCode::OK,
        ),
        (
            "api-run-events",
            "GET",
            format!("/api/runs/{run}/events?after=0&wait=0"),
            None,
            rid.clone(),
            StatusCode::OK,
        ),
        (
            "api-list-versions",
            "GET",
            format!("/api/projects/{id}/versions"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-version-diff",
            "GET",
            format!("/api/projects/{id}/versions/7/diff"),
            None,
            json!({"id": id, "n": "7"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "api-get-screenshot",
            "GET",
            format!("/api/projects/{id}/screenshots/not-a-sha256"),
            None,
            json!({"id": id, "sha256": "not-a-sha256"}),
            // Only the handler rejects the name (the route takes any).
            StatusCode::BAD_REQUEST,
        ),
        (
            "api-restore-version",
            "POST",
            format!("/api/projects/{id}/versions/7/restore"),
            None,
            json!({"id": id, "n": "7"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "api-preview-access",
            "GET",
            format!("/api/projects/{id}/preview-access"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-preview-access",
            "PUT",
            format!("/api/projects/{id}/share"),
            Some(json!({"public": true})),
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-text-edit",
            "POST",
            format!("/api/projects/{id}/text-edit"),
            Some(json!({"source": "nonsense", "old_text": "a", "new_text": "b"})),
            pid.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "api-get-image",
            "GET",
            format!("/api/projects/{id}/images/{}", "0".repeat(64)),
            None,
            json!({"id": id, "image_id": "0".repeat(64)}),
            StatusCode::NOT_FOUND,
        ),
        (
            "api-download",
            "GET",
            format!("/api/projects/{id}/download"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-publish",
            "POST",
            format!("/api/projects/{id}/publish"),
            Some(json!({})),
            pid.clone(),
            // No version yet: nothing to publish.
            StatusCode::CONFLICT,
        ),
        (
            "api-get-publish",
            "GET",
            format!("/api/projects/{id}/publish"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-preview-wake",
            "POST",
            format!("/preview-wake/{id}"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-unpublish",
            "DELETE",
            format!("/api/projects/{id}/publish"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
        (
            "api-git-bundle",
            "GET",
            format!("/api/projects/{id}/git"),
            None,
            pid.clone(),
            StatusCode::CONFLICT,
        ),
        (
            "api-git-push",
            "POST",
            format!("/api/projects/{id}/git/push"),
            Some(json!({"remote_url": "http://example.com/app.git"})),
            pid.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "api-cancel-run",
            "POST",
            format!("/api/runs/{run}/cancel"),
            None,
            rid.clone(),
            StatusCode::OK,
        ),
        (
            "api-delete-project",
            "DELETE",
            format!("/api/projects/{id}"),
            None,
            pid.clone(),
            StatusCode::OK,
        ),
    ];
    let mut covered: Vec<&str> = cases.iter().map(|c| c.0).collect();
    covered.sort_unstable();
    covered.dedup();
    let mut names = apna::api::endpoint_names();
    names.sort_unstable();
    assert_eq!(covered, names, "every endpoint function has a fixture here");

    for (name, method, path, body, params, want) in cases {
        let (status, got) = invoke(
            name,
            s,
            &event(method, &path, Some("alice"), body.clone(), params.clone()),
        )
        .await;
        assert_eq!(status, want, "{name} {method} {path}: {got}");
        if name.starts_with("api-get-project")
            || name == "api-read-file"
            || name == "api-list-messages"
            || name == "api-get-publish"
            || name == "api-unpublish"
        {
            // Another user's project is 404, and no authorizer claims is 401.
            let (status, _) = invoke(
                name,
                s,
                &event(method, &path, Some("bob"), body.clone(), params.clone()),
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{name} as bob");
            let (status, _) = invoke(name, s, &event(method, &path, None, body, params)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} without claims");
        }
    }

    // A function serves only its own routes.
    let (status, body) = invoke(
        "api-get-project",
        s,
        &event("GET", "/api/projects", Some("alice"), None, json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn task_functions_report_named_errors() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let ctx = lambda_runtime::Context::default();
    // A task input without ids is the task's fault: Step Functions sees the error by name.
    let ev = lambda_runtime::LambdaEvent::new(json!({ "nope": 1 }), ctx.clone());
    let err = apna::lambda::handle_task(apna::tasks::AGENT_STEP, &h.state, ev)
        .await
        .unwrap_err();
    let diag: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diag.error_type, "Apna.InvalidInput");
    // ListIdleProjects works against the store.
    let ev = lambda_runtime::LambdaEvent::new(json!({ "limit": 10 }), ctx);
    let out = apna::lambda::handle_task(apna::tasks::LIST_IDLE_PROJECTS, &h.state, ev)
        .await
        .unwrap();
    assert_eq!(out, json!({ "projects": [] }));
}

/// Behind API Gateway the stack's web UI is another origin (CloudFront) than
/// the API (execute-api): the template passes it in APNA_CORS_ORIGINS, so the
/// cross-site guard lets it change state and still refuses other sites; no
/// Host allowlist applies (APNA_PUBLIC_HOSTS unset), so the gateway's and any
/// custom domain's Host pass.
#[tokio::test]
async fn the_stack_web_ui_may_change_state_through_the_gateway_other_sites_may_not() {
    let ui = "https://d111111abcdef8.cloudfront.net";
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[("APNA_CORS_ORIGINS", ui)],
    )
    .await;
    let create = |origin: &str, host: &str| {
        http_event(
            "POST",
            "/api/projects",
            Some("alice"),
            &[("origin", origin), ("host", host)],
            Some(json!({"prompt": "a gateway app"})),
            json!({}),
        )
    };
    let gateway = "abc123.execute-api.us-east-1.amazonaws.com";
    for host in [gateway, "api.example.com"] {
        let (status, body) = invoke("api-create-project", &h.state, &create(ui, host)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{host}: {body}");
    }
    let (status, body) = invoke(
        "api-create-project",
        &h.state,
        &create("https://evil.example.com", gateway),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "cross_site");
}

/// config, openapi and templates never touch the store, so their functions
/// start without a database connection (a lazy pool): they answer while the
/// database is down, and /healthz, which uses it, says so.
#[tokio::test]
async fn functions_without_the_store_answer_while_the_database_is_down() {
    use apna::app::{AppState, Backends};
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: a connection attempt fails at once.
    let down = "postgres://apna:apna@127.0.0.1:1/apna";
    let config = apna::testing::fixtures::config(
        dir.path(),
        &[("DATABASE_URL", down), ("APNA_DB_MIGRATIONS", "check")],
    );
    let (blobs, _blob_dir) = apna::testing::fixtures::fs_blobs().await;
    let started = std::time::Instant::now();
    let store = apna::store::open_lazy(&config, blobs.clone())
        .await
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(apna::store::open(&config, blobs.clone()).await.is_err());
    let backends = Backends::new(
        config,
        store,
        blobs,
        Arc::new(apna::testing::memory::MemoryProvider::default()),
        Arc::new(apna::testing::model::NoModel),
    );
    let state = AppState::new(
        backends,
        Arc::new(apna::testing::workflow::RecordingWorkflow::default()),
    );
    for (name, path) in [
        ("api-config", "/api/config"),
        ("api-openapi", "/api/openapi.json"),
        ("api-list-templates", "/api/templates"),
    ] {
        assert!(!apna::api::endpoint(name).unwrap().uses.store, "{name}");
        let (status, body) = invoke(
            name,
            &state,
            &event("GET", path, Some("alice"), None, json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    let (status, body) = invoke(
        "api-healthz",
        &state,
        &event("GET", "/healthz", None, None, json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["store"]["ok"], false, "{body}");
}
