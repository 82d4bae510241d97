//! The starters and their installed dependencies.
//!
//! `npm ci` runs once per `package-lock.json` (the cache is keyed by its hash),
//! never per project: a project gets its starter's source files plus a
//! `node_modules` symlink into the cache. Starters built on another one
//! (`base` in `template.json`) share its lock file and so its cache entry.
//! Measured on the 2-core dev machine (46 packages, 1,684 files, 94 MB):
//! symlink ≈ 0 ms, hardlink tree 40 ms, full copy 250 ms, reflink unsupported
//! on ext4. Vite dev, `vite build` and `tsc` all work through the symlink
//! (Vite's own cache is kept in the project's `.vite`, see the starter's
//! `vite.config.ts`). Before a package-manager command the link is replaced by
//! a private copy ([`detach_node_modules`]) so a project's `npm install` never
//! changes the shared cache.
//!
//! Vite's dependency pre-bundling is shared the same way ([`prebundle`]): it
//! runs once per lock file and Vite config, and each project's `.vite/deps` is
//! a symlink to the result. Vite accepts a pre-bundle only for the project
//! root it was made for, so this works where every project is mounted at the
//! same path: under bubblewrap, at [`PreparedTemplates::workspace`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::limits::Limits;
use super::process::{project_command, Confinement, Isolation, ProcessSpec};
use super::workspace::DEFAULT_DISK_BUDGET;
use crate::error::{Error, Result};
use crate::sandbox::{SourceFile, SourceTree};
use crate::starter::{self, Starter};

/// Where Vite writes its bundled `vite.config.ts` (inside `node_modules`); it
/// exists in the cache so bubblewrap can mount a private tmpfs over it.
pub const VITE_TEMP_DIR: &str = ".vite-temp";

/// Directories of a starter that are never copied into the cache or a project.
const SKIP_DIRS: &[&str] = &["node_modules", "dist", ".vite", ".git", ".apna-build"];

/// A project's link to the shared pre-bundle (Vite's `cacheDir` is `.vite`).
pub const VITE_DEPS_LINK: &str = ".vite/deps";

/// The starters in this repository (`images/preview/templates`), for
/// `apna serve` run from a checkout and for tests.
pub fn bundled_templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/preview/templates")
}

/// What [`prepare_templates`] is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateProgress {
    /// The dependencies for this lock file are already installed.
    Cached {
        /// Where they are.
        dir: PathBuf,
    },
    /// `npm ci` started (first run, or the lock file changed).
    Installing {
        /// Where they go.
        dir: PathBuf,
    },
    /// One line of `npm ci` output.
    Output(String),
    /// `npm ci` finished.
    Installed {
        /// How long it took.
        elapsed: Duration,
    },
    /// Vite started pre-bundling the dependencies (once per lock file and config).
    Prebundling {
        /// Where the result goes.
        dir: PathBuf,
    },
    /// The pre-bundle is ready.
    Prebundled {
        /// How long it took.
        elapsed: Duration,
    },
}

/// A starter ready to instantiate: its source files and installed `node_modules`.
#[derive(Debug, Clone)]
pub struct PreparedTemplate {
    /// The starter's name (`app`, `minimal`, …).
    pub name: String,
    /// The source files (small: everything but dependencies), base files included.
    pub files: SourceTree,
    /// `{cache}/{hash}/node_modules`, installed by `npm ci`.
    pub node_modules: PathBuf,
    /// First 16 hex digits of the SHA-256 of `package-lock.json` and `package.json`.
    pub hash: String,
    /// `{cache}/{hash}/vite/{config hash}/deps`: Vite's pre-bundled
    /// dependencies for a project mounted at the workspace path; `None` where
    /// there is no bubblewrap (Vite then bundles per project, as before).
    pub vite_deps: Option<PathBuf>,
}

/// Every starter, prepared.
#[derive(Debug, Clone)]
pub struct PreparedTemplates {
    /// In catalog order: the default starter first.
    pub starters: Vec<PreparedTemplate>,
    /// `{cache}/workspace`: the path every project is mounted at inside
    /// bubblewrap, the same for every provider sharing this cache, so the
    /// pre-bundles made here are valid in every project.
    pub workspace: PathBuf,
}

impl PreparedTemplates {
    /// The starter called `name`.
    pub fn get(&self, name: &str) -> Result<&PreparedTemplate> {
        self.starters
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown template {name:?}; available: {}",
                    self.starters
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The default starter (the warm spare is one of these).
    pub fn default_template(&self) -> &PreparedTemplate {
        // `prepare_templates` never returns an empty list.
        &self.starters[0]
    }
}

/// Reads every starter under `templates_dir` and makes sure each lock file's
/// dependencies are installed (and, with bubblewrap, pre-bundled) under
/// `cache_root`, once. Progress goes to `progress`.
pub async fn prepare_templates(
    templates_dir: &Path,
    cache_root: &Path,
    progress: &(dyn Fn(TemplateProgress) + Send + Sync),
) -> Result<PreparedTemplates> {
    tokio::fs::create_dir_all(cache_root).await?;
    let cache_root = tokio::fs::canonicalize(cache_root).await?;
    let workspace = cache_root.join("workspace");
    tokio::fs::create_dir_all(&workspace).await?;
    let isolation = Isolation::detect();
    let mut installed: HashMap<String, PathBuf> = HashMap::new();
    let mut prebundled: HashMap<(String, String), Option<PathBuf>> = HashMap::new();
    let mut out = Vec::new();
    for s in starter::starters()? {
        let files = read_starter_files(templates_dir, s).await?;
        let file = |name: &str| {
            files
                .files
                .iter()
                .find(|f| f.path == name)
                .map(|f| f.data.clone())
                .ok_or_else(|| {
                    Error::Sandbox(format!(
                        "template {} (in {}) has no {name}",
                        s.name,
                        templates_dir.display()
                    ))
                })
        };
        let (package, lock) = (file("package.json")?, file("package-lock.json")?);
        let mut h = Sha256::new();
        h.update(&lock);
        h.update(&package);
        let hash = hex::encode(h.finalize())[..16].to_string();
        let node_modules = match installed.get(&hash) {
            Some(nm) => nm.clone(),
            None => {
                let nm = install(&cache_root, &hash, &package, &lock, progress).await?;
                installed.insert(hash.clone(), nm.clone());
                nm
            }
        };
        let config = file("vite.config.ts").unwrap_or_default();
        // Vite's own hash of a pre-bundle covers absolute paths (the project
        // root, `node_modules`' real path in aliases): a cache copied or moved
        // elsewhere must bundle again once, not have every dev server
        // re-optimise at each start (measured: 560 MB instead of 190 MB RSS).
        let mut ch = Sha256::new();
        ch.update(&config);
        ch.update(workspace.as_os_str().as_encoded_bytes());
        let config_hash = hex::encode(ch.finalize())[..16].to_string();
        let key = (hash.clone(), config_hash.clone());
        let vite_deps = match prebundled.get(&key) {
            Some(d) => d.clone(),
            None => {
                let d = match &isolation {
                    Isolation::Bubblewrap { .. } => {
                        let entry = CacheEntry {
                            isolation: &isolation,
                            cache_root: &cache_root,
                            workspace: &workspace,
                            files: &files,
                            node_modules: &node_modules,
                            dir: cache_root.join(&hash).join("vite").join(&config_hash),
                        };
                        let deps = entry.prebundle(progress).await?;
                        entry.seed_type_check().await;
                        Some(deps)
                    }
                    Isolation::None => None,
                };
                prebundled.insert(key, d.clone());
                d
            }
        };
        out.push(PreparedTemplate {
            name: s.name.clone(),
            files,
            node_modules,
            hash,
            vite_deps,
        });
    }
    if out.is_empty() {
        return Err(Error::Internal("there are no starters".into()));
    }
    Ok(PreparedTemplates {
        starters: out,
        workspace,
    })
}

/// Installs one lock file's dependencies into `{cache_root}/{hash}` unless
/// they are there; returns the `node_modules` path.
async fn install(
    cache_root: &Path,
    hash: &str,
    package: &[u8],
    lock: &[u8],
    progress: &(dyn Fn(TemplateProgress) + Send + Sync),
) -> Result<PathBuf> {
    let dir = cache_root.join(hash);
    let node_modules = dir.join("node_modules");
    if tokio::fs::metadata(dir.join(".complete")).await.is_ok() {
        progress(TemplateProgress::Cached { dir: dir.clone() });
        return Ok(node_modules);
    }
    // Two installers of one lock file (two `apna serve`s on one data dir, or
    // tests in parallel) would otherwise each remove the other's finished
    // directory while projects already link to it: one installs, the other
    // waits and then finds it complete.
    let _lock = InstallLock::acquire(cache_root.join(format!("{hash}.lock"))).await?;
    if tokio::fs::metadata(dir.join(".complete")).await.is_ok() {
        progress(TemplateProgress::Cached { dir: dir.clone() });
        return Ok(node_modules);
    }
    // Install next to the final place and rename, so a crash mid-install never
    // leaves a half-filled cache that looks complete.
    let staging = cache_root.join(format!(
        "{hash}.tmp-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    if tokio::fs::metadata(&staging).await.is_ok() {
        tokio::fs::remove_dir_all(&staging).await?;
    }
    tokio::fs::create_dir_all(&staging).await?;
    tokio::fs::write(staging.join("package.json"), package).await?;
    tokio::fs::write(staging.join("package-lock.json"), lock).await?;
    progress(TemplateProgress::Installing { dir: dir.clone() });
    let started = Instant::now();
    run_npm_ci(&staging, progress).await?;
    tokio::fs::create_dir_all(staging.join("node_modules").join(VITE_TEMP_DIR)).await?;
    tokio::fs::write(staging.join(".complete"), hash.as_bytes()).await?;
    if tokio::fs::metadata(&dir).await.is_ok() {
        // A previous attempt left an incomplete directory behind.
        tokio::fs::remove_dir_all(&dir).await?;
    }
    tokio::fs::rename(&staging, &dir).await?;
    progress(TemplateProgress::Installed {
        elapsed: started.elapsed(),
    });
    Ok(node_modules)
}

/// An exclusive advisory lock on a file, held until dropped (the kernel drops
/// it with the process too, so a crashed installer never blocks the next).
struct InstallLock(std::fs::File);

impl InstallLock {
    async fn acquire(path: PathBuf) -> Result<InstallLock> {
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(|e| Error::Internal(format!("template install lock: {e}")))??;
        Ok(InstallLock(file))
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The file name of a starter's type-check build info in its cache entry.
const TYPE_CHECK_SEED: &str = "tsc.tsbuildinfo";

/// One starter's entry in the template cache (one lock file and Vite
/// config): its dependency pre-bundle and type-check seed, both made by
/// running tools in a scratch copy of the starter mounted at `workspace`
/// exactly as projects are.
pub struct CacheEntry<'a> {
    /// How the tools are confined.
    pub isolation: &'a Isolation,
    /// The template cache (hidden from the tools).
    pub cache_root: &'a Path,
    /// Where every project (and so the scratch copy) is mounted.
    pub workspace: &'a Path,
    /// The starter's files.
    pub files: &'a SourceTree,
    /// The installed dependencies of its lock file.
    pub node_modules: &'a Path,
    /// The entry's directory: `deps` and the type-check seed go in it.
    pub dir: PathBuf,
}

impl CacheEntry<'_> {
    /// A fresh scratch directory name in the cache for `what`.
    fn scratch(&self, what: &str) -> PathBuf {
        self.cache_root.join(format!(
            "{what}.tmp-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    /// Runs `program` in the scratch copy `scratch`, confined as a project
    /// command without network and with the entry's `node_modules` read-only;
    /// `None` when it outlives `timeout`.
    async fn run_in_scratch(
        &self,
        scratch: &Path,
        private_dirs: &[PathBuf],
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Option<std::io::Result<std::process::Output>> {
        let read_only = [self.node_modules.to_path_buf()];
        let confinement = Confinement::without_cgroups(DEFAULT_DISK_BUDGET);
        let spec = ProcessSpec {
            project_dir: scratch,
            hidden_dir: self.cache_root,
            workspace: self.workspace,
            read_only_dirs: &read_only,
            private_dirs,
            env: &[],
            confinement: &confinement,
            limits: Limits::command(DEFAULT_DISK_BUDGET),
            cgroup: None,
            network: false,
            listen_fd: None,
        };
        let mut cmd = project_command(self.isolation, &spec, program, args);
        cmd.stdin(Stdio::null());
        tokio::time::timeout(timeout, cmd.output()).await.ok()
    }

    /// Writes the starter into `dir` (blocking, off the runtime).
    async fn materialize(&self, dir: &Path) -> Result<()> {
        let (tree, nm, dir) = (
            self.files.clone(),
            self.node_modules.to_path_buf(),
            dir.to_path_buf(),
        );
        tokio::task::spawn_blocking(move || {
            super::workspace::materialize(&tree, &nm, None, &dir.with_extension("creating"), &dir)
        })
        .await
        .map_err(|e| Error::Internal(format!("starter copy task: {e}")))?
    }

    /// Runs Vite's dependency optimiser once for a starter, in a scratch project
    /// mounted at `workspace` exactly as projects are, and keeps the result in
    /// `{dir}/deps` (returned). Nothing happens when it is already there.
    ///
    /// Vite accepts a cached pre-bundle when the lock file, the resolved config
    /// and the project root match (`_metadata.json` records their hash); a
    /// project whose packages change gets its own bundle from Vite, which
    /// replaces the `.vite/deps` link, never what it points to.
    pub async fn prebundle(
        &self,
        progress: &(dyn Fn(TemplateProgress) + Send + Sync),
    ) -> Result<PathBuf> {
        let dest = &self.dir;
        let deps = dest.join("deps");
        if tokio::fs::metadata(deps.join("_metadata.json"))
            .await
            .is_ok()
        {
            // A pre-bundle made by an older apna still has its maps.
            if let Err(e) = drop_source_maps(&deps).await {
                tracing::warn!(dir = %deps.display(), error = %e, "could not remove the pre-bundle's source maps");
            }
            return Ok(deps);
        }
        progress(TemplateProgress::Prebundling { dir: deps.clone() });
        let started = Instant::now();
        let scratch = self.scratch("prebundle");
        self.materialize(&scratch).await?;
        let private = [self.node_modules.join(VITE_TEMP_DIR)];
        let vite = self.workspace.join("node_modules/vite/bin/vite.js");
        let vite = vite.to_string_lossy();
        let out = self
            .run_in_scratch(
                &scratch,
                &private,
                "node",
                &[&vite, "optimize", "--logLevel", "warn"],
                Duration::from_secs(300),
            )
            .await;
        let result = match out {
            Some(Ok(o)) if o.status.success() => {
                let built = scratch.join(VITE_DEPS_LINK);
                drop_source_maps(&built).await?;
                tokio::fs::create_dir_all(dest).await?;
                match tokio::fs::rename(&built, &deps).await {
                    Ok(()) => Ok(()),
                    // Another process made the same pre-bundle first: use theirs.
                    Err(_)
                        if tokio::fs::metadata(deps.join("_metadata.json"))
                            .await
                            .is_ok() =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Some(Ok(o)) => Err(Error::Sandbox(format!(
                "pre-bundling the template's dependencies failed ({}):\n{}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ))),
            Some(Err(e)) => Err(Error::Sandbox(format!("could not run vite optimize: {e}"))),
            None => Err(Error::Sandbox("vite optimize timed out after 300 s".into())),
        };
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        result?;
        progress(TemplateProgress::Prebundled {
            elapsed: started.elapsed(),
        });
        Ok(deps)
    }

    /// Type-checks a starter once, in a scratch project mounted at `workspace`
    /// exactly as projects are, and keeps `tsc`'s build info in `{dir}` (see
    /// [`type_check_seed`]); a project made from the starter starts with a copy
    /// ([`super::workspace::materialize`]), so its first Verify re-checks only
    /// what the agent changed instead of every declaration file of React and
    /// the kit (0.55 s of CPU cold, 0.2 s from the seed). The build info holds
    /// paths relative to the project, the same in every project under
    /// bubblewrap, and `tsc` re-checks any file whose hash differs from it, so
    /// a seed from another starter of the same lock file only saves less. It
    /// comes from apna's own run over the pristine starter, never from a
    /// project's (hostile) files. Failing leaves no seed, which only costs time.
    pub async fn seed_type_check(&self) {
        let seed = self.dir.join(TYPE_CHECK_SEED);
        if tokio::fs::metadata(&seed).await.is_ok() {
            return;
        }
        let scratch = self.scratch("typecheck");
        if self.materialize(&scratch).await.is_ok() {
            let tsc = crate::sandbox::build_check::TSC_INCREMENTAL;
            let ran = self
                .run_in_scratch(&scratch, &[], "sh", &["-c", tsc], Duration::from_secs(120))
                .await;
            let built = scratch.join(crate::sandbox::build_check::TSC_BUILD_INFO);
            let kept = match ran {
                Some(Ok(_)) => match tokio::fs::create_dir_all(&self.dir).await {
                    Ok(()) => tokio::fs::rename(&built, &seed).await,
                    Err(e) => Err(e),
                },
                Some(Err(e)) => Err(e),
                None => Err(std::io::Error::other("tsc timed out")),
            };
            if let Err(e) = kept {
                tracing::warn!(error = %e, "no type-check seed for the starter; first Verifies check everything");
            }
        }
        let _ = tokio::fs::remove_dir_all(&scratch).await;
    }
}

/// Deletes a pre-bundle's source maps (`*.js.map`). The first time a dev
/// server serves a pre-bundled dependency it combines the dependency's map
/// with that of its own import rewrite and inlines the result (react-dom's
/// alone is 3 MB): 0.18 s of CPU per project on its first page, a third of
/// that page's cost (BENCHMARKS.md, #16). The maps only point into
/// `node_modules`, which Vite puts on DevTools' ignore list anyway; Vite
/// serves a dependency without a map as it is.
async fn drop_source_maps(deps: &Path) -> std::io::Result<()> {
    let mut dir = tokio::fs::read_dir(deps).await?;
    while let Some(entry) = dir.next_entry().await? {
        if entry.file_name().to_string_lossy().ends_with(".js.map") {
            match tokio::fs::remove_file(entry.path()).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Where [`CacheEntry::seed_type_check`] keeps a starter's type-check build
/// info: next to the pre-bundle `deps` of the same lock file and config.
pub fn type_check_seed(vite_deps: &Path) -> PathBuf {
    vite_deps.with_file_name(TYPE_CHECK_SEED)
}

/// The starters of the sandbox image (`/opt/apna/templates`), whose
/// dependencies were installed at build time into each starter's own
/// `node_modules` (a starter with a `base` uses its base's): no `npm ci`, no
/// pre-bundle (a pod has no bubblewrap), and nothing written.
pub async fn installed_templates(templates_dir: &Path) -> Result<PreparedTemplates> {
    let mut out = Vec::new();
    for s in starter::starters()? {
        let owner = s.base.as_deref().unwrap_or(&s.name);
        let node_modules = templates_dir.join(owner).join("node_modules");
        if !tokio::fs::metadata(node_modules.join("vite/package.json"))
            .await
            .is_ok_and(|m| m.is_file())
        {
            return Err(Error::Sandbox(format!(
                "starter {} has no installed dependencies ({} has no vite)",
                s.name,
                node_modules.display()
            )));
        }
        let files = read_starter_files(templates_dir, s).await?;
        out.push(PreparedTemplate {
            name: s.name.clone(),
            hash: lock_hash(&files)?,
            files,
            node_modules,
            vite_deps: None,
        });
    }
    if out.is_empty() {
        return Err(Error::Internal("there are no starters".into()));
    }
    Ok(PreparedTemplates {
        starters: out,
        workspace: templates_dir.to_path_buf(),
    })
}

/// First 16 hex digits of the SHA-256 of a starter's `package-lock.json` and `package.json`.
fn lock_hash(files: &SourceTree) -> Result<String> {
    let file = |name: &str| {
        files
            .files
            .iter()
            .find(|f| f.path == name)
            .map(|f| f.data.as_slice())
            .ok_or_else(|| Error::Sandbox(format!("a starter has no {name}")))
    };
    let mut h = Sha256::new();
    h.update(file("package-lock.json")?);
    h.update(file("package.json")?);
    Ok(hex::encode(h.finalize())[..16].to_string())
}

async fn run_npm_ci(dir: &Path, progress: &(dyn Fn(TemplateProgress) + Send + Sync)) -> Result<()> {
    let mut child = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--prefer-offline",
            "--loglevel=http",
        ])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::Sandbox(format!(
                "could not run npm (is Node.js installed and on PATH?): {e}"
            ))
        })?;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let mut tail: Vec<String> = Vec::new();
    let mut lines_out = out.map(|o| BufReader::new(o).lines());
    let mut lines_err = err.map(|e| BufReader::new(e).lines());
    loop {
        let line = tokio::select! {
            l = next_line(&mut lines_out) => l,
            l = next_line(&mut lines_err) => l,
        };
        match line {
            Some(l) => {
                if tail.len() >= 20 {
                    tail.remove(0);
                }
                tail.push(l.clone());
                progress(TemplateProgress::Output(l));
            }
            None if lines_out.is_none() && lines_err.is_none() => break,
            None => {}
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(Error::Sandbox(format!(
            "npm ci for the preview template failed ({status}):\n{}",
            tail.join("\n")
        )));
    }
    Ok(())
}

/// The next line of a stream; at end of stream the stream is set to `None`.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut Option<tokio::io::Lines<R>>,
) -> Option<String> {
    let Some(l) = lines.as_mut() else {
        return std::future::pending().await;
    };
    match l.next_line().await {
        Ok(Some(s)) => Some(s),
        _ => {
            *lines = None;
            None
        }
    }
}

/// Files every starter shares, kept once next to the starters and put at the
/// root of each project (a starter's `vite.config.ts` imports them).
pub const SHARED_FILES: &[&str] = &["vite-plugin-apna-source.js"];

/// Adds each [`SHARED_FILES`] entry a starter lacks, from the starters'
/// folder itself (`/opt/apna/templates` in the sandbox image) or its parent
/// (`images/preview/` in this repository); missing from both is an error, as
/// no project could start without it.
fn add_shared_files(
    templates_dir: &Path,
    files: &mut std::collections::BTreeMap<String, SourceFile>,
) -> Result<()> {
    for name in SHARED_FILES {
        if files.contains_key(*name) {
            continue;
        }
        let found = templates_dir
            .ancestors()
            .take(2)
            .map(|d| d.join(name))
            .find(|p| p.is_file());
        let path = found.ok_or_else(|| {
            Error::Sandbox(format!(
                "{name} (imported by the starters' vite.config.ts) is in neither {} nor its parent",
                templates_dir.display()
            ))
        })?;
        files.insert(
            (*name).to_string(),
            SourceFile {
                path: (*name).to_string(),
                data: std::fs::read(&path)?,
                executable: false,
            },
        );
    }
    Ok(())
}

/// A starter's files: its base's (when it has one) overlaid with its own,
/// without the metadata files (`template.json`, `prompt.md`, the preview).
async fn read_starter_files(templates_dir: &Path, s: &Starter) -> Result<SourceTree> {
    let mut layers = Vec::new();
    if let Some(base) = &s.base {
        layers.push((
            templates_dir.join(base),
            starter::find(base)?.preview_file.clone(),
        ));
    }
    layers.push((templates_dir.join(&s.name), s.preview_file.clone()));
    let name = s.name.clone();
    let shared_from = templates_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut files: std::collections::BTreeMap<String, SourceFile> = Default::default();
        for (dir, preview) in layers {
            if !dir.is_dir() {
                return Err(Error::Sandbox(format!(
                    "template {name}: {} is not a directory",
                    dir.display()
                )));
            }
            let mut found = Vec::new();
            collect(&dir, &dir, &mut found)?;
            for f in found {
                if f.path == preview || starter::METADATA_FILES.contains(&f.path.as_str()) {
                    continue;
                }
                files.insert(f.path.clone(), f);
            }
        }
        add_shared_files(&shared_from, &mut files)?;
        Ok(SourceTree {
            files: files.into_values().collect(),
        })
    })
    .await
    .map_err(|e| Error::Internal(format!("template read task: {e}")))?
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if SKIP_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            collect(root, &entry.path(), out)?;
        } else if ft.is_file() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .map_err(|e| Error::Internal(format!("template path: {e}")))?;
            let meta = entry.metadata()?;
            out.push(SourceFile {
                path: rel.to_string_lossy().replace('\\', "/"),
                data: std::fs::read(&path)?,
                executable: meta.permissions().mode() & 0o111 != 0,
            });
        }
    }
    Ok(())
}

/// Replaces a project's `node_modules` symlink with a private copy of the
/// cache, so a package-manager command changes only this project. No-op when
/// it is already a directory.
pub async fn detach_node_modules(project_dir: &Path) -> Result<()> {
    let link = project_dir.join("node_modules");
    let meta = match tokio::fs::symlink_metadata(&link).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_symlink() {
        return Ok(());
    }
    let target = tokio::fs::canonicalize(&link).await?;
    let staging = project_dir.join(".node_modules.detaching");
    let s2 = staging.clone();
    tokio::task::spawn_blocking(move || {
        if s2.exists() {
            std::fs::remove_dir_all(&s2)?;
        }
        copy_tree(&target, &s2)
    })
    .await
    .map_err(|e| Error::Internal(format!("copy task: {e}")))??;
    tokio::fs::remove_file(&link).await?;
    tokio::fs::rename(&staging, &link).await?;
    Ok(())
}

/// Copies a directory tree, recreating symlinks as symlinks (npm's `.bin` links).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ft.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLUGIN: &str = "vite-plugin-apna-source.js";

    fn plugin_of(tree: &SourceTree) -> Option<&[u8]> {
        tree.files
            .iter()
            .find(|f| f.path == PLUGIN)
            .map(|f| f.data.as_slice())
    }

    /// `{root}/templates/minimal`, a copy of the bundled starter, as in the image.
    fn copy_minimal(root: &Path) -> PathBuf {
        let templates = root.join("templates");
        let from = bundled_templates_dir().join("minimal");
        let mut files = Vec::new();
        collect(&from, &from, &mut files).unwrap();
        for f in files {
            let to = templates.join("minimal").join(&f.path);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(to, f.data).unwrap();
        }
        templates
    }

    #[tokio::test]
    async fn every_starter_gets_the_plugin_its_config_imports() {
        let dir = bundled_templates_dir();
        let shared = std::fs::read(dir.join("..").join(PLUGIN)).unwrap();
        for s in starter::starters().unwrap() {
            let tree = read_starter_files(&dir, s).await.unwrap();
            let config = tree
                .files
                .iter()
                .find(|f| f.path == "vite.config.ts")
                .unwrap_or_else(|| panic!("{} has a vite.config.ts", s.name));
            let config = String::from_utf8_lossy(&config.data);
            assert!(
                config.contains("import apnaSource from \"./vite-plugin-apna-source.js\";"),
                "{}: {config}",
                s.name
            );
            assert!(
                config.contains("plugins: [apnaSource(), "),
                "{}: apnaSource() comes first: {config}",
                s.name
            );
            assert_eq!(plugin_of(&tree), Some(shared.as_slice()), "{}", s.name);
        }
    }

    #[tokio::test]
    async fn the_plugin_comes_from_the_starters_folder_as_in_the_image() {
        let root = tempfile::tempdir().unwrap();
        let templates = copy_minimal(&root.path().join("opt"));
        let minimal = starter::find("minimal").unwrap();
        // Neither the folder nor its parent has it: a clear error, not a
        // project whose dev server cannot load its config.
        let err = read_starter_files(&templates, minimal).await.unwrap_err();
        assert!(err.to_string().contains(PLUGIN), "{err}");

        std::fs::write(templates.join(PLUGIN), "in the folder").unwrap();
        std::fs::write(root.path().join("opt").join(PLUGIN), "in the parent").unwrap();
        let tree = read_starter_files(&templates, minimal).await.unwrap();
        assert_eq!(plugin_of(&tree), Some(&b"in the folder"[..]));

        std::fs::remove_file(templates.join(PLUGIN)).unwrap();
        let tree = read_starter_files(&templates, minimal).await.unwrap();
        assert_eq!(plugin_of(&tree), Some(&b"in the parent"[..]));

        // A starter's own copy wins.
        std::fs::write(templates.join("minimal").join(PLUGIN), "own").unwrap();
        let tree = read_starter_files(&templates, minimal).await.unwrap();
        assert_eq!(
            tree.files.iter().filter(|f| f.path == PLUGIN).count(),
            1,
            "one copy"
        );
        assert_eq!(plugin_of(&tree), Some(&b"own"[..]));
    }

    #[tokio::test]
    async fn two_installers_of_one_lock_file_run_npm_once() {
        let root = tempfile::tempdir().unwrap();
        let package = br#"{"name":"t","version":"1.0.0","private":true}"#;
        let lock = br#"{"name":"t","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{"":{"name":"t","version":"1.0.0"}}}"#;
        let installs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = |n: std::sync::Arc<std::sync::atomic::AtomicUsize>| {
            move |p: TemplateProgress| {
                if matches!(p, TemplateProgress::Installing { .. }) {
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        };
        let (a, b) = (count(installs.clone()), count(installs.clone()));
        let (ra, rb) = tokio::join!(
            install(root.path(), "h1", package, lock, &a),
            install(root.path(), "h1", package, lock, &b),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra, rb);
        assert!(ra.is_dir(), "{ra:?}");
        assert_eq!(
            installs.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the second installer waits for the first and uses its directory"
        );
        let left: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "staging left behind: {left:?}");
    }
}
