//! The shared state handlers get, in two layers.
//!
//! [`Backends`] is config plus one handle per backend: what a workflow task
//! needs. [`AppState`] adds the workflow that runs generations: what the API
//! needs to start and stop them. The tasks never need the workflow, so the
//! local interpreter is built from the backends first and the API state after
//! it, with nothing to tie together later.
//!
//! Neither holds per-request or per-run state: everything a later step or
//! another process needs is in the store or the blob store, so a Lambda built
//! from the same config sees exactly what `apna serve` sees.

use std::sync::Arc;

use crate::agent::Model;
use crate::blob::BlobStore;
use crate::config::Config;
use crate::sandbox::SandboxProvider;
use crate::store::Store;
use crate::workflow::Workflow;

/// Config and a handle to every backend, cheap to clone.
#[derive(Clone)]
pub struct Backends {
    /// Settings.
    pub config: Arc<Config>,
    /// Users, projects, runs, events, versions and executions.
    pub store: Arc<dyn Store>,
    /// Snapshots and other objects.
    pub blobs: Arc<dyn BlobStore>,
    /// Where projects' files live and their dev servers run.
    pub sandboxes: Arc<dyn SandboxProvider>,
    /// The model the agent calls.
    pub model: Arc<dyn Model>,
    /// What this process's preview proxy has seen of each project (empty
    /// where it proxies none, e.g. on Lambda); light sleep reads it.
    pub preview_activity: crate::sandbox::activity::PreviewActivity,
}

impl Backends {
    /// Backends over the given handles.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        sandboxes: Arc<dyn SandboxProvider>,
        model: Arc<dyn Model>,
    ) -> Self {
        Backends {
            config: Arc::new(config),
            store,
            blobs,
            sandboxes,
            model,
            preview_activity: Default::default(),
        }
    }
}

/// The API's state: the backends plus the workflow, cheap to clone.
///
/// It dereferences to [`Backends`], so handlers write `state.store`.
#[derive(Clone)]
pub struct AppState {
    /// Config and backends.
    pub backends: Backends,
    /// Starts, inspects and stops executions of `statemachines/*.asl.json`.
    pub workflow: Arc<dyn Workflow>,
}

impl AppState {
    /// The API's state over `backends`, starting executions on `workflow`.
    pub fn new(backends: Backends, workflow: Arc<dyn Workflow>) -> Self {
        AppState { backends, workflow }
    }
}

impl std::ops::Deref for AppState {
    type Target = Backends;

    fn deref(&self) -> &Backends {
        &self.backends
    }
}

/// The backends one function reaches besides config, blobs and the model.
/// A Lambda builds only these at cold start: a backend built there is linked
/// whole (its trait object's vtable keeps every method) and may cost a
/// connection, whether the handler calls it or not (BENCHMARKS.md, "Package
/// size"). The API harness in `testing` gives each endpoint only what its
/// `Uses` says, so a handler reaching further fails the API tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    /// The store, connected (and its schema checked) at cold start. Without
    /// it the store is still there, connected on first use.
    pub store: bool,
    /// Projects' sandboxes.
    pub sandboxes: bool,
    /// The workflow engine (starting, inspecting, stopping executions).
    pub workflow: bool,
}

impl Uses {
    /// Nothing but config, blobs and the model.
    pub const NONE: Uses = Uses {
        store: false,
        sandboxes: false,
        workflow: false,
    };
}

/// Stands in for a backend function `.0` declared it does not use: a
/// handler that reaches it anyway is a bug in its [`Uses`], reported as such.
pub struct Unused(pub &'static str);

impl Unused {
    fn error(&self, what: &str) -> crate::error::Error {
        crate::error::Error::Internal(format!(
            "{} does not use {what} (its `Uses` says so): this is a bug",
            self.0
        ))
    }
}

impl SandboxProvider for Unused {
    fn sandbox(&self, _project_id: &str) -> crate::error::Result<Arc<dyn crate::sandbox::Sandbox>> {
        Err(self.error("sandboxes"))
    }
    fn backend(&self) -> &'static str {
        "unused"
    }
}

#[async_trait::async_trait]
impl Workflow for Unused {
    fn backend(&self) -> &'static str {
        "unused"
    }
    async fn start(&self, _: &str, _: &str, _: serde_json::Value) -> crate::error::Result<()> {
        Err(self.error("the workflow"))
    }
    async fn describe(&self, _: &str) -> crate::error::Result<Option<crate::domain::Execution>> {
        Err(self.error("the workflow"))
    }
    async fn history(&self, _: &str) -> crate::error::Result<Vec<crate::domain::HistoryEvent>> {
        Err(self.error("the workflow"))
    }
    async fn stop(&self, _: &str, _: &str) -> crate::error::Result<()> {
        Err(self.error("the workflow"))
    }
}

impl Backends {
    /// These backends as function `name` sees them when deployed: without
    /// `sandboxes`, a stand-in that refuses.
    pub fn as_function(&self, name: &'static str, sandboxes: bool) -> Backends {
        let mut own = self.clone();
        if !sandboxes {
            own.sandboxes = Arc::new(Unused(name));
        }
        own
    }
}

impl AppState {
    /// This state as function `name` sees it when deployed: the backends
    /// `uses` leaves out replaced by stand-ins that refuse.
    pub fn as_function(&self, name: &'static str, uses: Uses) -> AppState {
        let backends = self.backends.as_function(name, uses.sandboxes);
        let workflow: Arc<dyn Workflow> = if uses.workflow {
            self.workflow.clone()
        } else {
            Arc::new(Unused(name))
        };
        AppState::new(backends, workflow)
    }
}
