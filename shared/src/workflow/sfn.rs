//! [`StepFunctionsWorkflow`]: the AWS backend of [`Workflow`], on AWS Step
//! Functions running the same ASL files. Executions are named by run id; the
//! history is mapped to the same event names the local interpreter records
//! (`TaskStateEntered` becomes `StateEntered` with `data.type = "Task"`), so the
//! UI shows one trace format for both backends.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_sfn::error::DisplayErrorContext;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus as SfnStatus;
use serde_json::{json, Map, Value};

use super::Workflow;
use crate::domain::{self, Execution, ExecutionStatus, HistoryEvent};
use crate::error::{Error, Result};

/// Starts and reads executions on AWS Step Functions.
pub struct StepFunctionsWorkflow {
    client: aws_sdk_sfn::Client,
    /// State machine name (`generation`) → ARN.
    machines: HashMap<String, String>,
    /// Execution name → ARN, for executions seen by this process.
    executions: Mutex<HashMap<String, String>>,
}

impl StepFunctionsWorkflow {
    /// A backend using `client`, with `machines` mapping names to state machine ARNs.
    pub fn new(client: aws_sdk_sfn::Client, machines: HashMap<String, String>) -> Self {
        StepFunctionsWorkflow {
            client,
            machines,
            executions: Mutex::new(HashMap::new()),
        }
    }

    /// A backend with a client from the default AWS configuration (environment,
    /// profile, role), optionally pointed at `endpoint_url` (moto, LocalStack).
    pub async fn from_env(machines: HashMap<String, String>, endpoint_url: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        let conf = aws_sdk_sfn::config::Builder::from(&conf)
            .interceptor(crate::xray::aws::XRayInterceptor::from_env())
            .build();
        Self::new(aws_sdk_sfn::Client::from_conf(conf), machines)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        match self.executions.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The execution's ARN and description, trying each state machine the name may belong to.
    async fn find(&self, name: &str) -> Result<Option<(String, DescribeExecutionOutput)>> {
        let cached = self.cache().get(name).cloned();
        let candidates: Vec<String> = match cached {
            Some(arn) => vec![arn],
            None => self
                .machines
                .values()
                .map(|sm| execution_arn(sm, name))
                .collect(),
        };
        for arn in candidates {
            match self
                .client
                .describe_execution()
                .execution_arn(&arn)
                .send()
                .await
            {
                Ok(out) => {
                    self.cache().insert(name.to_string(), arn.clone());
                    return Ok(Some((arn, out)));
                }
                Err(e) => {
                    let msg = DisplayErrorContext(&e).to_string();
                    let service = e.into_service_error();
                    if service.is_execution_does_not_exist() || service.is_invalid_arn() {
                        continue;
                    }
                    return Err(Error::Workflow(format!("DescribeExecution: {msg}")));
                }
            }
        }
        Ok(None)
    }

    fn machine_name(&self, arn: &str) -> String {
        self.machines
            .iter()
            .find(|(_, a)| a.as_str() == arn)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| arn.rsplit(':').next().unwrap_or(arn).to_string())
    }
}

/// `arn:…:stateMachine:M` → `arn:…:execution:M:name`.
fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

fn time(t: &aws_sdk_sfn::primitives::DateTime) -> chrono::DateTime<chrono::Utc> {
    domain::from_millis(t.to_millis().unwrap_or(0))
}

/// Step Functions passes JSON as strings; keep non-JSON text as a string.
fn json_text(s: Option<&str>) -> Value {
    match s {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
    }
}

fn status(s: &SfnStatus) -> ExecutionStatus {
    match s {
        SfnStatus::Running => ExecutionStatus::Running,
        SfnStatus::Succeeded => ExecutionStatus::Succeeded,
        SfnStatus::TimedOut => ExecutionStatus::TimedOut,
        SfnStatus::Aborted => ExecutionStatus::Aborted,
        _ => ExecutionStatus::Failed,
    }
}

/// Maps one Step Functions history event to ours; `state` tracks the last
/// state entered, since task events do not carry the state's name.
fn map_event(
    execution: &str,
    e: &aws_sdk_sfn::types::HistoryEvent,
    state: &mut Option<String>,
) -> HistoryEvent {
    let raw = e.r#type().as_str().to_string();
    let mut data = Map::new();
    let mut state_name = state.clone();
    let event_type = if let Some(kind) = raw.strip_suffix("StateEntered") {
        data.insert("type".into(), json!(kind));
        if let Some(d) = e.state_entered_event_details() {
            data.insert("input".into(), json_text(d.input()));
            state_name = Some(d.name().to_string());
            *state = state_name.clone();
        }
        "StateEntered".to_string()
    } else if let Some(kind) = raw.strip_suffix("StateExited") {
        data.insert("type".into(), json!(kind));
        if let Some(d) = e.state_exited_event_details() {
            data.insert("output".into(), json_text(d.output()));
            state_name = Some(d.name().to_string());
        }
        "StateExited".to_string()
    } else {
        if let Some(d) = e.execution_started_event_details() {
            data.insert("input".into(), json_text(d.input()));
            state_name = None;
        }
        if let Some(d) = e.execution_succeeded_event_details() {
            data.insert("output".into(), json_text(d.output()));
            state_name = None;
        }
        if let Some(d) = e.execution_failed_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
            state_name = None;
        }
        if let Some(d) = e.execution_aborted_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
            state_name = None;
        }
        if let Some(d) = e.execution_timed_out_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
            state_name = None;
        }
        if let Some(d) = e.task_scheduled_event_details() {
            data.insert(
                "resource".into(),
                json!(format!("{}:{}", d.resource_type(), d.resource())),
            );
            data.insert("parameters".into(), json_text(Some(d.parameters())));
        }
        if let Some(d) = e.task_succeeded_event_details() {
            data.insert("output".into(), json_text(d.output()));
        }
        if let Some(d) = e.task_failed_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
        }
        if let Some(d) = e.task_timed_out_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
        }
        // A Task whose Resource is a plain Lambda ARN (as deployed) is recorded
        // by AWS as LambdaFunction* events; the interpreter's names are Task*.
        if let Some(d) = e.lambda_function_scheduled_event_details() {
            data.insert("resource".into(), json!(d.resource()));
            data.insert("parameters".into(), json_text(d.input()));
        }
        if let Some(d) = e.lambda_function_succeeded_event_details() {
            data.insert("output".into(), json_text(d.output()));
        }
        if let Some(d) = e.lambda_function_failed_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
        }
        if let Some(d) = e.lambda_function_timed_out_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
        }
        if let Some(d) = e.lambda_function_start_failed_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
        }
        if let Some(d) = e.lambda_function_schedule_failed_event_details() {
            data.insert("error".into(), json!(d.error()));
            data.insert("cause".into(), json!(d.cause()));
        }
        if let Some(d) = e.map_state_started_event_details() {
            data.insert("length".into(), json!(d.length()));
        }
        for d in [
            e.map_iteration_started_event_details(),
            e.map_iteration_succeeded_event_details(),
            e.map_iteration_failed_event_details(),
            e.map_iteration_aborted_event_details(),
        ]
        .into_iter()
        .flatten()
        {
            data.insert("index".into(), json!(d.index()));
            if let Some(n) = d.name() {
                state_name = Some(n.to_string());
            }
        }
        match raw.as_str() {
            "LambdaFunctionScheduled" => "TaskScheduled".to_string(),
            "LambdaFunctionStarted" => "TaskStarted".to_string(),
            "LambdaFunctionSucceeded" => "TaskSucceeded".to_string(),
            "LambdaFunctionFailed"
            | "LambdaFunctionTimedOut"
            | "LambdaFunctionStartFailed"
            | "LambdaFunctionScheduleFailed" => "TaskFailed".to_string(),
            _ => raw,
        }
    };
    HistoryEvent {
        execution_id: execution.to_string(),
        seq: e.id(),
        event_type,
        state_name,
        data: Value::Object(data),
        timestamp: time(e.timestamp()),
    }
}

#[async_trait]
impl Workflow for StepFunctionsWorkflow {
    fn backend(&self) -> &'static str {
        "stepfunctions"
    }

    async fn start(&self, state_machine: &str, name: &str, input: Value) -> Result<()> {
        let arn = self
            .machines
            .get(state_machine)
            .ok_or_else(|| Error::NotFound(format!("no state machine named {state_machine:?}")))?;
        let out = self
            .client
            .start_execution()
            .state_machine_arn(arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| {
                let msg = DisplayErrorContext(&e).to_string();
                let service = e.into_service_error();
                if service.is_execution_already_exists() {
                    Error::Conflict(format!("execution {name:?} already exists"))
                } else if service.is_state_machine_does_not_exist() {
                    Error::NotFound(format!("state machine {state_machine:?} does not exist"))
                } else if service.is_invalid_name() || service.is_invalid_execution_input() {
                    Error::InvalidInput(format!("StartExecution: {msg}"))
                } else {
                    Error::Workflow(format!("StartExecution: {msg}"))
                }
            })?;
        tracing::info!(
            run_id = name,
            state_machine,
            "started Step Functions execution"
        );
        self.cache()
            .insert(name.to_string(), out.execution_arn().to_string());
        Ok(())
    }

    async fn describe(&self, name: &str) -> Result<Option<Execution>> {
        let Some((_, d)) = self.find(name).await? else {
            return Ok(None);
        };
        let error = match (d.error(), d.cause()) {
            (None, None) => None,
            (e, c) => Some(format!("{}: {}", e.unwrap_or(""), c.unwrap_or(""))),
        };
        let started = time(d.start_date());
        Ok(Some(Execution {
            id: name.to_string(),
            state_machine: self.machine_name(d.state_machine_arn()),
            status: status(d.status()),
            input: json_text(d.input()),
            output: d.output().map(|o| json_text(Some(o))),
            error,
            checkpoint: None,
            started_at: started,
            updated_at: d.stop_date().map(time).unwrap_or(started),
        }))
    }

    async fn history(&self, name: &str) -> Result<Vec<HistoryEvent>> {
        let Some((arn, _)) = self.find(name).await? else {
            return Err(Error::NotFound(format!("no execution named {name:?}")));
        };
        let mut events = Vec::new();
        let mut state = None;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_execution_history()
                .execution_arn(&arn)
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    Error::Workflow(format!("GetExecutionHistory: {}", DisplayErrorContext(&e)))
                })?;
            for e in page.events() {
                events.push(map_event(name, e, &mut state));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(events)
    }

    async fn stop(&self, name: &str, cause: &str) -> Result<()> {
        let Some((arn, d)) = self.find(name).await? else {
            return Err(Error::NotFound(format!("no execution named {name:?}")));
        };
        if *d.status() != SfnStatus::Running {
            return Ok(());
        }
        self.client
            .stop_execution()
            .execution_arn(arn)
            .cause(cause)
            .send()
            .await
            .map_err(|e| Error::Workflow(format!("StopExecution: {}", DisplayErrorContext(&e))))?;
        tracing::info!(run_id = name, cause, "stopped Step Functions execution");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_follow_the_state_machine() {
        assert_eq!(
            execution_arn(
                "arn:aws:states:us-east-1:123456789012:stateMachine:generation",
                "run-1"
            ),
            "arn:aws:states:us-east-1:123456789012:execution:generation:run-1"
        );
    }

    #[test]
    fn payload_strings_are_parsed() {
        assert_eq!(json_text(Some("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(json_text(Some("not json")), json!("not json"));
        assert_eq!(json_text(None), Value::Null);
    }
}
