//! A source tree as a zip file, for the download endpoint.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::error::{Error, Result};
use crate::sandbox::SourceTree;

/// Zips `tree` (deflate; executables keep mode 755, other files 644).
pub fn zip_tree(tree: &SourceTree) -> Result<Vec<u8>> {
    let zip_err = |e: zip::result::ZipError| Error::Internal(format!("zip: {e}"));
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for f in &tree.files {
        let mode = if f.executable { 0o755 } else { 0o644 };
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(mode)
            .large_file(f.data.len() as u64 >= u32::MAX as u64);
        zip.start_file(f.path.as_str(), opts).map_err(zip_err)?;
        zip.write_all(&f.data)?;
    }
    Ok(zip.finish().map_err(zip_err)?.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::sandbox::SourceFile;

    #[test]
    fn zip_round_trips() {
        let tree = SourceTree {
            files: vec![
                SourceFile {
                    path: "package.json".into(),
                    data: b"{}".to_vec(),
                    executable: false,
                },
                SourceFile {
                    path: "scripts/run.sh".into(),
                    data: b"#!/bin/sh\n".to_vec(),
                    executable: true,
                },
            ],
        };
        let bytes = zip_tree(&tree).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        let mut f = archive.by_name("scripts/run.sh").unwrap();
        assert_eq!(f.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "#!/bin/sh\n");
    }
}
