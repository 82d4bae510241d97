//! `tasks::revive`: a sandbox gone mid-run comes back with the run's own
//! changes, from the conversation and from a step that ran before a retry.

use std::sync::Arc;

use apna::agent::checkpoint::StepKey;
use apna::agent::tools::ToolOutput;
use apna::agent::ModelResponse;
use apna::domain::{ContentBlock, NewMessage, Project, Role, Run, Usage};
use apna::sandbox::Sandbox;
use apna::store::SqliteStore;
use apna::tasks::revive::{live_sandbox, revive};
use apna::testing::api::harness;
use serde_json::json;

fn tool_use(id: &str, name: &str, input: serde_json::Value) -> ContentBlock {
    ContentBlock::ToolUse {
        id: id.into(),
        name: name.into(),
        input,
    }
}

fn result(id: &str, is_error: bool) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id: id.into(),
        content: "ok".into(),
        is_error,
    }
}

#[tokio::test]
async fn the_runs_changes_come_back_including_a_retried_steps() {
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[],
    )
    .await;
    let store = h.state.store.clone();
    let project = Project::new("local", "notes", "vite-react");
    store.create_project(&project).await.unwrap();
    let run = Run::new(&project.id, "local", "notes");
    store.create_run(&run).await.unwrap();
    let msg = |role, content| NewMessage {
        run_id: Some(run.id.clone()),
        role,
        content,
        tool_calls: vec![],
        file_diffs: vec![],
    };
    // Step 1 is in the conversation: a write, a failed edit (not replayed),
    // a read (nothing to replay) and a command.
    store
        .append_messages(
            &project.id,
            &[
                msg(
                    Role::User,
                    vec![ContentBlock::Text {
                        text: "notes".into(),
                    }],
                ),
                msg(
                    Role::Assistant,
                    vec![
                        tool_use(
                            "t1",
                            "write_file",
                            json!({"path": "src/a.ts", "content": "a1\n"}),
                        ),
                        tool_use(
                            "t2",
                            "edit_file",
                            json!({"path": "src/a.ts", "old_string": "zz", "new_string": "yy"}),
                        ),
                        tool_use("t3", "read_file", json!({"path": "src/a.ts"})),
                        tool_use("t4", "run_command", json!({"command": "echo hi > out.txt"})),
                    ],
                ),
                msg(
                    Role::User,
                    vec![
                        result("t1", false),
                        result("t2", true),
                        result("t3", false),
                        result("t4", false),
                    ],
                ),
            ],
        )
        .await
        .unwrap();
    // Step 2 ran its edit before the task was retried; its messages are not stored yet.
    let answer = ModelResponse {
        id: "m2".into(),
        model: "claude-sonnet-4-5".into(),
        content: vec![
            tool_use(
                "t5",
                "edit_file",
                json!({"path": "src/a.ts", "old_string": "a1", "new_string": "a2"}),
            ),
            tool_use(
                "t6",
                "write_file",
                json!({"path": "src/b.ts", "content": "b\n"}),
            ),
        ],
        stop_reason: Some("tool_use".into()),
        usage: Usage::default(),
    };
    store
        .put_step_result(
            &run.id,
            &StepKey::Model(2).to_string(),
            &serde_json::to_value(&answer).unwrap(),
        )
        .await
        .unwrap();
    store
        .put_step_result(
            &run.id,
            &StepKey::Tool(2, "t5").to_string(),
            &serde_json::to_value(ToolOutput::ok("edited", "edited src/a.ts")).unwrap(),
        )
        .await
        .unwrap();

    let sandbox = h.sandboxes.get(&project.id);
    sandbox.destroy().await.unwrap();
    let got = live_sandbox(&h.state, &project.id, &run.id, Some(2))
        .await
        .unwrap();
    assert_eq!(got.project_id(), project.id);
    assert_eq!(sandbox.file("src/a.ts").as_deref(), Some("a2\n"));
    // t6 had not run before the retry: the retried step runs it.
    assert_eq!(sandbox.file("src/b.ts"), None);
    assert_eq!(sandbox.commands(), vec!["echo hi > out.txt".to_string()]);
    let events = store.list_events(&run.id, 0, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.data["message"]
            .as_str()
            .unwrap_or("")
            .contains("re-applied this change's 3 edit(s) and command(s)")),
        "{events:?}"
    );

    // A live sandbox is left alone.
    let again = revive(&h.state, &sandbox, &run.id, None).await.unwrap();
    assert_eq!(again.replayed, 2);
    live_sandbox(&h.state, &project.id, &run.id, Some(2))
        .await
        .unwrap();
    assert_eq!(
        store.list_events(&run.id, 0, 100).await.unwrap().len(),
        events.len()
    );
}
