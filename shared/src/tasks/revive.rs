//! A sandbox that disappears in the middle of a run (its process or pod gone,
//! its disk lost) comes back before the next step: from the project's latest
//! snapshot (or the template), with the run's own changes so far replayed
//! from the conversation, so neither the person nor the model loses work.

use std::collections::HashSet;
use std::sync::Arc;

use crate::agent::checkpoint::recorded_tool_calls;
use crate::agent::conversation::load_messages;
use crate::agent::tools::Toolbox;
use crate::app::Backends;
use crate::domain::{ContentBlock, Role};
use crate::error::{Error, Result};
use crate::run::report_phase;
use crate::sandbox::{Sandbox, SandboxState};

/// Tools whose effects are replayed: everything that can change files.
/// Read-only tools are skipped; commands are replayed because `npm install
/// zod` changes `package.json` and `node_modules`.
const REPLAYED: &[&str] = &[
    "write_file",
    "edit_file",
    "delete_file",
    "save_image",
    "run_command",
];

/// What [`live_sandbox`] had to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revived {
    /// The snapshot the files came back from (`None`: the template).
    pub snapshot_key: Option<String>,
    /// Tool calls of the run applied again.
    pub replayed: usize,
    /// Replayed calls that failed this time (their results go to the log).
    pub failed: usize,
}

/// The project's sandbox for a task of `run_id`; when it no longer exists,
/// rebuilds it first (see the module doc) and tells the run's watchers.
/// `step` is the agent step about to run, whose tool calls may already have
/// run (and been recorded) before a retry.
pub async fn live_sandbox(
    state: &Backends,
    project_id: &str,
    run_id: &str,
    step: Option<u32>,
) -> Result<Arc<dyn Sandbox>> {
    let sandbox = state.sandboxes.sandbox(project_id)?;
    if sandbox.status().await?.state != SandboxState::Missing {
        return Ok(sandbox);
    }
    tracing::warn!(
        project_id,
        run_id,
        "the sandbox is gone mid-run: rebuilding it"
    );
    let revived = revive(state, &*sandbox, run_id, step).await?;
    let message = format!(
        // A run-bar line like the other phases: no closing period.
        "The sandbox stopped: rebuilt it from the last saved version and re-applied this change's {} edit(s) and command(s){}",
        revived.replayed,
        if revived.failed > 0 {
            format!(" ({} failed)", revived.failed)
        } else {
            String::new()
        }
    );
    report_phase(&*state.store, run_id, "sandbox", &message).await?;
    Ok(sandbox)
}

/// Restores the latest snapshot (or starts from the project's starter) and replays
/// the run's successful file-changing tool calls in their original order:
/// those in the conversation, then those of `step` that ran before a retry
/// but are not in the conversation yet.
pub async fn revive(
    state: &Backends,
    sandbox: &dyn Sandbox,
    run_id: &str,
    step: Option<u32>,
) -> Result<Revived> {
    let project_id = sandbox.project_id();
    let snapshot_key = crate::snapshot::get_latest(&*state.blobs, project_id).await?;
    match &snapshot_key {
        Some(key) => crate::snapshot::restore(&*state.blobs, sandbox, key).await?,
        None => {
            let project = state
                .store
                .get_project(project_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("project {project_id} not found")))?;
            sandbox
                .ensure_from(&crate::starter::for_project(&project.template)?.name)
                .await?;
        }
    }
    sandbox.ensure().await?;

    let messages = load_messages(&*state.store, project_id).await?;
    let of_run = messages
        .iter()
        .filter(|m| m.run_id.as_deref() == Some(run_id));
    let failed_ids: HashSet<&str> = of_run
        .clone()
        .filter(|m| m.role == Role::User)
        .flat_map(|m| &m.content)
        .filter_map(|b| match b {
            ContentBlock::ToolResult {
                tool_use_id,
                is_error: true,
                ..
            } => Some(tool_use_id.as_str()),
            _ => None,
        })
        .collect();
    let mut calls: Vec<(String, String, serde_json::Value)> = of_run
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| &m.content)
        .filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } if !failed_ids.contains(id.as_str()) => {
                Some((id.clone(), name.clone(), input.clone()))
            }
            _ => None,
        })
        .collect();
    if let Some(step) = step {
        // Ran before a retry: recorded, but not in the conversation yet.
        let recorded = recorded_tool_calls(&*state.store, run_id, step).await?;
        let fresh: Vec<_> = recorded
            .into_iter()
            .filter(|c| !c.output.is_error && !calls.iter().any(|(id, _, _)| *id == c.id))
            .map(|c| (c.id, c.name, c.input))
            .collect();
        calls.extend(fresh);
    }
    let toolbox = Toolbox::for_project(state.blobs.clone(), project_id);
    let mut revived = Revived {
        snapshot_key,
        replayed: 0,
        failed: 0,
    };
    for (_, name, input) in calls
        .iter()
        .filter(|(_, n, _)| REPLAYED.contains(&n.as_str()))
    {
        let out = toolbox.execute(sandbox, name, input).await;
        revived.replayed += 1;
        if out.is_error {
            revived.failed += 1;
            tracing::warn!(project_id, run_id, tool = %name, result = %out.content, "replayed tool call failed");
        }
    }
    Ok(revived)
}
