//! The conversation the model sees, rebuilt from the store each step.
//!
//! The store holds every message of every run of a project, so a chat
//! continues with full context. What the API accepts is stricter than what a
//! crash or a concurrent writer may leave behind, so the rebuild also repairs:
//! roles alternate (consecutive same-role messages are merged), the first
//! message is the user's, every `tool_use` is answered by a `tool_result` in
//! the next message (tool results first), and no text block is empty.
//!
//! Earlier runs are kept as context but compacted: their long tool results
//! and tool inputs (whole files) are elided, since the files' current content
//! is one `read_file` away. If the conversation is still larger than
//! [`MAX_CONTEXT_BYTES`], the oldest exchanges are dropped. Both depend only on
//! stored messages, so the prefix stays byte-identical between steps and the
//! prompt cache keeps hitting.

use std::collections::HashSet;

use super::model::ModelMessage;
use crate::domain::{ContentBlock, ImageSource, Message, Page, Role};
use crate::error::Result;
use crate::images::MAX_IMAGES_IN_CONTEXT;
use crate::store::Store;

/// Every message of a project's conversation, in order.
pub async fn load_messages(store: &dyn Store, project_id: &str) -> Result<Vec<Message>> {
    let mut all = Vec::new();
    loop {
        let page = store
            .list_messages(project_id, Page::new(Page::MAX, all.len() as i64))
            .await?;
        let n = page.len();
        all.extend(page);
        if (n as i64) < Page::MAX {
            return Ok(all);
        }
    }
}

/// Tool results and tool inputs of earlier runs longer than this are elided.
pub const MAX_OLD_TOOL_TEXT: usize = 2_000;
/// A rough cap on the serialised conversation (about 150k tokens).
pub const MAX_CONTEXT_BYTES: usize = 600_000;

/// The API-ready conversation for stored `messages`, as seen by run `run_id`
/// (see the module doc for the repairs and the compaction).
pub fn to_model_messages(messages: &[Message], run_id: &str) -> Vec<ModelMessage> {
    let mut merged: Vec<ModelMessage> = Vec::new();
    for m in messages {
        let old = m.run_id.as_deref() != Some(run_id);
        let said = text_of(&m.content);
        let content: Vec<ContentBlock> = m
            .content
            .iter()
            .filter(|b| !matches!(b, ContentBlock::Text { text } if text.trim().is_empty()))
            .flat_map(|b| present(&if old { compact(b) } else { b.clone() }, &said))
            .collect();
        if content.is_empty() {
            continue;
        }
        match merged.last_mut() {
            Some(last) if last.role == m.role => last.content.extend(content),
            None if m.role == Role::Assistant => continue,
            _ => merged.push(ModelMessage {
                role: m.role,
                content,
            }),
        }
    }
    drop_oldest(&mut merged);
    pair_tool_results(&mut merged);
    describe_old_images(&mut merged);
    merged
}

/// A block as the model takes it: a selection becomes its description, and a
/// stored image the person attached is preceded by a line naming it (for
/// `save_image`). An image the message's own text already names (`image
/// {id}`: the screenshot Apna took for the visual check) is not the person's.
fn present(b: &ContentBlock, said: &str) -> Vec<ContentBlock> {
    match b {
        ContentBlock::Selection { selection } => vec![ContentBlock::Text {
            text: selection.describe(),
        }],
        ContentBlock::Image {
            source: ImageSource::Stored(r),
        } if !said.contains(&format!("image {}", r.id)) => {
            vec![
            ContentBlock::Text {
                text: format!(
                    "[The person attached image {} ({}×{} {}); save_image copies it into the project.]",
                    r.id, r.width, r.height, r.media_type
                ),
            },
            b.clone(),
            ]
        }
        other => vec![other.clone()],
    }
}

/// Keeps the newest [`MAX_IMAGES_IN_CONTEXT`] images and names the older
/// ones in words, so a long conversation does not resend every screenshot.
fn describe_old_images(msgs: &mut [ModelMessage]) {
    let mut seen = 0usize;
    for m in msgs.iter_mut().rev() {
        for b in m.content.iter_mut().rev() {
            let ContentBlock::Image {
                source: ImageSource::Stored(r),
            } = &*b
            else {
                continue;
            };
            seen += 1;
            if seen > MAX_IMAGES_IN_CONTEXT {
                *b = ContentBlock::Text {
                    text: format!(
                        "[image {} left out: the conversation has newer images]",
                        r.id
                    ),
                };
            }
        }
    }
}

/// A block of an earlier run with long tool text elided.
fn compact(b: &ContentBlock) -> ContentBlock {
    match b {
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } if content.len() > MAX_OLD_TOOL_TEXT => ContentBlock::ToolResult {
            tool_use_id: tool_use_id.clone(),
            content: format!(
                "{}\n[{} more bytes elided from an earlier run]",
                prefix(content, MAX_OLD_TOOL_TEXT / 2),
                content.len() - prefix(content, MAX_OLD_TOOL_TEXT / 2).len()
            ),
            is_error: *is_error,
        },
        ContentBlock::ToolUse { id, name, input } => {
            let mut input = input.clone();
            if let Some(obj) = input.as_object_mut() {
                for v in obj.values_mut() {
                    if let Some(text) = v.as_str().filter(|t| t.len() > MAX_OLD_TOOL_TEXT) {
                        *v = serde_json::Value::String(format!(
                            "[{} bytes elided from an earlier run; read the file for its current content]",
                            text.len()
                        ));
                    }
                }
            }
            ContentBlock::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input,
            }
        }
        other => other.clone(),
    }
}

fn prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Drops the oldest exchanges while the conversation is over [`MAX_CONTEXT_BYTES`],
/// cutting only before a user message with text (a person's turn), never the last one.
fn drop_oldest(msgs: &mut Vec<ModelMessage>) {
    let size = |m: &ModelMessage| serde_json::to_string(m).map(|s| s.len()).unwrap_or(0);
    let mut total: usize = msgs.iter().map(size).sum();
    while total > MAX_CONTEXT_BYTES {
        let cut = msgs.iter().enumerate().skip(1).position(|(_, m)| {
            m.role == Role::User
                && m.content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::Text { .. }))
                && !m
                    .content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::ToolResult { .. }))
        });
        let Some(cut) = cut.map(|i| i + 1) else {
            return;
        };
        total -= msgs[..cut].iter().map(size).sum::<usize>();
        msgs.drain(..cut);
    }
}

/// Makes each user message answer exactly the previous assistant message's tool calls.
fn pair_tool_results(msgs: &mut Vec<ModelMessage>) {
    let mut i = 0;
    while i < msgs.len() {
        if msgs[i].role != Role::User {
            i += 1;
            continue;
        }
        let wanted: Vec<String> = match i.checked_sub(1).map(|p| &msgs[p]) {
            Some(prev) => prev
                .content
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { id, .. } => Some(id.clone()),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        let wanted_set: HashSet<&str> = wanted.iter().map(String::as_str).collect();
        let mut results = Vec::new();
        let mut others = Vec::new();
        let mut seen = HashSet::new();
        for b in std::mem::take(&mut msgs[i].content) {
            match &b {
                ContentBlock::ToolResult { tool_use_id, .. } => {
                    // Orphans and duplicates are rejected by the API; drop them.
                    if wanted_set.contains(tool_use_id.as_str()) && seen.insert(tool_use_id.clone())
                    {
                        results.push(b);
                    }
                }
                _ => others.push(b),
            }
        }
        for id in &wanted {
            if !seen.contains(id) {
                results.push(ContentBlock::ToolResult {
                    tool_use_id: id.clone(),
                    content: "this tool call was interrupted and did not run".into(),
                    is_error: true,
                });
            }
        }
        results.extend(others);
        msgs[i].content = results;
        i += 1;
    }
    // An assistant turn asking for tools must be answered before anything else is sent.
    if let Some(last) = msgs.last() {
        if last.role == Role::Assistant {
            let ids: Vec<String> = last
                .content
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { id, .. } => Some(id.clone()),
                    _ => None,
                })
                .collect();
            if !ids.is_empty() {
                msgs.push(ModelMessage {
                    role: Role::User,
                    content: ids
                        .into_iter()
                        .map(|id| ContentBlock::ToolResult {
                            tool_use_id: id,
                            content: "this tool call was interrupted and did not run".into(),
                            is_error: true,
                        })
                        .collect(),
                });
            }
        }
    }
}

/// The plain text of a message's text blocks.
pub fn text_of(content: &[ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(role: Role, content: Vec<ContentBlock>) -> Message {
        Message {
            id: "m".into(),
            project_id: "p".into(),
            run_id: None,
            seq: 0,
            role,
            content,
            tool_calls: vec![],
            file_diffs: vec![],
            created_at: crate::domain::now(),
        }
    }

    fn text(t: &str) -> ContentBlock {
        ContentBlock::Text { text: t.into() }
    }

    #[test]
    fn only_images_the_person_attached_are_announced_as_theirs() {
        let image = |id: &str| ContentBlock::Image {
            source: ImageSource::Stored(crate::domain::ImageRef {
                id: id.repeat(64),
                media_type: "image/png".into(),
                width: 1280,
                height: 800,
                size: 1000,
            }),
        };
        let attached = msg(Role::User, vec![image("a"), text("like this")]);
        let taken = msg(
            Role::User,
            vec![
                text(&format!(
                    "a screenshot Apna took (image {})",
                    "b".repeat(64)
                )),
                image("b"),
            ],
        );
        let out = to_model_messages(&[attached, taken], "r");
        let texts: Vec<String> = out[0]
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.clone()),
                _ => None,
            })
            .collect();
        let announced = |id: &str| {
            texts
                .iter()
                .any(|t| t.starts_with(&format!("[The person attached image {}", id.repeat(64))))
        };
        assert!(announced("a"), "{texts:?}");
        assert!(!announced("b"), "{texts:?}");
        let images = out[0]
            .content
            .iter()
            .filter(|b| matches!(b, ContentBlock::Image { .. }))
            .count();
        assert_eq!(images, 2);
    }

    #[test]
    fn merges_roles_and_pairs_results() {
        let use_a = ContentBlock::ToolUse {
            id: "a".into(),
            name: "read_file".into(),
            input: json!({}),
        };
        let use_b = ContentBlock::ToolUse {
            id: "b".into(),
            name: "read_file".into(),
            input: json!({}),
        };
        let res = |id: &str| ContentBlock::ToolResult {
            tool_use_id: id.into(),
            content: "ok".into(),
            is_error: false,
        };
        let stored = vec![
            msg(Role::Assistant, vec![text("orphan")]),
            msg(Role::User, vec![text("make an app")]),
            msg(Role::User, vec![text("")]),
            msg(Role::Assistant, vec![text("sure"), use_a, use_b]),
            msg(Role::User, vec![text("also blue"), res("a"), res("zzz")]),
            msg(Role::Assistant, vec![text("")]),
        ];
        let out = to_model_messages(&stored, "r");
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].role, Role::User);
        assert_eq!(out[0].content, vec![text("make an app")]);
        let ids: Vec<_> = out[2]
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
        assert_eq!(ids, vec![("a", false), ("b", true)]);
        assert_eq!(out[2].content.last(), Some(&text("also blue")));
    }

    #[test]
    fn earlier_runs_are_compacted_and_the_oldest_dropped_when_too_big() {
        let big = "x".repeat(MAX_OLD_TOOL_TEXT * 3);
        let write = |id: &str| ContentBlock::ToolUse {
            id: id.into(),
            name: "write_file".into(),
            input: json!({"path": "a.ts", "content": big}),
        };
        let result = |id: &str| ContentBlock::ToolResult {
            tool_use_id: id.into(),
            content: big.clone(),
            is_error: false,
        };
        let in_run = |mut m: Message, run: &str| {
            m.run_id = Some(run.into());
            m
        };
        let stored = vec![
            in_run(msg(Role::User, vec![text("first")]), "old"),
            in_run(msg(Role::Assistant, vec![write("a")]), "old"),
            in_run(msg(Role::User, vec![result("a")]), "old"),
            in_run(msg(Role::Assistant, vec![text("done")]), "old"),
            in_run(msg(Role::User, vec![text("second")]), "new"),
            in_run(msg(Role::Assistant, vec![write("b")]), "new"),
            in_run(msg(Role::User, vec![result("b")]), "new"),
        ];
        let out = to_model_messages(&stored, "new");
        assert_eq!(out.len(), 7);
        let ContentBlock::ToolUse { input, .. } = &out[1].content[0] else {
            panic!()
        };
        assert!(input["content"].as_str().unwrap().contains("elided"));
        let ContentBlock::ToolResult { content, .. } = &out[2].content[0] else {
            panic!()
        };
        assert!(content.len() < MAX_OLD_TOOL_TEXT + 100 && content.contains("elided"));
        // The current run is sent whole.
        let ContentBlock::ToolUse { input, .. } = &out[5].content[0] else {
            panic!()
        };
        assert_eq!(input["content"].as_str().unwrap().len(), big.len());

        // Past the size cap, whole exchanges go, oldest first, from a person's turn.
        let huge = "y".repeat(MAX_CONTEXT_BYTES / 2);
        let mut many = Vec::new();
        for i in 0..4 {
            many.push(in_run(
                msg(Role::User, vec![text(&format!("ask {i}"))]),
                "new",
            ));
            many.push(in_run(msg(Role::Assistant, vec![text(&huge)]), "new"));
        }
        many.push(in_run(msg(Role::User, vec![text("last")]), "new"));
        let out = to_model_messages(&many, "new");
        assert_eq!(out[0].role, Role::User);
        assert_eq!(out[0].content, vec![text("ask 3")]);
        assert_eq!(out.len(), 3);
    }
}
