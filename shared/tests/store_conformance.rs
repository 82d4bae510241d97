//! One conformance suite for every `Store` backend: the same assertions run
//! against SQLite (file and memory), PostgreSQL and DynamoDB (dynalite).

use std::collections::HashSet;
use std::sync::Arc;

use apna::domain::{
    now, ContentBlock, ElementSelection, Execution, ExecutionStatus, FileAction, FileDiff,
    ImageRef, ImageSource, NewMessage, Page, Project, ProjectStatus, Role, Run, RunEventKind,
    RunStatus, Screenshot, Site, User,
};
use apna::store::{PostgresStore, SqliteStore, Store};
use chrono::Duration;
use serde_json::json;

async fn sqlite_file() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/apna.db").display());
    (Arc::new(SqliteStore::connect(&url).await.unwrap()), dir)
}

async fn postgres() -> Option<Arc<dyn Store>> {
    let url = apna::testing::services::postgres_url()?;
    Some(Arc::new(PostgresStore::connect(&url).await.unwrap()))
}

/// Runs every check against one store. Ids are fresh per call, so a shared
/// Postgres database can hold data from earlier runs.
async fn conformance(store: Arc<dyn Store>) {
    println!("store conformance: backend={}", store.backend());
    store.ping().await.unwrap();
    users(&*store).await;
    projects(&*store).await;
    run_lock_race(store.clone()).await;
    runs_and_events(&*store).await;
    messages(&*store).await;
    step_results(&*store).await;
    versions(store.clone()).await;
    executions(&*store).await;
    idle(&*store).await;
    sites(store.clone()).await;
    building(&*store).await;
    purge(&*store).await;
}

/// Site rows are compare-and-set on the publish in progress, and a slug is
/// held by one project at a time however many try at once.
async fn sites(store: Arc<dyn Store>) {
    let p = format!("site-{}", uuid::Uuid::new_v4());
    assert_eq!(store.get_site(&p).await.unwrap(), None);
    let mut site = Site::new(&p);
    site.job = Some("job-1".into());
    site.pending_version = Some(3);
    site.pending_slug = Some("pending".into());
    site.pending_since = Some(now());
    // A missing row counts as having no job: only `None` may create it.
    assert!(!store.save_site(&site, Some("job-0")).await.unwrap());
    assert!(store.save_site(&site, None).await.unwrap());
    assert_eq!(store.get_site(&p).await.unwrap().as_ref(), Some(&site));
    // A second publish cannot take over a running one.
    let mut other = site.clone();
    other.job = Some("job-2".into());
    assert!(!store.save_site(&other, None).await.unwrap());
    assert!(!store.save_site(&other, Some("job-0")).await.unwrap());
    // The holder finishes.
    let mut live = Site::new(&p);
    live.slug = Some("live-slug".into());
    live.version = Some(3);
    live.deploy_id = Some("v3-0a1b2c3d".into());
    live.published_at = Some(now());
    live.last_error = Some("an earlier failure".into());
    assert!(store.save_site(&live, Some("job-1")).await.unwrap());
    assert_eq!(store.get_site(&p).await.unwrap().as_ref(), Some(&live));
    assert!(store.save_site(&other, None).await.unwrap());

    let slug = format!("s-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let claims: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let slug = slug.clone();
            let owner = format!("{p}-{i}");
            tokio::spawn(async move {
                (
                    owner.clone(),
                    store.claim_slug(&slug, &owner).await.unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for c in claims {
        let (owner, won) = c.await.unwrap();
        if won {
            winners.push(owner);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let winner = &winners[0];
    assert_eq!(
        store.slug_owner(&slug).await.unwrap().as_deref(),
        Some(winner.as_str())
    );
    assert!(
        store.claim_slug(&slug, winner).await.unwrap(),
        "re-claiming is fine"
    );
    assert!(!store.release_slug(&slug, "someone-else").await.unwrap());
    assert!(store.release_slug(&slug, winner).await.unwrap());
    assert_eq!(store.slug_owner(&slug).await.unwrap(), None);
    assert!(store.claim_slug(&slug, "someone-else").await.unwrap());
}

async fn users(store: &dyn Store) {
    let id = format!("user-{}", uuid::Uuid::new_v4());
    let u = User {
        id: id.clone(),
        email: Some("a@example.com".into()),
        created_at: now(),
    };
    assert_eq!(store.upsert_user(&u).await.unwrap(), u);
    let again = User {
        email: None,
        ..u.clone()
    };
    assert_eq!(
        store.upsert_user(&again).await.unwrap(),
        u,
        "upsert keeps the first record"
    );
    assert!(store.get_user("nobody-at-all").await.unwrap().is_none());
}

async fn projects(store: &dyn Store) {
    let owner = format!("owner-{}", uuid::Uuid::new_v4());
    let p = Project::new(&owner, "a habit tracker with a dark theme", "vite-react");
    store.create_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap().unwrap(), p);
    assert!(matches!(
        store.create_project(&p).await,
        Err(apna::Error::Conflict(_))
    ));

    // Compare-and-set transitions; illegal ones are refused before the database.
    assert!(store
        .set_project_status(
            &p.id,
            ProjectStatus::Creating,
            ProjectStatus::Building,
            None
        )
        .await
        .unwrap());
    assert!(!store
        .set_project_status(
            &p.id,
            ProjectStatus::Creating,
            ProjectStatus::Building,
            None
        )
        .await
        .unwrap());
    assert!(store
        .set_project_status(&p.id, ProjectStatus::Building, ProjectStatus::Ready, None)
        .await
        .unwrap());
    assert!(store
        .set_project_status(&p.id, ProjectStatus::Ready, ProjectStatus::Ready, None)
        .await
        .is_err());
    assert!(store
        .set_project_status(&p.id, ProjectStatus::Ready, ProjectStatus::Building, None)
        .await
        .unwrap());
    assert!(store
        .set_project_status(
            &p.id,
            ProjectStatus::Building,
            ProjectStatus::Failed,
            Some("boom")
        )
        .await
        .unwrap());
    let got = store.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(got.status, ProjectStatus::Failed);
    assert_eq!(got.error.as_deref(), Some("boom"));

    // Paging, newest activity first.
    let mut ids = vec![p.id.clone()];
    for i in 0..4 {
        let mut q = Project::new(&owner, &format!("app {i}"), "vite-react");
        q.last_active = now() + Duration::seconds(i + 1);
        store.create_project(&q).await.unwrap();
        ids.push(q.id);
    }
    assert_eq!(store.count_projects(&owner).await.unwrap(), 5);
    let first = store.list_projects(&owner, Page::new(2, 0)).await.unwrap();
    let rest = store.list_projects(&owner, Page::new(10, 2)).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(rest.len(), 3);
    assert_eq!(first[0].id, ids[4], "most recently active first");
    let all: HashSet<_> = first.iter().chain(&rest).map(|p| p.id.clone()).collect();
    assert_eq!(all.len(), 5);
    assert!(store
        .list_projects("someone-else", Page::default())
        .await
        .unwrap()
        .iter()
        .all(|p| p.owner == "someone-else"));

    // Soft delete hides from lists, keeps the row, and is idempotent.
    assert!(store.soft_delete_project(&ids[1]).await.unwrap());
    assert!(!store.soft_delete_project(&ids[1]).await.unwrap());
    assert_eq!(store.count_projects(&owner).await.unwrap(), 4);
    let deleted = store.get_project(&ids[1]).await.unwrap().unwrap();
    assert_eq!(deleted.status, ProjectStatus::Deleted);
    assert!(deleted.deleted_at.is_some());

    // Sharing a preview: stored, undone, and refused for deleted or unknown projects.
    assert!(!p.preview_public);
    assert!(store.set_preview_public(&p.id, true).await.unwrap());
    assert!(
        store
            .get_project(&p.id)
            .await
            .unwrap()
            .unwrap()
            .preview_public
    );
    assert!(store.set_preview_public(&p.id, false).await.unwrap());
    assert!(
        !store
            .get_project(&p.id)
            .await
            .unwrap()
            .unwrap()
            .preview_public
    );
    assert!(!store.set_preview_public(&ids[1], true).await.unwrap());
    assert!(!store
        .set_preview_public("no-such-project", true)
        .await
        .unwrap());

    // touch only moves last_active forward.
    let later = now() + Duration::hours(1);
    store.touch_project(&p.id, later).await.unwrap();
    store.touch_project(&p.id, now()).await.unwrap();
    assert_eq!(
        store.get_project(&p.id).await.unwrap().unwrap().last_active,
        later
    );
}

async fn run_lock_race(store: Arc<dyn Store>) {
    // Two tasks race for one project's lock 100 times: exactly one wins each time.
    for i in 0..100 {
        let project = format!("race-{}-{i}", uuid::Uuid::new_v4());
        let (a, b) = (format!("run-a-{i}"), format!("run-b-{i}"));
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let spawn = |run: String| {
            let (store, project, barrier) = (store.clone(), project.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.acquire_run_lock(&project, &run).await.unwrap()
            })
        };
        let (ha, hb) = (spawn(a.clone()), spawn(b.clone()));
        let (wa, wb) = (ha.await.unwrap(), hb.await.unwrap());
        assert!(wa ^ wb, "iteration {i}: a={wa} b={wb}");
        let winner = if wa { &a } else { &b };
        let loser = if wa { &b } else { &a };
        assert_eq!(
            store.run_lock_holder(&project).await.unwrap().as_ref(),
            Some(winner)
        );
        assert!(
            store.acquire_run_lock(&project, winner).await.unwrap(),
            "holder re-acquires"
        );
        assert!(!store.release_run_lock(&project, loser).await.unwrap());
        assert!(store.release_run_lock(&project, winner).await.unwrap());
        assert!(store.acquire_run_lock(&project, loser).await.unwrap());
    }
}

async fn runs_and_events(store: &dyn Store) {
    let owner = format!("owner-{}", uuid::Uuid::new_v4());
    let mut run = Run::new("proj-x", &owner, "make it blue");
    store.create_run(&run).await.unwrap();
    assert!(matches!(
        store.create_run(&run).await,
        Err(apna::Error::Conflict(_))
    ));
    assert_eq!(store.count_active_runs(&owner).await.unwrap(), 1);
    run.status = RunStatus::Succeeded;
    run.step = 3;
    run.usage.input_tokens = 1200;
    run.usage.cache_read_tokens = 900;
    run.cost_usd = 0.0123;
    run.summary = Some("Made it blue.".into());
    run.finished_at = Some(now());
    store.update_run(&run).await.unwrap();
    let got = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.step, got.usage, got.summary.clone()),
        (run.status, 3, run.usage, run.summary.clone())
    );
    assert!((got.cost_usd - 0.0123).abs() < 1e-12);
    assert_eq!(store.count_active_runs(&owner).await.unwrap(), 0);
    // Spend: this owner's runs created since a time; nobody else's.
    let hour_ago = now() - chrono::Duration::hours(1);
    let mut other = Run::new("proj-x", &owner, "and green");
    other.cost_usd = 0.5;
    store.create_run(&other).await.unwrap();
    store
        .create_run(&Run::new("proj-y", "someone-else", "x"))
        .await
        .unwrap();
    let spent = store.cost_since(&owner, hour_ago).await.unwrap();
    assert!((spent - 0.5123).abs() < 1e-9, "{spent}");
    let later = now() + chrono::Duration::hours(1);
    assert_eq!(store.cost_since(&owner, later).await.unwrap(), 0.0);
    assert_eq!(store.cost_since("nobody", hour_ago).await.unwrap(), 0.0);
    other.status = RunStatus::Cancelled;
    other.finished_at = Some(now());
    store.update_run(&other).await.unwrap();
    let mut missing = run.clone();
    missing.id = "no-such-run".into();
    assert!(matches!(
        store.update_run(&missing).await,
        Err(apna::Error::NotFound(_))
    ));

    // Events are numbered 1.. in order, also under concurrent appends.
    let mut handles = Vec::new();
    for i in 0..20 {
        let ev = store
            .append_event(&run.id, RunEventKind::Text, &json!({ "i": i }))
            .await
            .unwrap();
        handles.push(ev.seq);
    }
    assert_eq!(handles, (1..=20).collect::<Vec<i64>>());
    let after = store.list_events(&run.id, 15, 100).await.unwrap();
    assert_eq!(
        after.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![16, 17, 18, 19, 20]
    );
    assert_eq!(after[0].data, json!({ "i": 15 }));
    assert_eq!(
        store
            .list_runs("proj-x", Page::default())
            .await
            .unwrap()
            .iter()
            .filter(|r| r.id == run.id)
            .count(),
        1
    );
}

async fn messages(store: &dyn Store) {
    let project = format!("proj-{}", uuid::Uuid::new_v4());
    let assistant = NewMessage {
        run_id: Some("r1".into()),
        role: Role::Assistant,
        content: vec![
            ContentBlock::Text {
                text: "Writing the app".into(),
            },
            ContentBlock::ToolUse {
                id: "tu_1".into(),
                name: "write_file".into(),
                input: json!({"path": "src/App.tsx"}),
            },
        ],
        tool_calls: vec![
            json!({"tool": "write_file", "input": {"path": "src/App.tsx"}, "output": "ok"}),
        ],
        file_diffs: vec![FileDiff {
            path: "src/App.tsx".into(),
            action: FileAction::Create,
            size: 10,
            added: 1,
            removed: 0,
            diff: Some("+x".into()),
        }],
    };
    let result = NewMessage {
        run_id: Some("r1".into()),
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "tu_1".into(),
            content: "ok".into(),
            is_error: false,
        }],
        tool_calls: vec![],
        file_diffs: vec![],
    };
    let stored = store
        .append_messages(&project, &[assistant.clone(), result.clone()])
        .await
        .unwrap();
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
    let stored2 = store
        .append_messages(&project, std::slice::from_ref(&result))
        .await
        .unwrap();
    assert_eq!(stored2[0].seq, 3);
    let all = store
        .list_messages(&project, Page::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].content, assistant.content);
    assert_eq!(all[0].file_diffs, assistant.file_diffs);
    assert_eq!(all[0].tool_calls, assistant.tool_calls);
    assert_eq!(all[1].role, Role::User);
    let page = store
        .list_messages(&project, Page::new(1, 1))
        .await
        .unwrap();
    assert_eq!(page[0].seq, 2);

    // A person's message with an image and a selected element (issue #21)
    // comes back exactly: the store keeps references, never image bytes.
    let person = NewMessage {
        run_id: Some("r2".into()),
        role: Role::User,
        content: vec![
            ContentBlock::Image {
                source: ImageSource::Stored(ImageRef {
                    id: "ab".repeat(32),
                    media_type: "image/png".into(),
                    width: 1280,
                    height: 800,
                    size: 104_043,
                }),
            },
            ContentBlock::Selection {
                selection: ElementSelection {
                    source: "src/App.tsx:12:5".into(),
                    tag: "h1".into(),
                    classes: "text-3xl \"font-bold\"".into(),
                    text: "Habit Tracker ✓".into(),
                },
            },
            ContentBlock::Text {
                text: "make it red".into(),
            },
        ],
        tool_calls: vec![],
        file_diffs: vec![],
    };
    store
        .append_messages(&project, std::slice::from_ref(&person))
        .await
        .unwrap();
    let all = store
        .list_messages(&project, Page::default())
        .await
        .unwrap();
    assert_eq!(all[3].content, person.content);
}

async fn step_results(store: &dyn Store) {
    let run = format!("run-{}", uuid::Uuid::new_v4());
    assert!(store
        .get_step_result(&run, "step:1:model")
        .await
        .unwrap()
        .is_none());
    let first = store
        .put_step_result(&run, "step:1:model", &json!({"a": 1}))
        .await
        .unwrap();
    let second = store
        .put_step_result(&run, "step:1:model", &json!({"a": 2}))
        .await
        .unwrap();
    assert_eq!(first, json!({"a": 1}));
    assert_eq!(
        second,
        json!({"a": 1}),
        "a retried step gets the first result back"
    );
}

async fn versions(store: Arc<dyn Store>) {
    let project = format!("proj-{}", uuid::Uuid::new_v4());
    let mut handles = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let project = project.clone();
        handles.push(tokio::spawn(async move {
            store
                .create_version(&project, Some("r"), &format!("k{i}"), "s", &[])
                .await
                .unwrap()
                .number
        }));
    }
    let mut numbers = Vec::new();
    for h in handles {
        numbers.push(h.await.unwrap());
    }
    numbers.sort();
    assert_eq!(
        numbers,
        (1..=8).collect::<Vec<i64>>(),
        "concurrent versions get distinct numbers"
    );
    let list = store.list_versions(&project).await.unwrap();
    assert_eq!(list.len(), 8);
    assert_eq!(
        store
            .get_version(&project, 3)
            .await
            .unwrap()
            .unwrap()
            .number,
        3
    );
    assert!(store.get_version(&project, 99).await.unwrap().is_none());

    // Screenshots (issue #17): none at first, then the browser check's, kept
    // in order and listed with the version; an unknown version is `false`.
    assert!(list.iter().all(|v| v.screenshots.is_empty()));
    let shots = [
        Screenshot {
            viewport: "desktop".into(),
            width: 1280,
            height: 800,
            sha256: "a".repeat(64),
            bytes: 51_234,
        },
        Screenshot {
            viewport: "phone".into(),
            width: 390,
            height: 844,
            sha256: "b".repeat(64),
            bytes: 20_001,
        },
    ];
    assert!(store
        .set_version_screenshots(&project, 3, &shots)
        .await
        .unwrap());
    assert_eq!(
        store
            .get_version(&project, 3)
            .await
            .unwrap()
            .unwrap()
            .screenshots,
        shots
    );
    let listed = store.list_versions(&project).await.unwrap();
    let third = listed.iter().find(|v| v.number == 3).unwrap();
    assert_eq!(third.screenshots, shots);
    assert!(listed
        .iter()
        .filter(|v| v.number != 3)
        .all(|v| v.screenshots.is_empty()));
    assert!(!store
        .set_version_screenshots(&project, 99, &shots)
        .await
        .unwrap());
    assert!(store
        .set_version_screenshots(&project, 3, &shots[..1])
        .await
        .unwrap());
    assert_eq!(
        store
            .get_version(&project, 3)
            .await
            .unwrap()
            .unwrap()
            .screenshots,
        shots[..1]
    );
}

async fn executions(store: &dyn Store) {
    let id = format!("exec-{}", uuid::Uuid::new_v4());
    let mut e = Execution {
        id: id.clone(),
        state_machine: "generation".into(),
        status: ExecutionStatus::Running,
        input: json!({"run_id": "r"}),
        output: None,
        error: None,
        checkpoint: None,
        started_at: now(),
        updated_at: now(),
    };
    store.create_execution(&e).await.unwrap();
    assert!(matches!(
        store.create_execution(&e).await,
        Err(apna::Error::Conflict(_))
    ));
    assert!(store
        .running_executions()
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == id));
    e.checkpoint = Some(json!({"state": "AgentStep", "input": {"step": 2}}));
    store.update_execution(&e).await.unwrap();
    assert_eq!(
        store.get_execution(&id).await.unwrap().unwrap().checkpoint,
        e.checkpoint
    );
    for (i, t) in ["ExecutionStarted", "StateEntered", "StateExited"]
        .iter()
        .enumerate()
    {
        let ev = store
            .append_history(&id, t, Some("EnsureSandbox"), &json!({"i": i}))
            .await
            .unwrap();
        assert_eq!(ev.seq, i as i64 + 1);
    }
    let h = store.list_history(&id).await.unwrap();
    assert_eq!(
        h.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["ExecutionStarted", "StateEntered", "StateExited"]
    );
    e.status = ExecutionStatus::Succeeded;
    e.output = Some(json!({"ok": true}));
    store.update_execution(&e).await.unwrap();
    assert!(!store
        .running_executions()
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == id));
}

async fn idle(store: &dyn Store) {
    let owner = format!("owner-{}", uuid::Uuid::new_v4());
    let mut old = Project::new(&owner, "old", "vite-react");
    old.status = ProjectStatus::Ready;
    old.last_active = now() - Duration::hours(5);
    let mut fresh = Project::new(&owner, "fresh", "vite-react");
    fresh.status = ProjectStatus::Ready;
    let mut busy = Project::new(&owner, "busy", "vite-react");
    busy.status = ProjectStatus::Ready;
    busy.last_active = old.last_active;
    let mut building = Project::new(&owner, "building", "vite-react");
    building.status = ProjectStatus::Building;
    building.last_active = old.last_active;
    for p in [&old, &fresh, &busy, &building] {
        store.create_project(p).await.unwrap();
    }
    store.acquire_run_lock(&busy.id, "r").await.unwrap();
    let idle = store
        .idle_projects(now() - Duration::hours(1), 1000)
        .await
        .unwrap();
    let ids: HashSet<_> = idle.iter().map(|p| p.id.as_str()).collect();
    assert!(ids.contains(old.id.as_str()));
    for p in [&fresh, &busy, &building] {
        assert!(
            !ids.contains(p.id.as_str()),
            "{} should not be idle",
            p.prompt
        );
    }
}

/// Projects a run is building are listed (for the reconciliation of stuck
/// runs) until their status moves on; deleted ones never are.
async fn building(store: &dyn Store) {
    let owner = format!("owner-{}", uuid::Uuid::new_v4());
    let mut created = Project::new(&owner, "created building", "vite-react");
    created.status = ProjectStatus::Building;
    let moved = Project::new(&owner, "moved to building", "vite-react");
    let mut ready = Project::new(&owner, "ready", "vite-react");
    ready.status = ProjectStatus::Ready;
    let gone = Project::new(&owner, "deleted while building", "vite-react");
    for p in [&created, &moved, &ready, &gone] {
        store.create_project(p).await.unwrap();
    }
    for p in [&moved, &gone] {
        assert!(store
            .set_project_status(
                &p.id,
                ProjectStatus::Creating,
                ProjectStatus::Building,
                None
            )
            .await
            .unwrap());
    }
    store.soft_delete_project(&gone.id).await.unwrap();
    let ids = |ps: Vec<Project>| ps.into_iter().map(|p| p.id).collect::<HashSet<_>>();
    let listed = ids(store.building_projects(1000).await.unwrap());
    assert!(listed.contains(&created.id) && listed.contains(&moved.id));
    assert!(!listed.contains(&ready.id) && !listed.contains(&gone.id));
    assert!(store
        .set_project_status(
            &moved.id,
            ProjectStatus::Building,
            ProjectStatus::Failed,
            Some("x")
        )
        .await
        .unwrap());
    let listed = ids(store.building_projects(1000).await.unwrap());
    assert!(listed.contains(&created.id) && !listed.contains(&moved.id));
}

/// A project with one of everything the store keeps about it; returns its run id.
async fn populated_project(store: &dyn Store, p: &Project) -> String {
    store.create_project(p).await.unwrap();
    let run = Run::new(&p.id, &p.owner, "make it");
    store.create_run(&run).await.unwrap();
    store
        .append_event(&run.id, RunEventKind::Status, &json!({}))
        .await
        .unwrap();
    store
        .put_step_result(&run.id, "step:1:done", &json!(1))
        .await
        .unwrap();
    store
        .append_messages(
            &p.id,
            &[NewMessage {
                run_id: Some(run.id.clone()),
                role: Role::User,
                content: vec![ContentBlock::Text { text: "hi".into() }],
                tool_calls: vec![],
                file_diffs: vec![],
            }],
        )
        .await
        .unwrap();
    let key = format!("projects/{}/snapshots/s.json", p.id);
    store
        .create_version(&p.id, Some(&run.id), &key, "v1", &[])
        .await
        .unwrap();
    store
        .create_execution(&Execution {
            id: run.id.clone(),
            state_machine: "generation".into(),
            status: ExecutionStatus::Succeeded,
            input: json!({}),
            output: None,
            error: None,
            checkpoint: None,
            started_at: now(),
            updated_at: now(),
        })
        .await
        .unwrap();
    store
        .append_history(&run.id, "ExecutionStarted", None, &json!({}))
        .await
        .unwrap();
    store.acquire_run_lock(&p.id, &run.id).await.unwrap();
    run.id
}

async fn purge(store: &dyn Store) {
    let owner = format!("owner-{}", uuid::Uuid::new_v4());
    let gone = Project::new(&owner, "to purge", "vite-react");
    let kept = Project::new(&owner, "to keep", "vite-react");
    let gone_run = populated_project(store, &gone).await;
    let kept_run = populated_project(store, &kept).await;
    // Only deleted projects are purged.
    assert!(!store.purge_project(&gone.id).await.unwrap());
    assert!(store.get_project(&gone.id).await.unwrap().is_some());
    store.soft_delete_project(&gone.id).await.unwrap();
    let due = |before| async move { store.deleted_projects(before, 1000).await.unwrap() };
    assert!(!due(now() - Duration::hours(1)).await.contains(&gone.id));
    assert!(due(now() + Duration::seconds(1)).await.contains(&gone.id));
    assert!(!due(now() + Duration::seconds(1)).await.contains(&kept.id));

    let mut site = Site::new(&gone.id);
    site.slug = Some(format!(
        "g-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    assert!(store.save_site(&site, None).await.unwrap());
    assert!(store
        .claim_slug(site.slug.as_deref().unwrap(), &gone.id)
        .await
        .unwrap());
    assert!(store.purge_project(&gone.id).await.unwrap());
    assert!(store.get_project(&gone.id).await.unwrap().is_none());
    assert_eq!(store.get_site(&gone.id).await.unwrap(), None);
    assert_eq!(
        store
            .slug_owner(site.slug.as_deref().unwrap())
            .await
            .unwrap(),
        None
    );
    assert!(store.get_run(&gone_run).await.unwrap().is_none());
    assert!(store
        .list_events(&gone_run, 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .get_step_result(&gone_run, "step:1:done")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_messages(&gone.id, Page::new(100, 0))
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_versions(&gone.id).await.unwrap().is_empty());
    assert!(store.get_execution(&gone_run).await.unwrap().is_none());
    assert!(store.list_history(&gone_run).await.unwrap().is_empty());
    assert_eq!(store.run_lock_holder(&gone.id).await.unwrap(), None);
    assert!(!due(now() + Duration::seconds(1)).await.contains(&gone.id));
    assert!(!store.purge_project(&gone.id).await.unwrap());

    // The other project keeps everything.
    assert!(store.get_project(&kept.id).await.unwrap().is_some());
    assert!(store.get_run(&kept_run).await.unwrap().is_some());
    assert_eq!(store.list_events(&kept_run, 0, 100).await.unwrap().len(), 1);
    assert_eq!(store.list_versions(&kept.id).await.unwrap().len(), 1);
    assert_eq!(store.list_history(&kept_run).await.unwrap().len(), 1);
    assert_eq!(
        store.run_lock_holder(&kept.id).await.unwrap().as_deref(),
        Some(kept_run.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_conformance() {
    let (store, _dir) = sqlite_file().await;
    conformance(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_memory_conformance() {
    conformance(Arc::new(
        SqliteStore::connect("sqlite::memory:").await.unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conformance() {
    if let Some(store) = postgres().await {
        conformance(store).await;
    }
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_conformance() {
    let blobs = tempfile::tempdir().unwrap();
    if let Some(store) = apna::testing::services::fresh_dynamodb(blobs.path()).await {
        conformance(store).await;
    }
}

#[tokio::test]
async fn connect_picks_the_backend_from_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let s = apna::store::connect(&format!("sqlite://{}", dir.path().join("a.db").display()))
        .await
        .unwrap();
    assert_eq!(s.backend(), "sqlite");
    assert!(apna::store::connect("mysql://x").await.is_err());
}
