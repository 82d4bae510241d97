//! The built-in interpreter of the Amazon States Language subset Apna's state
//! machines use, so `apna serve` runs `statemachines/*.asl.json` without AWS.
//!
//! The parts are:
//!
//! * [`definition`]: parsing and load-time validation ([`StateMachine::parse`]).
//! * [`path`], [`template`], [`intrinsic`]: JSONPath, payload templates, `States.*` functions.
//! * [`choice`]: Choice rules.
//! * [`executor`]: runs a machine, records history and checkpoints in the store, resumes.
//!
//! Tasks are delegated to a [`TaskInvoker`], which resolves `Resource` strings
//! (`${AgentStepFunctionArn}`, Lambda ARNs) to handlers (`crate::tasks::TaskRouter`
//! in `apna serve`).

pub mod choice;
pub mod definition;
pub mod executor;
pub mod intrinsic;
pub mod path;
pub mod template;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use definition::{State, StateMachine, States};
pub use executor::{Executor, StopSignal};

use crate::error::Error;

/// Runs the `Resource` of a Task state.
#[async_trait]
pub trait TaskInvoker: Send + Sync {
    /// Invokes `resource` (as written in the definition) with the task's input;
    /// an `Err` is a task failure that Retry and Catch see by its error name.
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure>;
}

/// A failed state: an error name (matched by `ErrorEquals`) and a cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// Error name, e.g. `States.Timeout`, `Apna.NotReady`.
    pub error: String,
    /// Human-readable detail.
    pub cause: String,
}

impl TaskFailure {
    /// A failure with a name and a cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        TaskFailure {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// `States.Runtime`: a bad path or payload; Retry/Catch on `States.ALL` do not see it.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new("States.Runtime", cause)
    }

    /// The `{ "Error", "Cause" }` object a Catch puts at its `ResultPath`.
    pub fn to_value(&self) -> Value {
        serde_json::json!({ "Error": self.error, "Cause": self.cause })
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}

impl From<Error> for TaskFailure {
    /// `Apna.` + the error's code in PascalCase (`not_ready` → `Apna.NotReady`),
    /// so definitions can retry transient failures by name.
    fn from(e: Error) -> Self {
        let name: String = e
            .code()
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        TaskFailure::new(format!("Apna.{name}"), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_named_failures() {
        let f = TaskFailure::from(Error::NotReady("sandbox starting".into()));
        assert_eq!(f.error, "Apna.NotReady");
        assert_eq!(f.cause, "sandbox starting");
        assert_eq!(
            TaskFailure::from(Error::Model("x".into())).error,
            "Apna.Model"
        );
        assert_eq!(
            TaskFailure::from(Error::InvalidInput("x".into())).error,
            "Apna.InvalidInput"
        );
    }
}
