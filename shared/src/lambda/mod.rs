//! Serving the library on AWS Lambda: one function per API endpoint behind API
//! Gateway (HTTP API, payload v2) and one per Step Functions task. Each binary
//! in `functions/` is a single call into this module.
//!
//! In AWS the HTTP API's JWT authorizer has validated the caller; its `sub`
//! claim is moved into a [`GatewayCaller`] extension, and a request without
//! one is refused (there is no single-user mode behind API Gateway).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use lambda_http::request::RequestContext;
use serde_json::Value;

pub mod custom_resource;
pub mod secrets;
pub mod site;

pub use secrets::Needs;

use crate::agent::{DeltaSender, Model, ModelRequest, ModelResponse};
use crate::api::auth::{GatewayCaller, RequireGatewayCaller};
use crate::api::Endpoint;
use crate::app::{AppState, Backends, Unused, Uses};
use crate::config::{Config, SandboxBackend};
use crate::domain::{Execution, ExecutionStatus};
use crate::error::{Error, Result};
use crate::sandbox::kube::KubeProvider;
use crate::sandbox::{Sandbox, SandboxProvider};
use crate::tasks::Task;
use crate::workflow::asl::TaskFailure;
use crate::workflow::sfn::StepFunctionsWorkflow;
use crate::workflow::Workflow;

/// The error type Lambda runtimes report.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Moves API Gateway's validated `sub` claim into the request.
async fn gateway_caller(mut req: Request, next: Next) -> Response {
    let sub = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .and_then(|j| j.claims.get("sub"))
            .filter(|s| !s.is_empty())
            .cloned(),
        _ => None,
    };
    req.extensions_mut().insert(RequireGatewayCaller);
    if let Some(sub) = sub {
        req.extensions_mut().insert(GatewayCaller(sub));
    }
    next.run(req).await
}

/// The app one endpoint function serves: only its routes, with the API's
/// middleware and the gateway caller.
pub fn endpoint_app(endpoint: Endpoint, state: AppState) -> Router {
    let hosts = crate::api::guard::HostAllowlist::for_gateway(&state.config);
    crate::api::with_middleware(
        endpoint.router().fallback(crate::api::not_found),
        state,
        hosts,
    )
    .layer(axum::middleware::from_fn(gateway_caller))
}

/// Sandboxes for a Lambda deployed without `APNA_SANDBOX=kube`: endpoints
/// that need a sandbox answer 503 with this reason instead of pretending to work.
struct NoSandboxes;

impl SandboxProvider for NoSandboxes {
    fn sandbox(&self, _project_id: &str) -> Result<Arc<dyn Sandbox>> {
        Err(Error::NotReady(
            "sandboxes are not configured in this deployment: set APNA_SANDBOX=kube and EKS_CLUSTER_NAME (the SandboxCluster parameter of infra/template.yaml)"
                .into(),
        ))
    }
    fn backend(&self) -> &'static str {
        "none"
    }
}

/// The settings of a Lambda: the environment, with the secrets it needs read
/// from Secrets Manager ([`secrets`]).
pub async fn lambda_config(needs: Needs) -> Result<Config> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    secrets::resolve(&mut vars, needs, None).await?;
    Config::from_vars(vars)
}

/// The model of a function that never calls it: every function but
/// AgentStep's. Building no client keeps the model providers' code (the
/// Bedrock SDK, the Anthropic client) out of those binaries.
struct NoModel;

#[async_trait::async_trait]
impl Model for NoModel {
    fn model_id(&self) -> &str {
        "none"
    }
    async fn complete(&self, _: &ModelRequest, _: Option<&DeltaSender>) -> Result<ModelResponse> {
        Err(Error::Model(
            "this function does not call the model (only AgentStep's does)".into(),
        ))
    }
}

/// The backends of a Lambda: store and blob store from `config` (the store
/// connected now when `uses.store`, else on first use); sandboxes on
/// Kubernetes with `APNA_SANDBOX=kube` (EKS with `EKS_CLUSTER_NAME`),
/// connected on first use, when `SANDBOXES`; `model`. `SANDBOXES` is a
/// constant of the binary (its endpoint's or task's), not a value: a backend
/// chosen at run time is linked into every function, since LLVM does not
/// follow the flag through the async state machines (BENCHMARKS.md).
async fn backends_with<const SANDBOXES: bool>(
    name: &'static str,
    uses: Uses,
    config: Config,
    model: Arc<dyn Model>,
) -> Result<Backends> {
    let blobs = crate::blob::connect(&config).await?;
    let store = if uses.store {
        crate::store::open(&config, blobs.clone()).await?
    } else {
        crate::store::open_lazy(&config, blobs.clone()).await?
    };
    let sandboxes: Arc<dyn SandboxProvider> = if !SANDBOXES {
        Arc::new(Unused(name))
    } else if config.sandbox == SandboxBackend::Kube {
        Arc::new(KubeProvider::from_config(&config))
    } else {
        Arc::new(NoSandboxes)
    };
    Ok(Backends::new(config, store, blobs, sandboxes, model))
}

/// What every function but the model's reads at start.
const DATABASE_ONLY: Needs = Needs {
    database: true,
    model_key: false,
    preview_secret: false,
};

/// The API's state for function `name`: the backends it `uses`, and Step
/// Functions as the workflow (the ARNs in `Config::state_machine_arns`) when
/// `WORKFLOW` (a constant, as `SANDBOXES` in [`backends_with`]).
async fn lambda_state<const SANDBOXES: bool, const WORKFLOW: bool>(
    name: &'static str,
    uses: Uses,
    needs: Needs,
) -> Result<AppState> {
    let config = lambda_config(needs).await?;
    let backends = backends_with::<SANDBOXES>(name, uses, config, Arc::new(NoModel)).await?;
    // Chosen before the await: an `.await` inside `if WORKFLOW` would stay
    // reachable through the async state machine's resume switch, and the
    // Step Functions client with it, whatever the constant.
    let workflow: BoxFuture<'_, Arc<dyn Workflow>> = if WORKFLOW {
        let machines: HashMap<String, String> =
            backends.config.state_machine_arns.iter().cloned().collect();
        Box::pin(step_functions(machines))
    } else {
        Box::pin(std::future::ready(
            Arc::new(Unused(name)) as Arc<dyn Workflow>
        ))
    };
    let workflow = workflow.await;
    Ok(AppState::new(backends, workflow))
}

/// Step Functions as the workflow, the state machines' ARNs by name.
async fn step_functions(machines: HashMap<String, String>) -> Arc<dyn Workflow> {
    Arc::new(StepFunctionsWorkflow::from_env(machines, None).await)
}

/// Everything but the model: the EventBridge targets' backends.
const ALL_BUT_MODEL: Uses = Uses {
    store: true,
    sandboxes: true,
    workflow: true,
};

/// JSON logs without timestamps (CloudWatch adds its own); `RUST_LOG`
/// filters them. With active tracing, spans carrying an `xray` field also go
/// to X-Ray as subsegments, whatever `RUST_LOG` says.
fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .without_time()
        .with_filter(filter);
    let xray = crate::xray::XRayLayer::from_env()
        .map(|l| l.with_filter(tracing_subscriber::filter::filter_fn(crate::xray::wanted)));
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(xray)
        .try_init();
}

/// Runs `endpoint` (e.g. [`crate::api::endpoints::API_CREATE_PROJECT`])
/// until the Lambda runtime stops. `SANDBOXES` and `WORKFLOW` are its
/// `uses.sandboxes` and `uses.workflow`, given as constants so the binary
/// links only those backends:
///
/// ```ignore
/// use apna::api::endpoints::API_CHAT as E;
/// apna::lambda::run_endpoint::<{ E.uses.sandboxes }, { E.uses.workflow }>(E).await
/// ```
pub async fn run_endpoint<const SANDBOXES: bool, const WORKFLOW: bool>(
    endpoint: Endpoint,
) -> std::result::Result<(), BoxError> {
    init_tracing();
    if (SANDBOXES, WORKFLOW) != (endpoint.uses.sandboxes, endpoint.uses.workflow) {
        return Err(format!(
            "{}: run_endpoint's constants disagree with the endpoint's Uses",
            endpoint.name
        )
        .into());
    }
    // Only the endpoint that signs preview links reads their secret.
    let needs = Needs {
        preview_secret: endpoint.name == "api-preview-access",
        ..DATABASE_ONLY
    };
    let state = lambda_state::<SANDBOXES, WORKFLOW>(endpoint.name, endpoint.uses, needs).await?;
    let app = endpoint_app(endpoint, state);
    lambda_http::run(app).await
}

/// A task failure as Lambda reports it: `errorType` is the name Step
/// Functions' Retry and Catch match on (`Apna.NotReady`, …).
#[derive(Debug)]
pub struct TaskError(TaskFailure);

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<TaskError> for lambda_runtime::Diagnostic {
    fn from(e: TaskError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.0.error,
            error_message: e.0.cause,
        }
    }
}

/// Handles one task invocation (the Lambda entry point, also used by tests).
pub async fn handle_task(
    task: Task,
    state: &Backends,
    event: lambda_runtime::LambdaEvent<Value>,
) -> std::result::Result<Value, TaskError> {
    (task.handler)(event.payload, state)
        .await
        .map_err(|e| TaskError(TaskFailure::from(e)))
}

/// The part of EventBridge's "Step Functions Execution Status Change" event
/// that says which execution ended and how.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusChange {
    state_machine_arn: String,
    name: String,
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
    #[serde(default)]
    start_date: Option<i64>,
    #[serde(default)]
    stop_date: Option<i64>,
}

/// Handles one execution status change (the EventBridge rule's target, also
/// used by tests): a generation that ended without ending its run has the run
/// finished. Returns what was done, for the function's log.
pub async fn handle_execution_event(
    state: &Backends,
    event: lambda_runtime::LambdaEvent<Value>,
) -> std::result::Result<Value, BoxError> {
    let detail = event
        .payload
        .get("detail")
        .cloned()
        .ok_or("not an EventBridge event: no detail")?;
    let change: StatusChange = serde_json::from_value(detail)?;
    let machine = state
        .config
        .state_machine_arns
        .iter()
        .find(|(_, arn)| *arn == change.state_machine_arn)
        .map(|(name, _)| name.clone())
        .unwrap_or_default();
    let status = match change.status.as_str() {
        "RUNNING" => ExecutionStatus::Running,
        "SUCCEEDED" => ExecutionStatus::Succeeded,
        "TIMED_OUT" => ExecutionStatus::TimedOut,
        "ABORTED" => ExecutionStatus::Aborted,
        _ => ExecutionStatus::Failed,
    };
    let error = match (change.error.as_deref(), change.cause.as_deref()) {
        (None, None) => None,
        (e, c) => Some(format!("{}: {}", e.unwrap_or(""), c.unwrap_or(""))),
    };
    let started = crate::domain::from_millis(change.start_date.unwrap_or(0));
    let execution = Execution {
        id: change.name.clone(),
        state_machine: machine,
        status,
        input: Value::Null,
        output: None,
        error,
        checkpoint: None,
        started_at: started,
        updated_at: change.stop_date.map_or(started, crate::domain::from_millis),
    };
    let run = crate::run::execution_ended(state, &execution).await?;
    Ok(serde_json::json!({
        "execution": change.name,
        "status": change.status,
        "run_finished": run.map(|r| r.status),
    }))
}

/// Runs the EventBridge target for Step Functions status changes until the
/// Lambda runtime stops.
pub async fn run_execution_events() -> std::result::Result<(), BoxError> {
    init_tracing();
    let config = lambda_config(DATABASE_ONLY).await?;
    let state = backends_with::<true>(
        "event-execution-ended",
        ALL_BUT_MODEL,
        config,
        Arc::new(NoModel),
    )
    .await?;
    lambda_runtime::run(lambda_runtime::service_fn(move |ev| {
        let state = state.clone();
        async move { handle_execution_event(&state, ev).await }
    }))
    .await
}

/// Runs the scheduled reconciliation of stuck runs ([`crate::run::reconcile_runs`])
/// until the Lambda runtime stops.
pub async fn run_reconcile() -> std::result::Result<(), BoxError> {
    init_tracing();
    let state =
        lambda_state::<true, true>("event-reconcile-runs", ALL_BUT_MODEL, DATABASE_ONLY).await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: lambda_runtime::LambdaEvent<Value>| {
            let state = state.clone();
            async move {
                let report = crate::run::reconcile_runs(&state, 100).await?;
                Ok::<_, BoxError>(serde_json::to_value(report)?)
            }
        },
    ))
    .await
}

/// Runs the migrate step (a CloudFormation custom resource, PostgreSQL only)
/// until the Lambda runtime stops.
pub async fn run_migrate() -> std::result::Result<(), BoxError> {
    init_tracing();
    lambda_runtime::run(lambda_runtime::service_fn(
        |ev: lambda_runtime::LambdaEvent<Value>| async move {
            let request: custom_resource::Request = serde_json::from_value(ev.payload)?;
            let out = custom_resource::answer(&request, |r| {
                custom_resource::migrate(r, std::env::vars().collect(), None)
            })
            .await?;
            Ok::<_, BoxError>(out)
        },
    ))
    .await
}

/// Runs the publication of the browser UI (a CloudFormation custom resource)
/// until the Lambda runtime stops.
pub async fn run_publish_web() -> std::result::Result<(), BoxError> {
    init_tracing();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::new(&conf);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |ev: lambda_runtime::LambdaEvent<Value>| {
            let s3 = s3.clone();
            async move {
                let request: custom_resource::Request = serde_json::from_value(ev.payload)?;
                let out = custom_resource::answer(&request, |r| async move {
                    custom_resource::publish_web(r, &s3).await
                })
                .await?;
                Ok::<_, BoxError>(out)
            }
        },
    ))
    .await
}

/// Runs Step Functions task `task` (e.g. [`crate::tasks::AGENT_STEP`]) until
/// the Lambda runtime stops. `MODEL` and `SANDBOXES` are its `calls_model`
/// and `sandboxes`, as constants (see [`run_endpoint`]).
pub async fn run_task<const MODEL: bool, const SANDBOXES: bool>(
    task: Task,
) -> std::result::Result<(), BoxError> {
    init_tracing();
    if (MODEL, SANDBOXES) != (task.calls_model, task.sandboxes) {
        return Err(format!("{}: run_task's constants disagree with the task", task.name).into());
    }
    let config = lambda_config(Needs {
        database: true,
        model_key: MODEL,
        preview_secret: false,
    })
    .await?;
    // Chosen before the await, as the workflow in `lambda_state`.
    let model: BoxFuture<'_, Result<Arc<dyn Model>>> = if MODEL {
        Box::pin(crate::agent::model_from_config(&config))
    } else {
        Box::pin(std::future::ready(Ok(Arc::new(NoModel) as Arc<dyn Model>)))
    };
    let model = model.await?;
    let state = backends_with::<SANDBOXES>(task.name, ALL_BUT_MODEL, config, model).await?;
    lambda_runtime::run(lambda_runtime::service_fn(move |ev| {
        let state = state.clone();
        async move { handle_task(task, &state, ev).await }
    }))
    .await
}
