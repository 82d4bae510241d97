use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::domain::FileAction;
use crate::sandbox::ExecOutput;
use crate::testing::memory::MemorySandbox;

async fn call(sb: &MemorySandbox, name: &str, input: Value) -> ToolOutput {
    Toolbox::standard().execute(sb, name, &input).await
}

#[tokio::test]
async fn write_read_edit_delete() {
    let sb = MemorySandbox::new("p");
    let w = call(
        &sb,
        "write_file",
        json!({"path": "./src//a.ts", "content": "a\nb\n"}),
    )
    .await;
    assert!(!w.is_error, "{}", w.content);
    assert_eq!(w.summary, "created src/a.ts (+2 \u{2212}0)");
    assert_eq!(w.file_diff.as_ref().unwrap().action, FileAction::Create);
    assert_eq!(sb.file("src/a.ts").as_deref(), Some("a\nb\n"));

    let r = call(&sb, "read_file", json!({"path": "src/a.ts"})).await;
    assert_eq!(r.content, "a\nb\n");

    let e = call(
        &sb,
        "edit_file",
        json!({"path": "src/a.ts", "old_string": "b\n", "new_string": "c\nd\n"}),
    )
    .await;
    assert!(!e.is_error, "{}", e.content);
    assert_eq!(e.summary, "edited src/a.ts (+2 \u{2212}1)");
    assert_eq!(sb.file("src/a.ts").as_deref(), Some("a\nc\nd\n"));

    let d = call(&sb, "delete_file", json!({"path": "src/a.ts"})).await;
    assert!(!d.is_error);
    assert_eq!(d.file_diff.unwrap().action, FileAction::Delete);
    assert!(sb.file("src/a.ts").is_none());
    let again = call(&sb, "delete_file", json!({"path": "src/a.ts"})).await;
    assert!(again.is_error && again.content.contains("does not exist"));
}

#[tokio::test]
async fn edit_counts_matches() {
    let sb = MemorySandbox::new("p");
    sb.put("a.txt", "x x x");
    let zero = call(
        &sb,
        "edit_file",
        json!({"path": "a.txt", "old_string": "y", "new_string": "z"}),
    )
    .await;
    assert!(
        zero.is_error && zero.content.contains("found 0 times"),
        "{}",
        zero.content
    );
    let three = call(
        &sb,
        "edit_file",
        json!({"path": "a.txt", "old_string": "x", "new_string": "z"}),
    )
    .await;
    assert!(
        three.is_error && three.content.contains("found 3 times"),
        "{}",
        three.content
    );
    assert_eq!(sb.file("a.txt").as_deref(), Some("x x x"));
    let all = call(
        &sb,
        "edit_file",
        json!({"path": "a.txt", "old_string": "x", "new_string": "z", "replace_all": true}),
    )
    .await;
    assert!(!all.is_error);
    assert_eq!(sb.file("a.txt").as_deref(), Some("z z z"));
    assert!(sb.writes().len() == 1);
}

#[tokio::test]
async fn bad_paths_and_inputs_are_error_results() {
    let sb = MemorySandbox::new("p");
    for (tool, input) in [
        ("read_file", json!({"path": "../etc/passwd"})),
        ("write_file", json!({"path": "/etc/passwd", "content": ""})),
        ("write_file", json!({"path": "a\u{0}b", "content": ""})),
        (
            "write_file",
            json!({"path": "node_modules/x.js", "content": ""}),
        ),
        ("edit_file", json!({"path": "a.txt"})),
        ("nope", json!({})),
        ("search_files", json!({"pattern": "(", "regex": true})),
        ("run_command", json!({"command": "npm run dev"})),
    ] {
        let out = call(&sb, tool, input.clone()).await;
        assert!(out.is_error, "{tool} {input} accepted: {}", out.content);
        assert!(!out.content.is_empty());
    }
    assert!(sb.writes().is_empty());
}

#[tokio::test]
async fn list_and_search() {
    let sb = MemorySandbox::with_template("p");
    let l = call(&sb, "list_files", json!({"path": "src"})).await;
    assert!(
        l.content.contains("src/App.tsx") && !l.content.contains("index.html"),
        "{}",
        l.content
    );
    let s = call(&sb, "search_files", json!({"pattern": "createRoot"})).await;
    assert!(s.content.contains("src/main.tsx:2:"), "{}", s.content);
    let re = call(
        &sb,
        "search_files",
        json!({"pattern": "^export default", "regex": true}),
    )
    .await;
    assert!(re.content.starts_with("src/App.tsx:1:"), "{}", re.content);
    for i in 0..150 {
        sb.put(&format!("f{i}.txt"), "needle\n");
    }
    let capped = call(&sb, "search_files", json!({"pattern": "needle"})).await;
    assert!(capped.content.contains("[truncated"), "{}", capped.summary);
}

#[tokio::test]
async fn commands_report_exit_and_truncation() {
    let sb = MemorySandbox::new("p");
    sb.set_exec_handler(Arc::new(|req| ExecOutput {
        exit_code: Some(if req.command.contains("fail") { 2 } else { 0 }),
        output: "y".repeat(40_000),
        truncated: false,
        timed_out: false,
    }));
    let ok = call(&sb, "run_command", json!({"command": "npm install zod"})).await;
    assert!(!ok.is_error);
    assert_eq!(ok.summary, "ran npm install zod");
    assert!(ok.content.starts_with("exit code 0") && ok.content.ends_with("bytes]"));
    assert!(ok.content.len() < 31_000);
    let bad = call(&sb, "run_command", json!({"command": "fail"})).await;
    assert!(bad.is_error && bad.content.starts_with("exit code 2"));
    sb.push_log("vite ready");
    let logs = call(&sb, "check_logs", json!({})).await;
    assert_eq!(logs.content, "vite ready");
}
