//! Runs a [`StateMachine`] as one execution: records every step in the store's
//! history (the same events as the Step Functions console), saves a checkpoint
//! `{ "state", "input" }` before each top-level state so a restarted process can
//! resume, and applies Retry/Catch, timeouts and stop requests.
//!
//! Time goes through `tokio::time`, so tests with a paused clock see Retry
//! backoff and Wait states without sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::definition::{
    Catcher, ChoiceState, FailState, Jitter, MapState, PassState, Retrier, State, StateMachine,
    States, TaskState, WaitState,
};
use super::template::{apply, evaluate, merge_result, select};
use super::{TaskFailure, TaskInvoker};
use crate::domain::{self, Execution, ExecutionStatus};
use crate::error::{Error, Result};
use crate::store::ExecutionLog;

/// Asks a running execution to stop: takes effect between states, during
/// waits and retry delays, and while awaiting a task (whose handler finishes
/// on its own, its result ignored).
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    cause: Arc<Mutex<Option<String>>>,
}

impl StopSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal; the execution ends as `ABORTED` with `cause`.
    pub fn stop(&self, cause: &str) {
        if let Ok(mut c) = self.cause.lock() {
            c.get_or_insert_with(|| cause.to_string());
        }
        self.token.cancel();
    }

    /// Whether [`StopSignal::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    fn cause(&self) -> String {
        self.cause
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .unwrap_or_else(|| "stopped".into())
    }
}

/// Why a block of states stopped early.
enum Halt {
    /// A state failed and nothing caught it.
    Failed(TaskFailure),
    /// The stop signal fired.
    Aborted,
    /// The store failed; the execution stays `RUNNING` so it can be resumed.
    Store(Error),
}

impl From<TaskFailure> for Halt {
    fn from(f: TaskFailure) -> Self {
        Halt::Failed(f)
    }
}

/// Where a state sends the execution.
enum Step {
    Next(Value, String),
    End(Value),
}

/// What to do with a failure, per the state's Retry and Catch.
enum Decision {
    Retry(Duration),
    Catch(Value, String),
    Fail,
}

/// Fixed facts about the execution being run (the context object's `Execution`).
struct RunInfo {
    id: String,
    name: String,
    machine_name: String,
    input: Value,
    start_time: DateTime<Utc>,
    record: Mutex<Execution>,
    stop: StopSignal,
}

impl RunInfo {
    fn context(&self, state: &str, entered: DateTime<Utc>, retry_count: u32) -> Value {
        json!({
            "Execution": {
                "Id": self.id,
                "Name": self.name,
                "Input": self.input,
                "StartTime": self.start_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            "StateMachine": {
                "Id": format!("arn:aws:states:local:000000000000:stateMachine:{}", self.machine_name),
                "Name": self.machine_name,
            },
            "State": {
                "Name": state,
                "EnteredTime": entered.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "RetryCount": retry_count,
            },
        })
    }
}

/// Runs executions of state machines against a store and a task invoker.
#[derive(Clone)]
pub struct Executor {
    store: Arc<dyn ExecutionLog>,
    invoker: Arc<dyn TaskInvoker>,
}

impl Executor {
    /// An executor recording into `store` and running tasks through `invoker`.
    pub fn new(store: Arc<dyn ExecutionLog>, invoker: Arc<dyn TaskInvoker>) -> Self {
        Executor { store, invoker }
    }

    /// Inserts the execution (`RUNNING`, `Conflict` if the name exists) and its
    /// `ExecutionStarted` event; [`Executor::run`] then carries it out.
    pub async fn create(&self, state_machine: &str, name: &str, input: Value) -> Result<Execution> {
        let t = domain::now();
        let exec = Execution {
            id: name.to_string(),
            state_machine: state_machine.to_string(),
            status: ExecutionStatus::Running,
            input: input.clone(),
            output: None,
            error: None,
            checkpoint: None,
            started_at: t,
            updated_at: t,
        };
        self.store.create_execution(&exec).await?;
        self.store
            .append_history(name, "ExecutionStarted", None, &json!({ "input": input }))
            .await?;
        Ok(exec)
    }

    /// Creates and runs an execution to its end.
    pub async fn start(
        &self,
        machine: &StateMachine,
        state_machine: &str,
        name: &str,
        input: Value,
    ) -> Result<Execution> {
        let exec = self.create(state_machine, name, input).await?;
        self.run(machine, exec, StopSignal::new()).await
    }

    /// Resumes an execution left `RUNNING` by a previous process: from its
    /// checkpoint (the state that was in progress is entered again), or from the
    /// start if it never reached its first state. An unusable checkpoint marks the
    /// execution `FAILED` with the reason. Returns the final record.
    pub async fn resume(
        &self,
        machine: &StateMachine,
        exec: Execution,
        stop: StopSignal,
    ) -> Result<Execution> {
        if exec.status != ExecutionStatus::Running {
            return Ok(exec);
        }
        if let Some(reason) = resume_problem(machine, &exec) {
            return self.fail_unresumable(exec, &reason).await;
        }
        self.store
            .append_history(
                &exec.id,
                "ExecutionResumed",
                exec.checkpoint
                    .as_ref()
                    .and_then(|c| c.get("state"))
                    .and_then(Value::as_str),
                &json!({ "checkpoint": exec.checkpoint }),
            )
            .await?;
        self.run(machine, exec, stop).await
    }

    /// Runs an execution from its checkpoint (or its start) until it ends, is
    /// stopped or times out, and stores the outcome. `Err` only when the store
    /// fails, in which case the execution is left `RUNNING` for a later resume.
    pub async fn run(
        &self,
        machine: &StateMachine,
        exec: Execution,
        stop: StopSignal,
    ) -> Result<Execution> {
        if exec.status != ExecutionStatus::Running {
            return Ok(exec);
        }
        let (start, input) = match &exec.checkpoint {
            Some(cp) => (
                cp.get("state")
                    .and_then(Value::as_str)
                    .unwrap_or(&machine.states.start_at)
                    .to_string(),
                cp.get("input")
                    .cloned()
                    .unwrap_or_else(|| exec.input.clone()),
            ),
            None => (machine.states.start_at.clone(), exec.input.clone()),
        };
        let span = tracing::info_span!("execution", run_id = %exec.id, state_machine = %exec.state_machine);
        let info = RunInfo {
            id: format!(
                "arn:aws:states:local:000000000000:execution:{}:{}",
                exec.state_machine, exec.id
            ),
            name: exec.id.clone(),
            machine_name: exec.state_machine.clone(),
            input: exec.input.clone(),
            start_time: exec.started_at,
            record: Mutex::new(exec.clone()),
            stop,
        };
        let body = self.run_block(&info, &machine.states, start, input, true);
        let outcome = match machine.timeout_seconds {
            Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), body)
                .instrument(span.clone())
                .await
            {
                Ok(r) => r,
                Err(_) => {
                    let record = current(&info);
                    return self.timed_out(record, secs).await;
                }
            },
            None => body.instrument(span.clone()).await,
        };
        let record = current(&info);
        let record = match outcome {
            Err(Halt::Aborted) => {
                let cause = info.stop.cause();
                return self.aborted(record, &cause).await;
            }
            other => self.finish(record, other).await?,
        };
        Ok(record)
    }

    /// Marks an execution that cannot be resumed `FAILED` with
    /// `Apna.ResumeFailed` and the reason.
    pub async fn fail_unresumable(&self, exec: Execution, reason: &str) -> Result<Execution> {
        let failure = TaskFailure::new(
            "Apna.ResumeFailed",
            format!("cannot resume after a restart: {reason}"),
        );
        self.finish(exec, Err(Halt::Failed(failure))).await
    }

    /// Marks a `RUNNING` execution that no process is running as `ABORTED`.
    pub async fn abort_orphan(&self, exec: Execution, cause: &str) -> Result<Execution> {
        if exec.status != ExecutionStatus::Running {
            return Ok(exec);
        }
        self.aborted(exec, cause).await
    }

    async fn aborted(&self, mut exec: Execution, cause: &str) -> Result<Execution> {
        exec.status = ExecutionStatus::Aborted;
        exec.error = Some(format!("Aborted: {cause}"));
        exec.checkpoint = None;
        exec.updated_at = domain::now();
        self.store
            .append_history(
                &exec.id,
                "ExecutionAborted",
                None,
                &json!({ "error": "Aborted", "cause": cause }),
            )
            .await?;
        self.store.update_execution(&exec).await?;
        tracing::info!(run_id = %exec.id, cause, "execution aborted");
        Ok(exec)
    }

    async fn timed_out(&self, mut exec: Execution, secs: u64) -> Result<Execution> {
        let cause = format!("the execution ran longer than {secs} s");
        exec.status = ExecutionStatus::TimedOut;
        exec.error = Some(format!("States.Timeout: {cause}"));
        exec.checkpoint = None;
        exec.updated_at = domain::now();
        self.store
            .append_history(
                &exec.id,
                "ExecutionTimedOut",
                None,
                &json!({ "error": "States.Timeout", "cause": cause }),
            )
            .await?;
        self.store.update_execution(&exec).await?;
        Ok(exec)
    }

    async fn finish(
        &self,
        mut exec: Execution,
        outcome: std::result::Result<Value, Halt>,
    ) -> Result<Execution> {
        exec.updated_at = domain::now();
        exec.checkpoint = None;
        match outcome {
            Ok(output) => {
                exec.status = ExecutionStatus::Succeeded;
                exec.output = Some(output.clone());
                self.store
                    .append_history(
                        &exec.id,
                        "ExecutionSucceeded",
                        None,
                        &json!({ "output": output }),
                    )
                    .await?;
            }
            Err(Halt::Failed(f)) => {
                exec.status = ExecutionStatus::Failed;
                exec.error = Some(f.to_string());
                self.store
                    .append_history(
                        &exec.id,
                        "ExecutionFailed",
                        None,
                        &json!({ "error": f.error, "cause": f.cause }),
                    )
                    .await?;
                tracing::warn!(run_id = %exec.id, error = %f.error, cause = %f.cause, "execution failed");
            }
            Err(Halt::Aborted) => {
                return self.aborted(exec, "stopped").await;
            }
            Err(Halt::Store(e)) => return Err(e),
        }
        self.store.update_execution(&exec).await?;
        Ok(exec)
    }

    async fn record(
        &self,
        info: &RunInfo,
        event: &str,
        state: Option<&str>,
        data: Value,
    ) -> std::result::Result<(), Halt> {
        self.store
            .append_history(&info.name, event, state, &data)
            .await
            .map(|_| ())
            .map_err(Halt::Store)
    }

    async fn checkpoint(
        &self,
        info: &RunInfo,
        state: &str,
        input: &Value,
    ) -> std::result::Result<(), Halt> {
        let exec = {
            let Ok(mut rec) = info.record.lock() else {
                return Err(Halt::Store(Error::Internal(
                    "execution record lock poisoned".into(),
                )));
            };
            rec.checkpoint = Some(json!({ "state": state, "input": input }));
            rec.updated_at = domain::now();
            rec.clone()
        };
        self.store
            .update_execution(&exec)
            .await
            .map_err(Halt::Store)
    }

    /// Sleeps, waking early (as `Aborted`) if the execution is stopped.
    async fn sleep(&self, info: &RunInfo, d: Duration) -> std::result::Result<(), Halt> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = info.stop.token.cancelled() => Err(Halt::Aborted),
        }
    }

    /// Runs a block from `start` until a state ends it. `top` marks the
    /// machine's own block, whose states are checkpointed.
    fn run_block<'a>(
        &'a self,
        info: &'a RunInfo,
        block: &'a States,
        start: String,
        input: Value,
        top: bool,
    ) -> BoxFuture<'a, std::result::Result<Value, Halt>> {
        Box::pin(async move {
            let mut name = start;
            let mut input = input;
            loop {
                if info.stop.is_stopped() {
                    return Err(Halt::Aborted);
                }
                let Some(state) = block.states.get(&name) else {
                    return Err(TaskFailure::runtime(format!("no state named {name:?}")).into());
                };
                if top {
                    self.checkpoint(info, &name, &input).await?;
                }
                let kind = state.type_name();
                self.record(
                    info,
                    "StateEntered",
                    Some(&name),
                    json!({ "type": kind, "input": input }),
                )
                .await?;
                tracing::debug!(run_id = %info.name, state = %name, kind, "state entered");
                let step = self.run_state(info, &name, state, input).await?;
                let (output, next) = match step {
                    Step::Next(out, next) => (out, Some(next)),
                    Step::End(out) => (out, None),
                };
                self.record(
                    info,
                    "StateExited",
                    Some(&name),
                    json!({ "type": kind, "output": output }),
                )
                .await?;
                match next {
                    Some(n) => {
                        name = n;
                        input = output;
                    }
                    None => return Ok(output),
                }
            }
        })
    }

    async fn run_state(
        &self,
        info: &RunInfo,
        name: &str,
        state: &State,
        input: Value,
    ) -> std::result::Result<Step, Halt> {
        let entered = domain::now();
        let ctx = info.context(name, entered, 0);
        let next = |out: Value| -> Step {
            match state.transition().and_then(|t| t.next) {
                Some(n) => Step::Next(out, n.to_string()),
                None => Step::End(out),
            }
        };
        match state {
            State::Pass(p) => Ok(next(pass(p, input, &ctx)?)),
            State::Succeed(s) => {
                let eff = select(s.input_path.as_deref(), &input, &ctx)?;
                Ok(Step::End(select(s.output_path.as_deref(), &eff, &ctx)?))
            }
            State::Fail(f) => Err(fail(f, &input, &ctx).into()),
            State::Choice(c) => {
                let (out, target) = choose(c, &input, &ctx)?;
                Ok(Step::Next(out, target))
            }
            State::Wait(w) => {
                let eff = select(w.input_path.as_deref(), &input, &ctx)?;
                let d = wait_duration(w, &eff, &ctx)?;
                self.sleep(info, d).await?;
                Ok(next(select(w.output_path.as_deref(), &eff, &ctx)?))
            }
            State::Task(t) => self
                .task(info, name, t, input, entered)
                .await
                .map(|r| match r {
                    Ok(out) => next(out),
                    Err((out, target)) => Step::Next(out, target),
                }),
            State::Map(m) => self
                .map(info, name, m, input, entered)
                .await
                .map(|r| match r {
                    Ok(out) => next(out),
                    Err((out, target)) => Step::Next(out, target),
                }),
        }
    }

    /// A Task with its Retry and Catch. `Ok(Err((output, next)))` means a Catch routed it.
    async fn task(
        &self,
        info: &RunInfo,
        name: &str,
        t: &TaskState,
        input: Value,
        entered: DateTime<Utc>,
    ) -> std::result::Result<std::result::Result<Value, (Value, String)>, Halt> {
        let input = &input;
        self.retrying(
            info,
            name,
            entered,
            &t.retry,
            &t.catch,
            input,
            |ctx| async move { self.task_attempt(info, name, t, input, &ctx).await },
        )
        .await
    }

    /// Runs `attempt` under a state's Retry and Catch rules (Task and Map
    /// share them). `Ok(Err((output, next)))` means a Catch routed it.
    #[allow(clippy::too_many_arguments)]
    async fn retrying<F, Fut>(
        &self,
        info: &RunInfo,
        name: &str,
        entered: DateTime<Utc>,
        retry: &[Retrier],
        catch: &[Catcher],
        input: &Value,
        mut attempt: F,
    ) -> std::result::Result<std::result::Result<Value, (Value, String)>, Halt>
    where
        F: FnMut(Value) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Value, Halt>>,
    {
        let mut attempts = vec![0u32; retry.len()];
        let mut retry_count = 0u32;
        loop {
            match attempt(info.context(name, entered, retry_count)).await {
                Ok(out) => return Ok(Ok(out)),
                Err(Halt::Failed(f)) => match decide(retry, &mut attempts, catch, &f, input)? {
                    Decision::Retry(d) => {
                        tracing::info!(run_id = %info.name, state = name, error = %f.error, delay_ms = d.as_millis() as u64, "retrying");
                        self.sleep(info, d).await?;
                        retry_count += 1;
                    }
                    Decision::Catch(out, target) => return Ok(Err((out, target))),
                    Decision::Fail => return Err(Halt::Failed(f)),
                },
                Err(other) => return Err(other),
            }
        }
    }

    async fn task_attempt(
        &self,
        info: &RunInfo,
        name: &str,
        t: &TaskState,
        input: &Value,
        ctx: &Value,
    ) -> std::result::Result<Value, Halt> {
        let eff = select(t.input_path.as_deref(), input, ctx)?;
        let params = match &t.parameters {
            Some(p) => apply(p, &eff, ctx)?,
            None => eff,
        };
        self.record(
            info,
            "TaskScheduled",
            Some(name),
            json!({ "resource": t.resource, "parameters": params, "timeoutSeconds": t.timeout_seconds }),
        )
        .await?;
        // The invocation runs as its own task, as a Lambda does under Step Functions:
        // a stop or a timeout stops waiting for it but never cancels a handler
        // half-way through its writes; its late result is ignored.
        let invoker = self.invoker.clone();
        let resource = t.resource.clone();
        let handle = tokio::spawn(async move { invoker.invoke(&resource, params).await });
        let call = async move {
            handle.await.unwrap_or_else(|e| {
                Err(TaskFailure::new(
                    "States.TaskFailed",
                    if e.is_panic() {
                        "the task handler panicked".to_string()
                    } else {
                        format!("the task handler was cancelled: {e}")
                    },
                ))
            })
        };
        let timed = async {
            match t.timeout_seconds {
                Some(secs) => tokio::time::timeout(Duration::from_secs(secs), call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(TaskFailure::new(
                            "States.Timeout",
                            format!("the task did not finish within {secs} s"),
                        ))
                    }),
                None => call.await,
            }
        };
        let result = tokio::select! {
            r = timed => r,
            _ = info.stop.token.cancelled() => return Err(Halt::Aborted),
        };
        match result {
            Ok(output) => {
                self.record(
                    info,
                    "TaskSucceeded",
                    Some(name),
                    json!({ "resource": t.resource, "output": output }),
                )
                .await?;
                let selected = match &t.result_selector {
                    Some(s) => apply(s, &output, ctx)?,
                    None => output,
                };
                let merged = merge_result(t.result_path.as_deref(), input.clone(), selected)?;
                Ok(select(t.output_path.as_deref(), &merged, ctx)?)
            }
            Err(f) => {
                self.record(
                    info,
                    "TaskFailed",
                    Some(name),
                    json!({ "resource": t.resource, "error": f.error, "cause": f.cause }),
                )
                .await?;
                Err(Halt::Failed(f))
            }
        }
    }

    /// A Map with its Retry and Catch. `Ok(Err((output, next)))` means a Catch routed it.
    async fn map(
        &self,
        info: &RunInfo,
        name: &str,
        m: &MapState,
        input: Value,
        entered: DateTime<Utc>,
    ) -> std::result::Result<std::result::Result<Value, (Value, String)>, Halt> {
        let input = &input;
        self.retrying(
            info,
            name,
            entered,
            &m.retry,
            &m.catch,
            input,
            |ctx| async move { self.map_attempt(info, name, m, input, &ctx).await },
        )
        .await
    }

    async fn map_attempt(
        &self,
        info: &RunInfo,
        name: &str,
        m: &MapState,
        input: &Value,
        ctx: &Value,
    ) -> std::result::Result<Value, Halt> {
        let Some(block) = m.block.as_deref() else {
            return Err(TaskFailure::runtime("the Map state has no processor").into());
        };
        let eff = select(m.input_path.as_deref(), input, ctx)?;
        let items = select(m.items_path.as_deref(), &eff, ctx)?;
        let Value::Array(items) = items else {
            return Err(TaskFailure::runtime(format!(
                "ItemsPath of Map state {name:?} must select an array"
            ))
            .into());
        };
        self.record(
            info,
            "MapStateStarted",
            Some(name),
            json!({ "length": items.len() }),
        )
        .await?;
        let limit = match m.max_concurrency {
            0 => items.len().max(1),
            n => n as usize,
        };
        let selector = m.item_selector.as_ref().or(m.parameters.as_ref());
        let eff = &eff;
        let iterations = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| async move {
                let mut item_ctx = ctx.clone();
                item_ctx["Map"] = json!({ "Item": { "Index": index, "Value": item } });
                let item_input = match selector {
                    Some(t) => apply(t, eff, &item_ctx)?,
                    None => item,
                };
                self.record(
                    info,
                    "MapIterationStarted",
                    Some(name),
                    json!({ "index": index }),
                )
                .await?;
                let result = self
                    .run_block(info, block, block.start_at.clone(), item_input, false)
                    .await;
                match &result {
                    Ok(_) => {
                        self.record(
                            info,
                            "MapIterationSucceeded",
                            Some(name),
                            json!({ "index": index }),
                        )
                        .await?
                    }
                    Err(Halt::Failed(f)) => {
                        self.record(
                            info,
                            "MapIterationFailed",
                            Some(name),
                            json!({ "index": index, "error": f.error, "cause": f.cause }),
                        )
                        .await?
                    }
                    Err(_) => {}
                }
                result
            });
        let results: std::result::Result<Vec<Value>, Halt> = futures::stream::iter(iterations)
            .buffered(limit)
            .try_collect()
            .await;
        let results = match results {
            Ok(r) => r,
            Err(Halt::Failed(f)) => {
                self.record(
                    info,
                    "MapStateFailed",
                    Some(name),
                    json!({ "error": f.error, "cause": f.cause }),
                )
                .await?;
                return Err(Halt::Failed(f));
            }
            Err(other) => return Err(other),
        };
        self.record(info, "MapStateSucceeded", Some(name), json!({}))
            .await?;
        let results = Value::Array(results);
        let selected = match &m.result_selector {
            Some(s) => apply(s, &results, ctx)?,
            None => results,
        };
        let merged = merge_result(m.result_path.as_deref(), input.clone(), selected)?;
        Ok(select(m.output_path.as_deref(), &merged, ctx)?)
    }
}

/// Why `exec` cannot be resumed with `machine`, if it cannot: a checkpoint
/// without state or input, or naming a state the definition no longer has.
pub fn resume_problem(machine: &StateMachine, exec: &Execution) -> Option<String> {
    let cp = exec.checkpoint.as_ref()?;
    match cp.get("state").and_then(Value::as_str) {
        None => Some("the checkpoint has no state".to_string()),
        Some(_) if cp.get("input").is_none() => Some("the checkpoint has no input".to_string()),
        Some(s) if !machine.states.states.contains_key(s) => Some(format!(
            "state {s:?} no longer exists in the {} definition",
            exec.state_machine
        )),
        Some(_) => None,
    }
}

fn current(info: &RunInfo) -> Execution {
    match info.record.lock() {
        Ok(r) => r.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn pass(p: &PassState, input: Value, ctx: &Value) -> std::result::Result<Value, TaskFailure> {
    let eff = select(p.input_path.as_deref(), &input, ctx)?;
    let eff = match &p.parameters {
        Some(t) => apply(t, &eff, ctx)?,
        None => eff,
    };
    let result = p.result.clone().unwrap_or(eff);
    let merged = merge_result(p.result_path.as_deref(), input, result)?;
    select(p.output_path.as_deref(), &merged, ctx)
}

fn fail(f: &FailState, input: &Value, ctx: &Value) -> TaskFailure {
    let read = |fixed: &Option<String>, path: &Option<String>| -> String {
        if let Some(v) = fixed {
            return v.clone();
        }
        match path.as_deref().map(|p| evaluate(p, input, ctx)) {
            Some(Ok(Value::String(s))) => s,
            Some(Ok(other)) => other.to_string(),
            _ => String::new(),
        }
    };
    TaskFailure::new(read(&f.error, &f.error_path), read(&f.cause, &f.cause_path))
}

fn choose(
    c: &ChoiceState,
    input: &Value,
    ctx: &Value,
) -> std::result::Result<(Value, String), TaskFailure> {
    let eff = select(c.input_path.as_deref(), input, ctx)?;
    for (rule, next) in &c.rules {
        if rule.matches(&eff, ctx)? {
            return Ok((select(c.output_path.as_deref(), &eff, ctx)?, next.clone()));
        }
    }
    match &c.default {
        Some(d) => Ok((select(c.output_path.as_deref(), &eff, ctx)?, d.clone())),
        None => Err(TaskFailure::new(
            "States.NoChoiceMatched",
            "no choice rule matched and there is no Default",
        )),
    }
}

fn wait_duration(
    w: &WaitState,
    input: &Value,
    ctx: &Value,
) -> std::result::Result<Duration, TaskFailure> {
    if let Some(s) = w.seconds {
        return Ok(Duration::from_secs(s));
    }
    if let Some(p) = &w.seconds_path {
        let v = evaluate(p, input, ctx)?;
        return v.as_u64().map(Duration::from_secs).ok_or_else(|| {
            TaskFailure::runtime(format!(
                "SecondsPath {p:?} must select a non-negative integer, got {v}"
            ))
        });
    }
    let ts = match (&w.timestamp, &w.timestamp_path) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => match evaluate(p, input, ctx)? {
            Value::String(s) => s,
            other => {
                return Err(TaskFailure::runtime(format!(
                    "TimestampPath {p:?} must select a string, got {other}"
                )))
            }
        },
        (None, None) => return Ok(Duration::ZERO),
    };
    let until = DateTime::parse_from_rfc3339(&ts)
        .map_err(|e| TaskFailure::runtime(format!("timestamp {ts:?}: {e}")))?;
    let ms = (until.with_timezone(&Utc) - Utc::now())
        .num_milliseconds()
        .max(0);
    Ok(Duration::from_millis(ms as u64))
}

/// Whether an `ErrorEquals` list handles `error`. `States.ALL` matches
/// everything but `States.Runtime`; `States.TaskFailed` also excludes `States.Timeout`.
pub fn error_matches(names: &[String], error: &str) -> bool {
    names.iter().any(|n| match n.as_str() {
        "States.ALL" => error != "States.Runtime",
        "States.TaskFailed" => error != "States.Runtime" && error != "States.Timeout",
        other => other == error,
    })
}

/// The delay before retry number `attempt` (0-based) under `r`, before jitter.
pub fn backoff(r: &Retrier, attempt: u32) -> Duration {
    let mut secs = r.interval_seconds * r.backoff_rate.powi(attempt as i32);
    if let Some(max) = r.max_delay_seconds {
        secs = secs.min(max);
    }
    Duration::from_secs_f64(secs.clamp(0.0, 365.0 * 24.0 * 3600.0))
}

fn decide(
    retry: &[Retrier],
    attempts: &mut [u32],
    catch: &[Catcher],
    f: &TaskFailure,
    input: &Value,
) -> std::result::Result<Decision, Halt> {
    if let Some(i) = retry
        .iter()
        .position(|r| error_matches(&r.error_equals, &f.error))
    {
        let r = &retry[i];
        if attempts[i] < r.max_attempts {
            let mut d = backoff(r, attempts[i]);
            if r.jitter_strategy == Some(Jitter::Full) {
                use rand::Rng;
                let secs = rand::thread_rng().gen_range(0.0..=d.as_secs_f64());
                d = Duration::from_secs_f64(secs);
            }
            attempts[i] += 1;
            return Ok(Decision::Retry(d));
        }
    }
    if let Some(c) = catch
        .iter()
        .find(|c| error_matches(&c.error_equals, &f.error))
    {
        let out = merge_result(c.result_path.as_deref(), input.clone(), f.to_value())?;
        return Ok(Decision::Catch(out, c.next.clone()));
    }
    Ok(Decision::Fail)
}
