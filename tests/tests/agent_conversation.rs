//! A scripted conversation through `agent::run_step` against the mock API,
//! the memory sandbox and a real SQLite store.

use std::collections::HashSet;

use apna::agent::run_step;
use apna::domain::{ContentBlock, FileAction, Message, Page, Role};
use apna_tests::agent_harness::{fixture, AgentHarness};
use apna_tests::mock_anthropic::{has_cache_breakpoints, validate_request};

/// Asserts the stored conversation alternates user/assistant and every
/// tool_use is answered, in the next message, by a tool_result with its id.
fn assert_well_formed(msgs: &[Message]) {
    for (i, pair) in msgs.windows(2).enumerate() {
        assert_ne!(
            pair[0].role,
            pair[1].role,
            "messages {i} and {} share a role",
            i + 1
        );
    }
    for (i, m) in msgs.iter().enumerate() {
        let uses: Vec<&str> = m
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolUse { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        if uses.is_empty() {
            continue;
        }
        let next = msgs
            .get(i + 1)
            .expect("tool_use without a following message");
        assert_eq!(next.role, Role::User);
        let results: Vec<&str> = next
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolResult { tool_use_id, .. } => Some(tool_use_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            uses, results,
            "message {i}: tool results do not match tool uses"
        );
    }
}

#[tokio::test]
async fn three_steps_write_files_and_end_with_a_summary() {
    let h = AgentHarness::new(fixture("create_todo").unwrap())
        .await
        .unwrap();
    h.say("Build me a todo app").await.unwrap();

    let outcomes = h.run_until_done(1, 10).await.unwrap();
    assert_eq!(outcomes.len(), 3, "{outcomes:#?}");
    assert!(outcomes[0].should_continue() && outcomes[1].should_continue());
    let last = &outcomes[2];
    assert!(last.done && last.stop.is_none());
    assert_eq!(last.model_stop_reason.as_deref(), Some("end_turn"));
    assert!(
        last.text.starts_with("Your todo app is ready"),
        "{}",
        last.text
    );

    // Files changed through the tools, with diffs.
    let list = h.sandbox.file("src/components/TodoList.tsx").unwrap();
    assert!(list.contains("export function TodoList"));
    let app = h.sandbox.file("src/App.tsx").unwrap();
    assert!(
        app.contains("<TodoList />") && !app.contains("Hello"),
        "{app}"
    );
    assert!(h.sandbox.file("src/lib/storage.ts").is_some());
    assert_eq!(outcomes[0].file_diffs[0].action, FileAction::Create);
    let edit = &outcomes[1].file_diffs[0];
    assert_eq!(
        (edit.path.as_str(), edit.action),
        ("src/App.tsx", FileAction::Update)
    );
    assert!(edit.added > 0 && edit.removed > 0);
    assert!(edit
        .diff
        .as_deref()
        .unwrap()
        .contains("+import { TodoList }"));
    assert_eq!(outcomes[1].tool_calls, 2);

    // Stored as alternating messages, each step's results in one user message.
    let msgs = h
        .store
        .list_messages(&h.project.id, Page::new(200, 0))
        .await
        .unwrap();
    let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
    use Role::*;
    assert_eq!(
        roles,
        vec![User, Assistant, User, Assistant, User, Assistant]
    );
    assert_well_formed(&msgs);
    assert_eq!(msgs[3].file_diffs.len(), 2);
    assert_eq!(msgs[3].tool_calls.len(), 2);

    // Every request was valid for the real API, marked the cache breakpoints and
    // carried the headers.
    let reqs = h.mock.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert!(r.answered(), "{}", r.outcome);
        validate_request(&r.body).unwrap();
        assert!(has_cache_breakpoints(&r.body));
        assert!(r.has_api_key);
        assert_eq!(r.anthropic_version.as_deref(), Some("2023-06-01"));
    }
    assert_eq!(reqs[2].body["messages"].as_array().unwrap().len(), 5);

    // Usage and cost added to the run once per step (fixture usage, sonnet prices).
    let run = h.store.get_run(&h.run.id).await.unwrap().unwrap();
    assert_eq!(run.step, 3);
    assert_eq!(run.usage.output_tokens, 590);
    assert_eq!(run.usage.cache_read_tokens, 5000);
    let expected = (1900.0 * 3.0 + 590.0 * 15.0 + 2500.0 * 3.75 + 5000.0 * 0.30) / 1e6;
    assert!(
        (run.cost_usd - expected).abs() < 1e-9,
        "{} vs {expected}",
        run.cost_usd
    );
    assert_eq!(run.summary.as_deref(), Some(last.text.as_str()));

    // Events for the UI.
    let events = h.store.list_events(&h.run.id, 0, 200).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "tool").count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "usage").count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "text").count(), 3);
    let edit_event = events
        .iter()
        .find(|e| e.data["name"] == "edit_file")
        .unwrap();
    assert_eq!(edit_event.data["path"], "src/App.tsx");
    assert!(
        edit_event.data["summary"]
            .as_str()
            .unwrap()
            .starts_with("edited src/App.tsx (+"),
        "{}",
        edit_event.data
    );
    assert_eq!(edit_event.data["is_error"], false);
}

#[tokio::test]
async fn prompt_cache_is_read_after_the_first_call() {
    // Usage simulated by the mock: the tools + system prefix is written once, then read.
    let mut script = fixture("create_todo").unwrap();
    for t in &mut script.turns {
        t.usage = None;
    }
    let h = AgentHarness::new(script).await.unwrap();
    h.say("a todo app").await.unwrap();
    let outcomes = h.run_until_done(1, 5).await.unwrap();
    assert!(outcomes[0].usage.cache_write_tokens > 0);
    assert_eq!(outcomes[0].usage.cache_read_tokens, 0);
    for o in &outcomes[1..] {
        assert_eq!(o.usage.cache_write_tokens, 0);
        assert_eq!(
            o.usage.cache_read_tokens,
            outcomes[0].usage.cache_write_tokens
        );
    }
}

#[tokio::test]
async fn verify_diagnostics_are_fed_back_and_chat_keeps_context() {
    let mut h = AgentHarness::new(fixture("fix_typescript").unwrap())
        .await
        .unwrap();
    h.say("add a counter").await.unwrap();
    let first = h.run_until_done(1, 5).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(h
        .sandbox
        .file("src/App.tsx")
        .unwrap()
        .contains("useState<number>('0')"));

    // Verify failed: the lead's handler passes its diagnostics to the next step.
    let diag = "Fix the TypeScript errors:\nsrc/App.tsx:4:42 error TS2345: Argument of type 'string' is not assignable to parameter of type 'number'.";
    let deps = h.deps();
    let fix = run_step(&deps, &h.run.id, 3, Some(diag)).await.unwrap();
    assert!(fix.should_continue());
    assert!(h
        .sandbox
        .file("src/App.tsx")
        .unwrap()
        .contains("useState<number>(0)"));
    let end = run_step(&deps, &h.run.id, 4, None).await.unwrap();
    assert!(end.done && end.text.starts_with("Fixed the type error"));
    let msgs = h
        .store
        .list_messages(&h.project.id, Page::new(200, 0))
        .await
        .unwrap();
    assert_well_formed(&msgs);
    assert!(msgs.iter().any(|m| m.role == Role::User
        && matches!(&m.content[0], ContentBlock::Text { text } if text == diag)));

    // A follow-up run sees everything said before.
    h.new_run("make the button blue").await.unwrap();
    let follow = h.run_until_done(1, 3).await.unwrap();
    assert_eq!(follow.last().unwrap().text, "Done.");
    let reqs = h.mock.requests();
    let last_body = &reqs.last().unwrap().body;
    validate_request(last_body).unwrap();
    let sent = last_body["messages"].as_array().unwrap();
    assert_eq!(sent.len(), msgs.len() + 1);
    assert!(sent[0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("add a counter"));
    let ids: HashSet<&str> = sent
        .iter()
        .flat_map(|m| m["content"].as_array().unwrap())
        .filter_map(|b| b["tool_use_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2);
}
