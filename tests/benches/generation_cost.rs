//! What one scripted generation would cost on AWS, excluding the model: its
//! Step Functions state transitions and the GB-seconds of its task Lambdas,
//! read from the execution history of `statemachines/generation.asl.json`
//! run by the built-in interpreter (the mock model of
//! `tests/fixtures/conversations/generation_e2e.json`: write, summary, fix,
//! summary; the local sandbox with Vite and the TypeScript check), priced at
//! list price (us-east-1, arm64, Standard workflows).
//!
//! Each Task's billed time is its TaskScheduled → TaskSucceeded/TaskFailed
//! span rounded up to the millisecond, at the memory infra/template.yaml gives
//! that function. State transitions are the states entered plus task retries.
//!
//!   cargo bench -p apna-tests --bench generation_cost          # 5 generations
//!   RUNS=1 cargo bench -p apna-tests --bench generation_cost

use std::collections::BTreeMap;
use std::time::Duration;

use apna::domain::{HistoryEvent, RunStatus};
use apna::testing::fixtures::{repo_root, server_config};
use apna_tests::mock_anthropic::{MockAnthropic, Script};

/// Step Functions Standard: $0.025 per 1,000 state transitions.
const PER_TRANSITION: f64 = 0.025 / 1000.0;
/// Lambda on arm64: $0.0000133334 per GB-second.
const PER_GB_SECOND: f64 = 0.000_013_333_4;
/// Lambda requests: $0.20 per million.
const PER_REQUEST: f64 = 0.20 / 1_000_000.0;

/// MemorySize (MB) of each function in infra/template.yaml, and the global default.
fn memory_sizes() -> (BTreeMap<String, u32>, u32) {
    let text = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let mut sizes = BTreeMap::new();
    let mut global = 0;
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                current = Some(name.to_string());
            }
        }
        if let Some(v) = line.trim().strip_prefix("MemorySize: ") {
            let mb: u32 = v.parse().unwrap();
            match &current {
                Some(name) if name == "Function" => global = mb,
                Some(name) => {
                    sizes.insert(name.clone(), mb);
                }
                None => {}
            }
        }
    }
    assert!(global > 0, "no global MemorySize in the template");
    (sizes, global)
}

struct Cost {
    transitions: usize,
    invocations: usize,
    gb_seconds: f64,
    per_task: BTreeMap<String, (usize, f64)>,
}

fn cost(history: &[HistoryEvent], sizes: &BTreeMap<String, u32>, global: u32) -> Cost {
    let mut c = Cost {
        transitions: 0,
        invocations: 0,
        gb_seconds: 0.0,
        per_task: BTreeMap::new(),
    };
    let mut scheduled: Option<(&HistoryEvent, String)> = None;
    let mut tries_in_state = 0;
    for h in history {
        match h.event_type.as_str() {
            "StateEntered" => {
                c.transitions += 1;
                tries_in_state = 0;
            }
            "TaskScheduled" => {
                tries_in_state += 1;
                if tries_in_state > 1 {
                    c.transitions += 1; // a retry is a transition too
                }
                let resource = h.data["resource"].as_str().unwrap_or_default();
                let function = resource
                    .trim_start_matches("${")
                    .trim_end_matches("Arn}")
                    .to_string();
                scheduled = Some((h, function));
            }
            "TaskSucceeded" | "TaskFailed" => {
                let (start, function) = scheduled.take().expect("a task ended before it started");
                let ms = (h.timestamp - start.timestamp)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1000.0;
                let billed_s = ms.ceil().max(1.0) / 1000.0;
                let mb = sizes.get(&function).copied().unwrap_or(global);
                let gbs = billed_s * f64::from(mb) / 1024.0;
                c.invocations += 1;
                c.gb_seconds += gbs;
                let e = c.per_task.entry(function).or_default();
                e.0 += 1;
                e.1 += gbs;
            }
            _ => {}
        }
    }
    c
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let (sizes, global) = memory_sizes();
    let mut dollars = Vec::new();
    rt.block_on(async {
        for i in 0..runs {
            let script = Script::from_file(
                repo_root().join("tests/fixtures/conversations/generation_e2e.json"),
            )
            .unwrap();
            let mock = MockAnthropic::start(script).await.unwrap();
            let data = tempfile::tempdir().unwrap();
            let server = apna::server::build(server_config(data.path(), &mock.url(), &[]), &|_| {})
                .await
                .expect("local server");
            let run = tokio::time::timeout(
                Duration::from_secs(240),
                apna::run::generate(&server.state, "a habit tracker with a dark theme", |_| {}),
            )
            .await
            .expect("generation did not finish in time")
            .unwrap();
            assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
            assert_eq!(mock.answered_calls(), 4);
            let history = server.state.workflow.history(&run.id).await.unwrap();
            let c = cost(&history, &sizes, global);
            let sfn = c.transitions as f64 * PER_TRANSITION;
            let lambda = c.gb_seconds * PER_GB_SECOND + c.invocations as f64 * PER_REQUEST;
            println!(
                "run {i}: {} state transitions (${sfn:.5}), {} task invocations, {:.3} GB-s (${lambda:.5}); total ${:.5}",
                c.transitions,
                c.invocations,
                c.gb_seconds,
                sfn + lambda
            );
            if i == 0 {
                for (task, (n, gbs)) in &c.per_task {
                    println!("    {task:<24} {n:>3} invocations {gbs:>8.3} GB-s");
                }
            }
            dollars.push(sfn + lambda);
            server.stop_sandboxes().await;
        }
    });
    dollars.sort_by(f64::total_cmp);
    println!(
        "generation cost excluding the model: p50 ${:.5} (min ${:.5}, max ${:.5}) over {runs} runs; goal <= $0.002",
        dollars[dollars.len() / 2],
        dollars[0],
        dollars[dollars.len() - 1]
    );
}
