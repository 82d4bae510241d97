//! Deploys: a build's files uploaded under their own prefix with a manifest,
//! checked, and only then made to serve by flipping the site's entry.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::build::SiteFile;
use super::layout::{
    deploy_prefix, entry_key, headers_for, is_deploy_id, is_top_level_copy, manifest_key,
    manifests_prefix, site_prefix, DEPLOY_DIR,
};
use crate::blob::{sha256_hex, BlobStore};
use crate::error::{Error, Result};

/// The manifest format this code writes and reads.
pub const FORMAT: u32 = 1;

/// Blob requests in flight at once.
const PARALLEL: usize = 16;

/// One deploy: which files it has, where, and what they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployManifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The project.
    pub project_id: String,
    /// The slug whose prefix holds the files.
    pub slug: String,
    /// The deploy id (also its URL and key segment).
    pub deploy_id: String,
    /// The version built.
    pub version: i64,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
    /// Files, sorted by path.
    pub files: Vec<DeployFile>,
}

/// One file of a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployFile {
    /// Path relative to the deploy (`assets/index-x.js`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

impl DeployManifest {
    /// The deploy's total size in bytes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The key of one of its files.
    pub fn key(&self, path: &str) -> String {
        format!("{}{path}", deploy_prefix(&self.slug, &self.deploy_id))
    }
}

/// Uploads `files` as deploy `deploy_id` of `slug`, then its manifest. Each
/// put is checked against its SHA-256 by the blob store.
pub async fn upload(
    blobs: &dyn BlobStore,
    project_id: &str,
    slug: &str,
    deploy_id: &str,
    version: i64,
    files: &[SiteFile],
) -> Result<DeployManifest> {
    if !is_deploy_id(deploy_id) {
        return Err(Error::Internal(format!("bad deploy id {deploy_id:?}")));
    }
    let prefix = deploy_prefix(slug, deploy_id);
    let jobs: Vec<_> = files
        .iter()
        .map(|f| {
            let key = format!("{prefix}{}", f.path);
            let headers = headers_for(&format!("{DEPLOY_DIR}/{deploy_id}/{}", f.path));
            let data = Bytes::from(f.data.clone());
            async move { blobs.put_served(&key, data, &headers).await }
        })
        .collect();
    let metas: Vec<_> = futures::stream::iter(jobs)
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    let mut entries: Vec<DeployFile> = files
        .iter()
        .zip(metas)
        .map(|(f, m)| DeployFile {
            path: f.path.clone(),
            size: m.size,
            sha256: m.sha256,
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = DeployManifest {
        format: FORMAT,
        project_id: project_id.to_string(),
        slug: slug.to_string(),
        deploy_id: deploy_id.to_string(),
        version,
        created_at: crate::domain::now(),
        files: entries,
    };
    let body = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Internal(format!("deploy manifest: {e}")))?;
    blobs
        .put(
            &manifest_key(project_id, slug, deploy_id),
            Bytes::from(body),
        )
        .await?;
    Ok(manifest)
}

/// Copies deploy `from` (another slug's) to `slug` under the same id, for a
/// rename: the files are read back and written again, checked like an upload.
pub async fn copy(
    blobs: &dyn BlobStore,
    from: &DeployManifest,
    slug: &str,
) -> Result<DeployManifest> {
    let jobs: Vec<_> = from
        .files
        .iter()
        .map(|f| async move {
            let data = blobs.get(&from.key(&f.path)).await?;
            if sha256_hex(&data) != f.sha256 {
                return Err(Error::Blob(format!(
                    "deploy file {} does not match its checksum",
                    from.key(&f.path)
                )));
            }
            Ok(SiteFile {
                path: f.path.clone(),
                data: data.to_vec(),
            })
        })
        .collect();
    let files: Vec<SiteFile> = futures::stream::iter(jobs)
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    upload(
        blobs,
        &from.project_id,
        slug,
        &from.deploy_id,
        from.version,
        &files,
    )
    .await
}

/// Checks every file of a deploy is stored with the size and checksum its
/// manifest records, without downloading them.
pub async fn verify(blobs: &dyn BlobStore, manifest: &DeployManifest) -> Result<()> {
    if !manifest.files.iter().any(|f| f.path == "index.html") {
        return Err(Error::Blob(format!(
            "deploy {} has no index.html",
            manifest.deploy_id
        )));
    }
    let jobs: Vec<_> = manifest
        .files
        .iter()
        .map(|f| async move {
            let key = manifest.key(&f.path);
            match blobs.head(&key).await? {
                Some(m) if m.size == f.size && m.sha256 == f.sha256 => Ok(()),
                Some(_) => Err(Error::Blob(format!(
                    "{key} does not match what was uploaded"
                ))),
                None => Err(Error::Blob(format!("{key} is missing"))),
            }
        })
        .collect();
    futures::stream::iter(jobs)
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Reads a deploy's manifest; `None` if there is none.
pub async fn load(
    blobs: &dyn BlobStore,
    project_id: &str,
    slug: &str,
    deploy_id: &str,
) -> Result<Option<DeployManifest>> {
    if !is_deploy_id(deploy_id) || !crate::domain::is_valid_id(slug) {
        return Ok(None);
    }
    match blobs.get(&manifest_key(project_id, slug, deploy_id)).await {
        Ok(body) => parse(&body, project_id).map(Some),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse(body: &[u8], project_id: &str) -> Result<DeployManifest> {
    let m: DeployManifest = serde_json::from_slice(body)
        .map_err(|e| Error::Blob(format!("deploy manifest is not valid: {e}")))?;
    if m.format != FORMAT
        || m.project_id != project_id
        || !is_deploy_id(&m.deploy_id)
        || !crate::domain::is_valid_id(&m.slug)
        || m.files
            .iter()
            .any(|f| crate::sandbox::ProjectPath::parse(&f.path).is_err())
    {
        return Err(Error::Blob(format!(
            "deploy manifest {} is not one of this project's",
            m.deploy_id
        )));
    }
    Ok(m)
}

/// Every deploy manifest of a project, oldest first.
pub async fn list(blobs: &dyn BlobStore, project_id: &str) -> Result<Vec<DeployManifest>> {
    let keys = blobs.list(&manifests_prefix(project_id)).await?;
    let jobs: Vec<_> = keys
        .iter()
        .map(|k| async move { parse(&blobs.get(k).await?, project_id) })
        .collect();
    let mut all: Vec<DeployManifest> = futures::stream::iter(jobs)
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    all.sort_by_key(|a| a.created_at);
    Ok(all)
}

/// Makes a verified deploy serve: copies its top-level files to the top of
/// the site, then flips the entry to its `index.html` (one write: a reader
/// gets the old entry or the new one), then removes top-level copies the new
/// deploy does not have.
pub async fn activate(blobs: &dyn BlobStore, manifest: &DeployManifest) -> Result<()> {
    let slug = &manifest.slug;
    let copies: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| is_top_level_copy(&f.path))
        .map(|f| async move {
            let data = blobs.get(&manifest.key(&f.path)).await?;
            blobs
                .put_served(
                    &format!("{}{}", site_prefix(slug), f.path),
                    data,
                    &headers_for(&f.path),
                )
                .await
        })
        .collect();
    futures::stream::iter(copies)
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<_>>()
        .await?;
    let index = blobs.get(&manifest.key("index.html")).await?;
    let expected = manifest
        .files
        .iter()
        .find(|f| f.path == "index.html")
        .map(|f| f.sha256.clone());
    if Some(sha256_hex(&index)) != expected {
        return Err(Error::Blob(format!(
            "deploy {}'s index.html does not match its manifest",
            manifest.deploy_id
        )));
    }
    blobs
        .put_served(&entry_key(slug), index, &headers_for("index.html"))
        .await?;
    let keep: HashSet<String> = manifest
        .files
        .iter()
        .filter(|f| is_top_level_copy(&f.path))
        .map(|f| format!("{}{}", site_prefix(slug), f.path))
        .chain([entry_key(slug)])
        .collect();
    let deploys = format!("{}{DEPLOY_DIR}/", site_prefix(slug));
    let stale: Vec<String> = blobs
        .list(&site_prefix(slug))
        .await?
        .into_iter()
        .filter(|k| !k.starts_with(&deploys) && !keep.contains(k))
        .collect();
    delete_all(blobs, stale).await
}

/// The deploy the entry of `slug` serves now, among `deploys`: the one whose
/// `index.html` it is a copy of (each deploy's differs: it names its prefix).
pub async fn serving<'a>(
    blobs: &dyn BlobStore,
    slug: &str,
    deploys: &'a [DeployManifest],
) -> Result<Option<&'a DeployManifest>> {
    let Some(head) = blobs.head(&entry_key(slug)).await? else {
        return Ok(None);
    };
    Ok(deploys.iter().find(|d| {
        d.slug == slug
            && d.files
                .iter()
                .any(|f| f.path == "index.html" && f.sha256 == head.sha256)
    }))
}

/// Takes a slug's site offline and removes its files: the entry first, so it
/// stops serving at once, then everything else under its prefix.
pub async fn remove_site(blobs: &dyn BlobStore, slug: &str) -> Result<()> {
    blobs.delete(&entry_key(slug)).await?;
    let keys = blobs.list(&site_prefix(slug)).await?;
    delete_all(blobs, keys).await
}

/// Deletes deploys (files and manifests) that are not in `keep`.
pub async fn prune(
    blobs: &dyn BlobStore,
    deploys: &[DeployManifest],
    keep: &HashSet<&str>,
) -> Result<()> {
    for d in deploys
        .iter()
        .filter(|d| !keep.contains(d.deploy_id.as_str()))
    {
        let files = blobs.list(&deploy_prefix(&d.slug, &d.deploy_id)).await?;
        delete_all(blobs, files).await?;
        blobs
            .delete(&manifest_key(&d.project_id, &d.slug, &d.deploy_id))
            .await?;
    }
    Ok(())
}

async fn delete_all(blobs: &dyn BlobStore, keys: Vec<String>) -> Result<()> {
    futures::stream::iter(keys)
        .map(|k| async move { blobs.delete(&k).await })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
