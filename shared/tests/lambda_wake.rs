//! Waking a hibernated project on Lambda: nothing runs after the response.
//! The endpoint functions are called with API Gateway fixture events, with
//! Step Functions on moto (APNA_TEST_MOTO_URL) as the workflow and sandboxes
//! that take 10 s per call (a pod being scheduled): the answers must not wait
//! for them, and the wake itself is one execution of
//! `statemachines/wake.asl.json` per hibernation, however often it is asked for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::app::{AppState, Backends};
use apna::domain::{Project, ProjectStatus};
use apna::testing::faults::SlowProvider;
use apna::testing::lambda::{http_event, invoke};
use apna::testing::sfn::{create_state_machine, execution_names, substituted, WAIT_AN_HOUR};
use apna::workflow::StepFunctionsWorkflow;
use axum::http::StatusCode;
use serde_json::json;

struct Aws {
    state: AppState,
    client: aws_sdk_sfn::Client,
    machines: HashMap<String, String>,
    sandboxes: Arc<SlowProvider>,
    _dir: tempfile::TempDir,
}

/// The API's state as a Lambda has it, over moto's Step Functions.
async fn aws() -> Option<Aws> {
    let url = apna::testing::services::moto_url()?;
    // These tests need executions to stay RUNNING until stopped; the ASL
    // tests (another binary, same moto in tests/run) turn execution on.
    apna::testing::sfn::configure_moto(
        &url,
        serde_json::json!({"stepfunctions": {"execute_state_machine": false}}),
    )
    .await;
    let client = apna::testing::sfn::client(&url);
    let mut machines = HashMap::new();
    machines.insert(
        "generation".to_string(),
        create_state_machine(&client, "apna-generation", WAIT_AN_HOUR).await,
    );
    machines.insert(
        "wake".to_string(),
        create_state_machine(&client, "apna-wake", &substituted("wake.asl.json")).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let config =
        apna::testing::fixtures::config(dir.path(), &[("CADDY_DOMAIN", "preview.example.com")]);
    let store = apna::testing::fixtures::memory_store().await;
    let blobs = Arc::new(
        apna::blob::FsBlobStore::new(dir.path().join("blobs"))
            .await
            .unwrap(),
    );
    let sandboxes = Arc::new(SlowProvider::new(Duration::from_secs(10)));
    let backends = Backends::new(
        config,
        store,
        blobs,
        sandboxes.clone(),
        Arc::new(apna::testing::model::NoModel),
    );
    let workflow = Arc::new(StepFunctionsWorkflow::new(client.clone(), machines.clone()));
    Some(Aws {
        state: AppState::new(backends, workflow),
        client,
        machines,
        sandboxes,
        _dir: dir,
    })
}

/// A hibernated project of alice's.
async fn hibernated(state: &AppState) -> Project {
    let mut p = Project::new("alice", "a habit tracker", "vite-react");
    p.status = ProjectStatus::Ready;
    state.store.create_project(&p).await.unwrap();
    assert!(state
        .store
        .set_project_status(&p.id, ProjectStatus::Ready, ProjectStatus::Hibernated, None)
        .await
        .unwrap());
    state.store.get_project(&p.id).await.unwrap().unwrap()
}

#[tokio::test]
async fn reading_a_hibernated_project_starts_one_wake_and_does_not_wait() {
    let Some(aws) = aws().await else { return };
    let s = &aws.state;
    let p = hibernated(s).await;
    let wake = &aws.machines["wake"];
    let get = http_event(
        "GET",
        &format!("/api/projects/{}", p.id),
        Some("alice"),
        &[],
        None,
        json!({ "id": p.id }),
    );

    let t = Instant::now();
    let a = invoke("api-get-project", s, &get).await;
    let took = t.elapsed();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["status"], "hibernated",
        "the answer does not wait for the wake"
    );
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    assert_eq!(
        aws.sandboxes.calls(),
        0,
        "no sandbox call on the request path"
    );
    let names = execution_names(&aws.client, wake).await;
    let first = format!("wake-{}-{}", p.id, p.updated_at.timestamp_millis());
    assert_eq!(names, vec![first.clone()], "exactly one wake execution");

    // Asking again — the page, the preview's waking page — starts none.
    let a = invoke("api-get-project", s, &get).await;
    assert_eq!(a.status, StatusCode::OK);
    let page = http_event(
        "POST",
        &format!("/preview-wake/{}", p.id),
        None,
        &[("origin", &format!("https://{}.preview.example.com", p.id))],
        None,
        json!({ "id": p.id }),
    );
    let a = invoke("api-preview-wake", s, &page).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["status"], "waking");
    assert_eq!(
        a.headers["access-control-allow-origin"],
        format!("https://{}.preview.example.com", p.id).as_str(),
        "the project's own preview page may read the answer"
    );
    assert_eq!(a.headers["access-control-allow-credentials"], "true");
    assert_eq!(
        execution_names(&aws.client, wake).await,
        vec![first.clone()]
    );

    // A wake that ended badly is tried again under the next name, once.
    aws.client
        .stop_execution()
        .execution_arn(format!(
            "{}:{first}",
            wake.replacen(":stateMachine:", ":execution:", 1)
        ))
        .cause("node drained")
        .send()
        .await
        .unwrap();
    let a = invoke("api-preview-wake", s, &page).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let a = invoke("api-get-project", s, &get).await;
    assert_eq!(a.status, StatusCode::OK);
    let mut names = execution_names(&aws.client, wake).await;
    names.sort();
    assert_eq!(names, vec![first.clone(), format!("{first}-2")]);
    assert_eq!(aws.sandboxes.calls(), 0);
}

#[tokio::test]
async fn preview_wake_is_public_but_tells_nothing_of_unknown_projects() {
    let Some(aws) = aws().await else { return };
    let s = &aws.state;
    let p = hibernated(s).await;
    let other_origin = [("origin", "https://someone-else.preview.example.com")];
    let call = |id: &str, headers: &[(&str, &str)]| {
        http_event(
            "POST",
            &format!("/preview-wake/{id}"),
            None,
            headers,
            None,
            json!({ "id": id }),
        )
    };
    // Another origin may start the wake (the page has no token) but not read the answer.
    let a = invoke("api-preview-wake", s, &call(&p.id, &other_origin)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.headers.get("access-control-allow-origin").is_none());
    for id in [
        "0190a000-0000-7000-8000-000000000000",
        "not-an-id",
        "..%2F..%2Fetc",
    ] {
        let a = invoke("api-preview-wake", s, &call(id, &[])).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{id}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "not_found");
    }
    s.store.soft_delete_project(&p.id).await.unwrap();
    let a = invoke("api-preview-wake", s, &call(&p.id, &[])).await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "a deleted project is not woken"
    );
    assert_eq!(
        execution_names(&aws.client, &aws.machines["wake"])
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn chat_on_a_hibernated_project_answers_without_restoring_it() {
    let Some(aws) = aws().await else { return };
    let s = &aws.state;
    let p = hibernated(s).await;
    let chat = http_event(
        "POST",
        &format!("/api/projects/{}/chat", p.id),
        Some("alice"),
        &[],
        Some(json!({ "message": "add a dark mode" })),
        json!({ "id": p.id }),
    );
    let t = Instant::now();
    let a = invoke("api-chat", s, &chat).await;
    let took = t.elapsed();
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    assert_eq!(
        aws.sandboxes.calls(),
        0,
        "the restore is left to the run's EnsureSandbox"
    );
    let run_id = a.body["run_id"].as_str().unwrap();
    assert_eq!(
        execution_names(&aws.client, &aws.machines["generation"]).await,
        vec![run_id.to_string()]
    );
    let project = s.store.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(project.status, ProjectStatus::Building);
    assert!(execution_names(&aws.client, &aws.machines["wake"])
        .await
        .is_empty());
}
