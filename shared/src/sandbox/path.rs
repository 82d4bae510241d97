//! Relative paths that cannot leave a project root.
//!
//! The model and the person both send paths. A [`ProjectPath`] is the only way
//! a path reaches a sandbox: it is relative, normalised, has no `..`, no NUL and
//! no empty or `.` segments. Symlinks are the sandbox's to check, because only
//! it can see the file system (see `local`).

use std::fmt;

use crate::error::{Error, Result};

/// Longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// A checked path relative to a project root, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectPath(String);

impl ProjectPath {
    /// Checks `raw` and normalises it (`./src//App.tsx` → `src/App.tsx`).
    /// The error message tells the caller what to send instead.
    pub fn parse(raw: &str) -> Result<Self> {
        let refuse = |why: &str| {
            Err(Error::InvalidInput(format!(
                "path {:?} refused: {why}; use a path relative to the project root such as \"src/App.tsx\"",
                raw.chars().take(200).collect::<String>()
            )))
        };
        if raw.is_empty() {
            return refuse("it is empty");
        }
        if raw.len() > MAX_PATH_LEN {
            return refuse("it is too long");
        }
        if raw.contains('\0') {
            return refuse("it contains a NUL byte");
        }
        if raw.contains('\\') {
            return refuse("it contains a backslash");
        }
        if raw.starts_with('/') {
            return refuse("absolute paths are not allowed");
        }
        let mut parts = Vec::new();
        for seg in raw.split('/') {
            match seg {
                "" | "." => continue,
                ".." => return refuse("`..` would leave the project root"),
                s if s.chars().any(|c| c.is_control()) => {
                    return refuse("it contains a control character")
                }
                s => parts.push(s),
            }
        }
        if parts.is_empty() {
            return refuse("it names the project root, not a file");
        }
        // Checked on the normalised form so that parsing is idempotent
        // (`./~/x` must not pass once and fail when its output is parsed again).
        if parts[0].starts_with('~') || looks_like_drive(parts[0]) {
            return refuse("absolute paths are not allowed");
        }
        Ok(ProjectPath(parts.join("/")))
    }

    /// The normalised path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a segment of the path is one that is never source (node_modules, .git, dist).
    pub fn is_in_ignored_dir(&self) -> bool {
        self.0
            .split('/')
            .any(|s| matches!(s, "node_modules" | ".git" | "dist" | ".vite"))
    }
}

fn looks_like_drive(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

impl fmt::Display for ProjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ProjectPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        assert_eq!(
            ProjectPath::parse("./src//App.tsx").unwrap().as_str(),
            "src/App.tsx"
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a\0b",
            "C:/x",
            "~/x",
            ".",
            "a\\b",
        ] {
            assert!(ProjectPath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
