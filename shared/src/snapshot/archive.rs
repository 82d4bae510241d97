//! Writing, checking and reading snapshots in the blob store.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::manifest::{
    base_key, check_project_id, latest_key, manifest_key, object_key, project_of_manifest_key,
    project_prefix, Manifest, ManifestEntry, FORMAT,
};
use crate::blob::{sha256_hex, BlobMeta, BlobStore};
use crate::error::{Error, Result};
use crate::sandbox::{ProjectPath, Sandbox, SandboxState, SourceFile, SourceTree};

/// zstd level for objects. On the bench project level 9 stores 6% less than
/// level 3 for under a millisecond more in total; level 19 saves 2% more but
/// is 45 times slower (measured by `benches/snapshot.rs`).
pub const ZSTD_LEVEL: i32 = 9;

/// Blob requests in flight at once while writing, verifying or reading a snapshot.
const PARALLEL: usize = 16;

/// What [`take_snapshot`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The project.
    pub project_id: String,
    /// Blob key of the manifest (what versions and the `latest` pointer hold).
    pub key: String,
    /// Files in the snapshot.
    pub files: usize,
    /// Total size of the files, uncompressed.
    pub bytes: u64,
    /// Bytes uploaded by this snapshot: new objects plus the manifest.
    pub bytes_stored: u64,
    /// Objects uploaded by this snapshot.
    pub objects_new: usize,
    /// Objects already in the store from earlier snapshots, not uploaded again.
    pub objects_reused: usize,
    /// Size and checksum of the manifest as written.
    pub manifest_size: u64,
    /// SHA-256 of the manifest as written.
    pub manifest_sha256: String,
}

/// Exports the sandbox's source tree and stores it as a new snapshot of a
/// project begun from starter `template`. Does not move the `latest` pointer
/// (see [`set_latest`]).
pub async fn take_snapshot(
    blobs: &dyn BlobStore,
    sandbox: &dyn Sandbox,
    template: &str,
) -> Result<SnapshotInfo> {
    let tree = sandbox.export_source().await?;
    write_snapshot(blobs, sandbox.project_id(), template, &tree).await
}

/// Stores `tree` as a new snapshot of `project_id` (begun from starter
/// `template`, which the manifest records): each distinct content once
/// (skipping objects already stored), then the manifest. Refuses an empty tree,
/// which would only ever come from a sandbox that lost its files.
pub async fn write_snapshot(
    blobs: &dyn BlobStore,
    project_id: &str,
    template: &str,
    tree: &SourceTree,
) -> Result<SnapshotInfo> {
    check_project_id(project_id)?;
    if tree.files.is_empty() {
        return Err(Error::Sandbox(format!(
            "project {project_id} has no source files; refusing to snapshot an empty tree"
        )));
    }
    let span = tracing::info_span!("write_snapshot", project_id = %project_id);
    async move {
        // Distinct contents, so a file duplicated under two paths is one object.
        let mut unique: BTreeMap<String, &[u8]> = BTreeMap::new();
        let mut shas = Vec::with_capacity(tree.files.len());
        for f in &tree.files {
            ProjectPath::parse(&f.path)?;
            let sha = sha256_hex(&f.data);
            unique.entry(sha.clone()).or_insert(&f.data);
            shas.push(sha);
        }
        // Futures are collected first: a closure inside the stream would make
        // the whole future non-`Send` for callers (a rustc limitation).
        let jobs: Vec<_> = unique
            .into_iter()
            .map(|(sha, data)| async move {
                let key = object_key(project_id, &sha);
                if let Some(meta) = blobs.head(&key).await? {
                    return Ok((sha, meta, false));
                }
                let packed = zstd::bulk::compress(data, ZSTD_LEVEL)
                    .map_err(|e| Error::Internal(format!("zstd: {e}")))?;
                let meta = blobs.put(&key, Bytes::from(packed)).await?;
                Ok::<_, Error>((sha, meta, true))
            })
            .collect();
        let stored: Vec<(String, BlobMeta, bool)> = futures::stream::iter(jobs)
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        let mut objects_new = 0;
        let mut bytes_stored = 0;
        let mut metas: HashMap<String, BlobMeta> = HashMap::new();
        for (sha, meta, new) in stored {
            if new {
                objects_new += 1;
                bytes_stored += meta.size;
            }
            metas.insert(sha, meta);
        }
        let objects_reused = metas.len() - objects_new;

        let mut files = Vec::with_capacity(tree.files.len());
        for (f, sha) in tree.files.iter().zip(shas) {
            let meta = metas
                .get(&sha)
                .ok_or_else(|| Error::Internal("object missing from upload list".into()))?;
            files.push(ManifestEntry {
                path: f.path.clone(),
                sha256: sha,
                size: f.data.len() as u64,
                executable: f.executable,
                stored_size: meta.size,
                stored_sha256: meta.sha256.clone(),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let snapshot_id = uuid::Uuid::now_v7().to_string();
        let manifest = Manifest {
            format: FORMAT,
            project_id: project_id.to_string(),
            snapshot_id: snapshot_id.clone(),
            created_at: crate::domain::now(),
            template: Some(template.to_string()),
            files,
        };
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Internal(format!("manifest encoding: {e}")))?;
        let key = manifest_key(project_id, &snapshot_id);
        let meta = blobs.put(&key, Bytes::from(body)).await?;
        let info = SnapshotInfo {
            project_id: project_id.to_string(),
            key,
            files: manifest.files.len(),
            bytes: manifest.files.iter().map(|f| f.size).sum(),
            bytes_stored: bytes_stored + meta.size,
            objects_new,
            objects_reused,
            manifest_size: meta.size,
            manifest_sha256: meta.sha256,
        };
        tracing::info!(
            key = %info.key,
            files = info.files,
            bytes_stored = info.bytes_stored,
            objects_new,
            objects_reused,
            "snapshot written"
        );
        Ok(info)
    }
    .instrument(span)
    .await
}

/// Re-reads what [`write_snapshot`] wrote without downloading it: the manifest's
/// size and SHA-256 (from `head`) must equal `info`'s, and every object it lists
/// must be present with the size and SHA-256 recorded in the manifest.
pub async fn verify_snapshot(blobs: &dyn BlobStore, info: &SnapshotInfo) -> Result<()> {
    let head = blobs
        .head(&info.key)
        .await?
        .ok_or_else(|| Error::Blob(format!("snapshot manifest {} is missing", info.key)))?;
    if head.size != info.manifest_size || head.sha256 != info.manifest_sha256 {
        return Err(Error::Blob(format!(
            "snapshot manifest {} does not match what was written",
            info.key
        )));
    }
    // The manifest is small: read it back whole, so the object list checked
    // below is the one actually stored.
    let body = blobs.get(&info.key).await?;
    if body.len() as u64 != info.manifest_size || sha256_hex(&body) != info.manifest_sha256 {
        return Err(Error::Blob(format!(
            "snapshot manifest {} read back differently",
            info.key
        )));
    }
    let manifest = Manifest::parse(&body)?;
    verify_objects(blobs, &manifest).await
}

/// Checks every object a manifest lists is stored with the recorded size and checksum.
pub async fn verify_objects(blobs: &dyn BlobStore, manifest: &Manifest) -> Result<()> {
    let mut wanted: BTreeMap<&str, &ManifestEntry> = BTreeMap::new();
    for f in &manifest.files {
        wanted.entry(f.sha256.as_str()).or_insert(f);
    }
    let project_id = manifest.project_id.as_str();
    let jobs: Vec<_> = wanted
        .into_values()
        .map(|f| async move {
            let key = object_key(project_id, &f.sha256);
            match blobs.head(&key).await? {
                Some(m) if m.size == f.stored_size && m.sha256 == f.stored_sha256 => Ok(()),
                Some(_) => Err(Error::Blob(format!(
                    "snapshot object {key} does not match what was written"
                ))),
                None => Err(Error::Blob(format!("snapshot object {key} is missing"))),
            }
        })
        .collect();
    futures::stream::iter(jobs)
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Reads and parses a manifest.
pub async fn read_manifest(blobs: &dyn BlobStore, key: &str) -> Result<Manifest> {
    let project_id = project_of_manifest_key(key)
        .ok_or_else(|| Error::InvalidInput(format!("{key:?} is not a snapshot key")))?;
    let manifest = Manifest::parse(&blobs.get(key).await?)?;
    if manifest.project_id != project_id {
        return Err(Error::Blob(format!(
            "snapshot {key} names project {}",
            manifest.project_id
        )));
    }
    Ok(manifest)
}

/// Reads a snapshot back into a tree, checking every file against its SHA-256.
pub async fn load_tree(blobs: &dyn BlobStore, key: &str) -> Result<SourceTree> {
    let manifest = read_manifest(blobs, key).await?;
    load_entries(blobs, &manifest.project_id, &manifest.files).await
}

/// Reads some files of a snapshot (all of them for [`load_tree`]).
pub async fn load_entries(
    blobs: &dyn BlobStore,
    project_id: &str,
    entries: &[ManifestEntry],
) -> Result<SourceTree> {
    let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
    for f in entries {
        ProjectPath::parse(&f.path)?;
        wanted.insert(f.sha256.as_str(), f.size);
    }
    let jobs: Vec<_> = wanted
        .into_iter()
        .map(|(sha, size)| async move {
            let key = object_key(project_id, sha);
            let packed = blobs.get(&key).await?;
            // The recorded size bounds decompression, so a bad object cannot balloon.
            let data = zstd::bulk::decompress(&packed, size as usize)
                .map_err(|e| Error::Blob(format!("snapshot object {key} is corrupt: {e}")))?;
            if data.len() as u64 != size || sha256_hex(&data) != sha {
                return Err(Error::Blob(format!(
                    "snapshot object {key} does not match its checksum"
                )));
            }
            Ok::<_, Error>((sha.to_string(), data))
        })
        .collect();
    let contents: HashMap<String, Vec<u8>> = futures::stream::iter(jobs)
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    let mut files: Vec<SourceFile> = entries
        .iter()
        .map(|f| SourceFile {
            path: f.path.clone(),
            data: contents.get(&f.sha256).cloned().unwrap_or_default(),
            executable: f.executable,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(SourceTree { files })
}

/// Replaces the sandbox's source tree with snapshot `key`. A missing sandbox
/// is first created from the starter the snapshot came from (see
/// [`starter_of`]), so the packages it links are the ones the tree needs.
pub async fn restore(blobs: &dyn BlobStore, sandbox: &dyn Sandbox, key: &str) -> Result<()> {
    check_owner(sandbox.project_id(), key)?;
    let manifest = read_manifest(blobs, key).await?;
    let tree = load_entries(blobs, &manifest.project_id, &manifest.files).await?;
    if sandbox.status().await?.state == SandboxState::Missing {
        sandbox.ensure_from(starter_of(&manifest, &tree)).await?;
    }
    super::wake::import_with_dependencies(sandbox, &tree)
        .await
        .map(drop)
}

/// The starter to create a sandbox from for a snapshot: the one its manifest
/// records; for snapshots older than that record, the starter whose
/// `package.json` asks for the same packages as the tree's (projects then
/// all began from what is now `minimal`); else the default.
pub fn starter_of(manifest: &Manifest, tree: &SourceTree) -> &'static str {
    let Ok(all) = crate::starter::starters() else {
        return crate::domain::DEFAULT_TEMPLATE;
    };
    if let Some(s) = manifest
        .template
        .as_deref()
        .and_then(|t| crate::starter::for_project(t).ok())
    {
        return &s.name;
    }
    let package = tree.files.iter().find(|f| f.path == "package.json");
    package
        .and_then(|p| {
            all.iter()
                .find(|s| !crate::starter::dependencies_differ(&p.data, s.package_json.as_bytes()))
        })
        .map_or(crate::domain::DEFAULT_TEMPLATE, |s| &s.name)
}

fn check_owner(project_id: &str, key: &str) -> Result<()> {
    if project_of_manifest_key(key) == Some(project_id) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "snapshot {key} does not belong to project {project_id}"
        )))
    }
}

/// Points `latest` at snapshot `key`.
pub async fn set_latest(blobs: &dyn BlobStore, project_id: &str, key: &str) -> Result<()> {
    set_pointer(blobs, project_id, &latest_key(project_id), key).await
}

/// The manifest key `latest` points at, or `None` before the first snapshot.
pub async fn get_latest(blobs: &dyn BlobStore, project_id: &str) -> Result<Option<String>> {
    get_pointer(blobs, project_id, &latest_key(project_id)).await
}

/// The snapshot of the tree the project started from, if one was recorded.
pub async fn get_base(blobs: &dyn BlobStore, project_id: &str) -> Result<Option<String>> {
    get_pointer(blobs, project_id, &base_key(project_id)).await
}

/// Records the sandbox's tree as the project's starting point, once: only for
/// a project with no snapshot yet (its sandbox still holds the template), so
/// the first version lists what the agent changed rather than every file.
/// Returns whether it recorded one.
pub async fn record_base(
    blobs: &dyn BlobStore,
    sandbox: &dyn Sandbox,
    template: &str,
) -> Result<bool> {
    let project_id = sandbox.project_id();
    if get_base(blobs, project_id).await?.is_some()
        || get_latest(blobs, project_id).await?.is_some()
    {
        return Ok(false);
    }
    let tree = sandbox.export_source().await?;
    if tree.files.is_empty() {
        return Ok(false);
    }
    let info = write_snapshot(blobs, project_id, template, &tree).await?;
    set_pointer(blobs, project_id, &base_key(project_id), &info.key).await?;
    Ok(true)
}

async fn set_pointer(
    blobs: &dyn BlobStore,
    project_id: &str,
    pointer: &str,
    key: &str,
) -> Result<()> {
    check_project_id(project_id)?;
    check_owner(project_id, key)?;
    blobs.put(pointer, Bytes::from(key.to_string())).await?;
    Ok(())
}

async fn get_pointer(
    blobs: &dyn BlobStore,
    project_id: &str,
    pointer: &str,
) -> Result<Option<String>> {
    check_project_id(project_id)?;
    match blobs.get(pointer).await {
        Ok(data) => {
            let key = String::from_utf8(data.to_vec())
                .map_err(|_| Error::Blob(format!("{pointer} is not text")))?;
            check_owner(project_id, &key)?;
            Ok(Some(key))
        }
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes everything stored for `project_id` (objects, manifests, pointers);
/// returns how many blobs went. Only for purging a deleted project.
pub async fn delete_project_blobs(blobs: &dyn BlobStore, project_id: &str) -> Result<usize> {
    check_project_id(project_id)?;
    let keys = blobs.list(&project_prefix(project_id)).await?;
    let n = keys.len();
    futures::stream::iter(keys)
        .map(|k| async move { blobs.delete(&k).await })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(n)
}
