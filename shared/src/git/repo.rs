//! A project's history as Git objects, built in memory from its versions'
//! snapshots: one commit per version, each with that version's tree.
//!
//! The repository is a pure function of the version list (ids, trees,
//! messages, author, times), so building it again gives the same commit ids:
//! a later push finds the remote's tip among them and sends only what is new.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use gix_hash::ObjectId;
use gix_object::tree::{Entry, EntryKind};
use gix_object::{Kind, WriteTo};

use crate::error::{Error, Result};
use crate::sandbox::SourceTree;

/// Who the commits are by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// Name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// One version to commit: its tree, message and time.
#[derive(Debug, Clone)]
pub struct VersionCommit {
    /// Version number.
    pub number: i64,
    /// The commit message (the version's summary).
    pub message: String,
    /// Seconds since the epoch (author and committer time, UTC).
    pub time: i64,
    /// The files.
    pub tree: SourceTree,
}

/// Git objects in memory, and the commit of each version in order.
#[derive(Debug, Default)]
pub struct Repo {
    objects: BTreeMap<ObjectId, (Kind, Vec<u8>)>,
    /// `(version number, commit id)`, oldest first.
    pub commits: Vec<(i64, ObjectId)>,
}

fn git_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("git {what}: {e}"))
}

impl Repo {
    /// Commits `versions` in order, each the parent of the next.
    pub fn build(author: &Author, versions: &[VersionCommit]) -> Result<Repo> {
        let mut repo = Repo::default();
        let mut parent: Option<ObjectId> = None;
        let signature = |time: i64| gix_actor::Signature {
            name: author.name.as_str().into(),
            email: author.email.as_str().into(),
            time: gix_actor::date::Time {
                seconds: time,
                offset: 0,
            },
        };
        for v in versions {
            let tree = repo.write_tree(&v.tree)?;
            let mut message = v.message.trim().to_string();
            if message.is_empty() {
                message = format!("Version {}", v.number);
            }
            message.push('\n');
            let commit = gix_object::Commit {
                tree,
                parents: parent.into_iter().collect(),
                author: signature(v.time),
                committer: signature(v.time),
                encoding: None,
                message: message.into(),
                extra_headers: Vec::new(),
            };
            let id = repo.write(&commit)?;
            repo.commits.push((v.number, id));
            parent = Some(id);
        }
        Ok(repo)
    }

    /// The newest commit.
    pub fn head(&self) -> Option<ObjectId> {
        self.commits.last().map(|(_, id)| *id)
    }

    fn write(&mut self, object: &dyn WriteTo) -> Result<ObjectId> {
        let mut data = Vec::with_capacity(object.size() as usize);
        object
            .write_to(&mut data)
            .map_err(|e| git_err("encode", e))?;
        self.insert(object.kind(), data)
    }

    fn insert(&mut self, kind: Kind, data: Vec<u8>) -> Result<ObjectId> {
        let id = gix_object::compute_hash(gix_hash::Kind::Sha1, kind, &data)
            .map_err(|e| git_err("hash", e))?;
        self.objects.entry(id).or_insert((kind, data));
        Ok(id)
    }

    /// Writes the blobs and trees of `tree`; returns the root tree's id.
    fn write_tree(&mut self, tree: &SourceTree) -> Result<ObjectId> {
        // Directory path ("" = root) → its entries.
        let mut dirs: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        dirs.insert(String::new(), Vec::new());
        for f in &tree.files {
            let blob = self.insert(Kind::Blob, f.data.clone())?;
            let (dir, name) = f.path.rsplit_once('/').unwrap_or(("", f.path.as_str()));
            let kind = if f.executable {
                EntryKind::BlobExecutable
            } else {
                EntryKind::Blob
            };
            dirs.entry(dir.to_string()).or_default().push(Entry {
                mode: kind.into(),
                filename: name.into(),
                oid: blob,
            });
            // Every ancestor directory exists, even when it holds only folders.
            let mut d = dir;
            while !d.is_empty() {
                d = d.rsplit_once('/').map_or("", |(p, _)| p);
                dirs.entry(d.to_string()).or_default();
            }
        }
        // Deepest first, so a folder's tree exists before its parent's.
        let mut paths: Vec<String> = dirs.keys().cloned().collect();
        paths.sort_by_key(|p| {
            std::cmp::Reverse(if p.is_empty() {
                0
            } else {
                p.matches('/').count() + 1
            })
        });
        let mut ids: BTreeMap<String, ObjectId> = BTreeMap::new();
        for path in paths {
            let mut entries = dirs.remove(&path).unwrap_or_default();
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            for (child, id) in ids.iter().filter(|(c, _)| {
                c.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
                    && (!path.is_empty() || !c.is_empty())
            }) {
                let name = &child[prefix.len()..];
                entries.push(Entry {
                    mode: EntryKind::Tree.into(),
                    filename: name.into(),
                    oid: *id,
                });
            }
            // Git's order: names compared as if a tree's had a trailing '/'.
            entries.sort();
            let id = self.write(&gix_object::Tree { entries })?;
            ids.insert(path, id);
        }
        ids.get("")
            .copied()
            .ok_or_else(|| git_err("tree", "no root"))
    }

    /// Every object reachable from `commit` (its ancestors, their trees and blobs).
    pub fn reachable(&self, commit: ObjectId) -> Result<HashSet<ObjectId>> {
        let mut seen = HashSet::new();
        let mut stack = vec![commit];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let (kind, data) = self
                .objects
                .get(&id)
                .ok_or_else(|| git_err("walk", format!("object {id} is missing")))?;
            match kind {
                Kind::Commit => {
                    let c = gix_object::CommitRef::from_bytes(data, gix_hash::Kind::Sha1)
                        .map_err(|e| git_err("commit", e))?;
                    stack.push(c.tree());
                    stack.extend(c.parents());
                }
                Kind::Tree => {
                    let t = gix_object::TreeRef::from_bytes(data, gix_hash::Kind::Sha1)
                        .map_err(|e| git_err("tree", e))?;
                    stack.extend(t.entries.iter().map(|e| e.oid.to_owned()));
                }
                _ => {}
            }
        }
        Ok(seen)
    }

    /// A pack (version 2) of the objects reachable from `tip` and not from
    /// `have` (a commit the receiver already has), and how many it holds.
    ///
    /// The container is written here rather than with `gix-pack`, whose
    /// writer needs its `generate` feature (gix-traverse, gix-diff and more
    /// compile time) for what is a header, one zlib stream per object and a
    /// SHA-1 trailer; the objects themselves are encoded by `gix-object`.
    pub fn pack(&self, tip: ObjectId, have: Option<ObjectId>) -> Result<(Vec<u8>, usize)> {
        let mut wanted = self.reachable(tip)?;
        if let Some(h) = have {
            for id in self.reachable(h)? {
                wanted.remove(&id);
            }
        }
        let mut ids: Vec<ObjectId> = wanted.into_iter().collect();
        ids.sort();
        let mut out = Vec::new();
        out.extend_from_slice(b"PACK");
        out.extend_from_slice(&2u32.to_be_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in &ids {
            let (kind, data) = &self.objects[id];
            let code: u8 = match kind {
                Kind::Commit => 1,
                Kind::Tree => 2,
                Kind::Blob => 3,
                Kind::Tag => 4,
            };
            // Type and size: 3 bits of type, then the size 4 + 7·n bits at a time.
            let mut size = data.len() as u64;
            let mut byte = (code << 4) | (size & 0x0f) as u8;
            size >>= 4;
            while size > 0 {
                out.push(byte | 0x80);
                byte = (size & 0x7f) as u8;
                size >>= 7;
            }
            out.push(byte);
            let mut z = flate2::write::ZlibEncoder::new(&mut out, flate2::Compression::default());
            z.write_all(data).map_err(|e| git_err("pack", e))?;
            z.finish().map_err(|e| git_err("pack", e))?;
        }
        let mut hasher = gix_hash::hasher(gix_hash::Kind::Sha1);
        hasher.update(&out);
        let trailer = hasher.try_finalize().map_err(|e| git_err("pack", e))?;
        out.extend_from_slice(trailer.as_slice());
        Ok((out, ids.len()))
    }

    /// A Git bundle (v2) of the whole history with `refs/heads/{branch}` at the newest commit.
    pub fn bundle(&self, branch: &str) -> Result<Vec<u8>> {
        let head = self
            .head()
            .ok_or_else(|| Error::Conflict("the project has no versions yet".into()))?;
        let mut out =
            format!("# v2 git bundle\n{head} refs/heads/{branch}\n{head} HEAD\n\n").into_bytes();
        out.extend(self.pack(head, None)?.0);
        Ok(out)
    }
}
