//! The shared state every handler gets: config plus one handle per backend.
//!
//! It holds no per-request or per-run state: everything a later step or another
//! process needs is in the store or the blob store, so a Lambda built from the
//! same config sees exactly what `apna serve` sees.

use std::sync::{Arc, OnceLock};

use crate::agent::Model;
use crate::blob::BlobStore;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sandbox::SandboxProvider;
use crate::store::Store;
use crate::workflow::Workflow;

/// Handles to every backend, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// Database.
    pub store: Arc<dyn Store>,
    /// Object storage.
    pub blobs: Arc<dyn BlobStore>,
    /// Project sandboxes.
    pub sandboxes: Arc<dyn SandboxProvider>,
    /// The model the agent calls.
    pub model: Arc<dyn Model>,
    // Set once after construction: the local workflow's task handlers need an
    // AppState themselves, so the two are tied together in a second step.
    workflow: Arc<OnceLock<Arc<dyn Workflow>>>,
}

impl AppState {
    /// State over the given backends; call [`AppState::set_workflow`] before serving.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        sandboxes: Arc<dyn SandboxProvider>,
        model: Arc<dyn Model>,
    ) -> Self {
        AppState {
            config: Arc::new(config),
            store,
            blobs,
            sandboxes,
            model,
            workflow: Arc::new(OnceLock::new()),
        }
    }

    /// Attaches the workflow backend (once; later calls are ignored).
    pub fn set_workflow(&self, workflow: Arc<dyn Workflow>) {
        let _ = self.workflow.set(workflow);
    }

    /// The workflow backend.
    pub fn workflow(&self) -> Result<Arc<dyn Workflow>> {
        self.workflow
            .get()
            .cloned()
            .ok_or_else(|| Error::Internal("workflow backend not attached".into()))
    }
}
