//! Claude on Amazon Bedrock (`APNA_MODEL_PROVIDER=bedrock`, cargo feature `bedrock`).
//!
//! Bedrock's `InvokeModel` takes the Messages API body (minus `model` and
//! `stream`, plus `anthropic_version`) and answers with the same JSON;
//! `InvokeModelWithResponseStream` wraps each Messages stream event's JSON in
//! an event-stream `chunk`. So the body, the stream assembly and the retry
//! policy are the Anthropic client's; only the transport differs. Credentials
//! come from the AWS chain (the Lambda's IAM role, `AWS_PROFILE`, …), so no
//! API key is needed. The SDK's own retries are off: one policy for both
//! providers, with the same logging and the same `Restart` deltas.

use async_trait::async_trait;
use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
use aws_sdk_bedrockruntime::operation::invoke_model_with_response_stream::InvokeModelWithResponseStreamError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use aws_sdk_bedrockruntime::types::ResponseStream;
use serde_json::Value;

use super::anthropic::{
    finish_stream, messages_body, parse_message, stream_failure, with_retries, Failure, RetryPolicy,
};
use super::model::{DeltaSender, Model, ModelRequest, ModelResponse};
use super::stream::{SseEvent, StreamAssembler};
use crate::config::Config;
use crate::error::{Error, Result};

/// The `anthropic_version` Bedrock expects in the body.
pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";

/// Errors worth another attempt: throttling, capacity and transient faults.
trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for InvokeModelError {
    fn is_transient(&self) -> bool {
        self.is_throttling_exception()
            || self.is_service_unavailable_exception()
            || self.is_internal_server_exception()
            || self.is_model_not_ready_exception()
            || self.is_model_timeout_exception()
    }
}

impl Transient for InvokeModelWithResponseStreamError {
    fn is_transient(&self) -> bool {
        self.is_throttling_exception()
            || self.is_service_unavailable_exception()
            || self.is_internal_server_exception()
            || self.is_model_not_ready_exception()
            || self.is_model_timeout_exception()
            || self.is_model_stream_error_exception()
    }
}

impl Transient for ResponseStreamError {
    fn is_transient(&self) -> bool {
        self.is_throttling_exception()
            || self.is_service_unavailable_exception()
            || self.is_internal_server_exception()
            || self.is_model_timeout_exception()
            || self.is_model_stream_error_exception()
    }
}

/// How to reach Bedrock.
#[derive(Debug, Clone)]
pub struct BedrockOptions {
    /// Model or inference-profile id, e.g. `us.anthropic.claude-sonnet-4-5-20250929-v1:0`.
    pub model: String,
    /// Use `InvokeModelWithResponseStream` (text shown as it arrives).
    pub stream: bool,
    /// Endpoint override (tests, VPC endpoints); `None` uses the region's.
    pub endpoint: Option<String>,
    /// Region override; `None` uses the AWS chain (`AWS_REGION`, …).
    pub region: Option<String>,
    /// Transient failures.
    pub retry: RetryPolicy,
}

/// A [`Model`] backed by Amazon Bedrock.
pub struct BedrockClient {
    client: aws_sdk_bedrockruntime::Client,
    opts: BedrockOptions,
}

impl BedrockClient {
    /// A client with explicit options (credentials and region from the AWS chain).
    pub async fn new(opts: BedrockOptions) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::disabled());
        if let Some(region) = &opts.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &opts.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let client = aws_sdk_bedrockruntime::Client::from_conf(
            aws_sdk_bedrockruntime::config::Builder::from(&loader.load().await)
                .interceptor(crate::xray::aws::XRayInterceptor::from_env())
                .build(),
        );
        BedrockClient { client, opts }
    }

    /// A client for `ANTHROPIC_MODEL` (a Bedrock id) and `APNA_BEDROCK_ENDPOINT`.
    pub async fn from_config(cfg: &Config) -> Self {
        Self::new(BedrockOptions {
            model: cfg.anthropic_model.clone(),
            stream: true,
            endpoint: cfg.bedrock_endpoint.clone(),
            region: None,
            retry: RetryPolicy::default(),
        })
        .await
    }

    /// The InvokeModel body for `req`.
    pub fn request_body(req: &ModelRequest) -> Result<Vec<u8>> {
        let mut body = messages_body(req)?;
        body["anthropic_version"] = Value::String(BEDROCK_VERSION.into());
        serde_json::to_vec(&body).map_err(|e| Error::Internal(format!("serialising body: {e}")))
    }

    async fn invoke(&self, body: &[u8]) -> std::result::Result<ModelResponse, Failure> {
        let out = self
            .client
            .invoke_model()
            .model_id(&self.opts.model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .send()
            .await
            .map_err(sdk_failure)?;
        parse_message(out.body.as_ref()).map_err(|why| Failure::Retry { why, after: None })
    }

    async fn invoke_stream(
        &self,
        body: &[u8],
        deltas: Option<&DeltaSender>,
        sent_deltas: &mut bool,
    ) -> std::result::Result<ModelResponse, Failure> {
        let mut out = self
            .client
            .invoke_model_with_response_stream()
            .model_id(&self.opts.model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .send()
            .await
            .map_err(sdk_failure)?;
        let mut asm = StreamAssembler::new();
        let outcome = async {
            while let Some(event) = out.body.recv().await.map_err(sdk_failure)? {
                let ResponseStream::Chunk(part) = event else {
                    continue;
                };
                let Some(bytes) = part.bytes() else {
                    continue;
                };
                let ev = SseEvent {
                    event: String::new(),
                    data: String::from_utf8_lossy(bytes.as_ref()).into_owned(),
                };
                asm.apply(&ev, deltas).map_err(stream_failure)?;
                if asm.is_finished() {
                    break;
                }
            }
            Ok(())
        }
        .await;
        finish_stream(asm, outcome, sent_deltas)
    }
}

/// An SDK error as a retry decision: transient service errors and transport
/// failures are retried; anything else (validation, access) is final.
fn sdk_failure<E, R>(e: SdkError<E, R>) -> Failure
where
    E: Transient + ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let why = format!(
                "Bedrock {}: {}",
                err.code().unwrap_or("error"),
                err.message()
                    .map_or_else(|| err.to_string(), str::to_string)
            );
            if err.is_transient() {
                Failure::Retry { why, after: None }
            } else {
                Failure::Fatal(Error::Model(why))
            }
        }
        SdkError::ConstructionFailure(_) => Failure::Fatal(Error::Model(format!(
            "Bedrock request: {}",
            DisplayErrorContext(&e)
        ))),
        _ => Failure::Retry {
            why: format!("Bedrock transport: {}", DisplayErrorContext(&e)),
            after: None,
        },
    }
}

#[async_trait]
impl Model for BedrockClient {
    fn model_id(&self) -> &str {
        &self.opts.model
    }

    async fn complete(
        &self,
        req: &ModelRequest,
        deltas: Option<&DeltaSender>,
    ) -> Result<ModelResponse> {
        let body = Self::request_body(req)?;
        with_retries(&self.opts.retry, &self.opts.model, deltas, || async {
            let mut sent_deltas = false;
            let outcome = if self.opts.stream {
                self.invoke_stream(&body, deltas, &mut sent_deltas).await
            } else {
                self.invoke(&body).await
            };
            (outcome, sent_deltas)
        })
        .await
    }
}
