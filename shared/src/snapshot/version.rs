//! Versions: one snapshot per finished run, diffable and restorable.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::archive::{
    get_base, load_entries, load_tree, read_manifest, set_latest, write_snapshot,
};
use super::diff::{diff_trees, unified_diff, without_text};
use super::lock::MaintenanceLock;
use crate::blob::BlobStore;
use crate::domain::{FileDiff, ProjectStatus, Version};
use crate::error::{Error, Result};
use crate::sandbox::{Sandbox, SourceTree};
use crate::store::Store;

/// A version's changes against the version before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDiff {
    /// The version.
    pub number: i64,
    /// All changes as one unified diff.
    pub diff: String,
    /// Per-file changes, with their diff texts.
    pub file_diffs: Vec<FileDiff>,
}

/// Snapshots the sandbox and records it as the project's next version, with
/// the files changed since the previous version, then points `latest` at it.
/// Retrying with the same `run_id` returns the version already recorded.
pub async fn record_version(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sandbox: &dyn Sandbox,
    project_id: &str,
    run_id: Option<&str>,
    summary: &str,
) -> Result<Version> {
    let span = tracing::info_span!("record_version", project_id = %project_id, run_id = ?run_id);
    async move {
        check_sandbox(sandbox, project_id)?;
        let versions = store.list_versions(project_id).await?;
        let previous = versions.last();
        if let (Some(last), Some(run)) = (previous, run_id) {
            if last.run_id.as_deref() == Some(run) {
                // The first attempt may have stopped before moving the pointer.
                set_latest(blobs, project_id, &last.snapshot_key).await?;
                return Ok(last.clone());
            }
        }
        let tree = sandbox.export_source().await?;
        let template = store
            .get_project(project_id)
            .await?
            .map(|p| p.template)
            .unwrap_or_else(|| crate::domain::DEFAULT_TEMPLATE.to_string());
        let info = write_snapshot(blobs, project_id, &template, &tree).await?;
        let old = match previous {
            Some(v) => changed_part_of(blobs, &v.snapshot_key, &tree).await?,
            None => starting_tree(blobs, project_id, &tree).await?,
        };
        let diffs = without_text(diff_trees(&old, &tree));
        let version = store
            .create_version(project_id, run_id, &info.key, summary, &diffs)
            .await?;
        set_latest(blobs, project_id, &info.key).await?;
        tracing::info!(
            number = version.number,
            files = diffs.len(),
            "version recorded"
        );
        Ok(version)
    }
    .instrument(span)
    .await
}

/// What the first version is compared with: the project's starting tree
/// (see [`super::record_base`]), or nothing for projects older than that.
async fn starting_tree(
    blobs: &dyn BlobStore,
    project_id: &str,
    tree: &SourceTree,
) -> Result<SourceTree> {
    match get_base(blobs, project_id).await? {
        Some(base) => changed_part_of(blobs, &base, tree).await,
        None => Ok(SourceTree::default()),
    }
}

/// The files of snapshot `key` that differ from `tree` (only those are
/// downloaded); files equal in both are copied from `tree` so the diff skips them.
async fn changed_part_of(
    blobs: &dyn BlobStore,
    key: &str,
    tree: &SourceTree,
) -> Result<SourceTree> {
    let manifest = read_manifest(blobs, key).await?;
    let current: HashMap<&str, (String, bool)> = tree
        .files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                (crate::blob::sha256_hex(&f.data), f.executable),
            )
        })
        .collect();
    let (same, changed): (Vec<_>, Vec<_>) = manifest
        .files
        .into_iter()
        .partition(|e| current.get(e.path.as_str()) == Some(&(e.sha256.clone(), e.executable)));
    let mut old = load_entries(blobs, &manifest.project_id, &changed).await?;
    let same_paths: std::collections::HashSet<&str> =
        same.iter().map(|e| e.path.as_str()).collect();
    old.files.extend(
        tree.files
            .iter()
            .filter(|f| same_paths.contains(f.path.as_str()))
            .cloned(),
    );
    old.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(old)
}

/// Puts version `number`'s files back into the sandbox and records that as a
/// NEW version "Restored version N" (history is never rewritten). The project
/// must be awake (ready or failed) and not running: the restore holds the run
/// lock, so it fails with `Conflict` while a run is active.
pub async fn restore_version(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sandbox: &dyn Sandbox,
    project_id: &str,
    number: i64,
) -> Result<Version> {
    let span = tracing::info_span!("restore_version", project_id = %project_id, number);
    async move {
        check_sandbox(sandbox, project_id)?;
        let target = store
            .get_version(project_id, number)
            .await?
            .ok_or_else(|| Error::NotFound(format!("version {number} does not exist")))?;
        let lock = match MaintenanceLock::acquire(store, project_id, "restore").await? {
            Ok(lock) => lock,
            Err(holder) => {
                return Err(Error::Conflict(format!(
                    "the project is busy ({}); try again when it finishes",
                    holder.unwrap_or_else(|| "locked".into())
                )))
            }
        };
        let result = async {
            let project = store
                .get_project(project_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("project {project_id} does not exist")))?;
            match project.status {
                ProjectStatus::Ready | ProjectStatus::Failed => {}
                ProjectStatus::Hibernated => {
                    return Err(Error::NotReady(
                        "the project is asleep; wake it before restoring a version".into(),
                    ))
                }
                other => {
                    return Err(Error::Conflict(format!(
                        "cannot restore a version while the project is {}",
                        other.as_str()
                    )))
                }
            }
            let tree = load_tree(blobs, &target.snapshot_key).await?;
            super::wake::import_with_dependencies(sandbox, &tree).await?;
            let mut restored = record_version(
                store,
                blobs,
                sandbox,
                project_id,
                None,
                &format!("Restored version {number}"),
            )
            .await?;
            // The same files: the same app, so the same screenshots.
            if !target.screenshots.is_empty() {
                store
                    .set_version_screenshots(project_id, restored.number, &target.screenshots)
                    .await?;
                restored.screenshots = target.screenshots.clone();
            }
            Ok(restored)
        }
        .await;
        lock.release(store).await;
        result
    }
    .instrument(span)
    .await
}

/// Version `number`'s changes against the version before it (or, for the
/// first, against the tree the project started from), computed from the two
/// snapshots.
pub async fn version_diff(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    project_id: &str,
    number: i64,
) -> Result<VersionDiff> {
    let version = store
        .get_version(project_id, number)
        .await?
        .ok_or_else(|| Error::NotFound(format!("version {number} does not exist")))?;
    let new = load_tree(blobs, &version.snapshot_key).await?;
    let old = match store.get_version(project_id, number - 1).await? {
        Some(prev) if number > 1 => changed_part_of(blobs, &prev.snapshot_key, &new).await?,
        _ => starting_tree(blobs, project_id, &new).await?,
    };
    let file_diffs = diff_trees(&old, &new);
    Ok(VersionDiff {
        number,
        diff: unified_diff(&file_diffs),
        file_diffs,
    })
}

fn check_sandbox(sandbox: &dyn Sandbox, project_id: &str) -> Result<()> {
    if sandbox.project_id() == project_id {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "sandbox of {} used for project {project_id}",
            sandbox.project_id()
        )))
    }
}
