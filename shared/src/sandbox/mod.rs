//! Per-project sandboxes: where the app's files live and its dev server runs.
//!
//! [`Sandbox`] is the seam between the agent/workflow and the machine that hosts
//! a project. `local` runs Vite as a supervised child process in a directory
//! under `APNA_DATA_DIR`; in a pod, [`sandboxd`] serves one such workspace over
//! HTTP and [`remote::RemoteSandbox`] is its client, which a Kubernetes driver
//! wraps with the pod's lifecycle; the in-memory double for tests is
//! `crate::testing::memory`. Every path crossing this seam is a
//! [`ProjectPath`], already checked to stay inside the project root.

pub mod activity;
pub mod browser;
pub mod build_check;
pub mod connections;
#[cfg(feature = "kube")]
pub mod kube;
pub mod local;
pub mod path;
pub mod pid1;
pub mod remote;
pub mod sandboxd;
pub mod smoke;
pub mod source_tar;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Result;
pub use path::ProjectPath;
pub use smoke::{SmokeReport, SmokeRequest};

/// Whether a sandbox's dev server is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// No sandbox exists for the project (never created, or hibernated).
    Missing,
    /// Files are in place; the dev server is starting.
    Starting,
    /// The dev server answers.
    Ready,
    /// The dev server exited and is being restarted (or gave up).
    Crashed,
    /// Files are in place; the dev server is not running.
    Stopped,
}

/// A sandbox's state and where its preview is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SandboxStatus {
    /// State.
    pub state: SandboxState,
    /// `host:port` of the dev server (local: `127.0.0.1:NNNN`; kube: the Service).
    pub preview_addr: Option<String>,
    /// Why it is crashed or stopped, when known.
    pub detail: Option<String>,
}

/// One entry of a project's file tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileEntry {
    /// Path relative to the project root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// A command to run inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Shell command line (run with `sh -c` in the project root).
    pub command: String,
    /// Kill it after this long.
    pub timeout: Duration,
    /// Keep at most this many bytes of combined output (truncated with a marker).
    pub max_output: usize,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code (`None` when killed by a signal or the timeout).
    pub exit_code: Option<i32>,
    /// Combined stdout and stderr, capped.
    pub output: String,
    /// Whether output was cut at `max_output`.
    pub truncated: bool,
    /// Whether the timeout killed it.
    pub timed_out: bool,
}

/// A project's source tree, in memory: relative paths and contents, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTree {
    /// Files, sorted by path.
    pub files: Vec<SourceFile>,
}

/// One file of a [`SourceTree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative `/`-separated path.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Whether the file is executable.
    pub executable: bool,
}

/// One project's sandbox. Handles are cheap; all state lives in the backend
/// (process table, disk, Kubernetes), so any handler can get a handle and act.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// The project this sandbox belongs to.
    fn project_id(&self) -> &str;
    /// Creates the sandbox from the default starter if missing and starts the dev server. Idempotent.
    async fn ensure(&self) -> Result<SandboxStatus>;
    /// Like [`Sandbox::ensure`], creating a missing sandbox from `starter` (a
    /// name from [`crate::starter`]; unknown names are bad input).
    async fn ensure_from(&self, starter: &str) -> Result<SandboxStatus>;
    /// Current state.
    async fn status(&self) -> Result<SandboxStatus>;
    /// Reads a file.
    async fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>>;
    /// Writes a file, creating parent directories.
    async fn write_file(&self, path: &ProjectPath, data: &[u8]) -> Result<()>;
    /// Deletes a file; `false` when it did not exist.
    async fn delete_file(&self, path: &ProjectPath) -> Result<bool>;
    /// Lists source files (gitignore-aware; never node_modules, dist, .git, caches).
    async fn list_files(&self) -> Result<Vec<FileEntry>>;
    /// Runs a command in the project root with a timeout and capped output.
    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput>;
    /// The last `lines` lines of the dev server's log.
    async fn logs(&self, lines: usize) -> Result<String>;
    /// Stops the dev server, keeping files.
    async fn stop(&self) -> Result<()>;
    /// Stops and removes everything (files, process, pod and volume).
    async fn destroy(&self) -> Result<()>;
    /// Reads the source tree (what `list_files` lists) for a snapshot.
    async fn export_source(&self) -> Result<SourceTree>;
    /// Replaces the source tree with `tree` (creating the sandbox if needed), for restore and wake.
    async fn import_source(&self, tree: &SourceTree) -> Result<()>;
    /// How the preview was used lately as the sandbox itself sees it (in a
    /// pod, `apna sandboxd` watches the dev server's connections); `None`
    /// where it cannot tell (local: the preview proxy of `apna serve` sees
    /// every request, see [`crate::sandbox::activity`]).
    async fn preview_activity(&self) -> Result<Option<crate::sandbox::activity::Activity>> {
        Ok(None)
    }
    /// Opens the running app in a headless browser where its dev server is
    /// and reports what went wrong (see [`smoke`]). `Err` means the browser
    /// itself failed; a backend without one says so in a skipped report.
    async fn smoke_check(&self, req: &SmokeRequest) -> Result<SmokeReport> {
        let _ = req;
        Ok(SmokeReport::skipped(
            "this sandbox backend cannot open the app in a browser",
        ))
    }
    /// Verify's build check (see [`build_check`]). By default `tsc` and a
    /// `vite build` through [`Sandbox::exec`]; a backend that owns the dev
    /// server checks through it instead, within its build gate.
    async fn check_build(&self) -> Result<build_check::BuildReport> {
        build_check::check_build_with_vite_build(self).await
    }
}

/// Gives out sandbox handles for projects of one backend.
pub trait SandboxProvider: Send + Sync {
    /// The handle for a project's sandbox (it may not exist yet: see [`Sandbox::ensure`]).
    fn sandbox(&self, project_id: &str) -> Result<Arc<dyn Sandbox>>;
    /// Backend name for health reports (`local`, `kube`).
    fn backend(&self) -> &'static str;
    /// Tops up what the backend keeps ready for new projects (the kube warm
    /// pods); the hibernation sweep calls it. Nothing to do by default.
    fn replenish(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Ids of the projects whose dev server runs now: light sleep's
    /// candidates ([`crate::light_sleep`]). None by default.
    fn awake(&self) -> futures::future::BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// [`Sandbox::status`] of several projects at once (a page of the project
    /// list). A project whose state could not be read is left out. By default
    /// each is asked on its own, [`STATUS_CONCURRENCY`] at a time; a backend
    /// that can read them together (kube: one list) does.
    fn statuses<'a>(
        &'a self,
        ids: &'a [String],
    ) -> futures::future::BoxFuture<'a, Result<HashMap<String, SandboxStatus>>> {
        Box::pin(async move {
            let found = futures::stream::iter(ids.iter().cloned())
                .map(|id| async move {
                    let status = match self.sandbox(&id) {
                        Ok(sb) => sb.status().await,
                        Err(e) => Err(e),
                    };
                    match status {
                        Ok(st) => Some((id, st)),
                        Err(e) => {
                            tracing::debug!(project_id = %id, error = %e, "sandbox status unknown");
                            None
                        }
                    }
                })
                .buffer_unordered(STATUS_CONCURRENCY)
                .filter_map(futures::future::ready)
                .collect()
                .await;
            Ok(found)
        })
    }
}

/// How many [`Sandbox::status`] calls the default [`SandboxProvider::statuses`] has in flight.
pub const STATUS_CONCURRENCY: usize = 16;
