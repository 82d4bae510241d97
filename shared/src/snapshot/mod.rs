//! Source-only snapshots, versions, hibernation and wake.
//!
//! A snapshot holds a project's source tree as [`Sandbox::export_source`]
//! gives it (gitignore-aware; never `node_modules`, `dist`, `.vite`, caches).
//!
//! # Keys in the blob store
//!
//! * `projects/{id}/objects/{sha256}` — one file's contents, zstd-compressed,
//!   named by the SHA-256 of the uncompressed contents. Written once, never
//!   changed: a file that is the same in many snapshots is stored once.
//! * `projects/{id}/snapshots/{snapshot_id}.json` — the manifest of one
//!   snapshot ([`Manifest`]): each file's path, SHA-256, size, executable bit,
//!   and the stored object's size and SHA-256 (for upload verification). The
//!   snapshot id is a time-ordered UUID, so listing the prefix lists snapshots
//!   oldest first. A version's `snapshot_key` is its manifest key.
//! * `projects/{id}/latest` — the manifest key (as text) of the newest
//!   snapshot: what wake restores. Moved after every version and hibernation.
//! * `projects/{id}/base` — the manifest key of the tree the project started
//!   from (the template), recorded once before the first run changes it; the
//!   first version's changes are shown against it. Its objects are the ones
//!   the first version reuses, so it costs a manifest.
//!
//! Snapshots are never deleted while the project exists; a deleted project's
//! whole `projects/{id}/` prefix goes when it is purged after the retention
//! period ([`delete_project_blobs`], called by `project::purge_deleted`).
//!
//! # Why content-addressed files rather than one tar.zst per snapshot
//!
//! Measured by `cargo bench -p apna --bench snapshot` (2-core dev machine) on
//! the template plus ten generated source files (20 files, 56 KB of source):
//!
//! | | stored |
//! |---|---|
//! | seed: `tar -czf` of the whole folder, `node_modules` included | 28,015 KB (4.1 s) |
//! | one tar.zst (level 9) of the source tree | 13.8 KB per snapshot |
//! | ours, first snapshot (20 objects + 4.8 KB manifest) | 19.8 KB (0.071% of the seed) |
//! | ours, next snapshot after a one-file edit | 5.0 KB (1 new object + manifest) |
//!
//! The first snapshot is ~6 KB larger than a tar.zst (each file is compressed
//! alone, plus the manifest), but every later version stores only the files
//! that changed, where a tar.zst would store the whole tree again; a project
//! with ten versions already stores less. Times (median of 10, local sandbox
//! on disk): snapshot 5.2 ms, verify 1.0 ms, restore 3.0 ms with the
//! filesystem store; 81 / 38 / 46 ms against S3 on moto, where each object is
//! one request and requests run 16 at a time. Restore checks every file
//! against its SHA-256, so a damaged object is caught, not restored.
//!
//! # Public API
//!
//! * [`take_snapshot`], [`load_tree`], [`restore`], [`set_latest`], [`get_latest`],
//!   [`record_base`], [`get_base`], [`verify_snapshot`]: snapshots themselves.
//! * [`diff_trees`], [`unified_diff`], [`zip_tree`]: showing and downloading trees.
//! * [`record_version`], [`restore_version`], [`version_diff`]: versions.
//! * [`hibernate_project`], [`wake_project`], [`release_stale_lock`]:
//!   hibernation (the sweep over idle projects is the hibernation state
//!   machine, `statemachines/hibernation.asl.json`).
//!
//! [`Sandbox::export_source`]: crate::sandbox::Sandbox::export_source

mod archive;
mod diff;
mod download;
mod hibernate;
pub(crate) mod lock;
pub mod manifest;
mod text_edit;
mod version;
mod wake;

pub use archive::{
    delete_project_blobs, get_base, get_latest, load_entries, load_tree, read_manifest,
    record_base, restore, set_latest, starter_of, take_snapshot, verify_objects, verify_snapshot,
    write_snapshot, SnapshotInfo, ZSTD_LEVEL,
};
pub use diff::{diff_trees, unified_diff};
pub use download::zip_tree;
pub use hibernate::{hibernate_project, HibernateOutcome};
pub use lock::{is_maintenance_holder, is_sleep_holder, release_stale_lock, LOCK_TTL};
pub use manifest::Manifest;
pub use text_edit::{edit_text, replace_element_text, TextEdit, TextEdited};
pub use version::{record_version, restore_version, version_diff, VersionDiff};
pub use wake::{import_with_dependencies, wake_project, WakeOutcome, INSTALL_COMMAND};
