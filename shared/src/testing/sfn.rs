//! Step Functions on moto for the `asl_moto*` tests: moto's config switch and
//! a client that runs each execution in its own random account.
//!
//! moto 5.x cannot start a second execution in an account that already ran one
//! (it deep-copies the backend, executions and their locks included), hence
//! moto's `x-moto-account-id` header on every request of a client.

use aws_sdk_sfn::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_sfn::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use rand::Rng;
use serde_json::Value;

/// Sets moto's runtime configuration (`POST /moto-api/config`).
pub async fn configure_moto(url: &str, config: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/moto-api/config", url.trim_end_matches('/')))
        .json(&config)
        .send()
        .await
        .expect("moto reachable");
    assert!(resp.status().is_success(), "moto config: {}", resp.status());
}

/// Sends every request as a given moto account.
#[derive(Debug)]
struct MotoAccount(String);

impl Intercept for MotoAccount {
    fn name(&self) -> &'static str {
        "MotoAccount"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

/// A Step Functions client for a fresh random moto account.
pub fn client(url: &str) -> aws_sdk_sfn::Client {
    let account = rand::thread_rng()
        .gen_range(100_000_000_000u64..999_999_999_999)
        .to_string();
    let conf = aws_sdk_sfn::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url.trim_end_matches('/'))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .interceptor(MotoAccount(account))
        .build();
    aws_sdk_sfn::Client::from_conf(conf)
}

/// Creates state machine `name` from an ASL document on moto; returns its ARN.
pub async fn create_state_machine(
    client: &aws_sdk_sfn::Client,
    name: &str,
    definition: &str,
) -> String {
    client
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/apna-states")
        .send()
        .await
        .expect("create state machine on moto")
        .state_machine_arn()
        .to_string()
}

/// The names of a state machine's executions on moto, newest first.
pub async fn execution_names(client: &aws_sdk_sfn::Client, state_machine_arn: &str) -> Vec<String> {
    client
        .list_executions()
        .state_machine_arn(state_machine_arn)
        .send()
        .await
        .expect("list executions on moto")
        .executions()
        .iter()
        .map(|e| e.name().to_string())
        .collect()
}

/// A state machine that waits an hour: its executions stay `RUNNING` until
/// stopped, whether or not moto is set to execute state machines.
pub const WAIT_AN_HOUR: &str =
    r#"{"StartAt":"Hold","States":{"Hold":{"Type":"Wait","Seconds":3600,"End":true}}}"#;

/// `statemachines/{file}` with every `${XFunctionArn}` replaced by a Lambda ARN
/// in moto's default account, as `sam deploy` substitutes them.
pub fn substituted(file: &str) -> String {
    let path = super::fixtures::repo_root()
        .join("statemachines")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("read the state machine");
    let re = regex::Regex::new(r"\$\{(\w+)FunctionArn\}").unwrap();
    re.replace_all(
        &text,
        "arn:aws:lambda:us-east-1:123456789012:function:apna-$1",
    )
    .into_owned()
}
