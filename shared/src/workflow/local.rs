//! [`LocalWorkflow`]: the embedded backend of [`Workflow`]. Each execution is a
//! tokio task running the ASL interpreter; history and checkpoints live in the
//! store, so `apna serve` can show traces and resume runs after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::watch;

use super::asl::executor::resume_problem;
use super::asl::{Executor, StateMachine, StopSignal, TaskInvoker};
use super::Workflow;
use crate::domain::{Execution, ExecutionStatus, HistoryEvent};
use crate::error::{Error, Result};
use crate::store::ExecutionLog;

/// An execution this process is running.
struct Running {
    stop: StopSignal,
    done: watch::Receiver<bool>,
}

/// What [`LocalWorkflow::resume_incomplete`] did at startup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeReport {
    /// Executions resumed from their checkpoints (now running in the background).
    pub resumed: Vec<String>,
    /// Executions marked `FAILED`, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Called once with an execution's final record when it ends: succeeded,
/// failed, timed out, stopped, or failed because it could not be resumed.
/// The engine knows nothing of what an execution is for; `apna serve` passes
/// a hook that finishes a generation's run if the run did not.
pub type OnEnd = Arc<dyn Fn(Execution) -> BoxFuture<'static, ()> + Send + Sync>;

/// Runs state machines in this process.
pub struct LocalWorkflow {
    store: Arc<dyn ExecutionLog>,
    executor: Executor,
    machines: HashMap<String, Arc<StateMachine>>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    on_end: Option<OnEnd>,
}

impl LocalWorkflow {
    /// A workflow backend for the given `(name, ASL JSON)` definitions (e.g.
    /// `("generation", include_str!(…))`); any definition error is returned here.
    pub fn new<'a>(
        store: Arc<dyn ExecutionLog>,
        invoker: Arc<dyn TaskInvoker>,
        definitions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut machines = HashMap::new();
        for (name, json) in definitions {
            let machine = StateMachine::parse(json)
                .map_err(|e| Error::Workflow(format!("state machine {name:?}: {e}")))?;
            machines.insert(name.to_string(), Arc::new(machine));
        }
        Ok(Self::with_machines(store, invoker, machines))
    }

    /// A workflow backend for already-parsed machines.
    pub fn with_machines(
        store: Arc<dyn ExecutionLog>,
        invoker: Arc<dyn TaskInvoker>,
        machines: HashMap<String, Arc<StateMachine>>,
    ) -> Self {
        LocalWorkflow {
            executor: Executor::new(store.clone(), invoker),
            store,
            machines,
            running: Arc::new(Mutex::new(HashMap::new())),
            on_end: None,
        }
    }

    /// Calls `hook` at the end of every execution, before [`Self::wait`]
    /// returns for it.
    pub fn on_end(mut self, hook: OnEnd) -> Self {
        self.on_end = Some(hook);
        self
    }

    async fn ended(on_end: &Option<OnEnd>, exec: Execution) {
        if let Some(hook) = on_end {
            if exec.status != ExecutionStatus::Running {
                hook(exec).await;
            }
        }
    }

    fn machine(&self, name: &str) -> Result<Arc<StateMachine>> {
        self.machines
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no state machine named {name:?}")))
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        match self.running.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Runs `exec` in the background; `resume` picks up from its checkpoint.
    fn spawn(&self, machine: Arc<StateMachine>, exec: Execution, resume: bool) {
        let (done_tx, done_rx) = watch::channel(false);
        let stop = StopSignal::new();
        let name = exec.id.clone();
        self.running().insert(
            name.clone(),
            Running {
                stop: stop.clone(),
                done: done_rx,
            },
        );
        let executor = self.executor.clone();
        let running = self.running.clone();
        let on_end = self.on_end.clone();
        tokio::spawn(async move {
            let result = if resume {
                executor.resume(&machine, exec, stop).await
            } else {
                executor.run(&machine, exec, stop).await
            };
            match result {
                Ok(exec) => Self::ended(&on_end, exec).await,
                // The store failed: the execution stays RUNNING and is resumed at the next start.
                Err(e) => {
                    tracing::error!(run_id = %name, error = %e, "execution interrupted by a store error")
                }
            }
            if let Ok(mut r) = running.lock() {
                r.remove(&name);
            }
            let _ = done_tx.send(true);
        });
    }

    /// Startup recovery: resumes every `RUNNING` execution from its checkpoint,
    /// or marks it `FAILED` with a reason when it cannot be resumed.
    pub async fn resume_incomplete(&self) -> Result<ResumeReport> {
        let mut report = ResumeReport::default();
        for exec in self.store.running_executions().await? {
            if self.running().contains_key(&exec.id) {
                continue;
            }
            let problem = match self.machines.get(&exec.state_machine) {
                None => Err(format!("no state machine named {:?}", exec.state_machine)),
                Some(machine) => match resume_problem(machine, &exec) {
                    Some(reason) => Err(reason),
                    None => Ok(machine.clone()),
                },
            };
            match problem {
                Ok(machine) => {
                    tracing::info!(run_id = %exec.id, state_machine = %exec.state_machine, "resuming execution");
                    report.resumed.push(exec.id.clone());
                    self.spawn(machine, exec, true);
                }
                Err(reason) => {
                    tracing::warn!(run_id = %exec.id, %reason, "cannot resume execution");
                    let name = exec.id.clone();
                    let exec = self.executor.fail_unresumable(exec, &reason).await?;
                    Self::ended(&self.on_end, exec).await;
                    report.failed.push((name, reason));
                }
            }
        }
        Ok(report)
    }

    /// Waits until an execution this process runs has ended, then returns its record.
    pub async fn wait(&self, name: &str) -> Result<Option<Execution>> {
        let done = self.running().get(name).map(|r| r.done.clone());
        if let Some(mut done) = done {
            let _ = done.wait_for(|d| *d).await;
        }
        self.store.get_execution(name).await
    }
}

#[async_trait]
impl Workflow for LocalWorkflow {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn start(&self, state_machine: &str, name: &str, input: Value) -> Result<()> {
        let machine = self.machine(state_machine)?;
        let exec = self.executor.create(state_machine, name, input).await?;
        self.spawn(machine, exec, false);
        Ok(())
    }

    async fn describe(&self, name: &str) -> Result<Option<Execution>> {
        self.store.get_execution(name).await
    }

    async fn history(&self, name: &str) -> Result<Vec<HistoryEvent>> {
        self.store.list_history(name).await
    }

    async fn stop(&self, name: &str, cause: &str) -> Result<()> {
        let handle = self
            .running()
            .get(name)
            .map(|r| (r.stop.clone(), r.done.clone()));
        if let Some((stop, mut done)) = handle {
            stop.stop(cause);
            let _ = done.wait_for(|d| *d).await;
            return Ok(());
        }
        match self.store.get_execution(name).await? {
            Some(exec) if exec.status == ExecutionStatus::Running => {
                // Nobody runs it (e.g. not resumed yet): record the stop directly.
                let exec = self.executor.abort_orphan(exec, cause).await?;
                Self::ended(&self.on_end, exec).await;
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("no execution named {name:?}"))),
        }
    }
}
