//! [`ResourceTable`]: a [`TaskInvoker`] that maps each Task `Resource` string
//! (e.g. `${AgentStepFunctionArn}`) to an async function, turning the library's
//! errors into named task failures (`Apna.NotReady`, …) that Retry and Catch match.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{StateMachine, TaskFailure, TaskInvoker};
use crate::error::{Error, Result};

type Handler = dyn Fn(Value) -> BoxFuture<'static, Result<Value>> + Send + Sync;

/// Task handlers by exact `Resource` string.
#[derive(Clone, Default)]
pub struct ResourceTable {
    handlers: HashMap<String, Arc<Handler>>,
}

impl ResourceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the handler for `resource`.
    pub fn register<F, Fut>(mut self, resource: &str, handler: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value>> + Send + 'static,
    {
        let handler: Arc<Handler> = Arc::new(move |input| Box::pin(handler(input)));
        self.handlers.insert(resource.to_string(), handler);
        self
    }

    /// Fails if `machine` has a Task whose resource has no handler, naming them.
    pub fn check(&self, name: &str, machine: &StateMachine) -> Result<()> {
        let missing: Vec<&str> = machine
            .task_resources()
            .into_iter()
            .filter(|r| !self.handlers.contains_key(*r))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Workflow(format!(
                "state machine {name:?} uses resources with no local handler: {}",
                missing.join(", ")
            )))
        }
    }
}

#[async_trait]
impl TaskInvoker for ResourceTable {
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure> {
        let Some(handler) = self.handlers.get(resource).cloned() else {
            return Err(TaskFailure::new(
                "Apna.UnknownResource",
                format!("no local handler for the Task resource {resource:?}"),
            ));
        };
        handler(input).await.map_err(TaskFailure::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn dispatches_and_names_errors() {
        let table = ResourceTable::new()
            .register("${Echo}", |v| async move { Ok(v) })
            .register("${Busy}", |_| async {
                Err(Error::NotReady("starting".into()))
            });
        assert_eq!(
            table.invoke("${Echo}", json!({"a": 1})).await.unwrap(),
            json!({"a": 1})
        );
        let f = table.invoke("${Busy}", json!({})).await.unwrap_err();
        assert_eq!(
            (f.error.as_str(), f.cause.as_str()),
            ("Apna.NotReady", "starting")
        );
        assert_eq!(
            table.invoke("${Other}", json!({})).await.unwrap_err().error,
            "Apna.UnknownResource"
        );
        let machine = StateMachine::parse(
            r#"{"StartAt": "A", "States": {
                "A": {"Type": "Task", "Resource": "${Echo}", "Next": "M"},
                "M": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "I", "States": {
                    "I": {"Type": "Task", "Resource": "${Missing}", "End": true}}}}}}"#,
        )
        .unwrap();
        let err = table.check("m", &machine).unwrap_err().to_string();
        assert!(
            err.contains("${Missing}") && !err.contains("${Echo}"),
            "{err}"
        );
    }
}
