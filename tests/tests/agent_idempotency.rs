//! A step retried by the workflow calls the model once and applies edits once.

use apna::agent::tools::ToolOutput;
use apna::agent::{run_step, ModelResponse};
use apna::domain::{ContentBlock, Page, Usage};
use apna_tests::agent_harness::{fixture, AgentHarness};
use apna_tests::mock_anthropic::{Script, Turn};
use serde_json::json;

#[tokio::test]
async fn running_a_step_twice_calls_the_model_once_and_edits_once() {
    let h = AgentHarness::new(fixture("create_todo").unwrap())
        .await
        .unwrap();
    h.say("a todo app").await.unwrap();
    let deps = h.deps();
    let first = run_step(&deps, &h.run.id, 1, None).await.unwrap();
    let second_step = run_step(&deps, &h.run.id, 2, None).await.unwrap();
    let app_after = h.sandbox.file("src/App.tsx").unwrap();
    // The workflow retries step 2 (and step 1) after they completed.
    let again = run_step(&deps, &h.run.id, 2, None).await.unwrap();
    let again1 = run_step(&deps, &h.run.id, 1, None).await.unwrap();
    assert_eq!(again, second_step);
    assert_eq!(again1, first);
    assert_eq!(h.mock.answered_calls(), 2);
    assert_eq!(h.sandbox.file("src/App.tsx").unwrap(), app_after);
    let app_writes = h
        .sandbox
        .writes()
        .iter()
        .filter(|p| *p == "src/App.tsx")
        .count();
    assert_eq!(app_writes, 1);
    let msgs = h
        .store
        .list_messages(&h.project.id, Page::new(200, 0))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 5);
    let run = h.store.get_run(&h.run.id).await.unwrap().unwrap();
    assert_eq!(run.usage.output_tokens, 550);
    assert_eq!(run.step, 2);
}

#[tokio::test]
async fn a_retry_after_a_crash_reuses_the_stored_answer_and_tool_results() {
    // Nothing is scripted: if the step called the model, it would get "Done.".
    let h = AgentHarness::new(Script::new(vec![Turn::text("unexpected")]))
        .await
        .unwrap();
    h.say("rename the heading").await.unwrap();
    // What a first attempt stored before crashing: the model's answer and the
    // result of the first of its two edits (already applied to the sandbox).
    let answer = ModelResponse {
        id: "msg_1".into(),
        model: "claude-sonnet-4-5".into(),
        content: vec![
            ContentBlock::ToolUse {
                id: "toolu_a".into(),
                name: "edit_file".into(),
                input: json!({"path": "src/App.tsx", "old_string": "Hello", "new_string": "Hi"}),
            },
            ContentBlock::ToolUse {
                id: "toolu_b".into(),
                name: "edit_file".into(),
                input: json!({"path": "src/App.tsx", "old_string": "text-2xl", "new_string": "text-4xl"}),
            },
        ],
        stop_reason: Some("tool_use".into()),
        usage: Usage {
            input_tokens: 10,
            output_tokens: 20,
            ..Usage::default()
        },
    };
    let app = h.sandbox.file("src/App.tsx").unwrap();
    h.sandbox.put("src/App.tsx", &app.replace("Hello", "Hi"));
    let done_a = ToolOutput::ok(
        "edited src/App.tsx: replaced 1 occurrence",
        "edited src/App.tsx (+1 −1)",
    );
    h.store
        .put_step_result(
            &h.run.id,
            "step:1:model",
            &serde_json::to_value(&answer).unwrap(),
        )
        .await
        .unwrap();
    h.store
        .put_step_result(
            &h.run.id,
            "step:1:tool:toolu_a",
            &serde_json::to_value(&done_a).unwrap(),
        )
        .await
        .unwrap();

    let o = run_step(&h.deps(), &h.run.id, 1, None).await.unwrap();
    assert_eq!(h.mock.requests().len(), 0, "the model was called again");
    assert_eq!((o.tool_calls, o.tool_errors), (2, 0));
    // Edit a was not re-applied (it would now fail: "Hello" is gone); edit b ran once.
    assert_eq!(h.sandbox.writes(), vec!["src/App.tsx"]);
    let now = h.sandbox.file("src/App.tsx").unwrap();
    assert!(now.contains(">Hi<") && now.contains("text-4xl"), "{now}");
    let msgs = h
        .store
        .list_messages(&h.project.id, Page::new(200, 0))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[1].content, answer.content);
    let results: Vec<(&str, bool)> = msgs[2]
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolResult {
                tool_use_id,
                is_error,
                ..
            } => Some((tool_use_id.as_str(), *is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(results, vec![("toolu_a", false), ("toolu_b", false)]);
}
