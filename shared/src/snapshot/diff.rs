//! Differences between two source trees, per file and as one unified diff.

use std::collections::BTreeMap;

use crate::diff::file_diff;
use crate::domain::{FileAction, FileDiff};
use crate::sandbox::{SourceFile, SourceTree};

/// The changes from `old` to `new`, sorted by path. A file whose only change
/// is its executable bit is an update with no changed lines.
pub fn diff_trees(old: &SourceTree, new: &SourceTree) -> Vec<FileDiff> {
    let before: BTreeMap<&str, &SourceFile> =
        old.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let after: BTreeMap<&str, &SourceFile> =
        new.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut paths: Vec<&str> = before.keys().chain(after.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (b, a) = (before.get(path), after.get(path));
            if let (Some(b), Some(a)) = (b, a) {
                if b.data == a.data && b.executable == a.executable {
                    return None;
                }
            }
            Some(file_diff(
                path,
                b.map(|f| f.data.as_slice()),
                a.map(|f| f.data.as_slice()),
            ))
        })
        .collect()
}

/// All file diffs as one unified diff text, in order; binary files get a
/// `Binary files … differ` line as `git diff` prints.
pub fn unified_diff(diffs: &[FileDiff]) -> String {
    let mut out = String::new();
    for d in diffs {
        match &d.diff {
            Some(text) => {
                out.push_str(text);
                if !text.is_empty() && !text.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => {
                let (from, to) = match d.action {
                    FileAction::Create => ("/dev/null".to_string(), format!("b/{}", d.path)),
                    FileAction::Delete => (format!("a/{}", d.path), "/dev/null".to_string()),
                    FileAction::Update => (format!("a/{}", d.path), format!("b/{}", d.path)),
                };
                out.push_str(&format!("Binary files {from} and {to} differ\n"));
            }
        }
    }
    out
}

/// The diffs without their text, for storing with a version (texts are
/// recomputed from the snapshots when someone asks: see `version_diff`).
pub fn without_text(diffs: Vec<FileDiff>) -> Vec<FileDiff> {
    diffs
        .into_iter()
        .map(|d| FileDiff { diff: None, ..d })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &[u8], bool)]) -> SourceTree {
        SourceTree {
            files: files
                .iter()
                .map(|(p, d, x)| SourceFile {
                    path: p.to_string(),
                    data: d.to_vec(),
                    executable: *x,
                })
                .collect(),
        }
    }

    #[test]
    fn finds_creates_updates_deletes_and_mode_changes() {
        let old = tree(&[
            ("a.txt", b"one\n", false),
            ("gone.txt", b"x\n", false),
            ("run.sh", b"echo\n", false),
            ("same.txt", b"s\n", false),
        ]);
        let new = tree(&[
            ("a.txt", b"one\ntwo\n", false),
            ("new.bin", &[0, 1, 2], false),
            ("run.sh", b"echo\n", true),
            ("same.txt", b"s\n", false),
        ]);
        let d = diff_trees(&old, &new);
        let summary: Vec<(&str, FileAction, u32, u32)> = d
            .iter()
            .map(|d| (d.path.as_str(), d.action, d.added, d.removed))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a.txt", FileAction::Update, 1, 0),
                ("gone.txt", FileAction::Delete, 0, 1),
                ("new.bin", FileAction::Create, 0, 0),
                ("run.sh", FileAction::Update, 0, 0),
            ]
        );
        let text = unified_diff(&d);
        assert!(text.contains("+two"), "{text}");
        assert!(text.contains("--- a/gone.txt"), "{text}");
        assert!(
            text.contains("Binary files /dev/null and b/new.bin differ"),
            "{text}"
        );
        assert!(without_text(d).iter().all(|d| d.diff.is_none()));
        assert!(diff_trees(&new, &new).is_empty());
    }
}
