//! A subsegment per AWS SDK operation (one interceptor added to every client
//! the library builds), named and shaped as X-Ray's own SDKs name them, so
//! the service map shows DynamoDB, S3 and Step Functions nodes.

use std::time::SystemTime;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde_json::Value;

use super::{daemon, Daemon, Subsegment};

/// When the operation started (kept in the operation's config bag).
#[derive(Debug, Clone)]
struct Started(SystemTime);

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

/// Sends a subsegment for each AWS call; does nothing outside Lambda.
#[derive(Debug, Clone, Copy, Default)]
pub struct XRayInterceptor {
    daemon: Option<&'static Daemon>,
}

impl XRayInterceptor {
    /// The interceptor for this process (inert without a daemon address).
    pub fn from_env() -> XRayInterceptor {
        XRayInterceptor { daemon: daemon() }
    }
}

/// X-Ray's service names for the SDK's (`DynamoDB` for `dynamodb`, …).
fn service_name(service: &str) -> &str {
    match service.to_ascii_lowercase().as_str() {
        "dynamodb" => "DynamoDB",
        "s3" => "S3",
        "sfn" => "SFN",
        "secretsmanager" | "secrets manager" => "SecretsManager",
        "eks" => "EKS",
        "bedrockruntime" | "bedrock runtime" => "BedrockRuntime",
        _ => service,
    }
}

impl Intercept for XRayInterceptor {
    fn name(&self) -> &'static str {
        "XRayInterceptor"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.daemon.is_some() {
            cfg.interceptor_state()
                .store_put(Started(SystemTime::now()));
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (Some(daemon), Some(Started(start))) = (self.daemon, cfg.load::<Started>()) else {
            return Ok(());
        };
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (service_name(m.service()).to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("AWS".into(), "unknown".into()));
        let mut sub = Subsegment::new(service, *start, SystemTime::now());
        sub.namespace = Some("aws");
        sub.aws.insert("operation".into(), Value::String(operation));
        match context.response() {
            Some(resp) => {
                let status = resp.status().as_u16();
                sub.error = (400..500).contains(&status);
                sub.fault = status >= 500;
                let id = ["x-amzn-requestid", "x-amz-request-id"]
                    .iter()
                    .find_map(|h| resp.headers().get(*h));
                if let Some(id) = id {
                    sub.aws
                        .insert("request_id".into(), Value::String(id.to_string()));
                }
            }
            None => sub.fault = true,
        }
        daemon.send(&sub);
        Ok(())
    }
}
