//! The shared state every handler gets: config plus one handle per backend.
//!
//! It holds no per-request or per-run state: everything a later step or another
//! process needs is in the store or the blob store, so a Lambda built from the
//! same config sees exactly what `apna serve` sees.

use std::sync::Arc;

use crate::blob::{self, BlobStore};
use crate::config::Config;
use crate::error::Result;
use crate::store::{self, Store};

/// Handles to every backend, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// Database.
    pub store: Arc<dyn Store>,
    /// Object storage.
    pub blobs: Arc<dyn BlobStore>,
}

impl AppState {
    /// Connects the backends the config names.
    pub async fn connect(config: Config) -> Result<Self> {
        tokio::fs::create_dir_all(&config.data_dir).await?;
        let store = store::connect(&config.database_url).await?;
        let blobs = blob::connect(&config).await?;
        Ok(AppState {
            config: Arc::new(config),
            store,
            blobs,
        })
    }
}
