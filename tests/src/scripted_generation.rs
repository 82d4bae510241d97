//! One whole local generation against a scripted conversation: the mock
//! model replaying `tests/fixtures/conversations/{fixture}`, `apna serve`'s
//! state (SQLite, disk blobs, a real local sandbox with Vite, the interpreter
//! running `generation.asl.json`) in a fresh data directory, and the run
//! followed to its end, with what it printed and what it stored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use apna::domain::{RunEvent, RunEventKind, RunStatus, Screenshot, Version};
use apna::server::LocalServer;
use apna::testing::fixtures::{repo_root, server_config};
use serde_json::Value;

use crate::mock_anthropic::{MockAnthropic, Script};

/// How long a whole generation may take before the test gives up.
const LIMIT: Duration = Duration::from_secs(300);

/// A finished generation and everything needed to inspect it.
pub struct Generated {
    /// The local server that ran it (its state holds the store and blobs).
    pub server: LocalServer,
    /// The mock model, with the requests it answered.
    pub mock: MockAnthropic,
    /// The progress lines the run printed, one per line.
    pub progress: String,
    /// How the run ended.
    pub status: RunStatus,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The run.
    pub run_id: String,
    /// The project it created.
    pub project_id: String,
    _data: tempfile::TempDir,
}

/// Generates `prompt` against the scripted conversation `fixture`, with
/// `extra` settings on top of the test configuration.
pub async fn generate(fixture: &str, prompt: &str, extra: &[(&str, &str)]) -> Result<Generated> {
    let path = repo_root()
        .join("tests/fixtures/conversations")
        .join(fixture);
    let mock = MockAnthropic::start(Script::from_file(&path)?).await?;
    let data = tempfile::tempdir()?;
    let server = apna::server::build(server_config(data.path(), &mock.url(), extra), &|_| {})
        .await
        .context("local server")?;
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let run = tokio::time::timeout(
        LIMIT,
        apna::run::generate(&server.state, prompt, move |l| {
            if let Ok(mut lines) = sink.lock() {
                lines.push(l);
            }
        }),
    )
    .await
    .context("generation did not finish in time")??;
    let progress = lines.lock().map(|l| l.join("\n")).unwrap_or_default();
    Ok(Generated {
        server,
        mock,
        progress,
        status: run.status,
        error: run.error,
        run_id: run.id,
        project_id: run.project_id,
        _data: data,
    })
}

impl Generated {
    /// The run's events, in order.
    pub async fn events(&self) -> Result<Vec<RunEvent>> {
        Ok(self
            .server
            .state
            .store
            .list_events(&self.run_id, 0, 1000)
            .await?)
    }

    /// The browser checks' diagnostics, check by check.
    pub async fn browser_checks(&self) -> Result<Vec<Value>> {
        Ok(self
            .events()
            .await?
            .into_iter()
            .filter(|e| e.kind == RunEventKind::Diagnostics && e.data["check"] == "browser")
            .map(|e| e.data)
            .collect())
    }

    /// The project's one version (an error if there are none or several).
    pub async fn version(&self) -> Result<Version> {
        let mut versions = self
            .server
            .state
            .store
            .list_versions(&self.project_id)
            .await?;
        if versions.len() != 1 {
            bail!("{} versions, not 1:\n{}", versions.len(), self.progress);
        }
        Ok(versions.remove(0))
    }

    /// The PNG stored for a screenshot.
    pub async fn png(&self, shot: &Screenshot) -> Result<Vec<u8>> {
        let key = Screenshot::blob_key(&self.project_id, &shot.sha256);
        Ok(self.server.state.blobs.get(&key).await?.to_vec())
    }

    /// Stops the sandboxes the generation started.
    pub async fn stop(self) {
        self.server.stop_sandboxes().await;
    }
}

/// The colour at the middle of a PNG (a screenshot's page background).
pub fn centre(png: &[u8]) -> Result<[u8; 3]> {
    let img = image::load_from_memory_with_format(png, image::ImageFormat::Png)?.to_rgb8();
    let (w, h) = img.dimensions();
    Ok(img.get_pixel(w / 2, h / 2).0)
}
