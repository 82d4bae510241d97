//! Fixtures shared by the `asl_*` tests: an in-memory SQLite store, scriptable
//! task invokers and a runner that executes a definition to its end.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apna::domain::{
    Execution, ExecutionStatus, HistoryEvent, Message, NewMessage, Page, Project, ProjectStatus,
    Run, RunEvent, User, Version,
};
use apna::error::{Error, Result};
use apna::store::{SqliteStore, Store};
use apna::workflow::asl::{Executor, StateMachine, TaskFailure, TaskInvoker};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

/// A fresh private in-memory store.
pub async fn store() -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::connect("sqlite::memory:")
            .await
            .expect("sqlite store"),
    )
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
        self.calls.lock().unwrap().clone()
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
            let mut calls = self.calls.lock().unwrap();
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
    let store = store().await;
    run_in(&store, definition, input, invoker).await
}

/// Like [`run`] with a [`MemoryStore`], for tests under a paused clock.
pub async fn run_paused(
    definition: &str,
    input: Value,
    invoker: Arc<dyn TaskInvoker>,
) -> (Execution, Vec<HistoryEvent>) {
    let store: Arc<dyn Store> = MemoryStore::new();
    run_in(&store, definition, input, invoker).await
}

pub async fn run_in(
    store: &Arc<dyn Store>,
    definition: &str,
    input: Value,
    invoker: Arc<dyn TaskInvoker>,
) -> (Execution, Vec<HistoryEvent>) {
    let machine = StateMachine::parse(definition).expect("definition parses");
    let exec = Executor::new(store.clone(), invoker)
        .start(&machine, "test", &apna::domain::new_run_id(), input)
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

/// An in-memory store holding only executions and their history: unlike SQLite's
/// pool it has no internal timeouts, so it works under a paused tokio clock.
#[derive(Default)]
pub struct MemoryStore {
    executions: Mutex<HashMap<String, Execution>>,
    history: Mutex<HashMap<String, Vec<HistoryEvent>>>,
    /// When set, every write fails (simulates the database going away).
    pub broken: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
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
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn create_execution(&self, exec: &Execution) -> Result<()> {
        self.check()?;
        let mut all = self.executions.lock().unwrap();
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
        Ok(self.executions.lock().unwrap().get(id).cloned())
    }

    async fn update_execution(&self, exec: &Execution) -> Result<()> {
        self.check()?;
        let mut all = self.executions.lock().unwrap();
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
        let mut all = self.history.lock().unwrap();
        let events = all.entry(execution_id.to_string()).or_default();
        let event = HistoryEvent {
            execution_id: execution_id.to_string(),
            seq: events.len() as i64 + 1,
            event_type: event_type.to_string(),
            state_name: state_name.map(str::to_string),
            data: data.clone(),
            timestamp: apna::domain::now(),
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

    async fn upsert_user(&self, _user: &User) -> Result<User> {
        unimplemented!("upsert_user is not used by workflow tests")
    }

    async fn get_user(&self, _id: &str) -> Result<Option<User>> {
        unimplemented!("get_user is not used by workflow tests")
    }

    async fn create_project(&self, _project: &Project) -> Result<()> {
        unimplemented!("create_project is not used by workflow tests")
    }

    async fn get_project(&self, _id: &str) -> Result<Option<Project>> {
        unimplemented!("get_project is not used by workflow tests")
    }

    async fn list_projects(&self, _owner: &str, _page: Page) -> Result<Vec<Project>> {
        unimplemented!("list_projects is not used by workflow tests")
    }

    async fn count_projects(&self, _owner: &str) -> Result<i64> {
        unimplemented!("count_projects is not used by workflow tests")
    }

    async fn set_project_status(
        &self,
        _id: &str,
        _from: ProjectStatus,
        _to: ProjectStatus,
        _error: Option<&str>,
    ) -> Result<bool> {
        unimplemented!("set_project_status is not used by workflow tests")
    }

    async fn touch_project(&self, _id: &str, _at: DateTime<Utc>) -> Result<()> {
        unimplemented!("touch_project is not used by workflow tests")
    }

    async fn soft_delete_project(&self, _id: &str) -> Result<bool> {
        unimplemented!("soft_delete_project is not used by workflow tests")
    }

    async fn idle_projects(&self, _before: DateTime<Utc>, _limit: i64) -> Result<Vec<Project>> {
        unimplemented!("idle_projects is not used by workflow tests")
    }

    async fn acquire_run_lock(&self, _project_id: &str, _run_id: &str) -> Result<bool> {
        unimplemented!("acquire_run_lock is not used by workflow tests")
    }

    async fn release_run_lock(&self, _project_id: &str, _run_id: &str) -> Result<bool> {
        unimplemented!("release_run_lock is not used by workflow tests")
    }

    async fn run_lock_holder(&self, _project_id: &str) -> Result<Option<String>> {
        unimplemented!("run_lock_holder is not used by workflow tests")
    }

    async fn create_run(&self, _run: &Run) -> Result<()> {
        unimplemented!("create_run is not used by workflow tests")
    }

    async fn get_run(&self, _id: &str) -> Result<Option<Run>> {
        unimplemented!("get_run is not used by workflow tests")
    }

    async fn update_run(&self, _run: &Run) -> Result<()> {
        unimplemented!("update_run is not used by workflow tests")
    }

    async fn list_runs(&self, _project_id: &str, _page: Page) -> Result<Vec<Run>> {
        unimplemented!("list_runs is not used by workflow tests")
    }

    async fn count_active_runs(&self, _owner: &str) -> Result<i64> {
        unimplemented!("count_active_runs is not used by workflow tests")
    }
    async fn cost_since(&self, _owner: &str, _since: chrono::DateTime<chrono::Utc>) -> Result<f64> {
        unimplemented!("cost_since is not used by workflow tests")
    }
    async fn deleted_projects(
        &self,
        _before: chrono::DateTime<chrono::Utc>,
        _limit: i64,
    ) -> Result<Vec<String>> {
        unimplemented!("deleted_projects is not used by workflow tests")
    }
    async fn purge_project(&self, _id: &str) -> Result<bool> {
        unimplemented!("purge_project is not used by workflow tests")
    }

    async fn append_messages(
        &self,
        _project_id: &str,
        _msgs: &[NewMessage],
    ) -> Result<Vec<Message>> {
        unimplemented!("append_messages is not used by workflow tests")
    }

    async fn list_messages(&self, _project_id: &str, _page: Page) -> Result<Vec<Message>> {
        unimplemented!("list_messages is not used by workflow tests")
    }

    async fn append_event(&self, _run_id: &str, _kind: &str, _data: &Value) -> Result<RunEvent> {
        unimplemented!("append_event is not used by workflow tests")
    }

    async fn list_events(&self, _run_id: &str, _after: i64, _limit: i64) -> Result<Vec<RunEvent>> {
        unimplemented!("list_events is not used by workflow tests")
    }

    async fn put_step_result(&self, _run_id: &str, _key: &str, _output: &Value) -> Result<Value> {
        unimplemented!("put_step_result is not used by workflow tests")
    }

    async fn get_step_result(&self, _run_id: &str, _key: &str) -> Result<Option<Value>> {
        unimplemented!("get_step_result is not used by workflow tests")
    }

    async fn create_version(
        &self,
        _project_id: &str,
        _run_id: Option<&str>,
        _snapshot_key: &str,
        _summary: &str,
        _file_diffs: &[apna::domain::FileDiff],
    ) -> Result<Version> {
        unimplemented!("create_version is not used by workflow tests")
    }

    async fn list_versions(&self, _project_id: &str) -> Result<Vec<Version>> {
        unimplemented!("list_versions is not used by workflow tests")
    }

    async fn get_version(&self, _project_id: &str, _number: i64) -> Result<Option<Version>> {
        unimplemented!("get_version is not used by workflow tests")
    }
}
