//! Overhead of one agent step against the mock with zero model latency:
//! request building, HTTP + SSE parsing, tool execution on the memory sandbox,
//! checkpoints, messages and events in SQLite.
//!
//! `cargo bench -p apna-tests --bench agent_step [-- STEPS]` prints p50/p95.
//! Steps run in projects of ten (nine tool calls, then a summary), so the
//! conversation stays the size of a real run instead of growing without end.

use std::time::{Duration, Instant};

use apna::agent::run_step;
use apna::testing::bench::percentile;
use apna_tests::agent_harness::AgentHarness;
use apna_tests::mock_anthropic::{Script, Turn};
use serde_json::json;

const STEPS_PER_PROJECT: u32 = 10;

fn script(projects: u32) -> Script {
    let mut turns = Vec::new();
    for _ in 0..projects {
        turns.push(Turn::tool(
            "Creating the list component.",
            "write_file",
            json!({"path": "src/components/List.tsx", "content": "export function List() {\n  return <ul className=\"space-y-2\"></ul>\n}\n"}),
        ));
        for i in 1..STEPS_PER_PROJECT - 1 {
            let (old, new) = if i % 2 == 1 {
                ("text-2xl", "text-3xl font-bold")
            } else {
                ("text-3xl font-bold", "text-2xl")
            };
            turns.push(Turn::tool(
                "",
                "edit_file",
                json!({"path": "src/App.tsx", "old_string": old, "new_string": new}),
            ));
        }
        turns.push(Turn::text("Built a list with a bold heading."));
    }
    Script::new(turns)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let steps: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(250);
    let projects = steps.div_ceil(STEPS_PER_PROJECT);
    let mut h = AgentHarness::new(script(projects)).await?;
    let mut times = Vec::new();
    let mut tool_errors = 0;
    for p in 0..projects {
        h.new_project(&format!("bench app {p}")).await?;
        let deps = h.deps();
        for step in 1..=STEPS_PER_PROJECT {
            let t = Instant::now();
            let o = run_step(&deps, &h.run.id, step, None).await?;
            times.push(t.elapsed());
            tool_errors += o.tool_errors;
            if !o.should_continue() {
                break;
            }
        }
    }
    anyhow::ensure!(tool_errors == 0, "{tool_errors} tool calls failed");
    anyhow::ensure!(
        h.mock.answered_calls() == times.len(),
        "model calls != steps"
    );
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    println!(
        "agent_step: {} steps ({} projects), p50 {:.2} ms, p95 {:.2} ms, mean {:.2} ms, max {:.2} ms",
        times.len(),
        projects,
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        mean.as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}
