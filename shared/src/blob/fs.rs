//! Blob store in a directory: each key is a file under the root.
//!
//! Writes go to a temporary file in the same directory, are synced and renamed
//! into place, so a reader never sees half an object and a crash leaves either
//! the old object or the new one. `head` hashes the stored bytes, so it checks
//! what is really on disk rather than what a sidecar claims.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check_key, BlobMeta, BlobStore, ByteStream};
use crate::error::{Error, Result};

/// Chunk size for streamed reads.
const CHUNK: usize = 256 * 1024;

/// A directory-backed [`BlobStore`].
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Uses (and creates) `root`.
    pub async fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|e| Error::Blob(format!("cannot create {}: {e}", root.display())))?;
        Ok(FsBlobStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    async fn write_atomically(&self, key: &str, mut data: ByteStream) -> Result<BlobMeta> {
        let path = self.path(key)?;
        let dir = path
            .parent()
            .ok_or_else(|| Error::Internal("blob path has no parent".into()))?;
        tokio::fs::create_dir_all(dir).await.map_err(blob_io)?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(blob_io)?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(blob_io)?;
            }
            file.sync_all().await.map_err(blob_io)?;
            drop(file);
            let expected = hex::encode(hasher.finalize());
            // Verify what landed on disk before it becomes visible under the key.
            let (actual, actual_size) = hash_file(&tmp).await?;
            if actual != expected || actual_size != size {
                return Err(Error::Blob(format!(
                    "checksum mismatch writing {key}: wrote {expected}, read back {actual}"
                )));
            }
            tokio::fs::rename(&tmp, &path).await.map_err(blob_io)?;
            Ok(BlobMeta {
                key: key.to_string(),
                size,
                sha256: expected,
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

fn blob_io(e: std::io::Error) -> Error {
    Error::Blob(e.to_string())
}

async fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = tokio::fs::File::open(path).await.map_err(blob_io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(blob_io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("no object at {key}"))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn backend(&self) -> &'static str {
        "fs"
    }

    async fn ping(&self) -> Result<()> {
        let meta = tokio::fs::metadata(&self.root).await.map_err(blob_io)?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(Error::Blob(format!(
                "{} is not a directory",
                self.root.display()
            )))
        }
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<BlobMeta> {
        self.write_atomically(key, Box::pin(futures::stream::once(async { Ok(data) })))
            .await
    }

    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<BlobMeta> {
        self.write_atomically(key, data).await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(v) => Ok(Bytes::from(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(key)),
            Err(e) => Err(blob_io(e)),
        }
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        let file = match tokio::fs::File::open(self.path(key)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found(key)),
            Err(e) => return Err(blob_io(e)),
        };
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, CHUNK).map(|r| r.map_err(blob_io));
        Ok(Box::pin(stream))
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => {
                let (sha256, size) = hash_file(&path).await?;
                Ok(Some(BlobMeta {
                    key: key.to_string(),
                    size,
                    sha256,
                }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(blob_io(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        // Walk only the folder the prefix names (`sites/x/` → `{root}/sites/x`),
        // not the whole store.
        let start = match prefix.rsplit_once('/') {
            Some((dir, _))
                if dir
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != "..") =>
            {
                root.join(dir)
            }
            _ => root.clone(),
        };
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(blob_io(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(blob_io)?;
                    let ft = entry.file_type().map_err(blob_io)?;
                    let path = entry.path();
                    if ft.is_dir() {
                        stack.push(path);
                    } else if ft.is_file() {
                        let name = entry.file_name();
                        if name.to_string_lossy().starts_with(".tmp-") {
                            continue;
                        }
                        let rel = path
                            .strip_prefix(&root)
                            .map_err(|e| Error::Internal(e.to_string()))?
                            .to_string_lossy()
                            .replace(std::path::MAIN_SEPARATOR, "/");
                        if rel.starts_with(&prefix) {
                            keys.push(rel);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| Error::Internal(format!("list task: {e}")))?
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(blob_io(e)),
        }
    }
}
