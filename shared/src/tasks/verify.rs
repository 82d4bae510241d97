//! Verify: the build check after the agent's turn; its findings become the
//! text the next AgentStep starts from, while attempts remain.

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::checkpoint::TaskKey;
use super::parse;
use super::revive::live_sandbox;
use crate::app::Backends;
use crate::domain::RunEventKind;
use crate::error::Result;
use crate::run::report_phase;
use crate::sandbox::build_check::check_build;

#[derive(Debug, Deserialize)]
struct VerifyInput {
    run_id: String,
    project_id: String,
    attempt: u32,
    max_fix_attempts: u32,
    step: u32,
}

/// Checks the build once per attempt (a retry returns the stored answer).
pub(super) async fn verify(input: Value, state: &Backends) -> Result<Value> {
    let i: VerifyInput = parse(input)?;
    let span = tracing::info_span!("verify", project_id = %i.project_id, run_id = %i.run_id, attempt = i.attempt);
    async {
        let key = TaskKey::Verify(i.attempt);
        if let Some(done) = key.get(&*state.store, &i.run_id).await? {
            return Ok(done);
        }
        report_phase(&*state.store, &i.run_id, "verify", "Checking the build").await?;
        let sandbox = live_sandbox(state, &i.project_id, &i.run_id, None).await?;
        let report = check_build(&*sandbox).await?;
        let items = serde_json::to_value(&report.diagnostics)?;
        state
            .store
            .append_event(
                &i.run_id,
                RunEventKind::Diagnostics,
                &json!({ "ok": report.ok, "items": items }),
            )
            .await?;
        let next_attempt = i.attempt + 1;
        if !report.ok && next_attempt < i.max_fix_attempts {
            let mut text = format!(
                "The build check (TypeScript and Vite) found {} problem(s). Fix them, then reply with a short summary.\n",
                report.diagnostics.len()
            );
            for d in &report.diagnostics {
                text.push_str(&format!("- {}:{}:{}: {}\n", d.file, d.line, d.column, d.message));
            }
            TaskKey::Fix(i.step + 1)
                .put(&*state.store, &i.run_id, &json!({ "text": text }))
                .await?;
        }
        let out = json!({
            "ok": report.ok,
            "attempt": next_attempt,
            "problems": report.diagnostics.len(),
        });
        key.put(&*state.store, &i.run_id, &out).await
    }
    .instrument(span)
    .await
}
