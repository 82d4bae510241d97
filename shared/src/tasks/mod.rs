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
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::app::Backends;
use crate::error::{Error, Result};
use crate::workflow::asl::{TaskFailure, TaskInvoker};

/// A task's handler: `(input, backends) -> output`.
pub type Handler = for<'a> fn(Value, &'a Backends) -> BoxFuture<'a, Result<Value>>;

/// One Task state's function: its name and handler. A Lambda binary in
/// `functions/` passes its own constant (below) to `lambda::run_task`, so only
/// that handler is reachable and LTO drops the others (BENCHMARKS.md,
/// "Package size").
#[derive(Clone, Copy)]
pub struct Task {
    /// The name a definition's `${NameFunctionArn}` resolves to (`AgentStep`).
    pub name: &'static str,
    /// Runs it.
    pub handler: Handler,
    /// Whether it calls the model (the only tasks whose function reads the
    /// model key and builds a model client).
    pub calls_model: bool,
    /// Whether it reaches projects' sandboxes (a function that does not
    /// never builds the provider; [`run_task`] holds the local runs to it).
    pub sandboxes: bool,
}

/// What a task is marked with in `tasks!`.
struct Marks {
    model: bool,
    sandboxes: bool,
}

const UNMARKED: Marks = Marks {
    model: false,
    sandboxes: false,
};

macro_rules! tasks {
    ($($konst:ident = $name:literal => $handler:path [$($mark:ident),*];)+) => {
        $(
            #[doc = concat!("The `", $name, "` task.")]
            // A task may carry every mark.
            #[allow(clippy::needless_update)]
            pub const $konst: Task = Task {
                name: $name,
                handler: |input, state| Box::pin($handler(input, state)),
                calls_model: Marks { $($mark: true,)* ..UNMARKED }.model,
                sandboxes: Marks { $($mark: true,)* ..UNMARKED }.sandboxes,
            };
        )+

        /// Every task, as the state machines name them.
        pub const ALL: &[Task] = &[$($konst),+];

        /// The tasks by name; a definition's `${NameFunctionArn}` resolves to `Name`.
        pub const TASKS: &[&str] = &[$($name),+];
    };
}

tasks! {
    ENSURE_SANDBOX = "EnsureSandbox" => sandbox::ensure_sandbox [sandboxes];
    SANDBOX_STATUS = "SandboxStatus" => sandbox::sandbox_status [sandboxes];
    AGENT_STEP = "AgentStep" => agent::agent_step [model, sandboxes];
    VERIFY = "Verify" => verify::verify [sandboxes];
    SMOKE = "Smoke" => smoke::smoke [sandboxes];
    FINALIZE = "Finalize" => finish::finalize [sandboxes];
    MARK_FAILED = "MarkFailed" => finish::mark_failed [];
    LIST_IDLE_PROJECTS = "ListIdleProjects" => sweep::list_idle_projects [sandboxes];
    HIBERNATE_PROJECT = "HibernateProject" => sweep::hibernate_project [sandboxes];
    PURGE_DELETED = "PurgeDeleted" => sweep::purge_deleted [sandboxes];
    BUILD_SITE = "BuildSite" => publish::build_site [sandboxes];
    ACTIVATE_SITE = "ActivateSite" => publish::activate_site [];
    PUBLISH_FAILED = "PublishFailed" => publish::publish_failed [];
    WAKE_PROJECT = "WakeProject" => wake::wake_project [sandboxes];
}

/// The task named `name` (`AgentStep`).
pub fn task(name: &str) -> Option<Task> {
    ALL.iter().copied().find(|t| t.name == name)
}

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
    let task = task(name).ok_or_else(|| Error::Workflow(format!("no task named {name:?}")))?;
    // Locally too, a task sees only the backends its Lambda builds.
    let own = state.as_function(task.name, task.sandboxes);
    (task.handler)(input, &own).await
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
