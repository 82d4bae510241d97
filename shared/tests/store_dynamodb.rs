//! What only the DynamoDB store has to show (the shared semantics are in
//! `store_conformance.rs`): items over the 400 KB limit spill to the blob
//! store and go with their project, a purge cut short is finished by the next
//! call, concurrent appends stay dense and in order for a poller, and run
//! events carry their TTL. Each test gets a fresh table on the emulator.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use apna::domain::{
    now, ContentBlock, Execution, ExecutionStatus, NewMessage, Page, Project, Role, Run,
    RunEventKind,
};
use apna::store::dynamodb::PurgeProgress;
use apna::store::{DynamoStore, ExecutionLog, Store};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

type Items = BTreeMap<(String, String), String>;

/// Every item of the table, keyed by (pk, sk), with a printable body.
async fn scan(store: &DynamoStore) -> Items {
    let mut out = BTreeMap::new();
    let mut start = None;
    loop {
        let resp = store
            .client()
            .scan()
            .table_name(store.table())
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        for item in resp.items.unwrap_or_default() {
            let text = |k: &str| match item.get(k) {
                Some(AttributeValue::S(s)) => s.clone(),
                other => panic!("{k}: {other:?}"),
            };
            let mut attrs: Vec<_> = item.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            attrs.sort();
            out.insert((text("pk"), text("sk")), attrs.join(" "));
        }
        match resp.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return out,
        }
    }
}

/// Files under the blob directory (spilled attributes).
fn blob_files(dir: &std::path::Path) -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, &mut out);
    out
}

fn text(t: impl Into<String>) -> Vec<ContentBlock> {
    vec![ContentBlock::Text { text: t.into() }]
}

/// A project with two runs, each with events, step results, an execution
/// with history; messages, versions and a lock; one message spills. Returns
/// the partitions that hold it.
async fn populated(store: &DynamoStore, owner: &str) -> (Project, BTreeSet<String>) {
    let p = Project::new(owner, "a notes app", "vite-react");
    store.create_project(&p).await.unwrap();
    let mut partitions = BTreeSet::from([format!("PROJECT#{}", p.id)]);
    for r in 0..2 {
        let run = Run::new(&p.id, owner, &format!("change {r}"));
        store.create_run(&run).await.unwrap();
        partitions.insert(format!("RUN#{}", run.id));
        partitions.insert(format!("EXEC#{}", run.id));
        for i in 0..3 {
            store
                .append_event(&run.id, RunEventKind::Text, &json!({ "i": i }))
                .await
                .unwrap();
        }
        store
            .put_step_result(&run.id, "step:1:model", &json!({ "r": r }))
            .await
            .unwrap();
        store
            .append_messages(
                &p.id,
                &[NewMessage {
                    run_id: Some(run.id.clone()),
                    role: Role::User,
                    content: text(if r == 0 {
                        "x".repeat(450 * 1024)
                    } else {
                        "short".into()
                    }),
                    tool_calls: vec![],
                    file_diffs: vec![],
                }],
            )
            .await
            .unwrap();
        store
            .create_version(&p.id, Some(&run.id), "k", "v", &[])
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
        for t in ["ExecutionStarted", "ExecutionSucceeded"] {
            store
                .append_history(&run.id, t, None, &json!({}))
                .await
                .unwrap();
        }
    }
    store.acquire_run_lock(&p.id, "holder").await.unwrap();
    (p, partitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_megabyte_message_and_step_result_spill_and_go_with_the_project() {
    let blob_dir = tempfile::tempdir().unwrap();
    let Some(store) = apna::testing::services::fresh_dynamodb(blob_dir.path()).await else {
        return;
    };
    let p = Project::new("alice", "a big app", "vite-react");
    store.create_project(&p).await.unwrap();
    let run = Run::new(&p.id, "alice", "write it all");
    store.create_run(&run).await.unwrap();

    // 1 MB in a tool input and a tool result, in one batch.
    let mb = "é".repeat(512 * 1024);
    let reply = NewMessage {
        run_id: Some(run.id.clone()),
        role: Role::Assistant,
        content: vec![ContentBlock::ToolUse {
            id: "tu_1".into(),
            name: "write_file".into(),
            input: json!({ "path": "src/Big.tsx", "content": mb }),
        }],
        tool_calls: vec![],
        file_diffs: vec![],
    };
    let result = NewMessage {
        run_id: Some(run.id.clone()),
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "tu_1".into(),
            content: mb.clone(),
            is_error: false,
        }],
        tool_calls: vec![],
        file_diffs: vec![],
    };
    let stored = store
        .append_messages(&p.id, &[reply.clone(), result.clone()])
        .await
        .unwrap();
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
    let listed = store.list_messages(&p.id, Page::default()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].content, reply.content);
    assert_eq!(listed[1].content, result.content);
    assert_eq!(
        store.list_messages(&p.id, Page::new(1, 1)).await.unwrap()[0].content,
        result.content,
        "paging into a batch"
    );

    // 1 MB step result: first write wins, and the loser's blob is not left behind.
    let output = json!({ "text": mb, "step": 1 });
    assert_eq!(
        store
            .put_step_result(&run.id, "step:1:model", &output)
            .await
            .unwrap(),
        output
    );
    let spilled = blob_files(blob_dir.path());
    assert_eq!(
        spilled.len(),
        2,
        "the message batch and the step result: {spilled:?}"
    );
    let again = json!({ "text": format!("{mb}!"), "step": 1 });
    assert_eq!(
        store
            .put_step_result(&run.id, "step:1:model", &again)
            .await
            .unwrap(),
        output
    );
    assert_eq!(blob_files(blob_dir.path()), spilled);
    assert_eq!(
        store
            .get_step_result(&run.id, "step:1:model")
            .await
            .unwrap(),
        Some(output)
    );
    // No item in the table is near the limit.
    let items = scan(&store).await;
    assert!(items.values().all(|body| body.len() < 10_000));

    // A large event spills too.
    let big = json!({ "log": mb });
    let ev = store
        .append_event(&run.id, RunEventKind::Tool, &big)
        .await
        .unwrap();
    assert_eq!(
        store.list_events(&run.id, 0, 10).await.unwrap()[ev.seq as usize - 1].data,
        big
    );
    assert_eq!(blob_files(blob_dir.path()).len(), 3);

    assert!(store.soft_delete_project(&p.id).await.unwrap());
    assert!(store.purge_project(&p.id).await.unwrap());
    assert!(
        blob_files(blob_dir.path()).is_empty(),
        "spilled blobs are deleted with the project"
    );
    assert!(scan(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_cut_short_is_finished_by_the_next_call() {
    let blob_dir = tempfile::tempdir().unwrap();
    let Some(store) = apna::testing::services::fresh_dynamodb(blob_dir.path()).await else {
        return;
    };
    let (kept, kept_partitions) = populated(&store, "bob").await;
    let kept_blobs = blob_files(blob_dir.path());
    assert_eq!(kept_blobs.len(), 1);
    let kept_items = scan(&store).await;
    assert!(kept_items
        .keys()
        .all(|(pk, _)| kept_partitions.contains(pk)));

    let mut total = None;
    let mut cuts = vec![1, 2, 7];
    let mut i = 0;
    while i < cuts.len() {
        let k = cuts[i];
        i += 1;
        let (gone, _) = populated(&store, "bob").await;
        store.soft_delete_project(&gone.id).await.unwrap();
        let items = scan(&store).await.len() - kept_items.len();
        if total.is_none() {
            // Also cut just before the project item, the last delete.
            total = Some(items);
            cuts.extend([items / 2, items - 1]);
        }
        assert_eq!(Some(items), total);

        let progress = store.purge_project_within(&gone.id, k).await.unwrap();
        assert_eq!(progress, PurgeProgress::Partial { deleted: k }, "k={k}");
        assert_eq!(
            scan(&store).await.len(),
            kept_items.len() + items - k,
            "k={k}"
        );
        let due = store
            .deleted_projects(now() + chrono::Duration::seconds(1), 100)
            .await
            .unwrap();
        assert_eq!(
            due,
            std::slice::from_ref(&gone.id),
            "a half-purged project is still due (k={k})"
        );

        // The next sweep finishes it.
        assert!(store.purge_project(&gone.id).await.unwrap(), "k={k}");
        assert!(store.get_project(&gone.id).await.unwrap().is_none());
        assert_eq!(
            scan(&store).await,
            kept_items,
            "k={k}: every other item kept"
        );
        assert_eq!(blob_files(blob_dir.path()), kept_blobs, "k={k}");
        assert!(!store.purge_project(&gone.id).await.unwrap());
        assert_eq!(
            store.purge_project_within(&gone.id, 5).await.unwrap(),
            PurgeProgress::NotDeleted
        );
    }
    assert_eq!(cuts.len(), 5);
    assert!(store.get_project(&kept.id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_dense_and_a_poller_never_misses_one() {
    let blob_dir = tempfile::tempdir().unwrap();
    let Some(store) = apna::testing::services::fresh_dynamodb(blob_dir.path()).await else {
        return;
    };
    let store: Arc<DynamoStore> = store;
    let run = Run::new("p", "carol", "go");
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    const TOTAL: usize = WRITERS * EACH;

    // A reader polls "events after the last one I saw", as the SSE stream does.
    let poller = {
        let (store, run_id) = (store.clone(), run.id.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.len() < TOTAL && std::time::Instant::now() < deadline {
                let after = seen.last().map_or(0, |(seq, _)| *seq);
                for e in store.list_events(&run_id, after, 1000).await.unwrap() {
                    seen.push((e.seq, e.data));
                }
            }
            seen
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, run_id) = (store.clone(), run.id.clone());
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..EACH {
                    let e = store
                        .append_event(&run_id, RunEventKind::Delta, &json!({ "w": w, "i": i }))
                        .await
                        .unwrap();
                    seqs.push(e.seq);
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for w in writers {
        let mine = w.await.unwrap();
        assert!(
            mine.windows(2).all(|p| p[0] < p[1]),
            "one writer's events in order"
        );
        seqs.extend(mine);
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=TOTAL as i64).collect::<Vec<_>>(),
        "dense and unique"
    );
    let seen = poller.await.unwrap();
    assert_eq!(
        seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=TOTAL as i64).collect::<Vec<_>>(),
        "the poller saw every event once, in order"
    );
    let payloads: HashSet<String> = seen.iter().map(|(_, d)| d.to_string()).collect();
    assert_eq!(payloads.len(), TOTAL);

    // Message batches: each call's messages are consecutive, all dense.
    let project = "proj-batches";
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut batches = Vec::new();
                for i in 0..5 {
                    let m = |role, t: String| NewMessage {
                        run_id: None,
                        role,
                        content: text(t),
                        tool_calls: vec![],
                        file_diffs: vec![],
                    };
                    let stored = store
                        .append_messages(
                            project,
                            &[
                                m(Role::Assistant, format!("{w}-{i}-a")),
                                m(Role::User, format!("{w}-{i}-b")),
                            ],
                        )
                        .await
                        .unwrap();
                    assert_eq!(stored[1].seq, stored[0].seq + 1);
                    batches.push(stored[0].seq);
                }
                batches
            })
        })
        .collect();
    let mut firsts = Vec::new();
    for t in tasks {
        firsts.extend(t.await.unwrap());
    }
    firsts.sort();
    assert_eq!(firsts, (0..20).map(|b| 1 + 2 * b).collect::<Vec<i64>>());
    let all = store
        .list_messages(project, Page::new(200, 0))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<i64>>()
    );
}

#[tokio::test]
async fn run_events_carry_their_expiry() {
    let blob_dir = tempfile::tempdir().unwrap();
    let Some(store) = apna::testing::services::fresh_dynamodb(blob_dir.path()).await else {
        return;
    };
    let ev = store
        .append_event("run-ttl", RunEventKind::Status, &json!({}))
        .await
        .unwrap();
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S("RUN#run-ttl".into()))
        .key("sk", AttributeValue::S("EVENT#000000000001".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expires: i64 = match &item["expires_at"] {
        AttributeValue::N(n) => n.parse().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(expires, ev.created_at.timestamp() + 30 * 86_400);
    // Other items do not expire.
    let (p, _) = populated(&store, "dave").await;
    let items = scan(&store).await;
    for ((pk, sk), body) in &items {
        assert_eq!(
            body.contains("expires_at="),
            sk.starts_with("EVENT#"),
            "{pk} {sk}"
        );
    }
    assert!(store.get_project(&p.id).await.unwrap().is_some());
}
