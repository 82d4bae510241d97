//! A [`SourceTree`] as one tar stream: how export and import travel between
//! `RemoteSandbox` and `apna sandboxd`.
//!
//! Only regular files, in the tree's order, mode 0644 or 0755, no owners or
//! times (a tree has none); long paths use GNU long-name entries. Reading
//! never unpacks onto a disk: every entry becomes a [`SourceFile`] whose path
//! is checked by the workspace like any other, and anything but a regular file
//! (a link, a device, a directory) is refused.

use std::io::Read;

use crate::error::{Error, Result};
use crate::sandbox::{SourceFile, SourceTree};

/// Largest source tree accepted in one import (the sum of the entries' sizes).
pub const MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;

/// Writes `tree` as a tar archive.
pub fn to_tar(tree: &SourceTree) -> Result<Vec<u8>> {
    let size: usize = tree.files.iter().map(|f| f.data.len() + 1024).sum();
    let mut builder = tar::Builder::new(Vec::with_capacity(size + 1024));
    for f in &tree.files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(if f.executable { 0o755 } else { 0o644 });
        header.set_size(f.data.len() as u64);
        header.set_mtime(0);
        builder
            .append_data(&mut header, &f.path, f.data.as_slice())
            .map_err(|e| Error::InvalidInput(format!("{} cannot be archived: {e}", f.path)))?;
    }
    builder
        .into_inner()
        .map_err(|e| Error::Internal(format!("tar: {e}")))
}

/// Reads a tar archive written by [`to_tar`] (or any tar of regular files).
pub fn from_tar(data: &[u8]) -> Result<SourceTree> {
    let bad =
        |e: std::io::Error| Error::InvalidInput(format!("the source archive is malformed: {e}"));
    let mut archive = tar::Archive::new(data);
    let mut files = Vec::new();
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = String::from_utf8(entry.path_bytes().into_owned()).map_err(|_| {
            Error::InvalidInput("the source archive has a path that is not UTF-8".into())
        })?;
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            return Err(Error::InvalidInput(format!(
                "the source archive's entry {path:?} is not a regular file ({kind:?}); only files are imported"
            )));
        }
        total = total.saturating_add(entry.size());
        if total > MAX_SOURCE_BYTES {
            return Err(Error::TooLarge(format!(
                "the source tree is over the {MAX_SOURCE_BYTES} byte limit"
            )));
        }
        let mode = entry.header().mode().map_err(bad)?;
        let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry.read_to_end(&mut data).map_err(bad)?;
        files.push(SourceFile {
            path,
            data,
            executable: mode & 0o111 != 0,
        });
    }
    Ok(SourceTree { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bytes_modes_and_long_paths() {
        let long = format!("src/{}/x.ts", "d".repeat(200));
        let tree = SourceTree {
            files: vec![
                SourceFile {
                    path: "a b/'q'/$(x).bin".into(),
                    data: (0..=255u8).collect(),
                    executable: false,
                },
                SourceFile {
                    path: long,
                    data: Vec::new(),
                    executable: true,
                },
            ],
        };
        assert_eq!(from_tar(&to_tar(&tree).unwrap()).unwrap(), tree);
    }

    #[test]
    fn refuses_links_and_garbage() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "esc", "/etc").unwrap();
        let e = from_tar(&b.into_inner().unwrap()).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        let e = from_tar(&[7u8; 700]).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    }
}
