//! Paths from the model cannot leave the project: property tests of
//! `ProjectPath` and refusals through a whole agent step.

use apna::agent::run_step;
use apna::domain::{ContentBlock, Page};
use apna::sandbox::ProjectPath;
use apna_tests::agent_harness::AgentHarness;
use apna_tests::mock_anthropic::{Script, Turn};
use proptest::prelude::*;
use serde_json::json;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("~".to_string()),
        Just("C:".to_string()),
        Just("a\0b".to_string()),
        Just("..a".to_string()),
        Just("a\\..\\b".to_string()),
        "[a-zA-Z0-9_.-]{1,8}",
        any::<String>(),
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(segment(), 0..6)).prop_map(|(abs, segs)| {
        let p = segs.join("/");
        if abs {
            format!("/{p}")
        } else {
            p
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_paths_stay_inside_and_normalise_idempotently(raw in raw_path()) {
        if let Ok(p) = ProjectPath::parse(&raw) {
            let s = p.as_str();
            prop_assert!(!s.is_empty());
            prop_assert!(!s.starts_with('/'), "absolute: {s:?}");
            prop_assert!(!s.contains('\0'), "NUL: {s:?}");
            prop_assert!(!s.contains('\\'), "backslash: {s:?}");
            prop_assert!(s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."), "segment: {s:?}");
            let again = ProjectPath::parse(s).unwrap();
            prop_assert_eq!(again.as_str(), s);
            // Joined under a root, the path never climbs out of it.
            let joined = std::path::Path::new("/root/project").join(s);
            let mut depth: i32 = 0;
            for c in joined.strip_prefix("/root/project").unwrap().components() {
                match c {
                    std::path::Component::Normal(_) => depth += 1,
                    std::path::Component::ParentDir => depth -= 1,
                    _ => prop_assert!(false, "unexpected component in {s:?}"),
                }
                prop_assert!(depth >= 0);
            }
        }
    }

    #[test]
    fn traversal_is_always_refused(prefix in "[a-z]{1,5}(/[a-z]{1,5}){0,3}", rest in "[a-z]{0,5}") {
        let raw = format!("{prefix}/../{rest}");
        prop_assert!(ProjectPath::parse(&raw).is_err());
        let abs = format!("/{prefix}");
        prop_assert!(ProjectPath::parse(&abs).is_err());
    }
}

#[tokio::test]
async fn the_model_is_told_why_a_path_was_refused() {
    let bad = [
        ("read_file", json!({"path": "../../etc/passwd"})),
        (
            "write_file",
            json!({"path": "/etc/cron.d/x", "content": "boom"}),
        ),
        (
            "write_file",
            json!({"path": "src/a\u{0}.ts", "content": "x"}),
        ),
        (
            "edit_file",
            json!({"path": "src/../../x", "old_string": "a", "new_string": "b"}),
        ),
        ("delete_file", json!({"path": "C:/Windows/win.ini"})),
    ];
    let turn = Turn {
        match_text: None,
        content: bad
            .iter()
            .map(|(name, input)| json!({"type": "tool_use", "name": name, "input": input}))
            .collect(),
        stop_reason: None,
        usage: None,
        delay_ms: None,
    };
    let h = AgentHarness::new(Script::new(vec![turn])).await.unwrap();
    h.say("try to escape").await.unwrap();
    let files_before = h.sandbox.paths();
    let o = run_step(&h.deps(), &h.run.id, 1, None).await.unwrap();
    assert_eq!((o.tool_calls, o.tool_errors), (5, 5));
    assert!(
        o.should_continue(),
        "a refused path must not abort the step"
    );
    assert_eq!(h.sandbox.paths(), files_before);
    assert!(h.sandbox.writes().is_empty());
    let msgs = h
        .store
        .list_messages(&h.project.id, Page::new(200, 0))
        .await
        .unwrap();
    let results: Vec<&str> = msgs[2]
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolResult {
                content,
                is_error: true,
                ..
            } => Some(content.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 5);
    assert!(
        results[0].contains("`..` would leave the project root"),
        "{}",
        results[0]
    );
    assert!(
        results[1].contains("absolute paths are not allowed"),
        "{}",
        results[1]
    );
    assert!(results[2].contains("NUL"), "{}", results[2]);
    for r in &results {
        assert!(r.contains("relative to the project root"), "{r}");
    }
    // The conversation goes on: the next call carries the five error results.
    let next = run_step(&h.deps(), &h.run.id, 2, None).await.unwrap();
    assert!(next.done);
}
