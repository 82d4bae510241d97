//! File access inside a project root that symlinks cannot escape.
//!
//! [`ProjectPath`] already refuses `..` and absolute paths; what is left is a
//! symlink planted by a command (`ln -s /etc x`). Every existing ancestor of a
//! path is checked with `symlink_metadata`, and a symlink is followed only when
//! its canonical target is still inside the root. The final open uses
//! `O_NOFOLLOW`, so a link swapped in after the check is not followed either.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::sandbox::{FileEntry, ProjectPath, SourceFile, SourceTree};

/// Directory names that are never source, wherever they appear.
pub const IGNORED_DIRS: &[&str] = &["node_modules", "dist", ".git", ".vite", ".apna-build"];

/// Largest file `read`/`write` accept (sources are small; this stops a model
/// from reading a 1 GB log into its context).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

fn refused(path: &ProjectPath, why: &str) -> Error {
    Error::InvalidInput(format!(
        "path {:?} refused: {why}; use a path to a regular file inside the project, such as \"src/App.tsx\"",
        path.as_str()
    ))
}

/// Resolves `path` under `root` (already canonical). Symlinks are followed only
/// when they stay inside `root`; `allow_outside` names extra canonical roots
/// that reads may reach (the template's `node_modules`).
pub fn resolve(root: &Path, path: &ProjectPath, allow_outside: &[PathBuf]) -> Result<PathBuf> {
    let mut cur = root.to_path_buf();
    let parts: Vec<&str> = path.as_str().split('/').collect();
    for (i, seg) in parts.iter().enumerate() {
        let next = cur.join(seg);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::canonicalize(&next).map_err(|_| {
                    refused(
                        path,
                        "it goes through a symlink whose target does not exist",
                    )
                })?;
                let inside =
                    target.starts_with(root) || allow_outside.iter().any(|a| target.starts_with(a));
                if !inside {
                    return Err(refused(
                        path,
                        "it goes through a symlink that points outside the project",
                    ));
                }
                cur = target;
            }
            Ok(_) => cur = next,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Nothing below a missing entry can be a symlink.
                for rest in &parts[i..] {
                    cur.push(rest);
                }
                return Ok(cur);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(cur)
}

/// Whether `p` has only normal components (defence in depth for resolved paths).
fn is_plain(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::RootDir))
}

/// Reads a file (blocking; call from `spawn_blocking`).
pub fn read(root: &Path, path: &ProjectPath, allow_outside: &[PathBuf]) -> Result<Vec<u8>> {
    let full = resolve(root, path, allow_outside)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&full)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!(
                "{} does not exist; use list_files to see the project's files",
                path
            )),
            _ if full.is_dir() => refused(path, "it is a directory"),
            _ => Error::Io(e),
        })?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(refused(path, "it is a directory"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::TooLarge(format!(
            "{} is {} bytes; files over {} bytes are not read",
            path,
            meta.len(),
            MAX_FILE_BYTES
        )));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    use std::io::Read;
    (&file).read_to_end(&mut data)?;
    Ok(data)
}

/// Writes a file, creating parent directories (blocking).
pub fn write(root: &Path, path: &ProjectPath, data: &[u8]) -> Result<()> {
    if path.is_in_ignored_dir() {
        return Err(refused(
            path,
            "node_modules, dist, .git and .vite are managed by the sandbox, not source",
        ));
    }
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::TooLarge(format!(
            "{} bytes is over the {} byte file limit",
            data.len(),
            MAX_FILE_BYTES
        )));
    }
    let full = resolve(root, path, &[])?;
    if !is_plain(&full) || !full.starts_with(root) {
        return Err(refused(path, "it resolves outside the project"));
    }
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent)?;
        // A directory created concurrently could be a symlink: check again.
        let canon = std::fs::canonicalize(parent)?;
        if !canon.starts_with(root) {
            return Err(refused(path, "its folder resolves outside the project"));
        }
    }
    if full.is_dir() {
        return Err(refused(path, "it is a directory"));
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&full)?;
    f.write_all(data)?;
    Ok(())
}

/// Deletes a file; false when it did not exist (blocking).
pub fn delete(root: &Path, path: &ProjectPath) -> Result<bool> {
    if path.is_in_ignored_dir() {
        return Err(refused(
            path,
            "node_modules, dist, .git and .vite are managed by the sandbox, not source",
        ));
    }
    let full = resolve(root, path, &[])?;
    if !full.starts_with(root) {
        return Err(refused(path, "it resolves outside the project"));
    }
    match std::fs::symlink_metadata(&full) {
        Ok(m) if m.is_dir() => Err(refused(
            path,
            "it is a directory; delete the files in it one by one",
        )),
        Ok(_) => {
            std::fs::remove_file(&full)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Source files under `root`: gitignore-aware, never the ignored directories,
/// no symlinks, sorted by path (blocking).
pub fn list(root: &Path) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .ignore(false)
        .parents(false)
        .follow_links(false)
        .filter_entry(|e| {
            // node_modules is usually a symlink (not a dir): match it by name too.
            let name = e.file_name().to_string_lossy();
            let ignored_dir =
                e.file_type().is_some_and(|t| t.is_dir()) && IGNORED_DIRS.contains(&name.as_ref());
            e.depth() == 0 || !(ignored_dir || name == "node_modules")
        })
        .build();
    for entry in walker {
        let entry = entry.map_err(|e| Error::Sandbox(format!("listing files: {e}")))?;
        let Some(ft) = entry.file_type() else {
            continue;
        };
        if !ft.is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .map_err(|e| Error::Internal(format!("walk: {e}")))?;
        let rel = rel.to_string_lossy().replace('\\', "/");
        let meta = entry
            .metadata()
            .map_err(|e| Error::Sandbox(format!("listing files: {e}")))?;
        out.push((rel, entry.path().to_path_buf(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// [`list`] as API entries.
pub fn list_entries(root: &Path) -> Result<Vec<FileEntry>> {
    Ok(list(root)?
        .into_iter()
        .map(|(path, _, m)| FileEntry {
            path,
            size: m.len(),
        })
        .collect())
}

/// Reads every listed file.
pub fn export(root: &Path) -> Result<SourceTree> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    for (path, full, meta) in list(root)? {
        files.push(SourceFile {
            path,
            data: std::fs::read(&full)?,
            executable: meta.permissions().mode() & 0o111 != 0,
        });
    }
    Ok(SourceTree { files })
}

/// Checks every path of a tree to import (what [`import`] refuses, refused
/// before anything is written or sent).
pub fn check_import(tree: &SourceTree) -> Result<Vec<(ProjectPath, &SourceFile)>> {
    let mut parsed = Vec::with_capacity(tree.files.len());
    for f in &tree.files {
        let p = ProjectPath::parse(&f.path)?;
        if p.is_in_ignored_dir() {
            return Err(Error::InvalidInput(format!(
                "{} is not source and cannot be imported",
                f.path
            )));
        }
        parsed.push((p, f));
    }
    Ok(parsed)
}

/// Replaces the source tree: removes listed files that `tree` lacks, writes the rest.
pub fn import(root: &Path, tree: &SourceTree) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let parsed = check_import(tree)?;
    let keep: std::collections::HashSet<&str> = parsed.iter().map(|(p, _)| p.as_str()).collect();
    for (rel, full, _) in list(root)? {
        if !keep.contains(rel.as_str()) {
            std::fs::remove_file(full)?;
        }
    }
    for (p, f) in parsed {
        let mode = if f.executable { 0o755 } else { 0o644 };
        // Leave identical files alone: rewriting vite.config.ts or package.json
        // makes a running Vite restart, and a page loading modules right then
        // breaks (a restore would otherwise touch every file).
        let unchanged = resolve(root, &p, &[]).ok().is_some_and(|full| {
            std::fs::symlink_metadata(&full)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o777 == mode)
                && std::fs::read(&full).is_ok_and(|d| d == f.data)
        });
        if unchanged {
            continue;
        }
        write(root, &p, &f.data)?;
        let full = resolve(root, &p, &[])?;
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ProjectPath {
        ProjectPath::parse(s).unwrap()
    }

    #[test]
    fn refuses_symlink_escapes_and_writes_nothing_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), b"secret").unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("esc")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("leak.txt")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::os::unix::fs::symlink(root.join("src"), root.join("inner")).unwrap();

        for path in ["esc/secret.txt", "leak.txt"] {
            let e = read(&root, &p(path), &[]).unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{path}: {e}");
            assert!(e.to_string().contains("outside the project"));
            let e = write(&root, &p(path), b"pwned").unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{path}: {e}");
            let e = delete(&root, &p(path)).unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{path}: {e}");
        }
        let e = write(&root, &p("esc/new/deep.txt"), b"x").unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)));
        assert_eq!(
            std::fs::read(outside.join("secret.txt")).unwrap(),
            b"secret"
        );
        let names: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
        assert_eq!(names.len(), 1, "something was created outside the root");

        // A symlink that stays inside is fine.
        write(&root, &p("inner/a.ts"), b"1").unwrap();
        assert_eq!(read(&root, &p("src/a.ts"), &[]).unwrap(), b"1");
        assert!(delete(&root, &p("inner/a.ts")).unwrap());
        assert!(!delete(&root, &p("inner/a.ts")).unwrap());
    }

    #[test]
    fn lists_source_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        for f in [
            "src/App.tsx",
            "node_modules/x/index.js",
            "dist/a.js",
            ".vite/deps/a.js",
            ".git/HEAD",
            "src/node_modules/y.js",
            "notes.log",
            ".gitignore",
        ] {
            let full = root.join(f);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, if f == ".gitignore" { "*.log\n" } else { "x" }).unwrap();
        }
        let listed: Vec<String> = list_entries(&root)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(listed, vec![".gitignore", "src/App.tsx"]);
    }
}
