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
