//! Loop safety: repeated failures and per-run budgets stop the agent with a reason.

use apna::agent::run_step;
use apna_tests::agent_harness::{fixture, AgentHarness};
use apna_tests::mock_anthropic::{Script, Turn};
use serde_json::json;

#[tokio::test]
async fn repeating_a_failing_edit_three_times_stops_the_run() {
    let h = AgentHarness::new(fixture("repeat_failing_edit").unwrap())
        .await
        .unwrap();
    h.say("change the greeting").await.unwrap();
    let outcomes = h.run_until_done(1, 10).await.unwrap();
    assert_eq!(outcomes.len(), 3, "{outcomes:#?}");
    for o in &outcomes {
        assert_eq!((o.tool_calls, o.tool_errors), (1, 1));
    }
    let stop = outcomes[2].stop.as_ref().expect("no stop reason");
    assert_eq!(stop.code(), "repeated_failure");
    let msg = stop.message();
    assert!(
        msg.contains("edit_file") && msg.contains("found 0 times"),
        "{msg}"
    );
    assert!(outcomes[..2].iter().all(|o| o.stop.is_none()));
    assert_eq!(h.mock.answered_calls(), 3);
    assert!(h.sandbox.writes().is_empty());
    // The errors went back to the model as tool results it can act on.
    let body = &h.mock.requests()[1].body;
    let result = &body["messages"][2]["content"][0];
    assert_eq!(result["is_error"], true);
    assert!(result["content"]
        .as_str()
        .unwrap()
        .contains("read_file src/App.tsx"));
}

#[tokio::test]
async fn step_budget_stops_before_calling_the_model() {
    let turns = (0..5)
        .map(|i| {
            Turn::tool(
                "",
                "write_file",
                json!({"path": format!("src/f{i}.ts"), "content": "x"}),
            )
        })
        .collect();
    let h = AgentHarness::with(Script::new(turns), true, &[("APNA_MAX_STEPS", "2")])
        .await
        .unwrap();
    h.say("go").await.unwrap();
    let outcomes = h.run_until_done(1, 10).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[1].stop.as_ref().unwrap().code(), "max_steps");
    assert_eq!(h.mock.answered_calls(), 2);
    // A workflow that ignores the reason still cannot make a third call.
    let third = run_step(&h.deps(), &h.run.id, 3, None).await.unwrap();
    assert_eq!(third.stop.unwrap().code(), "max_steps");
    assert_eq!(h.mock.answered_calls(), 2);
}

#[tokio::test]
async fn cost_budget_stops_the_loop() {
    let mut turn = Turn::tool("", "list_files", json!({}));
    turn.usage = Some(json!({"input_tokens": 100000, "output_tokens": 10000}));
    let h = AgentHarness::with(
        Script::new(vec![turn.clone(), turn]),
        false,
        &[("APNA_MAX_COST_USD", "0.2")],
    )
    .await
    .unwrap();
    h.say("go").await.unwrap();
    let outcomes = h.run_until_done(1, 10).await.unwrap();
    // One call costs $0.30 + $0.15: over the $0.20 budget after the first step.
    assert_eq!(outcomes.len(), 1);
    let stop = outcomes[0].stop.as_ref().unwrap();
    assert_eq!(stop.code(), "max_cost");
    assert!(stop.message().contains("APNA_MAX_COST_USD"));
    assert!((outcomes[0].cost_usd - 0.45).abs() < 1e-9);
}

/// A reply cut off at the output limit: the half-sent tool call does not run
/// (no half file is written) and the model is told why; a cut-off text reply
/// is continued instead of ending the turn. Streaming and plain JSON alike.
#[tokio::test]
async fn output_limit_cut_offs_are_not_run_and_are_continued() {
    for stream in [true, false] {
        let big = "export const rows = [\n".to_string() + &"  'row',\n".repeat(200) + "]\n";
        let mut cut_tool = Turn::tool(
            "Writing the data file.",
            "write_file",
            json!({"path": "src/data.ts", "content": big}),
        );
        cut_tool.stop_reason = Some("max_tokens".into());
        let mut cut_text = Turn::text("Your app is rea");
        cut_text.stop_reason = Some("max_tokens".into());
        let turns = vec![
            cut_tool,
            Turn::tool(
                "Smaller pieces.",
                "write_file",
                json!({"path": "src/data.ts", "content": "export const rows = ['row']\n"}),
            ),
            cut_text,
            Turn::text("dy: the data file lists the rows."),
        ];
        let h = AgentHarness::with(Script::new(turns), stream, &[])
            .await
            .unwrap();
        h.say("a table of rows").await.unwrap();
        let outcomes = h.run_until_done(1, 10).await.unwrap();
        assert_eq!(outcomes.len(), 4, "stream={stream}: {outcomes:#?}");
        assert!(outcomes[..3].iter().all(|o| o.should_continue()));
        assert!(outcomes[3].done && outcomes[3].stop.is_none());
        assert_eq!(
            h.sandbox.file("src/data.ts").as_deref(),
            Some("export const rows = ['row']\n")
        );
        // Only the second write ran.
        assert_eq!(h.sandbox.writes(), vec!["src/data.ts".to_string()]);
        let requests = h.mock.requests();
        let second = serde_json::to_string(&requests[1].body["messages"]).unwrap();
        assert!(
            second.contains("cut off at the output token limit"),
            "{second}"
        );
        let fourth = serde_json::to_string(&requests[3].body["messages"]).unwrap();
        assert!(fourth.contains("Continue where you stopped"), "{fourth}");
    }
}

/// The person's daily budget is checked before every model call: a run that
/// reaches it stops with that reason instead of spending past it.
#[tokio::test]
async fn the_daily_budget_stops_a_run_before_the_next_call() {
    let h = AgentHarness::with(
        fixture("create_todo").unwrap(),
        true,
        &[("APNA_MAX_DAILY_COST_USD", "0.001")],
    )
    .await
    .unwrap();
    h.say("Build me a todo app").await.unwrap();
    let outcomes = h.run_until_done(1, 10).await.unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:#?}");
    assert!(outcomes[0].stop.is_none() && outcomes[0].cost_usd > 0.001);
    let stop = outcomes[1].stop.as_ref().expect("no stop reason");
    assert_eq!(stop.code(), "daily_cost");
    assert!(stop.message().contains("daily model budget"), "{stop}");
    assert_eq!(h.mock.answered_calls(), 1);
}
