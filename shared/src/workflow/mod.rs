//! Generations as workflows: the seam between the API and whatever runs
//! `statemachines/*.asl.json` — the built-in interpreter locally, AWS Step
//! Functions in production.
//!
//! This module is the engine only: it knows state machines, executions and
//! their history, not what a Task does. The handlers behind the Task states
//! are in `crate::tasks`, handed to the interpreter as a [`TaskInvoker`].

pub mod asl;
pub mod local;
#[cfg(feature = "aws")]
pub mod sfn;

pub use asl::{StateMachine, TaskFailure, TaskInvoker};
pub use local::LocalWorkflow;
#[cfg(feature = "aws")]
pub use sfn::StepFunctionsWorkflow;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::{Execution, HistoryEvent};
use crate::error::Result;

/// Starts and inspects executions of the state machines in `statemachines/`.
#[async_trait]
pub trait Workflow: Send + Sync {
    /// Backend name for health reports (`local`, `stepfunctions`).
    fn backend(&self) -> &'static str;
    /// Starts `state_machine` (e.g. `generation`) as execution `name` with `input`.
    /// Starting a name that already exists is a `Conflict`.
    async fn start(&self, state_machine: &str, name: &str, input: Value) -> Result<()>;
    /// Status, input, output and error of an execution.
    async fn describe(&self, name: &str) -> Result<Option<Execution>>;
    /// The execution's history, in order.
    async fn history(&self, name: &str) -> Result<Vec<HistoryEvent>>;
    /// Stops a running execution with a cause; stopping a finished one is a no-op.
    async fn stop(&self, name: &str, cause: &str) -> Result<()>;
}
