//! One warm headless Chromium per host, and the page check it runs.
//!
//! [`Browser`] finds Chromium (`APNA_CHROMIUM`, Debian's headless shell,
//! `/usr/bin/chromium`, or a Chromium on `PATH`, headless shells first: a
//! check costs the old headless shell 0.5 s of CPU, the full browser's new
//! headless mode 1.3 s), starts it on the first
//! check and keeps it running; every check gets a fresh browser context (no
//! cookies, storage or cache shared between projects or checks) whose network
//! reaches only the page's own origin. A browser that crashed is started
//! again on the next check. A missing browser is not an error: the check is
//! skipped with a note, logged once.
//!
//! The driver (`chromium`, cargo feature `browser`) speaks CDP through
//! chromiumoxide; without the feature the check is skipped with a note
//! saying how to turn it on.
//!
//! What one check collects while the page loads and settles: uncaught
//! exceptions and unhandled rejections (stack frames mapped back to the
//! project's `src/…:line:column` through the dev server's inline source
//! maps), `console.error` calls, failed requests for the page's own origin,
//! Vite's error overlay, and a root element with nothing visible in it.

#[cfg(feature = "browser")]
mod chromium;
#[cfg(feature = "browser")]
mod source_map;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::smoke::{Finding, ScreenshotImage, SmokeRequest};
use crate::error::Result;

/// Where Debian installs Chromium, the cheaper to run first: the old
/// headless shell (package `chromium-headless-shell`; the binary itself, not
/// `/usr/bin`'s wrapper script, which would outlive a kill of its child),
/// then the full browser.
const KNOWN: &[&str] = &[
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/bin/chromium",
];

/// Names Chromium goes by on `PATH`, headless shells first.
const NAMES: &[&str] = &[
    "chromium-headless-shell",
    "headless_shell",
    "chrome-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
];

/// How to start the browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserOptions {
    /// `APNA_CHROMIUM`: the executable; `None` searches the usual places.
    pub executable: Option<PathBuf>,
    /// Run without Chromium's own sandbox. `None`: only as root, where
    /// Chromium refuses to start with it. In a pod it is always off: the
    /// restricted profile allows neither user namespaces nor setuid, and the
    /// pod is the isolation.
    pub no_sandbox: Option<bool>,
}

/// Whether another check of the same dev server is likely to come next:
/// then a context and a page are opened ahead for it after this check.
/// While other projects' checks run at the same time, the next check is
/// most likely one of theirs, which would only discard that page (a context
/// and a renderer process, about a fifth of a check's CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextCheck {
    /// Open a page ahead for the same dev server.
    Likely,
    /// Other projects' checks run too; open nothing ahead.
    Elsewhere,
}

/// What one check saw.
#[derive(Debug)]
pub enum PageCheck {
    /// The page was looked at.
    Checked {
        /// Problems, not yet placed in the project's files.
        findings: Vec<Finding>,
        /// One per viewport asked for.
        screenshots: Vec<ScreenshotImage>,
    },
    /// No browser to look with, and why.
    Unavailable(String),
}

/// A Chromium started on first use and kept running (see the module doc).
pub struct Browser {
    options: BrowserOptions,
    missing_reported: AtomicBool,
    /// Checks running now (see [`NextCheck`]).
    in_flight: std::sync::Arc<AtomicUsize>,
    #[cfg(feature = "browser")]
    warm: tokio::sync::Mutex<Option<chromium::Warm>>,
}

/// Counts a check as running until dropped.
struct InFlight(std::sync::Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// A browser started with `options` on the first check.
    pub fn new(options: BrowserOptions) -> Browser {
        Browser {
            options,
            missing_reported: AtomicBool::new(false),
            in_flight: Default::default(),
            #[cfg(feature = "browser")]
            warm: tokio::sync::Mutex::new(None),
        }
    }

    /// The executable a check would start, or why there is none.
    pub fn executable(&self) -> std::result::Result<PathBuf, String> {
        find_chromium(self.options.executable.as_deref(), std::env::var_os("PATH"))
    }

    /// Whether this build can drive a browser at all (cargo feature `browser`).
    pub fn supported() -> bool {
        cfg!(feature = "browser")
    }

    /// Opens `url` (the project's dev server) and looks at it as `req` says.
    /// `Err` is the browser's own failure (it did not start, crashed or hung),
    /// never the page's: a page that throws or never finishes loading is a
    /// finding.
    pub async fn check(&self, url: &str, req: &SmokeRequest) -> Result<PageCheck> {
        if !Self::supported() {
            return Ok(self.unavailable(
                "this build of Apna has no browser check (build it with `--features browser`)"
                    .into(),
            ));
        }
        let exe = match self.executable() {
            Ok(exe) => exe,
            Err(why) => return Ok(self.unavailable(why)),
        };
        let others = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _running = InFlight(self.in_flight.clone());
        let next = if others > 0 {
            NextCheck::Elsewhere
        } else {
            NextCheck::Likely
        };
        self.check_with(&exe, url, req, next).await
    }

    #[cfg(feature = "browser")]
    async fn check_with(
        &self,
        exe: &Path,
        url: &str,
        req: &SmokeRequest,
        next: NextCheck,
    ) -> Result<PageCheck> {
        chromium::check(&self.warm, exe, &self.options, url, req, next).await
    }

    #[cfg(not(feature = "browser"))]
    async fn check_with(
        &self,
        _exe: &Path,
        _url: &str,
        _req: &SmokeRequest,
        _next: NextCheck,
    ) -> Result<PageCheck> {
        Ok(PageCheck::Unavailable(
            "no browser support in this build".into(),
        ))
    }

    /// Starts the browser now, so the first check does not wait for it.
    pub async fn warm_up(&self) -> Result<()> {
        #[cfg(feature = "browser")]
        if let Ok(exe) = self.executable() {
            chromium::warm(&self.warm, &exe, &self.options).await?;
        }
        Ok(())
    }

    /// Memory of the running browser (proportional set size of its process
    /// and every child, in bytes), `None` when none runs.
    pub async fn memory_bytes(&self) -> Option<u64> {
        #[cfg(feature = "browser")]
        {
            let pid = self
                .warm
                .lock()
                .await
                .as_ref()
                .and_then(chromium::Warm::pid)?;
            Some(process_tree_pss(pid))
        }
        #[cfg(not(feature = "browser"))]
        None
    }

    /// Stops the browser (it is started again by the next check).
    pub async fn close(&self) {
        #[cfg(feature = "browser")]
        chromium::close(&self.warm).await;
    }

    fn unavailable(&self, why: String) -> PageCheck {
        if !self.missing_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(reason = %why, "the browser check after Verify is skipped");
        }
        PageCheck::Unavailable(why)
    }
}

/// The Chromium to run: `explicit` when given (it must exist), else the
/// first of [`KNOWN`] installed, else the first of [`NAMES`] on `path`.
pub fn find_chromium(
    explicit: Option<&Path>,
    path: Option<std::ffi::OsString>,
) -> std::result::Result<PathBuf, String> {
    let known: Vec<&Path> = KNOWN.iter().map(Path::new).collect();
    find_among(explicit, &known, path)
}

fn find_among(
    explicit: Option<&Path>,
    known: &[&Path],
    path: Option<std::ffi::OsString>,
) -> std::result::Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!(
                "APNA_CHROMIUM={} is not a file; no browser check",
                p.display()
            ))
        };
    }
    if let Some(p) = known.iter().find(|p| p.is_file()) {
        return Ok(p.to_path_buf());
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    NAMES
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "no Chromium found (install Debian's `chromium-headless-shell` or set APNA_CHROMIUM); no browser check"
                .to_string()
        })
}

/// How long the dev server may take to say what it forgot.
#[cfg(feature = "browser")]
const FRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Asks the dev server at `origin` to forget what it built from files changed
/// since (`GET /@apna/fresh`, served by `vite-plugin-apna-source.js`), so the
/// page the check opens is built from the files as they are now and not from
/// what Vite's file watcher has yet to report. A dev server without the
/// endpoint (a project from before it) or one that does not answer in time
/// is checked as it is.
#[cfg(feature = "browser")]
pub(crate) async fn fresh_dev_server(origin: &str) {
    let url = format!("{}/@apna/fresh", origin.trim_end_matches('/'));
    let asked = async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(FRESH_TIMEOUT)
            .build()?;
        let resp = client.get(&url).send().await?.error_for_status()?;
        resp.json::<serde_json::Value>().await
    };
    match asked.await {
        Ok(v) => {
            tracing::debug!(invalidated = %v["invalidated"], "the dev server forgot changed files")
        }
        Err(e) => {
            tracing::debug!(error = %e, "the dev server could not be asked to forget changed files")
        }
    }
}

/// The summed proportional set size of `pid` and its descendants (Linux
/// `/proc`; 0 elsewhere). Chromium's processes share much memory, which PSS
/// divides between them instead of counting it in each.
pub fn process_tree_pss(pid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut parent_of = std::collections::HashMap::new();
    for e in entries.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if let Some(pp) = ppid {
            parent_of.insert(p, pp);
        }
    }
    let in_tree = |mut p: u32| {
        for _ in 0..64 {
            if p == pid {
                return true;
            }
            match parent_of.get(&p) {
                Some(&pp) if pp != 0 => p = pp,
                _ => return false,
            }
        }
        false
    };
    parent_of
        .keys()
        .copied()
        .filter(|p| in_tree(*p))
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_browser_must_exist() {
        let err = find_chromium(Some(Path::new("/nope/chromium")), None).unwrap_err();
        assert!(err.contains("APNA_CHROMIUM=/nope/chromium"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("chromium-headless-shell");
        std::fs::write(&exe, "").unwrap();
        assert_eq!(find_chromium(Some(&exe), None).unwrap(), exe);
        let on_path = Some(dir.path().as_os_str().to_owned());
        assert_eq!(find_among(None, &[], on_path.clone()).unwrap(), exe);
        assert!(find_among(None, &[], Some("/nowhere".into())).is_err());
    }

    #[test]
    fn the_headless_shell_is_preferred_to_the_full_browser() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
            p
        };
        let full = put("bin/chromium");
        let path = Some(dir.path().join("bin").into_os_string());
        assert_eq!(find_among(None, &[], path.clone()).unwrap(), full);
        let shell_on_path = put("bin/chromium-headless-shell");
        assert_eq!(find_among(None, &[], path.clone()).unwrap(), shell_on_path);
        // Installed where Debian puts it, the shell wins over both on PATH.
        let shell = dir.path().join("lib/chromium-headless-shell");
        let known = [shell.as_path(), full.as_path()];
        assert_eq!(find_among(None, &known, path.clone()).unwrap(), full);
        put("lib/chromium-headless-shell");
        assert_eq!(find_among(None, &known, path).unwrap(), shell);
    }
}
