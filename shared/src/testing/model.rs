//! A model for tests that must never reach one.

use async_trait::async_trait;

use crate::agent::{DeltaSender, Model, ModelRequest, ModelResponse};
use crate::error::{Error, Result};

/// Fails every call: for tests of everything but the agent.
pub struct NoModel;

#[async_trait]
impl Model for NoModel {
    fn model_id(&self) -> &str {
        "none"
    }
    async fn complete(&self, _: &ModelRequest, _: Option<&DeltaSender>) -> Result<ModelResponse> {
        Err(Error::Model("the model is not called in this test".into()))
    }
}
