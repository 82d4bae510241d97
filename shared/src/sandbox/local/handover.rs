//! Handing the warm spare to a sleeping project: its files go into the
//! spare's directory, whose dev server is already running, and the two
//! directories swap places.
//!
//! A light-sleep wake otherwise costs a Vite start (~0.45 s of CPU, seconds
//! under load). Under bubblewrap the spare's Vite sees its directory at the
//! fixed workspace path whatever it is called outside, so a sleeping project
//! of the spare's dependencies can take over that running server, as a create
//! does. The steps, all reversible until the last:
//!
//! 1. the project *fits*: its `node_modules` and `.vite/deps` are the same
//!    shared links as the spare's, its dependencies in `package.json` and its
//!    lock file are the spare's, and so is every file Vite reads only at
//!    start (config, `.env*`, `tsconfig*`): a server that started on other inputs would
//!    not be the one a cold start gives;
//! 2. the project's sources are brought into the spare's directory exactly
//!    (new files hard-linked, changed ones rewritten in place so Vite's watcher
//!    sees a change, files the project lacks deleted); the project's
//!    directory is not touched;
//! 3. the project's state that is not source (`.git`, `.apna-build` with the
//!    TypeScript build info, `dist`, Vite's other cache entries) is moved over
//!    by rename;
//! 4. one `renameat2(RENAME_EXCHANGE)` swaps the two directories: the project's
//!    path now holds the served directory, the spare's path the old copy,
//!    which the caller removes. There is no moment at which the project's path
//!    is missing.
//!
//! A failure before 4 moves the state back and leaves the project's
//! directory as it was, so the caller falls back to a cold start. Should the
//! process die between 3 and 4, a marker next to the spare's directory names
//! the project, and [`recover`] (run on the next start, before leftover
//! spares are removed) moves the state home. Callers
//! hold the workspace lock: every writer of a project's files (a run's tools,
//! imports, publish) first ensures the sandbox, which waits for that lock.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use super::template::{SHARED_FILES, VITE_DEPS_LINK};

/// Top-level directories that are the project's state, not source: moved
/// whole, never compared file by file.
const STATE_DIRS: &[&str] = &[".git", ".apna-build", "dist"];

/// Vite's cache directory (`cacheDir` of the starters); its `deps` is the
/// shared pre-bundle link.
const VITE_CACHE: &str = ".vite";

/// While the spare's directory holds a project's state, a file next to it
/// (`.spare-…` + this) names the project's directory. Next to it, not in it:
/// a project's own processes can write inside its directory, never beside.
const MARKER_SUFFIX: &str = ".handover";

/// The marker of spare directory `spare`.
pub(super) fn marker_of(spare: &Path) -> PathBuf {
    let mut name = spare.as_os_str().to_os_string();
    name.push(MARKER_SUFFIX);
    PathBuf::from(name)
}

/// Whether directory entry `name` is a hand-over marker.
pub(super) fn is_marker(name: &str) -> bool {
    name.ends_with(MARKER_SUFFIX)
}

/// Why a project did not take the spare.
#[derive(Debug)]
pub(super) enum Refused {
    /// The project's dependencies or start-up inputs are not the spare's.
    DoesNotFit(String),
    /// A step failed; the project's directory is as it was.
    Failed(std::io::Error),
    /// A step failed and moving the project's state back failed too: the
    /// spare's directory holds some of it and must not be removed.
    StateStranded(std::io::Error),
}

/// A step the tests make fail (see [`FaultPoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverFault {
    /// After the sources were brought into the spare's directory.
    AfterSources = 1,
    /// After the state directories were moved.
    AfterState = 2,
    /// The directory swap itself.
    Exchange = 3,
    /// The process dies after the state was moved (nothing is undone).
    #[cfg(test)]
    CrashAfterState = 4,
}

/// One armed [`HandoverFault`], consumed by the next hand-over.
#[derive(Debug, Default)]
pub(super) struct FaultPoint(AtomicU8);

impl FaultPoint {
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    pub(super) fn arm(&self, fault: HandoverFault) {
        self.0.store(fault as u8, Ordering::SeqCst);
    }

    fn fire(&self, at: HandoverFault) -> std::io::Result<()> {
        if self
            .0
            .compare_exchange(at as u8, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Err(std::io::Error::other(format!("injected fault {at:?}")));
        }
        Ok(())
    }
}

/// Moves the project at `project` into the running spare's directory `spare`
/// and swaps the two (blocking). On success `spare` holds the project's old
/// directory.
pub(super) fn move_in(project: &Path, spare: &Path, faults: &FaultPoint) -> Result<(), Refused> {
    if let Some(why) = misfit(project, spare) {
        return Err(Refused::DoesNotFit(why));
    }
    sync_sources(project, spare)
        .and_then(|()| faults.fire(HandoverFault::AfterSources))
        .map_err(Refused::Failed)?;
    let marker = marker_of(spare);
    std::fs::write(&marker, project.as_os_str().as_bytes()).map_err(Refused::Failed)?;
    let moved = match move_state(project, spare) {
        Ok(moved) => moved,
        Err(e) => {
            let _ = std::fs::remove_file(&marker);
            return Err(Refused::Failed(e));
        }
    };
    #[cfg(test)]
    faults
        .fire(HandoverFault::CrashAfterState)
        .map_err(Refused::Failed)?;
    let swapped = faults
        .fire(HandoverFault::AfterState)
        .and_then(|()| faults.fire(HandoverFault::Exchange))
        .and_then(|()| exchange(project, spare));
    if let Err(e) = swapped {
        return match undo(&moved) {
            Ok(()) => {
                let _ = std::fs::remove_file(&marker);
                Err(Refused::Failed(e))
            }
            Err(undo_err) => Err(Refused::StateStranded(std::io::Error::other(format!(
                "{e}; moving the state back: {undo_err}"
            )))),
        };
    }
    let _ = std::fs::remove_file(&marker);
    Ok(())
}

/// Moves project state that an interrupted hand-over left in the spare
/// directory `spare` back to its project, then removes the marker
/// (blocking). False when some of it could not be moved: `spare` must then
/// be kept.
pub(super) fn recover(spare: &Path) -> bool {
    let marker = marker_of(spare);
    let Ok(project) = std::fs::read(&marker) else {
        return true;
    };
    let project = PathBuf::from(std::ffi::OsStr::from_bytes(&project));
    // Only ever a sibling: the projects directory holds both.
    if project.parent() != spare.parent() {
        tracing::error!(marker = %marker.display(), "hand-over marker names a directory elsewhere; ignored");
        let _ = std::fs::remove_file(&marker);
        return true;
    }
    let mut entries: Vec<PathBuf> = STATE_DIRS.iter().map(PathBuf::from).collect();
    if let Ok(cache) = std::fs::read_dir(spare.join(VITE_CACHE)) {
        for e in cache.flatten() {
            let name = e.file_name();
            if name != "deps" {
                entries.push(Path::new(VITE_CACHE).join(name));
            }
        }
    }
    let mut whole = true;
    for rel in entries {
        let (from, to) = (spare.join(&rel), project.join(&rel));
        if std::fs::symlink_metadata(&from).is_err() || std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        if let Err(e) = std::fs::rename(&from, &to) {
            tracing::error!(error = %e, from = %from.display(), to = %to.display(), "could not move a project's state back after an interrupted hand-over");
            whole = false;
        } else {
            tracing::warn!(to = %to.display(), "moved a project's state back after an interrupted hand-over");
        }
    }
    if whole {
        let _ = std::fs::remove_file(&marker);
    }
    whole
}

/// Why the project cannot take the spare, or `None` when it can.
fn misfit(project: &Path, spare: &Path) -> Option<String> {
    let shared = |rel: &str| {
        let p = std::fs::symlink_metadata(project.join(rel));
        let s = std::fs::symlink_metadata(spare.join(rel));
        match (p, s) {
            (Ok(p), Ok(s)) if p.is_symlink() && s.is_symlink() => {
                std::fs::read_link(project.join(rel)).ok()
                    == std::fs::read_link(spare.join(rel)).ok()
            }
            (Err(p), Err(s)) => {
                p.kind() == std::io::ErrorKind::NotFound && s.kind() == std::io::ErrorKind::NotFound
            }
            _ => false,
        }
    };
    for rel in ["node_modules", VITE_DEPS_LINK] {
        if !shared(rel) {
            return Some(format!("its {rel} is not the shared one"));
        }
    }
    match (
        std::fs::read(project.join("package.json")),
        std::fs::read(spare.join("package.json")),
    ) {
        (Ok(p), Ok(s)) if !crate::starter::dependencies_differ(&p, &s) => {}
        _ => return Some("its package.json lists other dependencies".into()),
    }
    let mut names: HashSet<std::ffi::OsString> = HashSet::new();
    for dir in [project, spare] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Some(format!("{} cannot be read", dir.display()));
        };
        for e in entries.flatten() {
            if read_at_start(&e.file_name().to_string_lossy()) {
                names.insert(e.file_name());
            }
        }
    }
    for name in names {
        let p = std::fs::read(project.join(&name)).ok();
        let s = std::fs::read(spare.join(&name)).ok();
        if p != s {
            return Some(format!("its {} differs", name.to_string_lossy()));
        }
    }
    None
}

/// Top-level files a dev server reads once at start, or restarts or drops
/// its caches for (`tsconfig*`).
fn read_at_start(name: &str) -> bool {
    name == "package-lock.json"
        || name.starts_with(".env")
        || [
            "vite.config.",
            "postcss.config.",
            "tailwind.config.",
            "tsconfig",
        ]
        .iter()
        .any(|p| name.starts_with(p))
        || SHARED_FILES.contains(&name)
}

/// Whether the walk of sources skips top-level entry `name`.
fn not_source(name: &str) -> bool {
    name == "node_modules" || name == VITE_CACHE || STATE_DIRS.contains(&name)
}

/// Every entry under `root` except the non-source top-level ones, relative,
/// parents before children; symlinks are entries, never followed.
fn walk(root: &Path) -> std::io::Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel))? {
            let e = e?;
            if rel.as_os_str().is_empty() && not_source(&e.file_name().to_string_lossy()) {
                continue;
            }
            let r = rel.join(e.file_name());
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                stack.push(r.clone());
            }
            out.push((r, meta));
        }
    }
    Ok(out)
}

/// Makes the sources under `to` exactly those under `from`, rewriting only
/// what differs.
fn sync_sources(from: &Path, to: &Path) -> std::io::Result<()> {
    let entries = walk(from)?;
    let wanted: HashSet<&Path> = entries.iter().map(|(r, _)| r.as_path()).collect();
    for (rel, meta) in &entries {
        let (src, dst) = (from.join(rel), to.join(rel));
        let there = std::fs::symlink_metadata(&dst).ok();
        if meta.is_dir() {
            match there {
                Some(t) if t.is_dir() => {}
                Some(_) => {
                    std::fs::remove_file(&dst)?;
                    std::fs::create_dir(&dst)?;
                }
                None => std::fs::create_dir(&dst)?,
            }
            std::fs::set_permissions(&dst, meta.permissions())?;
        } else if meta.is_symlink() {
            let target = std::fs::read_link(&src)?;
            if there.as_ref().is_some_and(|t| t.is_symlink())
                && std::fs::read_link(&dst).ok().as_ref() == Some(&target)
            {
                continue;
            }
            remove(&dst, there.as_ref())?;
            std::os::unix::fs::symlink(&target, &dst)?;
        } else if meta.is_file() {
            match there {
                Some(t) if t.dev() == meta.dev() && t.ino() == meta.ino() => {}
                // Rewritten in place: Vite's watcher sees a change, not a
                // delete and an add.
                Some(t) if t.is_file() => {
                    if t.len() != meta.len() || std::fs::read(&dst)? != std::fs::read(&src)? {
                        std::fs::write(&dst, std::fs::read(&src)?)?;
                    }
                    if t.permissions() != meta.permissions() {
                        std::fs::set_permissions(&dst, meta.permissions())?;
                    }
                }
                t => {
                    remove(&dst, t.as_ref())?;
                    if std::fs::hard_link(&src, &dst).is_err() {
                        std::fs::copy(&src, &dst)?;
                    }
                }
            }
        }
    }
    // What the project does not have (a starter file it deleted) goes.
    for (rel, meta) in walk(to)? {
        if !wanted.contains(rel.as_path()) {
            let p = to.join(&rel);
            if std::fs::symlink_metadata(&p).is_ok() {
                remove(&p, Some(&meta))?;
            }
        }
    }
    Ok(())
}

fn remove(p: &Path, meta: Option<&std::fs::Metadata>) -> std::io::Result<()> {
    match meta {
        Some(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Some(_) => std::fs::remove_file(p),
        None => Ok(()),
    }
}

/// Moves the project's state entries into `to`; returns (from, to) pairs
/// for [`undo`]. On failure what was moved is moved back.
fn move_state(from: &Path, to: &Path) -> std::io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut pairs: Vec<(PathBuf, PathBuf)> = STATE_DIRS
        .iter()
        .map(|n| (from.join(n), to.join(n)))
        .collect();
    // Vite's other cache entries; where the spare's server made its own of
    // the same name, that one (the running server's) stays.
    if let Ok(entries) = std::fs::read_dir(from.join(VITE_CACHE)) {
        for e in entries.flatten() {
            if e.file_name() != "deps" {
                let dst = to.join(VITE_CACHE).join(e.file_name());
                if std::fs::symlink_metadata(&dst).is_err() {
                    pairs.push((e.path(), dst));
                }
            }
        }
    }
    let mut moved = Vec::new();
    for (src, dst) in pairs {
        if std::fs::symlink_metadata(&src).is_err() {
            continue;
        }
        let step = remove(&dst, std::fs::symlink_metadata(&dst).ok().as_ref())
            .and_then(|()| std::fs::rename(&src, &dst));
        if let Err(e) = step {
            return match undo(&moved) {
                Ok(()) => Err(e),
                Err(u) => Err(std::io::Error::other(format!(
                    "{e}; moving the state back: {u}"
                ))),
            };
        }
        moved.push((src, dst));
    }
    Ok(moved)
}

/// Moves state entries back where [`move_state`] found them.
fn undo(moved: &[(PathBuf, PathBuf)]) -> std::io::Result<()> {
    for (src, dst) in moved.iter().rev() {
        std::fs::rename(dst, src)?;
    }
    Ok(())
}

/// Swaps two directories atomically (`renameat2` with `RENAME_EXCHANGE`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = walk(root)
            .unwrap()
            .into_iter()
            .filter(|(_, m)| !m.is_dir())
            .map(|(r, m)| {
                let data = if m.is_symlink() {
                    std::fs::read_link(root.join(&r))
                        .unwrap()
                        .into_os_string()
                        .into_vec()
                } else {
                    std::fs::read(root.join(&r)).unwrap()
                };
                (r.display().to_string(), data)
            })
            .collect();
        out.sort();
        out
    }

    use std::os::unix::ffi::OsStringExt;

    fn write(root: &Path, rel: &str, data: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// A project and a spare of the same dependencies, differing in sources.
    fn pair() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(cache.join("node_modules")).unwrap();
        std::fs::create_dir_all(cache.join("deps")).unwrap();
        let (p, s) = (dir.path().join("p"), dir.path().join("s"));
        for root in [&p, &s] {
            std::fs::create_dir_all(root.join(VITE_CACHE)).unwrap();
            std::os::unix::fs::symlink(cache.join("node_modules"), root.join("node_modules"))
                .unwrap();
            std::os::unix::fs::symlink(cache.join("deps"), root.join(VITE_DEPS_LINK)).unwrap();
            write(root, "package.json", r#"{"dependencies":{"react":"19"}}"#);
            write(root, "vite.config.ts", "export default {}\n");
            write(root, "src/main.tsx", "main\n");
        }
        write(&s, "src/App.tsx", "starter app\n");
        write(&s, "src/components/ui/button.tsx", "button\n");
        write(&p, "src/App.tsx", "project app\n");
        write(&p, "src/pages/Home.tsx", "home\n");
        write(&p, ".apna-build/tsc.tsbuildinfo", "info\n");
        write(&p, ".git/HEAD", "ref\n");
        write(&p, ".vite/other", "cache\n");
        std::os::unix::fs::symlink("App.tsx", p.join("src/link.tsx")).unwrap();
        (dir, p, s)
    }

    #[test]
    fn the_project_takes_the_spare_directory_exactly() {
        let (_dir, p, s) = pair();
        let before = tree(&p);
        move_in(&p, &s, &FaultPoint::default()).unwrap();
        assert_eq!(tree(&p), before);
        assert!(!p.join("src/components/ui/button.tsx").exists());
        assert_eq!(
            std::fs::read(p.join(".apna-build/tsc.tsbuildinfo")).unwrap(),
            b"info\n"
        );
        assert_eq!(std::fs::read(p.join(".git/HEAD")).unwrap(), b"ref\n");
        assert_eq!(std::fs::read(p.join(".vite/other")).unwrap(), b"cache\n");
        assert!(std::fs::read_link(p.join(VITE_DEPS_LINK)).is_ok());
        // The old directory, now at the spare's path, is what the caller removes.
        assert!(s.join("src/App.tsx").exists());
    }

    #[test]
    fn other_dependencies_or_config_do_not_fit() {
        let (_dir, p, s) = pair();
        write(
            &p,
            "package.json",
            r#"{"dependencies":{"react":"19","zod":"4"}}"#,
        );
        let before = tree(&p);
        assert!(matches!(
            move_in(&p, &s, &FaultPoint::default()),
            Err(Refused::DoesNotFit(_))
        ));
        assert_eq!(tree(&p), before);

        let (_dir, p, s) = pair();
        write(&p, ".env", "VITE_X=1\n");
        assert!(matches!(
            move_in(&p, &s, &FaultPoint::default()),
            Err(Refused::DoesNotFit(_))
        ));

        let (_dir, p, s) = pair();
        std::fs::remove_file(p.join("node_modules")).unwrap();
        std::fs::create_dir(p.join("node_modules")).unwrap();
        assert!(matches!(
            move_in(&p, &s, &FaultPoint::default()),
            Err(Refused::DoesNotFit(_))
        ));
    }

    #[test]
    fn a_failed_step_leaves_the_project_as_it_was() {
        for fault in [
            HandoverFault::AfterSources,
            HandoverFault::AfterState,
            HandoverFault::Exchange,
        ] {
            let (_dir, p, s) = pair();
            let before = tree(&p);
            let state = |root: &Path| {
                [".apna-build/tsc.tsbuildinfo", ".git/HEAD", ".vite/other"]
                    .map(|f| std::fs::read(root.join(f)).ok())
            };
            let state_before = state(&p);
            let faults = FaultPoint::default();
            faults.arm(fault);
            assert!(
                matches!(move_in(&p, &s, &faults), Err(Refused::Failed(_))),
                "{fault:?}"
            );
            assert_eq!(tree(&p), before, "{fault:?}");
            assert_eq!(state(&p), state_before, "{fault:?}");
            assert!(!marker_of(&s).exists());
        }
    }

    #[test]
    fn a_hand_over_interrupted_by_a_crash_is_recovered_on_the_next_start() {
        let (dir, p, s) = pair();
        let spare = dir.path().join(".spare-0000abcd");
        std::fs::rename(&s, &spare).unwrap();
        let s = spare;
        let faults = FaultPoint::default();
        faults.arm(HandoverFault::CrashAfterState);
        assert!(move_in(&p, &s, &faults).is_err());
        assert!(
            !p.join(".git/HEAD").exists(),
            "the crash came after the state moved"
        );
        assert!(marker_of(&s).exists());
        // The next start: leftovers are removed once their state went home.
        super::super::spare::remove_leftovers(dir.path(), &dir.path().join("logs"));
        assert!(!s.exists() && !marker_of(&s).exists());
        assert_eq!(std::fs::read(p.join(".git/HEAD")).unwrap(), b"ref\n");
        assert_eq!(
            std::fs::read(p.join(".apna-build/tsc.tsbuildinfo")).unwrap(),
            b"info\n"
        );
        assert_eq!(std::fs::read(p.join(".vite/other")).unwrap(), b"cache\n");
        assert!(!marker_of(&s).exists());
        // A spare without a marker has nothing to give back.
        let (_dir, _p, s) = pair();
        assert!(recover(&s));
    }
}
