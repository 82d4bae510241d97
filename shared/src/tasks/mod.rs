//! The Task states of `statemachines/*.asl.json`, as plain async functions
//! `(input JSON, &Backends) -> Result<output JSON>`.
//!
//! The same functions back the Lambda binaries in `functions/` (one per Task)
//! and the local interpreter (through [`TaskRouter`]). Each is idempotent per
//! (run id, step): Step Functions and the interpreter both retry, and a retry
//! must neither call the model twice nor apply an edit twice, so results that
//! must not be recomputed are kept under the keys of [`checkpoint`].
//!
//! * [`sandbox`]: EnsureSandbox, SandboxStatus.
//! * [`agent`]: AgentStep (one model call and its tools, text streamed as events).
//! * [`verify`]: Verify (the build check; its findings feed the next step).
//! * [`smoke`]: Smoke (the app in a headless browser after Verify passes; its
//!   findings feed the next step too, and its screenshots go with the version).
//! * [`visual_check`]: the model's look at Smoke's screenshot once at the end
//!   of a project's first run (`APNA_VISUAL_CHECK=1`), through the same loop.
//! * [`finish`]: Finalize (a version, then the run's end) and MarkFailed.
//! * [`sweep`]: ListIdleProjects, HibernateProject, PurgeDeleted.
//! * [`publish`]: BuildSite, ActivateSite, PublishFailed.
//! * [`wake`]: WakeProject (a hibernated project restored, off the request path).
//! * [`revive`]: a sandbox lost mid-run rebuilt before the next task uses it.

mod agent;
pub mod checkpoint;
mod finish;
mod publish;
pub mod revive;
mod sandbox;
pub mod smoke;
mod sweep;
mod verify;
mod visual_check;
mod wake;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::app::Backends;
use crate::error::{Error, Result};
use crate::workflow::asl::{TaskFailure, TaskInvoker};

/// The tasks by name; a definition's `${NameFunctionArn}` resolves to `Name`.
pub const TASKS: &[&str] = &[
    "EnsureSandbox",
    "SandboxStatus",
    "AgentStep",
    "Verify",
    "Smoke",
    "Finalize",
    "MarkFailed",
    "ListIdleProjects",
    "HibernateProject",
    "PurgeDeleted",
    "BuildSite",
    "ActivateSite",
    "PublishFailed",
    "WakeProject",
];

/// The task name behind a Resource: `${AgentStepFunctionArn}` → `AgentStep`,
/// `arn:aws:lambda:…:function:apna-AgentStep` → `AgentStep`.
pub fn task_name(resource: &str) -> Option<&'static str> {
    let base = resource
        .trim_start_matches("${")
        .trim_end_matches('}')
        .trim_end_matches("FunctionArn");
    let base = base.rsplit([':', '-']).next().unwrap_or(base);
    TASKS.iter().copied().find(|t| *t == base)
}

/// Runs task `name` with `input`.
pub async fn run_task(name: &str, input: Value, state: &Backends) -> Result<Value> {
    match name {
        "EnsureSandbox" => sandbox::ensure_sandbox(input, state).await,
        "SandboxStatus" => sandbox::sandbox_status(input, state).await,
        "AgentStep" => agent::agent_step(input, state).await,
        "Verify" => verify::verify(input, state).await,
        "Smoke" => smoke::smoke(input, state).await,
        "Finalize" => finish::finalize(input, state).await,
        "MarkFailed" => finish::mark_failed(input, state).await,
        "ListIdleProjects" => sweep::list_idle_projects(input, state).await,
        "HibernateProject" => sweep::hibernate_project(input, state).await,
        "PurgeDeleted" => sweep::purge_deleted(input, state).await,
        "BuildSite" => publish::build_site(input, state).await,
        "ActivateSite" => publish::activate_site(input, state).await,
        "PublishFailed" => publish::publish_failed(input, state).await,
        "WakeProject" => wake::wake_project(input, state).await,
        other => Err(Error::Workflow(format!("no task named {other:?}"))),
    }
}

/// Resolves Task resources to [`run_task`] for the local interpreter.
#[derive(Clone)]
pub struct TaskRouter {
    state: Backends,
}

impl TaskRouter {
    /// A router over `state`.
    pub fn new(state: Backends) -> Self {
        TaskRouter { state }
    }
}

#[async_trait]
impl TaskInvoker for TaskRouter {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
    ) -> std::result::Result<Value, TaskFailure> {
        let name = task_name(resource).ok_or_else(|| {
            TaskFailure::new(
                "States.TaskFailed",
                format!("no local handler for resource {resource:?}"),
            )
        })?;
        run_task(name, input, &self.state)
            .await
            .map_err(TaskFailure::from)
    }
}

/// The ids every generation task gets.
#[derive(Debug, Deserialize)]
struct Ids {
    run_id: String,
    project_id: String,
}

fn parse<T: serde::de::DeserializeOwned>(input: Value) -> Result<T> {
    serde_json::from_value(input).map_err(|e| Error::InvalidInput(format!("task input: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_resolve_to_tasks() {
        assert_eq!(task_name("${AgentStepFunctionArn}"), Some("AgentStep"));
        assert_eq!(
            task_name("arn:aws:lambda:us-east-1:123:function:apna-Verify"),
            Some("Verify")
        );
        assert_eq!(task_name("${NopeFunctionArn}"), None);
    }
}
