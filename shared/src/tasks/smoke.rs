//! Smoke: after Verify passes, the app is opened in a headless browser where
//! its preview runs ([`Sandbox::smoke_check`]). What goes wrong there goes
//! back to the model like Verify's findings, through the same fix loop and
//! the same attempt budget; the screenshots are stored for the version.
//!
//! Its answer replaces Verify's in the state (`$.verify`), so the loop's
//! Choice and Finalize read one verdict: `ok`, the `attempt` count (Verify's,
//! unchanged), `smoke` (`passed`, `failed` or `skipped`) and `visual` (the
//! page passed but is shown to the model first: `ok` is false then, see
//! [`super::visual_check`]).
//!
//! [`Sandbox::smoke_check`]: crate::sandbox::Sandbox::smoke_check

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::checkpoint::TaskKey;
use super::parse;
use super::revive::live_sandbox;
use super::visual_check;
use crate::app::Backends;
use crate::blob::BlobStore;
use crate::domain::{RunEventKind, Screenshot};
use crate::error::Result;
use crate::run::report_phase;
use crate::sandbox::local::wait_ready;
use crate::sandbox::smoke::ScreenshotImage;
use crate::sandbox::{SandboxState, SmokeRequest};

/// How long a stopped dev server may take to serve again.
const DEV_SERVER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Deserialize)]
struct SmokeInput {
    run_id: String,
    project_id: String,
    /// Verify's attempt count after the check that passed (1-based).
    attempt: u32,
    max_fix_attempts: u32,
    step: u32,
}

/// Stores each PNG under its SHA-256 (a PNG already there is not written
/// again) and returns what the version lists.
pub async fn store_screenshots(
    blobs: &dyn BlobStore,
    project_id: &str,
    images: &[ScreenshotImage],
) -> Result<Vec<Screenshot>> {
    let mut out = Vec::with_capacity(images.len());
    for img in images {
        let sha256 = crate::blob::sha256_hex(&img.png);
        let key = Screenshot::blob_key(project_id, &sha256);
        if blobs.head(&key).await?.is_none() {
            blobs
                .put(&key, bytes::Bytes::copy_from_slice(&img.png))
                .await?;
        }
        out.push(Screenshot {
            viewport: img.viewport.clone(),
            width: img.width,
            height: img.height,
            sha256,
            bytes: img.png.len() as u64,
        });
    }
    Ok(out)
}

/// Looks at the page once per attempt (a retry returns the stored answer).
pub(super) async fn smoke(input: Value, state: &Backends) -> Result<Value> {
    let i: SmokeInput = parse(input)?;
    let span = tracing::info_span!("smoke", project_id = %i.project_id, run_id = %i.run_id, attempt = i.attempt);
    async {
        let key = TaskKey::Smoke(i.attempt);
        if let Some(done) = key.get(&*state.store, &i.run_id).await? {
            return Ok(done.get("result").cloned().unwrap_or(done));
        }
        let report = if state.config.smoke_check {
            report_phase(
                &*state.store,
                &i.run_id,
                "smoke",
                "Opening the app in a browser",
            )
            .await?;
            let sandbox = live_sandbox(state, &i.project_id, &i.run_id, None).await?;
            // Verify needs files only; the page needs its dev server, which a
            // restarted `apna serve` (or a rescheduled pod) has not started.
            if sandbox.status().await?.state != SandboxState::Ready {
                sandbox.ensure().await?;
                wait_ready(&*sandbox, DEV_SERVER_WAIT).await?;
            }
            sandbox.smoke_check(&SmokeRequest::default()).await?
        } else {
            crate::sandbox::SmokeReport::skipped("the browser check is turned off (APNA_SMOKE_CHECK=0)")
        };
        let screenshots = store_screenshots(&*state.blobs, &i.project_id, &report.screenshots).await?;
        let verdict = match (report.checked, report.ok()) {
            (false, _) => "skipped",
            (true, true) => "passed",
            (true, false) => "failed",
        };
        state
            .store
            .append_event(
                &i.run_id,
                RunEventKind::Diagnostics,
                &json!({
                    "check": "browser",
                    "ok": report.ok(),
                    "smoke": verdict,
                    "items": report.diagnostics,
                    "note": report.note,
                    "screenshots": screenshots,
                    "elapsed_ms": report.elapsed_ms,
                }),
            )
            .await?;
        if !report.ok() && i.attempt < i.max_fix_attempts {
            let mut text = format!(
                "The build passes, but opening the app in a browser found {} problem(s). Fix them, then reply with a short summary.\n",
                report.diagnostics.len()
            );
            for d in &report.diagnostics {
                text.push_str(&format!("- {}:{}:{}: {}\n", d.file, d.line, d.column, d.message));
            }
            TaskKey::Fix(i.step + 1)
                .put(&*state.store, &i.run_id, &json!({ "text": text }))
                .await?;
        }
        // A page that passed may still be shown to the model once (the
        // visual check): then the run goes back to the agent as after a
        // failed check.
        let looking = report.checked
            && report.ok()
            && visual_check::ask(
                state,
                &visual_check::Asking {
                    run_id: &i.run_id,
                    project_id: &i.project_id,
                    attempt: i.attempt,
                    max_fix_attempts: i.max_fix_attempts,
                    next_step: i.step + 1,
                },
                &report.screenshots,
            )
            .await?;
        let out = json!({
            "ok": report.ok() && !looking,
            "attempt": i.attempt,
            "problems": report.diagnostics.len(),
            "smoke": verdict,
            "visual": looking,
            "note": report.note,
            "screenshots": screenshots.len(),
        });
        key.put(&*state.store, &i.run_id, &json!({ "result": out, "screenshots": screenshots }))
            .await
            .map(|stored| stored.get("result").cloned().unwrap_or(out))
    }
    .instrument(span)
    .await
}

/// The screenshots Smoke stored after Verify's attempt `attempt`, if it ran.
pub(super) async fn screenshots_of(
    state: &Backends,
    run_id: &str,
    attempt: u32,
) -> Result<Vec<Screenshot>> {
    let stored = TaskKey::Smoke(attempt).get(&*state.store, run_id).await?;
    Ok(stored
        .and_then(|v| v.get("screenshots").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default())
}
