//! The HTTP API through the Router, with real SQLite and PostgreSQL stores:
//! every endpoint's success path and its errors.

use std::sync::Arc;

use apna::api::auth::issue_token;
use apna::domain::RunEventKind;
use apna::domain::RunStatus;
use apna::run::{finish_run, RunEnd};
use apna::store::{PostgresStore, SqliteStore, Store};
use apna::testing::api::{error_code, harness, Harness};
use axum::http::StatusCode;
use serde_json::{json, Value};

async fn stores() -> Vec<Arc<dyn Store>> {
    let mut v: Vec<Arc<dyn Store>> = vec![Arc::new(
        SqliteStore::connect("sqlite::memory:").await.unwrap(),
    )];
    if let Some(url) = apna::testing::services::fresh_postgres_url().await {
        v.push(Arc::new(PostgresStore::connect(&url).await.unwrap()));
    }
    v
}

async fn create(h: &Harness, token: Option<&str>, prompt: &str) -> (String, String) {
    let r = h
        .post(
            "/api/projects",
            token,
            &json!({ "prompt": prompt }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    (
        r.body["project"]["id"].as_str().unwrap().to_string(),
        r.body["run_id"].as_str().unwrap().to_string(),
    )
}

async fn end_run(h: &Harness, run_id: &str) {
    finish_run(
        &h.state,
        run_id,
        RunEnd::Succeeded {
            summary: "ok".into(),
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projects_end_to_end() {
    for store in stores().await {
        let backend = store.backend();
        let h = harness(store, &[]).await;

        // Create: 202 with the project and its run, and the workflow started with ids only.
        let r = h
            .post(
                "/api/projects",
                None,
                r#"{"prompt": "a habit tracker with a dark theme", "userId": "ignored"}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{backend}: {}", r.text);
        assert!(r.headers.contains_key("x-request-id"));
        let id = r.body["project"]["id"].as_str().unwrap().to_string();
        let run_id = r.body["run_id"].as_str().unwrap().to_string();
        assert_eq!(r.body["project"]["status"], "building");
        assert_eq!(r.body["project"]["owner"], "local");
        assert_eq!(
            r.body["project"]["name"],
            "A habit tracker with a dark theme"
        );
        assert_eq!(r.body["project"]["active_run_id"], run_id);
        assert!(r.body["project"]["preview_url"]
            .as_str()
            .unwrap()
            .contains(&format!("{id}.localhost")));
        let starts = h.workflow.starts.lock().unwrap().clone();
        let (sm, name, input) = starts.last().unwrap().clone();
        assert_eq!(
            (sm.as_str(), name.as_str()),
            ("generation", run_id.as_str())
        );
        assert_eq!(
            input,
            json!({ "run_id": run_id, "project_id": id, "max_fix_attempts": 4 })
        );

        // The seed's alias works too.
        let r = h
            .post("/api/projects/create", None, r#"{"prompt": "todo app"}"#)
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);

        // Read, list, messages, runs.
        let r = h.get(&format!("/api/projects/{id}"), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["id"], id.as_str());
        let r = h.get("/api/projects?limit=1", None).await;
        assert_eq!(r.body["projects"].as_array().unwrap().len(), 1);
        assert_eq!(r.body["next_offset"], 1);
        let r = h.get("/api/projects?limit=10&offset=1", None).await;
        assert_eq!(r.body["projects"].as_array().unwrap().len(), 1);
        assert_eq!(r.body["next_offset"], Value::Null);
        let r = h.get(&format!("/api/projects/{id}/messages"), None).await;
        assert_eq!(
            r.body["messages"][0]["content"][0]["text"],
            "a habit tracker with a dark theme"
        );
        let r = h.get(&format!("/api/projects/{id}/runs"), None).await;
        assert_eq!(r.body["runs"][0]["id"], run_id.as_str());
        let r = h.get(&format!("/api/runs/{run_id}"), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["status"], "queued");
        assert!(r.body["history"].is_array());

        // A second chat while the run is active: 409.
        let r = h
            .post(
                &format!("/api/projects/{id}/chat"),
                None,
                r#"{"message": "make it blue"}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(error_code(&r), "conflict");

        // After the run ends, chat starts a new run.
        end_run(&h, &run_id).await;
        let r = h
            .post(
                &format!("/api/projects/{id}/chat"),
                None,
                r#"{"message": "make it blue"}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        let run2 = r.body["run_id"].as_str().unwrap().to_string();

        // Cancel: the workflow is stopped, the run ends, the lock is released.
        let r = h.post(&format!("/api/runs/{run2}/cancel"), None, "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["run"]["status"], "cancelled");
        assert!(h.workflow.stops.lock().unwrap().contains(&run2));
        assert!(h.state.store.run_lock_holder(&id).await.unwrap().is_none());
        let r = h.post(&format!("/api/runs/{run2}/cancel"), None, "").await;
        assert_eq!(r.body["run"]["status"], "cancelled", "cancel is idempotent");

        // Files: tree, content, traversal refused, missing file 404.
        let r = h.get(&format!("/api/projects/{id}/files"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            r.body["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["path"] == "src/App.tsx"),
            "{}",
            r.text
        );
        let r = h
            .get(&format!("/api/projects/{id}/files/src/App.tsx"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["path"], "src/App.tsx");
        assert!(r.body["content"].as_str().unwrap().contains("export"));
        for bad in ["../../etc/passwd", "src/%2e%2e/%2e%2e/x", "%00x"] {
            let r = h
                .get(&format!("/api/projects/{id}/files/{bad}"), None)
                .await;
            assert!(
                matches!(r.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
                "{bad}: {}",
                r.text
            );
            error_code(&r);
        }
        let r = h
            .get(&format!("/api/projects/{id}/files/src/Nope.tsx"), None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // Delete: idempotent; afterwards the project is gone from reads.
        let r = h
            .call("DELETE", &format!("/api/projects/{id}"), None, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["deleted"], true);
        let r = h
            .call("DELETE", &format!("/api/projects/{id}"), None, None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = h.get(&format!("/api/projects/{id}"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = h
            .post(
                &format!("/api/projects/{id}/chat"),
                None,
                r#"{"message": "hi"}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_clear_errors() {
    for store in stores().await {
        let h = harness(store, &[("APNA_MAX_PROMPT_CHARS", "100")]).await;
        let cases: Vec<(&str, String, StatusCode, &str)> = vec![
            (
                "/api/projects",
                "{not json".into(),
                StatusCode::BAD_REQUEST,
                "invalid_input",
            ),
            (
                "/api/projects",
                "{}".into(),
                StatusCode::BAD_REQUEST,
                "invalid_input",
            ),
            (
                "/api/projects",
                r#"{"prompt": 42}"#.into(),
                StatusCode::BAD_REQUEST,
                "invalid_input",
            ),
            // serde would read an array into the struct field by field.
            (
                "/api/projects",
                r#"["a habit tracker"]"#.into(),
                StatusCode::BAD_REQUEST,
                "invalid_input",
            ),
            (
                "/api/projects",
                r#"{"prompt": "x", "template": "nope"}"#.into(),
                StatusCode::BAD_REQUEST,
                "invalid_input",
            ),
            (
                "/api/projects",
                r#"{"prompt": "   "}"#.into(),
                StatusCode::BAD_REQUEST,
                "invalid_input",
            ),
            (
                "/api/projects",
                json!({"prompt": "x".repeat(101)}).to_string(),
                StatusCode::BAD_REQUEST,
                "invalid_input",
            ),
            (
                "/api/projects",
                r#"{"prompt": "ok", "template": "nextjs"}"#.into(),
                StatusCode::BAD_REQUEST,
                "invalid_input",
            ),
            (
                "/api/projects",
                // Create and chat take images, so their limit is that of five of them.
                json!({"prompt": "x".repeat(apna::api::images::MESSAGE_BODY_LIMIT)}).to_string(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
        ];
        for (uri, body, status, code) in cases {
            let r = h.post(uri, None, &body).await;
            assert_eq!(
                r.status,
                status,
                "{} → {}",
                &body[..body.len().min(40)],
                r.text
            );
            assert_eq!(error_code(&r), code);
        }
        // Nothing was created by any of them.
        assert_eq!(h.state.store.count_projects("local").await.unwrap(), 0);

        // Unknown ids and routes: 404 in the same shape.
        for uri in [
            "/api/projects/00000000-0000-0000-0000-000000000000",
            "/api/projects/NOT_AN_ID",
            "/api/runs/nope",
            "/api/nothing-here",
        ] {
            let r = h.get(uri, None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(error_code(&r), "not_found");
        }
        let r = h.get("/api/projects?limit=abc", None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_and_ownership() {
    for store in stores().await {
        let h = harness(store, &[("APNA_JWT_SECRET", "test-secret")]).await;
        let alice =
            issue_token("test-secret", &format!("alice-{}", uuid::Uuid::new_v4()), 1).unwrap();
        let bob = issue_token("test-secret", &format!("bob-{}", uuid::Uuid::new_v4()), 1).unwrap();

        // No token, malformed header, expired, wrong key, wrong algorithm: 401.
        let r = h.get("/api/projects", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&r), "unauthorized");
        let expired = issue_token("test-secret", "alice", -1).unwrap();
        let other_key = issue_token("other-secret", "alice", 1).unwrap();
        let hs384 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
            &json!({"sub": "alice", "exp": chrono::Utc::now().timestamp() + 600}),
            &jsonwebtoken::EncodingKey::from_secret(b"test-secret"),
        )
        .unwrap();
        for t in [
            expired.as_str(),
            other_key.as_str(),
            hs384.as_str(),
            "garbage",
        ] {
            let r = h.get("/api/projects", Some(t)).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        }

        // Alice's project is 404 for Bob on every endpoint.
        let (id, run_id) = create(&h, Some(&alice), "alice's app").await;
        assert_eq!(
            h.get(&format!("/api/projects/{id}"), Some(&alice))
                .await
                .status,
            StatusCode::OK
        );
        for (m, uri) in [
            ("GET", format!("/api/projects/{id}")),
            ("GET", format!("/api/projects/{id}/messages")),
            ("GET", format!("/api/projects/{id}/files")),
            ("GET", format!("/api/projects/{id}/files/src/App.tsx")),
            ("GET", format!("/api/runs/{run_id}")),
            ("GET", format!("/api/runs/{run_id}/events?after=0&wait=0")),
            ("POST", format!("/api/runs/{run_id}/cancel")),
            ("DELETE", format!("/api/projects/{id}")),
        ] {
            let r = h
                .call(
                    m,
                    &uri,
                    Some(&bob),
                    if m == "POST" { Some("") } else { None },
                )
                .await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {uri}: {}", r.text);
        }
        let r = h
            .post(
                &format!("/api/projects/{id}/chat"),
                Some(&bob),
                r#"{"message":"mine now"}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(h.get("/api/projects", Some(&bob)).await.body["projects"]
            .as_array()
            .unwrap()
            .is_empty());
        // Alice's run was not touched by Bob's cancel.
        assert_eq!(
            h.state
                .store
                .get_run(&run_id)
                .await
                .unwrap()
                .unwrap()
                .status,
            RunStatus::Queued
        );
    }
}

/// The daily model budget per user: once today's runs cost as much, a new
/// project or chat is 429 and nothing is left behind; other users are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daily_cost_cap_answers_429() {
    for store in stores().await {
        let h = harness(
            store,
            &[
                ("APNA_JWT_SECRET", "s"),
                ("APNA_MAX_DAILY_COST_USD", "0.50"),
            ],
        )
        .await;
        let name = format!("spender-{}", uuid::Uuid::new_v4());
        let user = issue_token("s", &name, 1).unwrap();
        let (project, run) = create(&h, Some(&user), "one").await;
        end_run(&h, &run).await;
        // The run cost 0.40: under the cap, so a chat is accepted.
        let mut r = h.state.store.get_run(&run).await.unwrap().unwrap();
        r.cost_usd = 0.40;
        h.state.store.update_run(&r).await.unwrap();
        let chat = format!("/api/projects/{project}/chat");
        let ok = h.post(&chat, Some(&user), r#"{"message":"more"}"#).await;
        assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text);
        let second = ok.body["run_id"].as_str().unwrap().to_string();
        end_run(&h, &second).await;
        let mut r = h.state.store.get_run(&second).await.unwrap().unwrap();
        r.cost_usd = 0.15;
        h.state.store.update_run(&r).await.unwrap();
        // 0.55 spent today: both ways to start a run are refused, clearly.
        let r = h.post(&chat, Some(&user), r#"{"message":"again"}"#).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
        assert_eq!(error_code(&r), "quota_exceeded");
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("$0.55 of your $0.50 daily"), "{msg}");
        let before = h.state.store.count_projects(&name).await.unwrap();
        let r = h
            .post("/api/projects", Some(&user), r#"{"prompt":"two"}"#)
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
        assert_eq!(h.state.store.count_projects(&name).await.unwrap(), before);
        // Someone else still can.
        let other = issue_token("s", &format!("other-{}", uuid::Uuid::new_v4()), 1).unwrap();
        create(&h, Some(&other), "mine").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caps_answer_429() {
    for store in stores().await {
        let h = harness(
            store,
            &[
                ("APNA_JWT_SECRET", "s"),
                ("APNA_MAX_PROJECTS", "2"),
                ("APNA_MAX_ACTIVE_RUNS", "1"),
            ],
        )
        .await;
        let user = issue_token("s", &format!("capped-{}", uuid::Uuid::new_v4()), 1).unwrap();
        let (_, run1) = create(&h, Some(&user), "one").await;
        // A second project would be a second concurrent run.
        let r = h
            .post("/api/projects", Some(&user), r#"{"prompt":"two"}"#)
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
        assert_eq!(error_code(&r), "quota_exceeded");
        end_run(&h, &run1).await;
        let (_, run2) = create(&h, Some(&user), "two").await;
        end_run(&h, &run2).await;
        let r = h
            .post("/api/projects", Some(&user), r#"{"prompt":"three"}"#)
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 projects"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn twenty_concurrent_chats_one_wins() {
    for store in stores().await {
        let h = Arc::new(harness(store, &[("APNA_MAX_ACTIVE_RUNS", "100")]).await);
        let (id, run) = create(&h, None, "race").await;
        end_run(&h, &run).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (h, id, barrier) = (h.clone(), id.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                h.post(
                    &format!("/api/projects/{id}/chat"),
                    None,
                    &json!({"message": format!("change {i}")}).to_string(),
                )
                .await
                .status
            }));
        }
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap());
        }
        assert_eq!(
            codes.iter().filter(|c| **c == StatusCode::ACCEPTED).count(),
            1,
            "{codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|c| **c == StatusCode::CONFLICT).count(),
            19,
            "{codes:?}"
        );
        // The losers left no runs or messages behind.
        let runs = h
            .state
            .store
            .list_runs(&id, apna::domain::Page::default())
            .await
            .unwrap();
        assert_eq!(runs.len(), 2);
        let msgs = h
            .state
            .store
            .list_messages(&id, apna::domain::Page::default())
            .await
            .unwrap();
        assert_eq!(msgs.len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_stream_in_order_and_resume() {
    for store in stores().await {
        let h = harness(store, &[]).await;
        let (_, run_id) = create(&h, None, "stream me").await;
        for i in 0..5 {
            h.state
                .store
                .append_event(
                    &run_id,
                    RunEventKind::Text,
                    &json!({ "text": format!("part {i}") }),
                )
                .await
                .unwrap();
        }
        end_run(&h, &run_id).await;

        // SSE: all events in order, ending after `done`.
        let r = h.get(&format!("/api/runs/{run_id}/events"), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let ids = sse_ids(&r.text);
        let total = ids.len() as i64;
        assert_eq!(ids, (1..=total).collect::<Vec<_>>());
        assert!(r.text.contains("event: done"));
        assert!(r.text.contains("part 4"));

        // Resume with Last-Event-ID: only later events, no duplicates.
        let req = axum::http::Request::get(format!("/api/runs/{run_id}/events"))
            .header("host", "localhost")
            .header("last-event-id", "3")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(h.router.clone(), req)
            .await
            .unwrap();
        let text = String::from_utf8(
            http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert_eq!(sse_ids(&text), (4..=total).collect::<Vec<_>>());

        // Long-poll JSON.
        let r = h
            .get(&format!("/api/runs/{run_id}/events?after=2&wait=0"), None)
            .await;
        let seqs: Vec<i64> = r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, (3..=total).collect::<Vec<_>>());
        assert_eq!(r.body["done"], true);
        let r = h
            .get(
                &format!("/api/runs/{run_id}/events?after={total}&wait=0"),
                None,
            )
            .await;
        assert!(r.body["events"].as_array().unwrap().is_empty());
        assert_eq!(r.body["done"], true);
    }
}

#[tokio::test]
async fn live_events_arrive_while_streaming() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let (_, run_id) = create(&h, None, "live").await;
    let state = h.state.clone();
    let rid = run_id.clone();
    tokio::spawn(async move {
        for i in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            state
                .store
                .append_event(
                    &rid,
                    RunEventKind::Tool,
                    &json!({ "summary": format!("edited file{i}") }),
                )
                .await
                .unwrap();
        }
        finish_run(
            &state,
            &rid,
            RunEnd::Succeeded {
                summary: "done".into(),
            },
        )
        .await
        .unwrap();
    });
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        h.get(&format!("/api/runs/{run_id}/events"), None),
    )
    .await
    .expect("stream did not end after done");
    let ids = sse_ids(&r.text);
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>());
    assert!(r.text.contains("edited file2") && r.text.contains("event: done"));
}

fn sse_ids(text: &str) -> Vec<i64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
        .map(|v| v.trim().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn config_health_and_openapi() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let r = h.get("/api/config", None).await;
    assert_eq!(r.body["auth"], "single_user");
    assert_eq!(r.body["model_configured"], false);
    assert!(r.body["setup_hint"]
        .as_str()
        .unwrap()
        .contains("ANTHROPIC_API_KEY="));
    let r = h.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["store"]["backend"], "sqlite");
    // A backend down: 503 naming it, without its paths or messages (public route).
    let blob_dir = h.state.config.data_dir.join("blobs");
    std::fs::remove_dir_all(&blob_dir).unwrap();
    let r = h.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["status"], "degraded");
    assert_eq!(r.body["blob"]["ok"], false);
    assert_eq!(r.body["store"]["ok"], true);
    assert!(r.body["blob"]["error"]
        .as_str()
        .unwrap()
        .contains("not answering"));
    assert!(!r.text.contains(blob_dir.to_str().unwrap()), "{}", r.text);
    std::fs::create_dir_all(&blob_dir).unwrap();
    let r = h.get("/api/openapi.json", None).await;
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(r.body["paths"]["/api/projects/{id}/chat"]["post"].is_object());
}

#[tokio::test]
async fn templates_are_listed_and_a_create_picks_one() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[("APNA_JWT_SECRET", "test-secret")],
    )
    .await;
    // Public: the new-project screen shows them before anything else.
    let r = h.get("/api/templates", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = r.body["templates"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app", "dashboard", "landing", "minimal"]);
    assert_eq!(list[0]["default"], true);
    assert!(list[1..].iter().all(|t| t["default"] == false));
    for t in list {
        assert!(!t["title"].as_str().unwrap().is_empty());
        assert!(!t["prompt_hints"].as_array().unwrap().is_empty());
        let url = t["preview_url"].as_str().unwrap();
        let img = h.get(url, None).await;
        assert_eq!(img.status, StatusCode::OK, "{url}");
        assert_eq!(img.headers["content-type"], "image/png");
        assert!(img.text.contains("PNG"), "{url}");
    }
    for bad in [
        "/api/templates/nope/preview.png",
        "/api/templates/../preview.png",
    ] {
        assert_eq!(
            h.get(bad, None).await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }

    let token = apna::api::auth::issue_token("test-secret", "alice", 1).unwrap();
    let r = h
        .post(
            "/api/projects",
            Some(&token),
            &json!({"prompt": "a sales dashboard", "template": "dashboard"}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["project"]["template"], "dashboard");
    let r = h
        .post("/api/projects", Some(&token), r#"{"prompt": "default"}"#)
        .await;
    assert_eq!(r.body["project"]["template"], "app");
    let r = h
        .post(
            "/api/projects",
            Some(&token),
            r#"{"prompt": "x", "template": "vite-react"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("available: app, dashboard, landing, minimal"),
        "{message}"
    );
    assert_eq!(h.state.store.count_projects("alice").await.unwrap(), 2);

    // The first run's EnsureSandbox makes the sandbox from the project's
    // starter and records that starting tree, naming the starter.
    let r = h
        .post(
            "/api/projects",
            Some(&token),
            &json!({"prompt": "a launch page", "template": "landing"}).to_string(),
        )
        .await;
    let id = r.body["project"]["id"].as_str().unwrap().to_string();
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let sandbox = h.sandboxes.get(&id);
    sandbox.set_state(apna::sandbox::SandboxState::Missing);
    apna::tasks::run_task(
        "EnsureSandbox",
        json!({"run_id": run_id, "project_id": id}),
        &h.state.backends,
    )
    .await
    .unwrap();
    assert_eq!(sandbox.starter().as_deref(), Some("landing"));
    let base = apna::snapshot::get_base(&*h.state.blobs, &id)
        .await
        .unwrap()
        .expect("the starting tree is recorded");
    let manifest = apna::snapshot::read_manifest(&*h.state.blobs, &base)
        .await
        .unwrap();
    assert_eq!(manifest.template.as_deref(), Some("landing"));
}

#[test]
fn committed_openapi_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let generated = apna::api::openapi::document();
    if std::env::var("APNA_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json is out of date: run `APNA_UPDATE_OPENAPI=1 cargo test -p apna --test api committed_openapi` and commit it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_diff_restore_download_and_wake() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let (id, run) = create(&h, None, "versioned app").await;
    let sb = h.sandboxes.get(&id);
    let (store, blobs) = (h.state.store.clone(), h.state.blobs.clone());
    sb.put(
        "src/App.tsx",
        "export default function App() { return <h1>first</h1> }\n",
    );
    let v1 = apna::snapshot::record_version(&*store, &*blobs, &sb, &id, Some(&run), "first")
        .await
        .unwrap();
    end_run(&h, &run).await;
    // The browser check's screenshot of version 1, as Finalize attaches it.
    let png = b"\x89PNG\r\n\x1a\n a tiny stand-in".to_vec();
    let shots = apna::tasks::smoke::store_screenshots(
        &*blobs,
        &id,
        &[apna::sandbox::smoke::ScreenshotImage {
            viewport: "desktop".into(),
            width: 1280,
            height: 800,
            png: png.clone(),
        }],
    )
    .await
    .unwrap();
    assert!(store.set_version_screenshots(&id, 1, &shots).await.unwrap());
    assert!(!store.set_version_screenshots(&id, 7, &shots).await.unwrap());
    sb.put(
        "src/App.tsx",
        "export default function App() { return <h1>second</h1> }\n",
    );
    let v2 = apna::snapshot::record_version(&*store, &*blobs, &sb, &id, None, "second")
        .await
        .unwrap();
    assert_eq!((v1.number, v2.number), (1, 2));

    let r = h.get(&format!("/api/projects/{id}/versions"), None).await;
    assert_eq!(
        r.body["versions"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );
    let listed = &r.body["versions"][0]["screenshots"];
    assert_eq!(listed[0]["viewport"], "desktop", "{}", r.text);
    assert_eq!(listed[0]["bytes"], png.len());
    assert_eq!(r.body["versions"][1]["screenshots"], serde_json::json!([]));
    let sha = listed[0]["sha256"].as_str().unwrap().to_string();
    let r = h
        .get(&format!("/api/projects/{id}/screenshots/{sha}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "image/png");
    assert!(r.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(r.bytes.as_ref(), png.as_slice());
    for (path, status) in [
        (
            format!("/api/projects/{id}/screenshots/{}", "0".repeat(64)),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/projects/{id}/screenshots/..%2F..%2Fsecret"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/projects/{id}/screenshots/{}", sha.to_uppercase()),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/projects/nope/screenshots/{sha}"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = h.get(&path, None).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
    }
    let r = h
        .get(&format!("/api/projects/{id}/versions/2/diff"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let diff = r.body["diff"].as_str().unwrap();
    assert!(
        diff.contains("-export default function App() { return <h1>first</h1> }"),
        "{diff}"
    );
    assert!(
        diff.contains("+export default function App() { return <h1>second</h1> }"),
        "{diff}"
    );
    assert_eq!(
        h.get(&format!("/api/projects/{id}/versions/99/diff"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("/api/projects/{id}/versions/abc/diff"), None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Restore is a new version, and the files are back.
    let r = h
        .post(&format!("/api/projects/{id}/versions/1/restore"), None, "")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["version"]["number"], 3);
    assert_eq!(r.body["version"]["summary"], "Restored version 1");
    assert_eq!(r.body["version"]["screenshots"][0]["sha256"], sha.as_str());
    assert!(sb.file("src/App.tsx").unwrap().contains("first"));

    // Not while a run is active.
    let r = h
        .post(
            &format!("/api/projects/{id}/chat"),
            None,
            r#"{"message":"again"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let run2 = r.body["run_id"].as_str().unwrap().to_string();
    let r = h
        .post(&format!("/api/projects/{id}/versions/2/restore"), None, "")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    end_run(&h, &run2).await;

    // Download: a zip of the source.
    let r = h.get(&format!("/api/projects/{id}/download"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/zip");
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("versioned-app.zip"));

    // Hibernated: files come from the snapshot; reading the project wakes it.
    let out = apna::snapshot::hibernate_project(&*store, &*blobs, &*h.sandboxes, &id)
        .await
        .unwrap();
    assert!(
        matches!(out, apna::snapshot::HibernateOutcome::Hibernated { .. }),
        "{out:?}"
    );
    let r = h
        .get(&format!("/api/projects/{id}/files/src/App.tsx"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["content"].as_str().unwrap().contains("first"));
    let r = h.get(&format!("/api/projects/{id}"), None).await;
    assert_eq!(r.body["status"], "hibernated", "the answer does not wait");
    // Reading it started one wake execution (reading again starts none here:
    // the recording workflow cannot tell, see tests/lambda_wake.rs) ...
    let wakes: Vec<_> = h
        .workflow
        .starts
        .lock()
        .unwrap()
        .iter()
        .filter(|(sm, _, _)| sm == apna::run::WAKE)
        .cloned()
        .collect();
    assert_eq!(wakes.len(), 1, "{wakes:?}");
    assert!(wakes[0].1.starts_with(&format!("wake-{id}-")));
    // ... whose task restores it.
    apna::tasks::run_task("WakeProject", wakes[0].2.clone(), &h.state)
        .await
        .unwrap();
    let r = h.get(&format!("/api/projects/{id}"), None).await;
    assert_eq!(r.body["status"], "ready", "the wake task woke it");
    assert!(sb.file("src/App.tsx").unwrap().contains("first"));
}

/// Issue #15: where schemathesis found the document and the server
/// disagreeing, they now agree: paging outside the documented ranges is
/// refused, a prompt is refused exactly when the documented pattern refuses
/// it, and a file path that cannot name a file is a 404 like a missing file.
#[tokio::test]
async fn the_server_agrees_with_the_documented_ranges() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let (id, _) = create(&h, None, "a clock").await;
    for q in [
        "limit=0",
        "limit=201",
        "offset=-1",
        "offset=100001",
        "offset=9223372036854775807",
        "limit=x",
    ] {
        for path in [
            "/api/projects".to_string(),
            format!("/api/projects/{id}/messages"),
            format!("/api/projects/{id}/runs"),
        ] {
            let r = h.get(&format!("{path}?{q}"), None).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}?{q}: {}", r.text);
        }
    }
    for q in ["limit=1&offset=100000", "limit=200&offset=0"] {
        let r = h.get(&format!("/api/projects?{q}"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
    }
    // Refused exactly where the documented pattern `[^\t\n\r ]` refuses.
    for bad in ["", " ", "\t\n\r "] {
        let r = h
            .post("/api/projects", None, &json!({ "prompt": bad }).to_string())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", r.text);
    }
    let r = h
        .post(
            "/api/projects",
            None,
            &json!({ "prompt": "\u{3000}\u{1c}" }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let long = "é".repeat(20_000);
    let r = h
        .post(
            "/api/projects",
            None,
            &json!({ "prompt": long }).to_string(),
        )
        .await;
    assert_ne!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the longest prompt fits the body limit"
    );
    assert_ne!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    for path in ["a%01b", "..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "src/%7F"] {
        let r = h
            .get(&format!("/api/projects/{id}/files/{path}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{}",
            r.text
        );
    }
    for q in ["after=-1", "wait=26"] {
        let r = h.get(&format!("/api/runs/x/events?{q}"), None).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::NOT_FOUND,
            "{q}"
        );
    }
}
