//! File changes as the person sees them: a unified diff and line counts.

use std::time::Duration;

use similar::{ChangeTag, TextDiff};

use crate::domain::{FileAction, FileDiff};

/// The change from `before` to `after` (`None` = file absent) at `path`.
/// Binary contents (not UTF-8, or containing NUL) get counts of 0 and no diff.
pub fn file_diff(path: &str, before: Option<&[u8]>, after: Option<&[u8]>) -> FileDiff {
    let action = match (before, after) {
        (None, _) => FileAction::Create,
        (Some(_), None) => FileAction::Delete,
        (Some(_), Some(_)) => FileAction::Update,
    };
    let size = after.map(|a| a.len() as u64).unwrap_or(0);
    let old = text_of(before.unwrap_or_default());
    let new = text_of(after.unwrap_or_default());
    let (Some(old), Some(new)) = (old, new) else {
        return FileDiff {
            path: path.to_string(),
            action,
            size,
            added: 0,
            removed: 0,
            diff: None,
        };
    };
    // A pathological file must not stall a step: similar falls back to a coarser diff.
    let diff = TextDiff::configure()
        .timeout(Duration::from_millis(250))
        .diff_lines(old, new);
    let (mut added, mut removed) = (0u32, 0u32);
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Insert => added += 1,
            ChangeTag::Delete => removed += 1,
            ChangeTag::Equal => {}
        }
    }
    let from = if before.is_some() {
        format!("a/{path}")
    } else {
        "/dev/null".to_string()
    };
    let to = if after.is_some() {
        format!("b/{path}")
    } else {
        "/dev/null".to_string()
    };
    let unified = diff
        .unified_diff()
        .context_radius(3)
        .header(&from, &to)
        .to_string();
    FileDiff {
        path: path.to_string(),
        action,
        size,
        added,
        removed,
        diff: Some(unified),
    }
}

fn text_of(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_names_files() {
        let d = file_diff(
            "a.txt",
            Some(b"one\ntwo\nthree\n"),
            Some(b"one\n2\nthree\nfour\n"),
        );
        assert_eq!((d.added, d.removed), (2, 1));
        assert_eq!(d.action, FileAction::Update);
        let text = d.diff.unwrap();
        assert!(
            text.contains("--- a/a.txt") && text.contains("+four"),
            "{text}"
        );

        let c = file_diff("n.txt", None, Some(b"x\ny\n"));
        assert_eq!(
            (c.action, c.added, c.removed, c.size),
            (FileAction::Create, 2, 0, 4)
        );
        let del = file_diff("n.txt", Some(b"x\n"), None);
        assert_eq!(
            (del.action, del.removed, del.size),
            (FileAction::Delete, 1, 0)
        );
        let bin = file_diff("b.png", None, Some(&[0x89, 0, 1]));
        assert!(bin.diff.is_none());
    }
}
