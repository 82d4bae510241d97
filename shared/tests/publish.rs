//! Publishing a version as a site and serving it: through the API, the real
//! publish state machine (local interpreter) and `apna serve`'s router, with
//! the build played by a memory sandbox (`testing::site::fake_vite`). The
//! real `vite build` is in `publish_local.rs`.

use std::sync::Arc;

use apna::app::{AppState, Backends};
use apna::blob::{BlobStore, FsBlobStore};
use apna::domain::{Project, ProjectStatus, Site};
use apna::publish::PublishJob;
use apna::testing::faults::{Faults, FaultyBlobStore, Mode};
use apna::testing::memory::{MemoryProvider, MemorySandbox};
use apna::testing::model::NoModel;
use apna::testing::site::{fake_vite, fetch, Page};
use apna::testing::workflow::RecordingWorkflow;
use apna::workflow::local::LocalWorkflow;
use apna::workflow::Workflow;
use axum::Router;
use serde_json::{json, Value};

const HOST: &str = "my-app.apps.localhost:3000";

struct World {
    state: AppState,
    router: Router,
    sandboxes: Arc<MemoryProvider>,
    faults: Arc<Faults>,
    local: Option<Arc<LocalWorkflow>>,
    recording: Arc<RecordingWorkflow>,
    _dir: tempfile::TempDir,
}

/// Store, blobs (behind a fault injector), memory sandboxes, and either the
/// real interpreter running `publish.asl.json` or a recording workflow.
async fn world(interpreted: bool, vars: &[(&str, &str)]) -> World {
    world_over(None, interpreted, vars).await
}

/// [`world`] over `blobs` (a temporary folder when `None`).
async fn world_over(
    blobs: Option<Arc<dyn BlobStore>>,
    interpreted: bool,
    vars: &[(&str, &str)],
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("PORT", "3000")];
    all.extend_from_slice(vars);
    let config = apna::testing::fixtures::config(dir.path(), &all);
    let store = apna::testing::fixtures::memory_store().await;
    let faults = Arc::new(Faults::default());
    let inner: Arc<dyn BlobStore> = match blobs {
        Some(b) => b,
        None => Arc::new(FsBlobStore::new(dir.path().join("blobs")).await.unwrap()),
    };
    let blobs = Arc::new(FaultyBlobStore::new(inner, faults.clone()));
    let sandboxes = Arc::new(MemoryProvider::default());
    let backends = Backends::new(
        config,
        store.clone(),
        blobs,
        sandboxes.clone(),
        Arc::new(NoModel),
    );
    let recording = Arc::new(RecordingWorkflow::default());
    let (workflow, local): (Arc<dyn Workflow>, _) = if interpreted {
        let wf = Arc::new(
            LocalWorkflow::new(
                store,
                Arc::new(apna::tasks::TaskRouter::new(backends.clone())),
                [(apna::publish::PUBLISH, apna::server::PUBLISH_ASL)],
            )
            .unwrap(),
        );
        (wf.clone(), Some(wf))
    } else {
        (recording.clone(), None)
    };
    let state = AppState::new(backends, workflow);
    let router = apna::server::app_router(state.clone());
    World {
        state,
        router,
        sandboxes,
        faults,
        local,
        recording,
        _dir: dir,
    }
}

impl World {
    /// A ready project of `owner` whose sandbox holds an app saying `text`, with `versions` versions.
    async fn project(&self, owner: &str, texts: &[&str]) -> Project {
        let p = Project::new(owner, "My App", "vite-react");
        self.state.store.create_project(&p).await.unwrap();
        for (from, to) in [
            (ProjectStatus::Creating, ProjectStatus::Building),
            (ProjectStatus::Building, ProjectStatus::Ready),
        ] {
            self.state
                .store
                .set_project_status(&p.id, from, to, None)
                .await
                .unwrap();
        }
        let sb = self.sandboxes.get(&p.id);
        fake_vite(&sb);
        for t in texts {
            self.version(&p.id, t).await;
        }
        p
    }

    /// Records a new version whose app says `text`.
    async fn version(&self, project_id: &str, text: &str) -> i64 {
        let sb: MemorySandbox = self.sandboxes.get(project_id);
        sb.put(
            "src/App.tsx",
            &format!("export default () => <h1>{text}</h1>\n"),
        );
        apna::snapshot::record_version(
            &*self.state.store,
            &*self.state.blobs,
            &sb,
            project_id,
            None,
            text,
        )
        .await
        .unwrap()
        .number
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost:3000");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                axum::body::Body::from(b.to_string())
            }
            None => axum::body::Body::empty(),
        };
        use tower::ServiceExt;
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        use http_body_util::BodyExt;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// POSTs a publish and, with the interpreter, waits for it to end.
    async fn publish(&self, project_id: &str, body: Value) -> (u16, Value) {
        let (status, view) = self
            .call(
                "POST",
                &format!("/api/projects/{project_id}/publish"),
                None,
                Some(body),
            )
            .await;
        if status == 202 {
            if let Some(wf) = &self.local {
                let site = self
                    .state
                    .store
                    .get_site(project_id)
                    .await
                    .unwrap()
                    .unwrap();
                wf.wait(site.job.as_deref().unwrap()).await.unwrap();
            }
        }
        (status, view)
    }

    async fn site_view(&self, project_id: &str) -> Value {
        let (status, v) = self
            .call(
                "GET",
                &format!("/api/projects/{project_id}/publish"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Page {
        fetch(&self.router, host, path, headers).await
    }

    /// The text the site at `host` shows: its entry, then the script it names.
    async fn shown(&self, host: &str) -> Option<String> {
        let page = self.get(host, "/", &[]).await;
        if page.status != 200 {
            return None;
        }
        let html = page.text();
        let src = html.split("src=\"").nth(1)?.split('"').next()?.to_string();
        let script = self.get(host, &src, &[]).await;
        assert_eq!(
            script.status, 200,
            "{src} named by the entry is missing: a mixed site"
        );
        let text = script.text();
        Some(
            text.split("<h1>")
                .nth(1)?
                .split("</h1>")
                .next()?
                .to_string(),
        )
    }
}

#[tokio::test]
async fn publish_serves_the_entry_assets_and_deep_links_with_the_right_headers() {
    let w = world(true, &[]).await;
    let p = w.project("local", &["one"]).await;
    let (status, view) = w.publish(&p.id, json!({"slug": "my-app"})).await;
    assert_eq!(status, 202, "{view}");
    assert_eq!(view["publishing"], true);
    assert_eq!(view["pending_version"], 1);
    let view = w.site_view(&p.id).await;
    assert_eq!(view["status"], "published", "{view}");
    assert_eq!(view["version"], 1);
    assert_eq!(view["url"], "http://my-app.apps.localhost:3000/");
    assert_eq!(view["publishing"], false);
    assert!(view["published_at"].is_string());

    let index = w.get(HOST, "/", &[]).await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    assert_eq!(index.header("cache-control").unwrap(), "no-cache");
    let etag = index.header("etag").unwrap();
    let html = index.text();
    assert!(html.contains("/_apna/v1-"), "{html}");
    for deep in ["/habits/today", "/settings/", "/index.html"] {
        let page = w.get(HOST, deep, &[]).await;
        assert_eq!((page.status, page.text()), (200, html.clone()), "{deep}");
    }
    let again = w.get(HOST, "/about", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(w.shown(HOST).await.as_deref(), Some("one"));

    let src = html
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let js = w.get(HOST, src, &[]).await;
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert_eq!(
        js.header("cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );
    // Brotli is a feature the Lambda build leaves out; gzip is always there.
    let br = w.get(HOST, src, &[("accept-encoding", "br")]).await;
    let expected = cfg!(feature = "brotli").then_some("br");
    assert_eq!(br.header("content-encoding").as_deref(), expected);
    let gz = w.get(HOST, "/", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding").as_deref(), Some("gzip"));
    let icon = w.get(HOST, "/favicon.svg", &[]).await;
    assert_eq!(icon.status, 200);
    assert_eq!(
        icon.header("content-type").unwrap(),
        "image/svg+xml; charset=utf-8"
    );
    assert_eq!(icon.header("cache-control").unwrap(), "no-cache");

    assert_eq!(w.get(HOST, "/missing.png", &[]).await.status, 404);
    assert_eq!(
        w.get(HOST, "/_apna/v1-00000000/x.js", &[]).await.status,
        404
    );
    assert_eq!(w.get(HOST, "/%2e%2e/projects/x", &[]).await.status, 404);
    assert_eq!(
        w.get("nope-nope.apps.localhost:3000", "/", &[])
            .await
            .status,
        404
    );
    assert_eq!(
        w.get("a.my-app.apps.localhost:3000", "/", &[]).await.status,
        400
    );
    assert_eq!(
        w.get("My-App.apps.localhost:3000", "/", &[]).await.status,
        400
    );
    // The API and previews are not reachable through a site host, and vice versa.
    assert_eq!(w.get(HOST, "/api/projects", &[]).await.text(), html);
    assert_eq!(
        w.get("localhost:3000", "/api/projects", &[]).await.status,
        200
    );
    let post = {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .method("POST")
            .uri("/")
            .header("host", HOST)
            .body(axum::body::Body::empty())
            .unwrap();
        w.router
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post, 405);
}

#[tokio::test]
async fn republishing_an_older_version_rolls_back_without_a_build_and_unpublish_frees_the_slug() {
    let w = world(true, &[]).await;
    let p = w.project("local", &["one"]).await;
    assert_eq!(w.publish(&p.id, json!({"slug": "my-app"})).await.0, 202);
    assert_eq!(w.shown(HOST).await.as_deref(), Some("one"));
    w.version(&p.id, "two").await;
    // No version given: the newest; no slug given: the current one.
    assert_eq!(w.publish(&p.id, json!({})).await.0, 202);
    assert_eq!(w.shown(HOST).await.as_deref(), Some("two"));
    assert_eq!(w.site_view(&p.id).await["version"], 2);

    let sb = w.sandboxes.get(&p.id);
    let builds = |sb: &MemorySandbox| {
        sb.commands()
            .iter()
            .filter(|c| c.contains("vite.js build"))
            .count()
    };
    let before = builds(&sb);
    assert_eq!(w.publish(&p.id, json!({"version": 1})).await.0, 202);
    assert_eq!(w.shown(HOST).await.as_deref(), Some("one"));
    let view = w.site_view(&p.id).await;
    assert_eq!(
        (view["version"].clone(), view["status"].clone()),
        (json!(1), json!("published"))
    );
    assert_eq!(
        builds(&sb),
        before,
        "a rollback to a stored deploy must not build"
    );

    // Rename: the new address serves, then the old one is gone and free.
    assert_eq!(
        w.publish(&p.id, json!({"slug": "renamed", "version": 1}))
            .await
            .0,
        202
    );
    assert_eq!(
        w.shown("renamed.apps.localhost:3000").await.as_deref(),
        Some("one")
    );
    assert_eq!(w.get(HOST, "/", &[]).await.status, 404);
    assert_eq!(builds(&sb), before, "a rename copies the deploy");
    assert_eq!(w.state.store.slug_owner("my-app").await.unwrap(), None);

    let (status, view) = w
        .call(
            "DELETE",
            &format!("/api/projects/{}/publish", p.id),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "unpublished");
    assert_eq!(view["url"], Value::Null);
    assert_eq!(
        w.get("renamed.apps.localhost:3000", "/", &[]).await.status,
        404
    );
    assert_eq!(w.state.store.slug_owner("renamed").await.unwrap(), None);
    let left: Vec<String> = w.state.blobs.list("sites/").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let manifests = w
        .state
        .blobs
        .list(&format!("projects/{}/deploys/", p.id))
        .await
        .unwrap();
    assert!(manifests.is_empty(), "{manifests:?}");
    // Unpublishing again is harmless.
    assert_eq!(
        w.call(
            "DELETE",
            &format!("/api/projects/{}/publish", p.id),
            None,
            None
        )
        .await
        .0,
        200
    );
    // Another project can take the freed slug.
    let q = w.project("local", &["three"]).await;
    assert_eq!(w.publish(&q.id, json!({"slug": "my-app"})).await.0, 202);
    assert_eq!(w.shown(HOST).await.as_deref(), Some("three"));
}

#[tokio::test]
async fn a_failing_build_keeps_the_previous_site_and_says_why() {
    let w = world(true, &[]).await;
    let p = w.project("local", &["one"]).await;
    assert_eq!(w.publish(&p.id, json!({"slug": "my-app"})).await.0, 202);
    w.version(&p.id, apna::testing::site::BUILD_FAILS).await;
    assert_eq!(w.publish(&p.id, json!({"slug": "other-name"})).await.0, 202);
    let view = w.site_view(&p.id).await;
    assert_eq!(view["version"], 1, "{view}");
    assert_eq!(view["publishing"], false);
    assert!(
        view["error"].as_str().unwrap().contains("does not build"),
        "{view}"
    );
    assert_eq!(w.shown(HOST).await.as_deref(), Some("one"));
    // The slug the failed publish claimed is free again.
    assert_eq!(w.state.store.slug_owner("other-name").await.unwrap(), None);
    assert_eq!(
        w.get("other-name.apps.localhost:3000", "/", &[])
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn slugs_are_checked_unique_and_other_users_see_nothing() {
    let secret = "publish-test-secret";
    let w = world(false, &[("APNA_JWT_SECRET", secret)]).await;
    let alice = apna::api::auth::issue_token(secret, "alice", 1).unwrap();
    let bob = apna::api::auth::issue_token(secret, "bob", 1).unwrap();
    let a = w.project("alice", &["one"]).await;
    let b = w.project("bob", &["two"]).await;
    let url = |p: &Project| format!("/api/projects/{}/publish", p.id);

    for bad in [
        json!({"slug": "ab"}),
        json!({"slug": "My-App"}),
        json!({"slug": "www"}),
        json!({"slug": "-app"}),
        json!({"slug": "xn--app"}),
        json!({"slug": "a".repeat(64)}),
        json!({"slug": 5}),
        json!({"version": "one"}),
        json!({"surprise": true}),
    ] {
        let (status, body) = w
            .call("POST", &url(&a), Some(&alice), Some(bad.clone()))
            .await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (status, _) = w
        .call("POST", &url(&a), Some(&alice), Some(json!({"version": 9})))
        .await;
    assert_eq!(status, 404);
    let (status, v) = w
        .call(
            "POST",
            &url(&a),
            Some(&alice),
            Some(json!({"slug": "shared-name"})),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    // While it runs (the recording workflow never finishes it), another publish waits.
    let (status, body) = w
        .call("POST", &url(&a), Some(&alice), Some(json!({})))
        .await;
    assert_eq!(status, 409, "{body}");
    // The slug is Alice's: Bob gets a conflict, not her site.
    let (status, body) = w
        .call(
            "POST",
            &url(&b),
            Some(&bob),
            Some(json!({"slug": "shared-name"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("taken"));
    // Bob cannot see, publish or unpublish Alice's project.
    for (method, body) in [("GET", None), ("POST", Some(json!({}))), ("DELETE", None)] {
        let (status, reply) = w.call(method, &url(&a), Some(&bob), body).await;
        assert_eq!(status, 404, "{method} → {reply}");
    }
    assert_eq!(w.call("GET", &url(&a), None, None).await.0, 401);
    // Unpublishing during a publish is refused; Alice's view shows it pending.
    assert_eq!(w.call("DELETE", &url(&a), Some(&alice), None).await.0, 409);
    let (_, view) = w.call("GET", &url(&a), Some(&alice), None).await;
    assert_eq!(view["publishing"], true);
    assert_eq!(
        view["pending_url"],
        "http://shared-name.apps.localhost:3000/"
    );
    assert_eq!(view["status"], "unpublished");
    // A generated slug is made from the name and claimed.
    let (status, v) = w.call("POST", &url(&b), Some(&bob), Some(json!({}))).await;
    assert_eq!(status, 202, "{v}");
    let generated = v["pending_url"].as_str().unwrap();
    assert!(generated.starts_with("http://my-app-"), "{generated}");
    let starts = w.recording.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0].0, "publish");
    assert_eq!(starts[0].2["slug"], "shared-name");
    // A project without versions has nothing to publish.
    let empty = w.project("alice", &[]).await;
    let (status, body) = w
        .call("POST", &url(&empty), Some(&alice), Some(json!({})))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string().contains("nothing to publish yet"),
        "{body}"
    );
}

#[tokio::test]
async fn deleting_a_project_takes_its_site_down_and_frees_the_slug() {
    let w = world(true, &[]).await;
    let p = w.project("local", &["one"]).await;
    assert_eq!(w.publish(&p.id, json!({"slug": "my-app"})).await.0, 202);
    assert_eq!(w.shown(HOST).await.as_deref(), Some("one"));
    assert_eq!(
        w.call("DELETE", &format!("/api/projects/{}", p.id), None, None)
            .await
            .0,
        200
    );
    assert_eq!(w.get(HOST, "/", &[]).await.status, 404);
    assert_eq!(w.state.store.slug_owner("my-app").await.unwrap(), None);
}

/// Runs one publish's tasks as the state machine would once its retries are
/// spent: BuildSite, ActivateSite, and PublishFailed on the first error.
async fn drive(w: &World, job: &PublishJob) -> Result<(), String> {
    let b = &w.state.backends;
    let built = apna::tasks::run_task("BuildSite", serde_json::to_value(job).unwrap(), b).await;
    let mut input = serde_json::to_value(job).unwrap();
    let result = match built {
        Ok(out) => {
            input["deploy_id"] = out["deploy_id"].clone();
            apna::tasks::run_task("ActivateSite", input.clone(), b)
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            input["error"] = json!({"Error": "Apna.Blob", "Cause": e.to_string()});
            apna::tasks::run_task("PublishFailed", input, b)
                .await
                .unwrap_or_else(|e| panic!("PublishFailed failed: {e}"));
            Err(e.to_string())
        }
    }
}

/// Publishes v2 (optionally under a new slug) with one blob call failing,
/// for every call the publish makes; after each, the site serves one whole
/// version — the previous one, unless the failure came after the flip — and
/// the record says which.
#[tokio::test]
async fn a_failure_at_any_step_leaves_a_whole_site_serving() {
    for (rename, mode) in [
        (false, Mode::FailBefore),
        (false, Mode::FailAfter),
        (true, Mode::FailBefore),
        (true, Mode::FailAfter),
    ] {
        let mut k = 1;
        loop {
            let w = world(false, &[]).await;
            let p = w.project("local", &["one"]).await;
            let (status, _) = w.publish(&p.id, json!({"slug": "my-app"})).await;
            assert_eq!(status, 202);
            let job: PublishJob =
                serde_json::from_value(w.recording.starts.lock().unwrap()[0].2.clone()).unwrap();
            drive(&w, &job).await.unwrap();
            assert_eq!(w.shown(HOST).await.as_deref(), Some("one"));
            w.version(&p.id, "two").await;
            let body = if rename {
                json!({"slug": "new-name"})
            } else {
                json!({})
            };
            assert_eq!(w.publish(&p.id, body).await.0, 202);
            let job: PublishJob =
                serde_json::from_value(w.recording.starts.lock().unwrap()[1].2.clone()).unwrap();

            w.faults.arm(k, mode);
            let outcome = drive(&w, &job).await;
            let calls = w.faults.calls();
            w.faults.disarm();
            let site: Site = w.state.store.get_site(&p.id).await.unwrap().unwrap();
            assert_eq!(site.job, None, "k={k}: the publish must end");
            let host = format!("{}.apps.localhost:3000", site.slug.clone().unwrap());
            let shown = w.shown(&host).await;
            let recorded = site.version.unwrap();
            assert_eq!(
                shown.as_deref(),
                Some(if recorded == 1 { "one" } else { "two" }),
                "k={k} {mode:?} rename={rename}: serves something other than the record ({outcome:?})"
            );
            if rename {
                // Exactly one address serves, and only it is claimed.
                let other = if site.slug.as_deref() == Some("my-app") {
                    "new-name"
                } else {
                    "my-app"
                };
                assert_eq!(
                    w.get(&format!("{other}.apps.localhost:3000"), "/", &[])
                        .await
                        .status,
                    404,
                    "k={k}: both addresses serve"
                );
                assert_eq!(
                    w.state.store.slug_owner(other).await.unwrap(),
                    None,
                    "k={k}"
                );
            }
            match &outcome {
                Err(e) => {
                    assert!(site.last_error.is_some() || recorded == 2, "k={k}: {e}");
                    if recorded == 1 {
                        assert_eq!(site.slug.as_deref(), Some("my-app"));
                    }
                }
                Ok(()) => assert_eq!(recorded, 2, "k={k}"),
            }
            if calls < k {
                assert!(outcome.is_ok(), "no failure was injected at k={k}");
                assert!(k > 10, "a publish makes more than 10 blob calls");
                break;
            }
            // The next publish (v2 again) works after any failure.
            assert_eq!(w.publish(&p.id, json!({})).await.0, 202);
            let job: PublishJob = serde_json::from_value(
                w.recording.starts.lock().unwrap().last().unwrap().2.clone(),
            )
            .unwrap();
            drive(&w, &job)
                .await
                .unwrap_or_else(|e| panic!("k={k}: retry failed: {e}"));
            let site = w.state.store.get_site(&p.id).await.unwrap().unwrap();
            let host = format!("{}.apps.localhost:3000", site.slug.unwrap());
            assert_eq!(w.shown(&host).await.as_deref(), Some("two"), "k={k}");
            k += 1;
        }
    }
}

#[tokio::test]
async fn publishing_a_hibernated_project_wakes_it_first() {
    let w = world(true, &[]).await;
    let p = w.project("local", &["one"]).await;
    let outcome = apna::snapshot::hibernate_project(
        &*w.state.store,
        &*w.state.blobs,
        &*w.state.sandboxes,
        &p.id,
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome, apna::snapshot::HibernateOutcome::Hibernated { .. }),
        "{outcome:?}"
    );
    let status = |w: &World| {
        let store = w.state.store.clone();
        let id = p.id.clone();
        async move { store.get_project(&id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(&w).await, ProjectStatus::Hibernated);
    assert_eq!(w.publish(&p.id, json!({"slug": "my-app"})).await.0, 202);
    assert_eq!(w.site_view(&p.id).await["version"], 1);
    assert_eq!(status(&w).await, ProjectStatus::Ready);
    assert_eq!(w.shown(HOST).await.as_deref(), Some("one"));
}

/// The same publish, rollback and unpublish against S3 (moto).
#[cfg(feature = "aws")]
#[tokio::test]
async fn publish_rollback_and_unpublish_on_s3() {
    let Some(blobs) = apna::testing::fixtures::s3_blobs().await else {
        return;
    };
    let w = world_over(Some(blobs), true, &[]).await;
    let p = w.project("local", &["one"]).await;
    // Slugs are global and the bucket is shared between runs: a fresh one.
    let slug = format!("s3-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let host = format!("{slug}.apps.localhost:3000");
    assert_eq!(w.publish(&p.id, json!({"slug": slug})).await.0, 202);
    assert_eq!(w.shown(&host).await.as_deref(), Some("one"));
    w.version(&p.id, "two").await;
    assert_eq!(w.publish(&p.id, json!({})).await.0, 202);
    assert_eq!(w.shown(&host).await.as_deref(), Some("two"));
    assert_eq!(w.publish(&p.id, json!({"version": 1})).await.0, 202);
    assert_eq!(w.shown(&host).await.as_deref(), Some("one"));
    let index = w.get(&host, "/deep/link", &[]).await;
    assert_eq!(index.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(
        w.call(
            "DELETE",
            &format!("/api/projects/{}/publish", p.id),
            None,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(w.get(&host, "/", &[]).await.status, 404);
    assert!(w
        .state
        .blobs
        .list(&format!("sites/{slug}/"))
        .await
        .unwrap()
        .is_empty());
}
