//! The agent: a model with tools, working inside one project's sandbox.
//!
//! The parts are:
//!
//! * [`model`]: `trait Model`, the provider-neutral request/response types and streamed deltas.
//! * [`anthropic`]: the Anthropic Messages client (retries, streaming, prompt caching).
//! * `bedrock` (cargo feature `bedrock`): the same model on Amazon Bedrock.
//! * [`stream`]: the Messages API's server-sent events, assembled into a response.
//! * [`pricing`]: dollars per token, per model.
//! * [`tools`]: the eight tools and the [`tools::Toolbox`] that runs them.
//! * [`prompt`]: the system prompt.
//! * [`conversation`]: the conversation rebuilt from the store, repaired for the API.
//! * [`safety`]: per-run budgets and repeated-failure detection.
//! * [`step`]: [`run_step`], one idempotent agent step — the workflow's entry point.
//! * [`checkpoint`]: the keys a step's progress is kept under, and reading them back.

pub mod anthropic;
#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod checkpoint;
pub mod conversation;
pub mod model;
pub mod pricing;
pub mod prompt;
pub mod safety;
pub mod step;
pub mod stream;
pub mod tools;

pub use anthropic::{AnthropicClient, AnthropicOptions, RetryPolicy};
pub use model::{
    DeltaSender, Model, ModelDelta, ModelMessage, ModelRequest, ModelResponse, ToolSpec,
};
pub use safety::StopReason;
pub use step::{run_step, run_step_with_images, StepDeps, StepOutcome};

use std::sync::Arc;

use crate::config::{Config, ModelProvider};

/// The model `APNA_MODEL_PROVIDER` names, configured from the environment.
pub async fn model_from_config(config: &Config) -> crate::error::Result<Arc<dyn Model>> {
    Ok(match config.model_provider {
        ModelProvider::Anthropic => Arc::new(AnthropicClient::from_config(config)?),
        #[cfg(feature = "bedrock")]
        ModelProvider::Bedrock => Arc::new(bedrock::BedrockClient::from_config(config).await),
        #[cfg(not(feature = "bedrock"))]
        ModelProvider::Bedrock => {
            return Err(crate::error::Error::Config {
                var: "APNA_MODEL_PROVIDER",
                message: "bedrock needs a build with `--features bedrock`".into(),
            })
        }
    })
}
