//! The store's hot calls on SQLite, PostgreSQL and DynamoDB (dynalite), in
//! one run: p50 latency of each, and for DynamoDB the capacity units each
//! consumes and what one scripted generation costs on-demand.
//!
//! `APNA_TEST_DYNAMODB_URL=… [APNA_TEST_POSTGRES_URL=…] cargo bench -p apna
//! --bench store_hot_calls --features dynamodb --profile dev [-- ROUNDS]`
//! (`tests/run` starts both services; without PostgreSQL its column is left out).
//!
//! Each hot call is the sequence of store calls its code path makes today
//! (listed in [`Call`]); a scripted generation is the calls of the run in
//! `tests/tests/generation_e2e.rs` (create, four agent steps of which two run
//! a tool, two build checks, finalize, the browser following the events).
//! Capacity: read units and table write units are what dynalite reports
//! (`ReturnConsumedCapacity`, computed from item sizes as DynamoDB does);
//! dynalite leaves index writes out, so those are computed here from the
//! index entries each call adds, changes or removes (1 unit per KB each);
//! it also reports nothing for a conditional write that did not apply, which
//! DynamoDB charges like a write: those are counted by the store and priced
//! at 1 unit each (every conditionally written item here is under 1 KB).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::blob::FsBlobStore;
use apna::domain::{
    ContentBlock, FileAction, FileDiff, NewMessage, Page, Project, ProjectStatus, Role, Run,
    RunEventKind, RunStatus, User,
};
use apna::store::dynamodb::{
    create_table, DynamoOptions, BY_OWNER, BY_PROJECT, BY_SPENDER, BY_STATE,
};
use apna::store::{DynamoStore, PostgresStore, SqliteStore, Store};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

/// On-demand prices, us-east-1, US$ per million request units.
const WRITE_PRICE: f64 = 0.625;
const READ_PRICE: f64 = 0.125;
const OWNER_PROJECTS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Call {
    /// POST /api/projects: count_projects, upsert_user, create_project, then
    /// start_run (count_active_runs, acquire_run_lock, create_run,
    /// append_messages, set_project_status, touch_project, append_event) and
    /// the view (run_lock_holder, list_versions).
    CreateProject,
    /// One AgentStep task with one tool call: the task's fix lookup and a
    /// streamed delta event, then run_step: get_run, done and model lookups,
    /// the conversation, the model answer stored, a text event, the tool's
    /// lookup, result and event, the assistant reply and tool results as one
    /// append, get_run + update_run, a usage event, the step's outcome.
    AgentStep,
    /// One progress event.
    RunEvent,
    /// GET /api/projects/{id}: get_project, touch_project and the view, on a
    /// project touched less than a minute ago (the touch does not apply).
    GetProject,
    /// The same on a ready project last active over a minute ago: the touch
    /// moves its entries in `by_owner` and `by_state`.
    GetIdleProject,
    /// GET /api/projects: one page of the owner's projects, each with its view.
    ListProjects,
}

const CALLS: [Call; 6] = [
    Call::CreateProject,
    Call::AgentStep,
    Call::RunEvent,
    Call::GetProject,
    Call::GetIdleProject,
    Call::ListProjects,
];

fn name(c: Call) -> &'static str {
    match c {
        Call::CreateProject => "create project",
        Call::AgentStep => "one agent step (one tool call)",
        Call::RunEvent => "one run event",
        Call::GetProject => "GET project (active in the last minute)",
        Call::GetIdleProject => "GET project (idle, ready)",
        Call::ListProjects => "list projects (10)",
    }
}

/// A project mid-run: what the calls operate on.
struct Fixture {
    owner: String,
    project: Project,
    run: Run,
    step: u32,
    /// A ready project, and the clock its next GET happens at.
    idle: String,
    clock: chrono::DateTime<chrono::Utc>,
}

fn component(i: u32) -> String {
    format!(
        "import {{ useState }} from 'react'\n\nexport function Habits{i}() {{\n{}  return <ul className=\"space-y-2\">{{count}}</ul>\n}}\n",
        "  const [count, setCount] = useState(0)\n".repeat(60)
    )
}

async fn view(store: &dyn Store, id: &str) -> apna::Result<()> {
    store.run_lock_holder(id).await?;
    store.list_versions(id).await?;
    Ok(())
}

async fn create_project(store: &dyn Store, owner: &str) -> apna::Result<(Project, Run)> {
    store.count_projects(owner).await?;
    store
        .upsert_user(&User {
            id: owner.to_string(),
            email: None,
            created_at: apna::domain::now(),
        })
        .await?;
    let prompt = "a habit tracker with a dark theme and weekly streaks";
    let project = Project::new(owner, prompt, "vite-react");
    store.create_project(&project).await?;
    store.count_active_runs(owner).await?;
    let run = Run::new(&project.id, owner, prompt);
    store.acquire_run_lock(&project.id, &run.id).await?;
    store.create_run(&run).await?;
    store
        .append_messages(
            &project.id,
            &[NewMessage {
                run_id: Some(run.id.clone()),
                role: Role::User,
                content: vec![ContentBlock::Text {
                    text: prompt.into(),
                }],
                tool_calls: vec![],
                file_diffs: vec![],
            }],
        )
        .await?;
    store
        .set_project_status(
            &project.id,
            ProjectStatus::Creating,
            ProjectStatus::Building,
            None,
        )
        .await?;
    store
        .touch_project(&project.id, apna::domain::now())
        .await?;
    store
        .append_event(
            &run.id,
            RunEventKind::Status,
            &json!({ "status": "queued" }),
        )
        .await?;
    view(store, &project.id).await?;
    Ok((project, run))
}

/// One agent step; with a tool call when `tool`.
async fn agent_step(store: &dyn Store, f: &mut Fixture, tool: bool) -> apna::Result<()> {
    f.step += 1;
    let (run_id, step) = (f.run.id.clone(), f.step);
    let key = |what: &str| format!("step:{step}:{what}");
    store
        .get_step_result(&run_id, &format!("fix:{step}"))
        .await?;
    store.get_run(&run_id).await?;
    store.get_step_result(&run_id, &key("done")).await?;
    store
        .list_messages(&f.project.id, Page::new(Page::MAX, 0))
        .await?;
    store.get_step_result(&run_id, &key("model")).await?;
    let code = component(step);
    let content = if tool {
        vec![
            ContentBlock::Text {
                text: "Writing the habit list.".into(),
            },
            ContentBlock::ToolUse {
                id: format!("tu_{step}"),
                name: "write_file".into(),
                input: json!({ "path": format!("src/Habits{step}.tsx"), "content": code }),
            },
        ]
    } else {
        vec![ContentBlock::Text {
            text: "Built a habit tracker with weekly streaks.".into(),
        }]
    };
    let usage = json!({ "input_tokens": 3200, "output_tokens": 900, "cache_read_tokens": 2800, "cache_write_tokens": 0 });
    store
        .put_step_result(
            &run_id,
            &key("model"),
            &json!({ "content": content, "usage": usage, "stop_reason": if tool { "tool_use" } else { "end_turn" } }),
        )
        .await?;
    store
        .append_event(
            &run_id,
            RunEventKind::Delta,
            &json!({ "text": "Writing the habit list." }),
        )
        .await?;
    store
        .append_event(
            &run_id,
            RunEventKind::Text,
            &json!({ "step": step, "text": "Writing the habit list." }),
        )
        .await?;
    let mut batch = vec![NewMessage {
        run_id: Some(run_id.clone()),
        role: Role::Assistant,
        content,
        tool_calls: vec![],
        file_diffs: vec![],
    }];
    if tool {
        let tool_key = key("tool:0");
        store.get_step_result(&run_id, &tool_key).await?;
        let output = json!({ "content": format!("wrote src/Habits{step}.tsx ({} bytes)", code.len()), "is_error": false });
        store.put_step_result(&run_id, &tool_key, &output).await?;
        store
            .append_event(&run_id, RunEventKind::Tool, &json!({ "step": step, "name": "write_file", "path": format!("src/Habits{step}.tsx"), "ok": true }))
            .await?;
        batch[0].tool_calls = vec![
            json!({ "tool": "write_file", "input": { "path": format!("src/Habits{step}.tsx") }, "output": "ok" }),
        ];
        batch[0].file_diffs = vec![FileDiff {
            path: format!("src/Habits{step}.tsx"),
            action: FileAction::Create,
            size: code.len() as u64,
            added: 64,
            removed: 0,
            diff: Some(code.lines().map(|l| format!("+{l}\n")).collect()),
        }];
        batch.push(NewMessage {
            run_id: Some(run_id.clone()),
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: format!("tu_{step}"),
                content: output["content"].as_str().unwrap_or_default().into(),
                is_error: false,
            }],
            tool_calls: vec![],
            file_diffs: vec![],
        });
    }
    store.append_messages(&f.project.id, &batch).await?;
    let mut run = store
        .get_run(&run_id)
        .await?
        .unwrap_or_else(|| f.run.clone());
    run.step = i64::from(step);
    run.status = RunStatus::Running;
    run.usage.input_tokens += 3200;
    run.usage.output_tokens += 900;
    run.cost_usd += 0.0231;
    store.update_run(&run).await?;
    store
        .append_event(
            &run_id,
            RunEventKind::Usage,
            &json!({ "step": step, "cost_usd": run.cost_usd }),
        )
        .await?;
    store
        .put_step_result(
            &run_id,
            &key("done"),
            &json!({ "step": step, "done": !tool }),
        )
        .await?;
    f.run = run;
    Ok(())
}

async fn verify(store: &dyn Store, f: &Fixture, attempt: u32, ok: bool) -> apna::Result<()> {
    let key = format!("verify:{attempt}");
    store.get_step_result(&f.run.id, &key).await?;
    store
        .append_event(
            &f.run.id,
            RunEventKind::Status,
            &json!({ "phase": "verify", "text": "Checking the build" }),
        )
        .await?;
    let items = if ok {
        json!([])
    } else {
        json!([{ "file": "src/Habits1.tsx", "line": 3, "message": "Type 'string' is not assignable to type 'number'." }])
    };
    store
        .append_event(
            &f.run.id,
            RunEventKind::Diagnostics,
            &json!({ "ok": ok, "items": items }),
        )
        .await?;
    if !ok {
        store
            .put_step_result(
                &f.run.id,
                &format!("fix:{}", f.step + 1),
                &json!({ "text": "Fix the type error." }),
            )
            .await?;
    }
    store
        .put_step_result(&f.run.id, &key, &json!({ "ok": ok }))
        .await?;
    Ok(())
}

/// The generation of `generation_e2e.rs`, end to end, as store calls.
async fn generation(store: &dyn Store, owner: &str) -> apna::Result<()> {
    let (project, run) = create_project(store, owner).await?;
    let mut f = Fixture {
        owner: owner.to_string(),
        project,
        run,
        step: 0,
        idle: String::new(),
        clock: apna::domain::now(),
    };
    // Init and EnsureSandbox: a status event each; the browser polls events.
    for phase in ["init", "sandbox"] {
        store
            .append_event(&f.run.id, RunEventKind::Status, &json!({ "phase": phase }))
            .await?;
    }
    for (tool, check) in [
        (true, None),
        (false, Some(false)),
        (true, None),
        (false, Some(true)),
    ] {
        agent_step(store, &mut f, tool).await?;
        store.list_events(&f.run.id, 0, 200).await?;
        if let Some(ok) = check {
            verify(store, &f, f.step / 2 - 1, ok).await?;
        }
    }
    // Finalize: the version, the run, the project, the lock.
    store
        .create_version(
            &f.project.id,
            Some(&f.run.id),
            "projects/x/snapshots/1.json",
            "Habit tracker",
            &[],
        )
        .await?;
    let mut run = f.run.clone();
    run.status = RunStatus::Succeeded;
    run.finished_at = Some(apna::domain::now());
    store.update_run(&run).await?;
    store
        .set_project_status(
            &f.project.id,
            ProjectStatus::Building,
            ProjectStatus::Ready,
            None,
        )
        .await?;
    store.release_run_lock(&f.project.id, &f.run.id).await?;
    store
        .append_event(
            &f.run.id,
            RunEventKind::Done,
            &json!({ "status": "succeeded" }),
        )
        .await?;
    store.list_events(&f.run.id, 0, 200).await?;
    let _ = &f.owner;
    Ok(())
}

async fn call(store: &dyn Store, c: Call, f: &mut Fixture) -> apna::Result<()> {
    match c {
        Call::CreateProject => {
            create_project(store, &f.owner).await?;
        }
        Call::AgentStep => agent_step(store, f, true).await?,
        Call::RunEvent => {
            store
                .append_event(
                    &f.run.id,
                    RunEventKind::Delta,
                    &json!({ "text": "const [habits, setHabits] = useState<Habit[]>([])\n" }),
                )
                .await?;
        }
        Call::GetProject => {
            store.get_project(&f.project.id).await?;
            store
                .touch_project(&f.project.id, apna::domain::now())
                .await?;
            view(store, &f.project.id).await?;
        }
        Call::GetIdleProject => {
            f.clock += chrono::Duration::minutes(2);
            store.get_project(&f.idle).await?;
            store.touch_project(&f.idle, f.clock).await?;
            view(store, &f.idle).await?;
        }
        Call::ListProjects => {
            for p in store.list_projects(&f.owner, Page::new(20, 0)).await? {
                view(store, &p.id).await?;
            }
        }
    }
    Ok(())
}

/// A fresh owner with ten projects, the last one mid-run with a few steps.
async fn fixture(store: &dyn Store) -> apna::Result<Fixture> {
    let owner = format!("bench-{}", uuid::Uuid::new_v4());
    let mut created = Vec::new();
    for _ in 0..OWNER_PROJECTS {
        created.push(create_project(store, &owner).await?);
    }
    let (idle, idle_run) = created.remove(0);
    store.release_run_lock(&idle.id, &idle_run.id).await?;
    store
        .set_project_status(
            &idle.id,
            ProjectStatus::Building,
            ProjectStatus::Ready,
            None,
        )
        .await?;
    let (project, run) = created
        .pop()
        .ok_or_else(|| apna::Error::Internal("no project".into()))?;
    let mut f = Fixture {
        owner,
        project,
        run,
        step: 0,
        idle: idle.id,
        clock: apna::domain::now(),
    };
    for _ in 0..3 {
        agent_step(store, &mut f, true).await?;
    }
    Ok(f)
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn latencies(store: &dyn Store, rounds: usize) -> apna::Result<BTreeMap<Call, Duration>> {
    let mut out = BTreeMap::new();
    for c in CALLS {
        let mut f = fixture(store).await?;
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            call(store, c, &mut f).await?;
            times.push(t.elapsed());
            if c == Call::AgentStep && f.step >= 12 {
                // Keep the conversation the size of a real run.
                f = fixture(store).await?;
            }
        }
        out.insert(c, p50(times));
    }
    Ok(out)
}

/// An index entry: its size in bytes, its index key and its whole content.
type Entry = (usize, String, String);

/// Index entries by (index, pk, sk).
async fn index_entries(store: &DynamoStore) -> BTreeMap<(String, String, String), Entry> {
    let mut out = BTreeMap::new();
    for index in [BY_OWNER, BY_PROJECT, BY_SPENDER, BY_STATE] {
        let mut start = None;
        loop {
            let resp = store
                .client()
                .scan()
                .table_name(store.table())
                .index_name(index)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("scan index");
            for item in resp.items.unwrap_or_default() {
                let text = |k: &str| match item.get(k) {
                    Some(AttributeValue::S(s)) => s.clone(),
                    _ => String::new(),
                };
                let size: usize = item
                    .iter()
                    .map(|(k, v)| {
                        k.len()
                            + match v {
                                AttributeValue::S(s) => s.len(),
                                AttributeValue::N(_) => 21,
                                _ => 8,
                            }
                    })
                    .sum::<usize>()
                    // Every index entry also carries 100 bytes of overhead.
                    + 100;
                let index_key = [
                    "owner_key",
                    "activity_key",
                    "project_key",
                    "created_key",
                    "spend_owner",
                    "spend_at",
                    "state_key",
                    "state_at",
                ]
                .iter()
                .map(|k| format!("{:?}", item.get(*k)))
                .collect::<Vec<_>>()
                .join(",");
                let mut content: Vec<String> =
                    item.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                content.sort();
                out.insert(
                    (index.to_string(), text("pk"), text("sk")),
                    (size, index_key, content.join(" ")),
                );
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
    }
    out
}

fn units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// Index write units between two snapshots of the indexes: a new or removed
/// entry is one write, a changed one too, or two (delete and put) when its
/// index key moved.
fn index_writes(
    before: &BTreeMap<(String, String, String), Entry>,
    after: &BTreeMap<(String, String, String), Entry>,
) -> f64 {
    let mut total = 0.0;
    for (k, (size, key, content)) in after {
        match before.get(k) {
            None => total += units(*size),
            Some((old_size, old_key, _)) if old_key != key => {
                total += units(*old_size) + units(*size)
            }
            Some((_, _, old)) if old != content => total += units(*size),
            _ => {}
        }
    }
    for (k, (size, _, _)) in before {
        if !after.contains_key(k) {
            total += units(*size);
        }
    }
    total
}

/// (read units, table write units, index write units, failed conditional
/// writes) of `f` on DynamoDB.
async fn capacity<F, Fut>(store: &DynamoStore, f: F) -> (f64, f64, f64, u64)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = apna::Result<()>>,
{
    let before = index_entries(store).await;
    let c0 = store.consumed();
    f().await.expect("call");
    let c1 = store.consumed();
    let after = index_entries(store).await;
    (
        c1.read - c0.read,
        c1.write - c0.write,
        index_writes(&before, &after),
        c1.failed_conditions - c0.failed_conditions,
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let Ok(endpoint) = std::env::var("APNA_TEST_DYNAMODB_URL") else {
        return Err("set APNA_TEST_DYNAMODB_URL (tests/run starts dynalite)".into());
    };
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let dir = tempfile::tempdir()?;
    let table = format!("apna-bench-{}", uuid::Uuid::new_v4().simple());
    let dynamo = Arc::new(
        DynamoStore::connect(
            DynamoOptions {
                table: table.clone(),
                endpoint: Some(endpoint),
                event_retention_days: 30,
            },
            Arc::new(FsBlobStore::new(dir.path().join("blobs")).await?),
        )
        .await?,
    );
    create_table(dynamo.client(), &table).await?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("apna.db").display());
    let mut stores: Vec<(&str, Arc<dyn Store>)> = vec![(
        "SQLite (file)",
        Arc::new(SqliteStore::connect(&sqlite_url).await?),
    )];
    match std::env::var("APNA_TEST_POSTGRES_URL") {
        Ok(url) => stores.push(("PostgreSQL", Arc::new(PostgresStore::connect(&url).await?))),
        Err(_) => eprintln!("APNA_TEST_POSTGRES_URL unset: no PostgreSQL column"),
    }
    stores.push(("DynamoDB (dynalite)", dynamo.clone()));

    println!("p50 latency, {rounds} rounds per call:\n");
    let mut table_rows: BTreeMap<Call, Vec<Duration>> = BTreeMap::new();
    for (_, store) in &stores {
        for (c, d) in latencies(&**store, rounds).await? {
            table_rows.entry(c).or_default().push(d);
        }
    }
    let header: Vec<&str> = stores.iter().map(|(n, _)| *n).collect();
    println!("| call | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(header.len()));
    for (c, ds) in &table_rows {
        let cells: Vec<String> = ds
            .iter()
            .map(|d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
            .collect();
        println!("| {} | {} |", name(*c), cells.join(" | "));
    }

    println!("\nDynamoDB capacity per call (read units and table write units as dynalite reports them; index write units computed from the entries changed):\n");
    println!("| call | read units | table write units | index write units | failed conditional writes | US$ per million calls |");
    println!("|---|---|---|---|---|---|");
    let store = &*dynamo;
    let mut f = fixture(store).await?;
    for c in CALLS {
        let (r, w, i, failed) = capacity(store, || call(store, c, &mut f)).await;
        let cost = (w + i + failed as f64) * WRITE_PRICE + r * READ_PRICE;
        println!("| {} | {r} | {w} | {i} | {failed} | {cost:.2} |", name(c));
    }
    let owner = format!("bench-{}", uuid::Uuid::new_v4());
    let (r, w, i, failed) = capacity(store, || generation(store, &owner)).await;
    let cost = ((w + i + failed as f64) * WRITE_PRICE + r * READ_PRICE) / 1e6;
    println!(
        "| one scripted generation | {r} | {w} | {i} | {failed} | US$ {cost:.6} per generation |"
    );
    Ok(())
}
