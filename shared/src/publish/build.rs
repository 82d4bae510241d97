//! Building a version for publishing: its snapshot is put into a staging
//! folder inside the project's sandbox and built there with `vite build`, so
//! the output is exactly that version whatever the sandbox holds now, and the
//! project's own `node_modules` (found by walking up) serve the build.

use std::time::Duration;

use super::layout::deploy_base;
use crate::error::{Error, Result};
use crate::sandbox::{ExecRequest, ProjectPath, Sandbox, SourceTree};

/// Where builds are staged: inside `.apna-build/`, which is never source
/// (not listed, snapshotted or watched by Vite).
pub const STAGING_DIR: &str = ".apna-build/publish";

/// Most files a site may have.
pub const MAX_FILES: usize = 5_000;
/// Largest total size of a site.
pub const MAX_BYTES: u64 = 200 * 1024 * 1024;

/// Longest a build may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// One file of a built site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFile {
    /// Relative `/`-separated path in the build output (`assets/index-x.js`).
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
}

/// Builds `tree` in `sandbox` for deploy `deploy_id` (Vite's `base` is the
/// deploy's URL prefix) and returns the output. The staging folder is removed
/// afterwards, also on failure. A build that fails is `InvalidInput` with the
/// end of its output: the version does not build, and retrying will not help.
pub async fn build_site(
    sandbox: &dyn Sandbox,
    tree: &SourceTree,
    deploy_id: &str,
) -> Result<Vec<SiteFile>> {
    let stage = format!("{STAGING_DIR}/{deploy_id}");
    // Leftovers of an attempt that died half-way.
    exec(sandbox, &format!("rm -rf {stage}"), Duration::from_secs(60)).await?;
    let result = async {
        for f in &tree.files {
            let path = ProjectPath::parse(&format!("{stage}/{}", f.path))?;
            sandbox.write_file(&path, &f.data).await?;
        }
        let base = deploy_base(deploy_id);
        let out = exec(
            sandbox,
            &format!(
                "cd {stage} && node ../../../node_modules/vite/bin/vite.js build --configLoader runner \
                 --base {base} --outDir out --emptyOutDir --logLevel warn"
            ),
            BUILD_TIMEOUT,
        )
        .await?;
        if out.exit_code != Some(0) {
            let text = crate::sandbox::local::supervisor::strip_ansi(&out.output);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(12)..].join("\n");
            return Err(Error::InvalidInput(format!(
                "the app does not build{}: {tail}",
                if out.timed_out { " (timed out)" } else { "" }
            )));
        }
        let listing = exec(
            sandbox,
            &format!("cd {stage}/out && find . -type f"),
            Duration::from_secs(60),
        )
        .await?;
        if listing.exit_code != Some(0) || listing.truncated {
            return Err(Error::Sandbox(format!(
                "could not list the build output: {}",
                listing.output.chars().take(300).collect::<String>()
            )));
        }
        let mut paths: Vec<&str> = listing
            .output
            .lines()
            .filter_map(|l| l.strip_prefix("./"))
            .collect();
        paths.sort_unstable();
        if !paths.contains(&"index.html") {
            return Err(Error::InvalidInput(
                "the build produced no index.html; a published app needs one".into(),
            ));
        }
        if paths.len() > MAX_FILES {
            return Err(Error::TooLarge(format!(
                "the build produced {} files; a site may have at most {MAX_FILES}",
                paths.len()
            )));
        }
        let mut files = Vec::with_capacity(paths.len());
        let mut total = 0u64;
        for p in paths {
            let path = ProjectPath::parse(&format!("{stage}/out/{p}"))?;
            let data = sandbox.read_file(&path).await?;
            total += data.len() as u64;
            if total > MAX_BYTES {
                return Err(Error::TooLarge(format!(
                    "the built site is over {} MB",
                    MAX_BYTES / 1024 / 1024
                )));
            }
            files.push(SiteFile {
                path: path.as_str()[stage.len() + "/out/".len()..].to_string(),
                data,
            });
        }
        Ok(files)
    }
    .await;
    if let Err(e) = exec(sandbox, &format!("rm -rf {stage}"), Duration::from_secs(60)).await {
        tracing::warn!(project_id = %sandbox.project_id(), error = %e, "could not remove the publish staging folder");
    }
    result
}

async fn exec(
    sandbox: &dyn Sandbox,
    command: &str,
    timeout: Duration,
) -> Result<crate::sandbox::ExecOutput> {
    sandbox
        .exec(&ExecRequest {
            command: command.to_string(),
            timeout,
            max_output: 1024 * 1024,
        })
        .await
}
