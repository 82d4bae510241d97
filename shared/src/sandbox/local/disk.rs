//! The per-project disk budget (`APNA_MAX_PROJECT_MB`, default 500).
//!
//! A write that would take the project past its budget is refused before
//! anything is written; after every command the project is measured again
//! and, when it is over, the command's output says so and what to do. One
//! file can never outgrow the budget on its own (`RLIMIT_FSIZE`, see `limits`).
//!
//! Usage is the disk space of the project's own files: every inode under the
//! project directory counted once (hard links too), symlinks not followed (the
//! shared template `node_modules` is a link until a package manager runs).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};

const MIB: u64 = 1024 * 1024;

/// Bytes of disk the files under `dir` occupy.
pub fn usage(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                stack.push(e.path());
            }
            if seen.insert((meta.dev(), meta.ino())) {
                // Allocated blocks, not the length: sparse files cost what they use.
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// Refuses a write of `new_len` bytes to `existing` (the file it replaces, if
/// any) when the project would end up over `budget` bytes.
pub fn check_write(root: &Path, existing: &Path, new_len: u64, budget: u64) -> Result<()> {
    let used = usage(root);
    let replaced = existing
        .symlink_metadata()
        .map(|m| m.blocks() * 512)
        .unwrap_or(0);
    let after = used.saturating_sub(replaced) + new_len;
    if after > budget {
        return Err(Error::InvalidInput(format!(
            "writing this file ({} KB) would take the project to {} MB, over its disk budget of {} MB \
             (it uses {} MB now); delete files it does not need (large assets, build output, \
             downloaded data) and try again",
            new_len.div_ceil(1024),
            after.div_ceil(MIB),
            budget / MIB,
            used.div_ceil(MIB)
        )));
    }
    Ok(())
}

/// A note for the model when the project is over `budget` after a command.
pub fn over_budget_note(root: &Path, budget: u64) -> Option<String> {
    let used = usage(root);
    (used > budget).then(|| {
        format!(
            "[apna: the project now uses {} MB, over its disk budget of {} MB; further file writes \
             are refused until you delete files it does not need (large files, build output, \
             downloaded data), e.g. with `rm`]",
            used.div_ceil(MIB),
            budget / MIB
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_inode_once_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a"), vec![1u8; 64 * 1024]).unwrap();
        let one = usage(root);
        assert!(one >= 64 * 1024, "{one}");
        std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
        std::os::unix::fs::symlink("/usr", root.join("node_modules")).unwrap();
        assert_eq!(
            usage(root),
            one,
            "hard links and symlinks cost nothing more"
        );
        assert!(check_write(root, &root.join("c"), 10, one + 4096 + 10).is_ok());
        let err = check_write(root, &root.join("c"), 2 * MIB, MIB).unwrap_err();
        assert!(err.to_string().contains("disk budget of 1 MB"), "{err}");
        // Replacing a file counts only the difference.
        assert!(check_write(root, &root.join("a"), 64 * 1024, one + 8192).is_ok());
        assert!(over_budget_note(root, MIB).is_none());
        assert!(over_budget_note(root, 1)
            .unwrap()
            .contains("over its disk budget"));
    }
}
