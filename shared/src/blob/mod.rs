//! Object storage for snapshots: `trait BlobStore` with a directory on disk
//! (embedded default) and S3 (any S3-compatible server via `S3_ENDPOINT`).
//!
//! Keys are `/`-separated and checked by [`check_key`]. Every put verifies the
//! data against its SHA-256, and [`BlobMeta`] carries that checksum so a reader
//! (hibernation's upload check) can compare without downloading twice.

mod fs;
#[cfg(feature = "aws")]
mod s3;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};

pub use fs::FsBlobStore;
#[cfg(feature = "aws")]
pub use s3::S3BlobStore;

/// A stream of chunks, for objects too large to hold in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Size and checksum of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// Where the object is stored (`projects/{id}/…`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the contents.
    pub sha256: String,
}

/// The HTTP headers an object is served with from behind a CDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    pub content_type: String,
    /// `Cache-Control`.
    pub cache_control: String,
}

/// Object storage.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Backend name for health reports (`fs`, `s3`).
    fn backend(&self) -> &'static str;
    /// Checks the store is reachable (bucket exists, directory writable).
    async fn ping(&self) -> Result<()>;
    /// Stores `data` under `key`, replacing any object there. Verifies the
    /// stored bytes against their SHA-256 and returns the metadata.
    async fn put(&self, key: &str, data: Bytes) -> Result<BlobMeta>;
    /// Stores `data` like [`BlobStore::put`], with the headers a CDN in front
    /// of the bucket serves it with (published sites). S3 keeps them with the
    /// object; the disk store has nowhere to keep them, and `apna serve`
    /// works them out from the key when it serves the file.
    async fn put_served(
        &self,
        key: &str,
        data: Bytes,
        headers: &ObjectHeaders,
    ) -> Result<BlobMeta> {
        let _ = headers;
        self.put(key, data).await
    }
    /// Stores a stream under `key` without holding it all in memory.
    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<BlobMeta>;
    /// Reads a whole object; `NotFound` if absent.
    async fn get(&self, key: &str) -> Result<Bytes>;
    /// Reads an object as a stream of chunks; `NotFound` if absent.
    async fn get_stream(&self, key: &str) -> Result<ByteStream>;
    /// Size and checksum, or `None` if absent.
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>>;
    /// Keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes an object; `false` if it was absent.
    async fn delete(&self, key: &str) -> Result<bool>;
    /// A URL anyone holding it may GET the object from until `expires`, served
    /// as an attachment named `filename`; `None` when the store has no such
    /// URLs (a directory on disk). Lets an answer too large for Lambda go
    /// straight from S3.
    async fn presigned_get(
        &self,
        _key: &str,
        _expires: std::time::Duration,
        _filename: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Opens the blob store the config names: S3 when `S3_BUCKET` is set, else `{data_dir}/blobs`.
pub async fn connect(config: &Config) -> Result<Arc<dyn BlobStore>> {
    match &config.s3_bucket {
        #[cfg(feature = "aws")]
        Some(bucket) => Ok(Arc::new(
            S3BlobStore::connect(bucket, &config.s3_region, config.s3_endpoint.as_deref()).await?,
        )),
        // Config refuses S3_BUCKET in a build without S3.
        #[cfg(not(feature = "aws"))]
        Some(_) => Err(Error::Config {
            var: "S3_BUCKET",
            message: "this build has no S3 support; build with `--features aws`".into(),
        }),
        None => Ok(Arc::new(
            FsBlobStore::new(config.data_dir.join("blobs")).await?,
        )),
    }
}

/// Checks a key: non-empty, at most 1024 bytes, relative, no `.`/`..`/empty
/// segments, printable ASCII without backslashes.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('/')
        && !key.ends_with('/')
        && key.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!("invalid blob key {key:?}")))
    }
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
