//! A project's versions as real Git commits (feature `git`, on by default).
//!
//! Every version is one commit — message = the version's summary, author =
//! the project's owner, time = the version's time, tree = that version's
//! snapshot byte for byte — built in memory with gitoxide's object crate
//! ([`repo`]). `GET /api/projects/{id}/git` downloads it as a bundle;
//! `POST …/git/push` sends it to a remote over smart HTTPS ([`push`]): only
//! the commits the remote lacks, and never over commits it does not know.
//!
//! The remote's URL and branch are kept for the next push in the blob store
//! (`projects/{id}/git-remote.json`); the token only when the person asks.

pub mod push;
pub mod repo;

use std::collections::HashMap;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

pub use push::{check_remote, PushOutcome, Remote};
pub use repo::{Author, Repo, VersionCommit};

use crate::app::Backends;
use crate::domain::Project;
use crate::error::{Error, Result};
use crate::sandbox::{SourceFile, SourceTree};
use crate::snapshot::manifest::ManifestEntry;

/// The branch pushed to when none is given.
pub const DEFAULT_BRANCH: &str = "main";

/// The remote a project last pushed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRemote {
    /// Where.
    pub remote_url: String,
    /// Which branch.
    pub branch: String,
    /// The token, only when the person asked to keep it.
    pub token: Option<String>,
}

/// What a push is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    /// `https://host/owner/repo.git`.
    pub remote_url: String,
    /// Branch; [`DEFAULT_BRANCH`] when `None`.
    pub branch: Option<String>,
    /// Token for the remote; the kept one (same remote) when `None`.
    pub token: Option<String>,
    /// `Some(true)`: keep the token for later pushes; `Some(false)`: forget
    /// a kept one; `None`: leave as it is.
    pub remember_token: Option<bool>,
}

fn remote_key(project_id: &str) -> String {
    format!("projects/{project_id}/git-remote.json")
}

/// The remote the project last pushed to, if any.
pub async fn saved_remote(state: &Backends, project_id: &str) -> Result<Option<SavedRemote>> {
    match state.blobs.get(&remote_key(project_id)).await {
        Ok(body) => Ok(serde_json::from_slice(&body).ok()),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks a branch name as `git check-ref-format` would, simplified.
pub fn check_branch(branch: &str) -> Result<()> {
    let ok = !branch.is_empty()
        && branch.len() <= 200
        && branch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && !branch.starts_with(['-', '/', '.'])
        && !branch.ends_with(['/', '.'])
        && !branch.ends_with(".lock")
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.contains("/.");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "branch {:?} refused: use letters, digits, - _ . and /, such as \"main\"",
            branch.chars().take(80).collect::<String>()
        )))
    }
}

/// The project's history as a repository: one commit per version.
pub async fn repository(state: &Backends, project: &Project) -> Result<Repo> {
    let versions = state.store.list_versions(&project.id).await?;
    let blobs = &*state.blobs;
    // Futures are collected first: a closure inside the stream would make the
    // whole future non-`Send` for callers (a rustc limitation).
    let jobs: Vec<_> = versions
        .iter()
        .map(|v| crate::snapshot::read_manifest(blobs, &v.snapshot_key))
        .collect();
    let manifests: Vec<_> = futures::stream::iter(jobs)
        .buffered(16)
        .try_collect()
        .await?;
    // Each distinct content is read once, however many versions share it.
    let mut unique: HashMap<&str, &ManifestEntry> = HashMap::new();
    for m in &manifests {
        for e in &m.files {
            unique.entry(e.sha256.as_str()).or_insert(e);
        }
    }
    let wanted: Vec<ManifestEntry> = unique.into_values().cloned().collect();
    let contents: HashMap<String, Vec<u8>> =
        crate::snapshot::load_entries(blobs, &project.id, &wanted)
            .await?
            .files
            .into_iter()
            .map(|f| (crate::blob::sha256_hex(&f.data), f.data))
            .collect();
    let mut commits = Vec::with_capacity(versions.len());
    for (v, m) in versions.iter().zip(&manifests) {
        let files =
            m.files
                .iter()
                .map(|e| {
                    Ok(SourceFile {
                        path: e.path.clone(),
                        data: contents.get(&e.sha256).cloned().ok_or_else(|| {
                            Error::Internal(format!("object {} not read", e.sha256))
                        })?,
                        executable: e.executable,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        commits.push(VersionCommit {
            number: v.number,
            message: v.summary.clone(),
            time: v.created_at.timestamp(),
            tree: SourceTree { files },
        });
    }
    let author = author_of(state, &project.owner).await?;
    tokio::task::spawn_blocking(move || Repo::build(&author, &commits))
        .await
        .map_err(|e| Error::Internal(format!("git build task: {e}")))?
}

/// The owner as a Git author: the user id as the name, and the email on
/// record (or an address under the reserved `.invalid` domain).
async fn author_of(state: &Backends, owner: &str) -> Result<Author> {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '<' | '>' | '\n' | '\r' | '\0'))
            .collect::<String>()
            .trim()
            .to_string()
    };
    let user = state.store.get_user(owner).await?;
    let name = clean(owner);
    let email = user
        .and_then(|u| u.email)
        .map(|e| clean(&e))
        .filter(|e| e.contains('@'))
        .unwrap_or_else(|| {
            let local: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("{local}@users.apna.invalid")
        });
    Ok(Author {
        name: if name.is_empty() { "apna".into() } else { name },
        email,
    })
}

/// Pushes the project's history as [`PushRequest`] says, and keeps the
/// remote (and the token, when asked) for the next push.
pub async fn push_project(
    state: &Backends,
    project: &Project,
    req: PushRequest,
) -> Result<(PushOutcome, String)> {
    let branch = req.branch.clone().unwrap_or_else(|| DEFAULT_BRANCH.into());
    check_branch(&branch)?;
    let remote_url = req.remote_url.trim().to_string();
    let remote = check_remote(&remote_url, state.config.git_allow_private_remotes).await?;
    let saved = saved_remote(state, &project.id)
        .await?
        .filter(|s| s.remote_url == remote_url);
    let given = req.token.filter(|t| !t.is_empty());
    let token = given
        .clone()
        .or_else(|| saved.as_ref().and_then(|s| s.token.clone()));
    let repo = repository(state, project).await?;
    let outcome = push::push(&repo, remote, &branch, token.as_deref()).await;
    tracing::info!(
        project_id = %project.id,
        branch,
        ok = outcome.is_ok(),
        commits = outcome.as_ref().map(|o| o.commits).unwrap_or(0),
        "git push"
    );
    let outcome = outcome?;
    let keep = match req.remember_token {
        Some(true) => token,
        Some(false) => None,
        None => saved.and_then(|s| s.token),
    };
    let record = SavedRemote {
        remote_url,
        branch: branch.clone(),
        token: keep,
    };
    state
        .blobs
        .put(
            &remote_key(&project.id),
            Bytes::from(serde_json::to_vec(&record)?),
        )
        .await?;
    Ok((outcome, branch))
}
