//! The two ways a generation ends: Finalize (a version of the files, then the
//! run's end) and MarkFailed (any state's Catch).

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::checkpoint::TaskKey;
use super::parse;
use super::revive::live_sandbox;
use super::smoke::screenshots_of;
use crate::app::Backends;
use crate::domain::{Page, Role};
use crate::error::Result;
use crate::run::{finish_run, report_phase, RunEnd};

#[derive(Debug, Deserialize)]
struct FinalizeInput {
    run_id: String,
    project_id: String,
    verified: bool,
    /// The last check's verdict (`$.verify`: Verify's or Smoke's answer).
    #[serde(default)]
    check: Option<CheckState>,
}

/// What Finalize reads of the last check.
#[derive(Debug, Deserialize)]
struct CheckState {
    attempt: u32,
    /// `passed`, `failed`, `skipped`; absent when the last check was Verify's.
    #[serde(default)]
    smoke: Option<String>,
    /// Why the browser check was skipped, when it was.
    #[serde(default)]
    note: Option<String>,
    /// The error the state machine caught when Smoke itself failed.
    #[serde(default)]
    error: Option<Value>,
}

/// The model's closing text in this run: its last assistant text.
async fn run_summary(state: &Backends, project_id: &str, run_id: &str) -> Result<String> {
    let mut summary = String::new();
    let mut offset = 0;
    loop {
        let page = state
            .store
            .list_messages(project_id, Page::new(200, offset))
            .await?;
        for m in &page {
            if m.run_id.as_deref() == Some(run_id) && m.role == Role::Assistant {
                let text = crate::agent::conversation::text_of(&m.content);
                if !text.is_empty() {
                    summary = text;
                }
            }
        }
        if page.len() < 200 {
            break;
        }
        offset += 200;
    }
    let summary = summary.trim();
    Ok(if summary.is_empty() {
        "Updated the app.".to_string()
    } else {
        summary.chars().take(2000).collect()
    })
}

/// Records the run's files as a version (once), then ends the run: succeeded
/// when the build check passed, failed (with the files kept) when it did not.
pub(super) async fn finalize(input: Value, state: &Backends) -> Result<Value> {
    let i: FinalizeInput = parse(input)?;
    let span = tracing::info_span!("finalize", project_id = %i.project_id, run_id = %i.run_id);
    async {
        report_phase(&*state.store, &i.run_id, "finalize", "Saving a version").await?;
        let summary = run_summary(state, &i.project_id, &i.run_id).await?;
        let version = match TaskKey::FinalizeVersion
            .get(&*state.store, &i.run_id)
            .await?
        {
            Some(v) => v,
            None => {
                let sandbox = live_sandbox(state, &i.project_id, &i.run_id, None).await?;
                let v = crate::snapshot::record_version(
                    &*state.store,
                    &*state.blobs,
                    &*sandbox,
                    &i.project_id,
                    Some(&i.run_id),
                    &summary,
                )
                .await?;
                if let Some(check) = &i.check {
                    let shots = screenshots_of(state, &i.run_id, check.attempt).await?;
                    if !shots.is_empty() {
                        state
                            .store
                            .set_version_screenshots(&i.project_id, v.number, &shots)
                            .await?;
                    }
                    if check.smoke.as_deref() == Some("skipped") {
                        skipped_note(state, &i.run_id, check).await?;
                    }
                }
                TaskKey::FinalizeVersion
                    .put(&*state.store, &i.run_id, &json!(v.number))
                    .await?
            }
        };
        let end = if i.verified {
            RunEnd::Succeeded { summary }
        } else {
            RunEnd::Failed {
                error: format!(
                    "The build still has problems after {} fix attempts; the files are saved as version {version}. Ask for a fix in the chat.",
                    state.config.max_fix_attempts
                ),
            }
        };
        let run = finish_run(state, &i.run_id, end).await?;
        Ok(json!({ "version": version, "status": run.status }))
    }
    .instrument(span)
    .await
}

/// Tells the run's watchers the browser check did not run, and why.
async fn skipped_note(state: &Backends, run_id: &str, check: &CheckState) -> Result<()> {
    let why = check
        .error
        .as_ref()
        .map(reason)
        .or_else(|| check.note.clone())
        .unwrap_or_else(|| "no reason given".into());
    report_phase(
        &*state.store,
        run_id,
        "finalize",
        &format!("The browser check was skipped ({why}); saving a version"),
    )
    .await
}

#[derive(Debug, Deserialize)]
struct FailedInput {
    run_id: String,
    project_id: String,
    #[serde(default)]
    error: Value,
}

/// A readable reason from a Catch's `{ "Error", "Cause" }`.
fn reason(error: &Value) -> String {
    let name = error
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("Error");
    let cause = error.get("Cause").and_then(Value::as_str).unwrap_or("");
    // Lambda errors put a JSON document in Cause.
    let cause = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string());
    if cause.is_empty() {
        name.to_string()
    } else {
        cause
    }
}

/// Ends the run as failed with the caught error's reason.
pub(super) async fn mark_failed(input: Value, state: &Backends) -> Result<Value> {
    let i: FailedInput = parse(input)?;
    let why = reason(&i.error);
    tracing::warn!(project_id = %i.project_id, run_id = %i.run_id, reason = %why, "generation failed");
    let run = finish_run(state, &i.run_id, RunEnd::Failed { error: why }).await?;
    Ok(json!({ "status": run.status }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_readable() {
        assert_eq!(
            reason(&json!({"Error": "Apna.Model", "Cause": "model: overloaded"})),
            "model: overloaded"
        );
        assert_eq!(
            reason(
                &json!({"Error": "X", "Cause": "{\"errorMessage\":\"boom\",\"errorType\":\"X\"}"})
            ),
            "boom"
        );
        assert_eq!(
            reason(&json!({"Error": "States.Timeout"})),
            "States.Timeout"
        );
    }
}
