//! The snapshot format: blob keys and the JSON manifest that lists a tree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::is_valid_id;
use crate::error::{Error, Result};

/// The manifest format this code writes and reads.
pub const FORMAT: u32 = 1;

/// One snapshot: every source file with the object holding its contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The project.
    pub project_id: String,
    /// Snapshot id (time-ordered UUID), also the manifest's file name.
    pub snapshot_id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// The starter the project began from (`app`, `minimal`, …); absent in
    /// snapshots written before starters were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Files, sorted by path.
    pub files: Vec<ManifestEntry>,
}

/// One file of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative `/`-separated path.
    pub path: String,
    /// Lower-case hex SHA-256 of the contents (the object's name).
    pub sha256: String,
    /// Size of the contents in bytes.
    pub size: u64,
    /// Whether the file is executable.
    pub executable: bool,
    /// Size of the stored (zstd-compressed) object, for upload verification.
    pub stored_size: u64,
    /// SHA-256 of the stored object, for upload verification.
    pub stored_sha256: String,
}

impl Manifest {
    /// Parses and checks a stored manifest.
    pub fn parse(data: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(data)
            .map_err(|e| Error::Blob(format!("snapshot manifest is not valid: {e}")))?;
        if m.format != FORMAT {
            return Err(Error::Blob(format!(
                "snapshot manifest format {} is not supported (expected {FORMAT})",
                m.format
            )));
        }
        for f in &m.files {
            if !is_sha256_hex(&f.sha256) || !is_sha256_hex(&f.stored_sha256) {
                return Err(Error::Blob(format!(
                    "snapshot manifest has a bad checksum for {:?}",
                    f.path
                )));
            }
        }
        Ok(m)
    }
}

/// Whether `s` is a lower-case hex SHA-256 (so it is safe inside a key).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a project id before it goes into a key.
pub fn check_project_id(project_id: &str) -> Result<()> {
    if is_valid_id(project_id) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{project_id:?} is not a project id"
        )))
    }
}

/// `projects/{id}/`: everything stored for one project.
pub fn project_prefix(project_id: &str) -> String {
    format!("projects/{project_id}/")
}

/// `projects/{id}/objects/{sha256}`: one file's contents, zstd-compressed.
pub fn object_key(project_id: &str, sha256: &str) -> String {
    format!("projects/{project_id}/objects/{sha256}")
}

/// `projects/{id}/snapshots/{snapshot_id}.json`: one snapshot's manifest.
pub fn manifest_key(project_id: &str, snapshot_id: &str) -> String {
    format!("projects/{project_id}/snapshots/{snapshot_id}.json")
}

/// `projects/{id}/latest`: the manifest key of the newest snapshot (the one wake restores).
pub fn latest_key(project_id: &str) -> String {
    format!("projects/{project_id}/latest")
}

/// `projects/{id}/base`: the manifest key of the tree the project started
/// from (the template), which the first version's changes are shown against.
pub fn base_key(project_id: &str) -> String {
    format!("projects/{project_id}/base")
}

/// The project a manifest key belongs to, if `key` has the manifest shape.
pub fn project_of_manifest_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("projects/")?;
    let (project, tail) = rest.split_once('/')?;
    let name = tail.strip_prefix("snapshots/")?;
    let id = name.strip_suffix(".json")?;
    (is_valid_id(project) && is_valid_id(id)).then_some(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = manifest_key("p-1", "0190-ab");
        assert_eq!(k, "projects/p-1/snapshots/0190-ab.json");
        assert_eq!(project_of_manifest_key(&k), Some("p-1"));
        assert_eq!(project_of_manifest_key("projects/p/objects/x"), None);
        assert_eq!(
            project_of_manifest_key("projects/../snapshots/x.json"),
            None
        );
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(!is_sha256_hex(&"A".repeat(64)));
    }

    #[test]
    fn rejects_other_formats_and_bad_checksums() {
        let m = Manifest {
            format: 2,
            project_id: "p".into(),
            snapshot_id: "s".into(),
            created_at: crate::domain::now(),
            template: None,
            files: vec![],
        };
        assert!(Manifest::parse(&serde_json::to_vec(&m).unwrap()).is_err());
        let mut ok = m.clone();
        ok.format = FORMAT;
        assert!(Manifest::parse(&serde_json::to_vec(&ok).unwrap()).is_ok());
        ok.files.push(ManifestEntry {
            path: "a".into(),
            sha256: "../x".into(),
            size: 0,
            executable: false,
            stored_size: 0,
            stored_sha256: "0".repeat(64),
        });
        assert!(Manifest::parse(&serde_json::to_vec(&ok).unwrap()).is_err());
        assert!(Manifest::parse(b"not json").is_err());
    }
}
