//! The model seam: what the agent sends a model and what comes back.
//!
//! [`Model`] is implemented by the Anthropic Messages client
//! ([`super::anthropic`]) and by Claude on Amazon Bedrock (`super::bedrock`,
//! feature `bedrock`): requests and responses here are provider-neutral
//! (content blocks are the domain's [`ContentBlock`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::domain::{ContentBlock, Role, Usage};
use crate::error::Result;

/// A tool as the model sees it: name, description and JSON schema of its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Tool name, e.g. `edit_file`.
    pub name: String,
    /// What the tool does and when to use it.
    pub description: String,
    /// JSON schema of the input object.
    pub input_schema: Value,
}

/// One conversation turn sent to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMessage {
    /// Author.
    pub role: Role,
    /// Content blocks.
    pub content: Vec<ContentBlock>,
}

/// One model call's input.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    /// System prompt (cached by providers that support prompt caching).
    pub system: String,
    /// Tools the model may call (cached with the system prompt).
    pub tools: Vec<ToolSpec>,
    /// The conversation, alternating user/assistant, starting with user.
    pub messages: Vec<ModelMessage>,
    /// Upper bound on output tokens for this call.
    pub max_tokens: u32,
}

/// One model call's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    /// Provider's message id.
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// Text and tool_use blocks, in order.
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, `refusal`, …
    pub stop_reason: Option<String>,
    /// Tokens used by this call.
    pub usage: Usage,
}

impl ModelResponse {
    /// The text blocks joined by blank lines.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } if !text.trim().is_empty() => Some(text.trim()),
                _ => None,
            })
            .collect();
        parts.join("\n\n")
    }

    /// Whether the answer asks for at least one tool call.
    pub fn has_tool_use(&self) -> bool {
        self.content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolUse { .. }))
    }
}

/// A piece of a streamed answer, for showing model text as it arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelDelta {
    /// More text of content block `index`.
    Text {
        /// Content block index.
        index: usize,
        /// The new text.
        text: String,
    },
    /// Block `index` is a tool call to `name`.
    ToolUse {
        /// Content block index.
        index: usize,
        /// Tool name.
        name: String,
    },
    /// More of block `index`'s tool input JSON.
    ToolInput {
        /// Content block index.
        index: usize,
        /// A fragment of the input JSON.
        partial_json: String,
    },
    /// The call failed mid-stream and is being retried: discard what was shown.
    Restart {
        /// The retry about to start, from 1.
        attempt: u32,
    },
}

/// Where streamed deltas go (the lead forwards them as run events).
pub type DeltaSender = UnboundedSender<ModelDelta>;

/// A chat model with tool use.
#[async_trait]
pub trait Model: Send + Sync {
    /// The model id used for pricing, e.g. `claude-sonnet-4-5`.
    fn model_id(&self) -> &str;
    /// One call. Transient failures are retried inside; an `Err` is final.
    /// When `deltas` is given, pieces of the answer are sent there as they arrive.
    async fn complete(
        &self,
        req: &ModelRequest,
        deltas: Option<&DeltaSender>,
    ) -> Result<ModelResponse>;
}
