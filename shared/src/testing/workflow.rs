//! Workflow doubles: a workflow that only records what it was asked, task
//! invokers scripted by closures, an in-memory execution log, and a runner
//! that executes a definition to its end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::domain::{Execution, ExecutionStatus, HistoryEvent};
use crate::error::{Error, Result};
use crate::store::ExecutionLog;
use crate::workflow::asl::{Executor, StateMachine, TaskFailure, TaskInvoker};
use crate::workflow::Workflow;

/// Records starts and stops; executions never progress by themselves.
#[derive(Default)]
pub struct RecordingWorkflow {
    /// (state machine, execution name, input) of every start.
    pub starts: Mutex<Vec<(String, String, Value)>>,
    /// Names of the executions stopped.
    pub stops: Mutex<Vec<String>>,
}

#[async_trait]
impl Workflow for RecordingWorkflow {
    fn backend(&self) -> &'static str {
        "recording"
    }
    async fn start(&self, sm: &str, name: &str, input: Value) -> Result<()> {
        self.starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((sm.into(), name.into(), input));
        Ok(())
    }
    async fn describe(&self, _: &str) -> Result<Option<Execution>> {
        Ok(None)
    }
    async fn history(&self, _: &str) -> Result<Vec<HistoryEvent>> {
        Ok(vec![])
    }
    async fn stop(&self, name: &str, _: &str) -> Result<()> {
        self.stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.into());
        Ok(())
    }
}

/// One task invocation seen by a [`ScriptInvoker`].
#[derive(Debug, Clone)]
pub struct Call {
    pub resource: String,
    pub input: Value,
    pub at: tokio::time::Instant,
}

type Handler =
    dyn Fn(String, Value, usize) -> BoxFuture<'static, Result<Value, TaskFailure>> + Send + Sync;

/// An invoker whose behaviour is a closure of (resource, input, call number from 0),
/// recording every call.
pub struct ScriptInvoker {
    handler: Box<Handler>,
    pub calls: Mutex<Vec<Call>>,
}

impl ScriptInvoker {
    pub fn new<F>(f: F) -> Arc<Self>
    where
        F: Fn(String, Value, usize) -> BoxFuture<'static, Result<Value, TaskFailure>>
            + Send
            + Sync
            + 'static,
    {
        Arc::new(ScriptInvoker {
            handler: Box::new(f),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Echoes `{"resource": r, "input": input}`.
    pub fn echo() -> Arc<Self> {
        Self::new(|r, input, _| {
            Box::pin(async move { Ok(serde_json::json!({"resource": r, "input": input})) })
        })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn count(&self, resource: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.resource == resource)
            .count()
    }
}

#[async_trait]
impl TaskInvoker for ScriptInvoker {
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure> {
        let n = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            calls.push(Call {
                resource: resource.to_string(),
                input: input.clone(),
                at: tokio::time::Instant::now(),
            });
            calls.len() - 1
        };
        (self.handler)(resource.to_string(), input, n).await
    }
}

/// Parses and runs `definition` to its end with a fresh SQLite store; returns the
/// final record and its history.
pub async fn run(
    definition: &str,
    input: Value,
    invoker: Arc<dyn TaskInvoker>,
) -> (Execution, Vec<HistoryEvent>) {
    let store: Arc<dyn ExecutionLog> = super::fixtures::memory_store().await;
    run_in(&store, definition, input, invoker).await
}

/// Like [`run`] with a [`MemoryExecutionLog`], for tests under a paused clock.
pub async fn run_paused(
    definition: &str,
    input: Value,
    invoker: Arc<dyn TaskInvoker>,
) -> (Execution, Vec<HistoryEvent>) {
    let store: Arc<dyn ExecutionLog> = MemoryExecutionLog::new();
    run_in(&store, definition, input, invoker).await
}

/// Like [`run`] recording into `store`.
pub async fn run_in(
    store: &Arc<dyn ExecutionLog>,
    definition: &str,
    input: Value,
    invoker: Arc<dyn TaskInvoker>,
) -> (Execution, Vec<HistoryEvent>) {
    let machine = StateMachine::parse(definition).expect("definition parses");
    let exec = Executor::new(store.clone(), invoker)
        .start(&machine, "test", &crate::domain::new_run_id(), input)
        .await
        .expect("execution runs");
    let history = store.list_history(&exec.id).await.expect("history");
    (exec, history)
}

/// The names of the states entered, in order.
pub fn entered(history: &[HistoryEvent]) -> Vec<String> {
    history
        .iter()
        .filter(|e| e.event_type == "StateEntered")
        .filter_map(|e| e.state_name.clone())
        .collect()
}

/// The event types, in order.
pub fn types(history: &[HistoryEvent]) -> Vec<&str> {
    history.iter().map(|e| e.event_type.as_str()).collect()
}

/// An in-memory [`ExecutionLog`]: unlike SQLite's pool it has no internal
/// timeouts, so it works under a paused tokio clock.
#[derive(Default)]
pub struct MemoryExecutionLog {
    executions: Mutex<HashMap<String, Execution>>,
    history: Mutex<HashMap<String, Vec<HistoryEvent>>>,
    /// When set, every write fails (simulates the database going away).
    pub broken: std::sync::atomic::AtomicBool,
}

impl MemoryExecutionLog {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn check(&self) -> Result<()> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            Err(Error::Store("store is broken".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ExecutionLog for MemoryExecutionLog {
    async fn create_execution(&self, exec: &Execution) -> Result<()> {
        self.check()?;
        let mut all = self.executions.lock().unwrap_or_else(|p| p.into_inner());
        if all.contains_key(&exec.id) {
            return Err(Error::Conflict(format!(
                "execution {} already exists",
                exec.id
            )));
        }
        all.insert(exec.id.clone(), exec.clone());
        Ok(())
    }

    async fn get_execution(&self, id: &str) -> Result<Option<Execution>> {
        Ok(self
            .executions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned())
    }

    async fn update_execution(&self, exec: &Execution) -> Result<()> {
        self.check()?;
        let mut all = self.executions.lock().unwrap_or_else(|p| p.into_inner());
        match all.get_mut(&exec.id) {
            Some(e) => {
                e.status = exec.status;
                e.output = exec.output.clone();
                e.error = exec.error.clone();
                e.checkpoint = exec.checkpoint.clone();
                e.updated_at = exec.updated_at;
                Ok(())
            }
            None => Err(Error::NotFound(format!("execution {} not found", exec.id))),
        }
    }

    async fn running_executions(&self) -> Result<Vec<Execution>> {
        let mut v: Vec<Execution> = self
            .executions
            .lock()
            .unwrap()
            .values()
            .filter(|e| e.status == ExecutionStatus::Running)
            .cloned()
            .collect();
        v.sort_by_key(|e| e.started_at);
        Ok(v)
    }

    async fn append_history(
        &self,
        execution_id: &str,
        event_type: &str,
        state_name: Option<&str>,
        data: &Value,
    ) -> Result<HistoryEvent> {
        self.check()?;
        let mut all = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let events = all.entry(execution_id.to_string()).or_default();
        let event = HistoryEvent {
            execution_id: execution_id.to_string(),
            seq: events.len() as i64 + 1,
            event_type: event_type.to_string(),
            state_name: state_name.map(str::to_string),
            data: data.clone(),
            timestamp: crate::domain::now(),
        };
        events.push(event.clone());
        Ok(event)
    }

    async fn list_history(&self, execution_id: &str) -> Result<Vec<HistoryEvent>> {
        Ok(self
            .history
            .lock()
            .unwrap()
            .get(execution_id)
            .cloned()
            .unwrap_or_default())
    }
}
