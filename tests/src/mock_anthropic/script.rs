//! What a test gives the mock and gets back: scripted turns, faults to
//! inject, and the record of each request.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One scripted assistant answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Only answer when the last user message's text contains this (case-insensitive).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_text: Option<String>,
    /// Content blocks: `{"type":"text","text":…}` and `{"type":"tool_use","name":…,"input":…}`
    /// (`id` is generated when missing).
    pub content: Vec<Value>,
    /// Defaults to `tool_use` when the content has a tool call, else `end_turn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Usage to report; simulated from sizes (with prompt caching) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    /// Extra latency before answering this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl Turn {
    /// A turn that answers with text and ends.
    pub fn text(text: &str) -> Self {
        Turn {
            match_text: None,
            content: vec![json!({ "type": "text", "text": text })],
            stop_reason: None,
            usage: None,
            delay_ms: None,
        }
    }

    /// A turn that asks for one tool call, after optional text.
    pub fn tool(text: &str, name: &str, input: Value) -> Self {
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(json!({ "type": "text", "text": text }));
        }
        content.push(json!({ "type": "tool_use", "name": name, "input": input }));
        Turn {
            match_text: None,
            content,
            stop_reason: None,
            usage: None,
            delay_ms: None,
        }
    }

    /// The same turn, only answered when the last user text contains `text`.
    pub fn when(mut self, text: &str) -> Self {
        self.match_text = Some(text.to_string());
        self
    }
}

/// A scripted conversation: `{"turns": [...]}` or just `[...]` in fixture files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// Turns in the order they are used.
    pub turns: Vec<Turn>,
}

impl Script {
    /// A script of `turns`.
    pub fn new(turns: Vec<Turn>) -> Self {
        Script { turns }
    }

    /// Parses a fixture (an object with `turns`, or a bare list of turns).
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let v: Value = serde_json::from_str(text)?;
        Ok(if v.is_array() {
            Script {
                turns: serde_json::from_value(v)?,
            }
        } else {
            serde_json::from_value(v)?
        })
    }

    /// Reads a fixture file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::from_json(&text)
    }
}

/// A failure to inject into one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 429 `rate_limit_error` with `retry-after`.
    RateLimited {
        /// Seconds the client is asked to wait.
        retry_after_secs: f64,
    },
    /// HTTP 529 `overloaded_error`.
    Overloaded,
    /// HTTP 500 `api_error`.
    ServerError,
    /// Wait, then answer normally (uses a turn).
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Wait, then fail with 504 (for client timeouts; never uses a turn).
    Timeout {
        /// Milliseconds.
        ms: u64,
    },
    /// HTTP 200 with a body (or stream event) that is not valid JSON.
    MalformedJson,
    /// A stream that starts normally and then sends an `error` event (`overloaded_error`).
    MidStreamError,
}

/// A request the mock received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The JSON body (`Null` if it did not parse).
    pub body: Value,
    /// Whether `x-api-key` was present.
    pub has_api_key: bool,
    /// The `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// Whether it asked for a stream.
    pub stream: bool,
    /// What the mock did: `turn N`, `done`, `fault …` or `invalid: …`.
    pub outcome: String,
}

impl RecordedRequest {
    /// Whether a scripted (or the final "Done.") answer was given.
    pub fn answered(&self) -> bool {
        self.outcome.starts_with("turn") || self.outcome == "done"
    }
}
