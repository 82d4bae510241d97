//! The Anthropic Messages API client (reqwest + rustls).
//!
//! One [`Model::complete`] is one logical call: transient failures (429, 500,
//! 529 and other 5xx, network errors, timeouts, a truncated or malformed
//! answer, an `overloaded_error` mid-stream) are retried with exponential
//! backoff and jitter, waiting at least what `retry-after` asks. The system
//! prompt, the tool list and the conversation so far carry
//! `cache_control: ephemeral`, so every step after the first reads them from
//! the prompt cache.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};

use super::model::{DeltaSender, Model, ModelDelta, ModelRequest, ModelResponse};
use super::stream::{block_from_api, merge_usage, SseParser, StreamAssembler, StreamError};
use crate::config::Config;
use crate::domain::Usage;
use crate::error::{Error, Result};

/// The `anthropic-version` header value.
pub const API_VERSION: &str = "2023-06-01";

/// How transient failures are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
    /// Longest wait a `retry-after` header can impose.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (from 0): `retry-after` when the
    /// server gave one, else exponential backoff with jitter in [d/2, d].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_after);
        }
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay);
        let factor: f64 = rand::thread_rng().gen_range(0.5..=1.0);
        exp.mul_f64(factor)
    }
}

/// Settings of an [`AnthropicClient`].
#[derive(Clone)]
pub struct AnthropicOptions {
    /// API base URL, without `/v1/messages`.
    pub base_url: String,
    /// `x-api-key`; without it every call fails with a clear message.
    pub api_key: Option<String>,
    /// Model id.
    pub model: String,
    /// Whether to use server-sent events (needed to forward deltas).
    pub stream: bool,
    /// Whole-request limit, streaming included.
    pub request_timeout: Duration,
    /// TCP/TLS connect limit.
    pub connect_timeout: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for AnthropicOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicOptions")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl AnthropicOptions {
    /// Options for `base_url` and `model` with default timeouts and retries, streaming on.
    pub fn new(base_url: &str, api_key: Option<String>, model: &str) -> Self {
        AnthropicOptions {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            model: model.to_string(),
            stream: true,
            request_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// A [`Model`] backed by the Anthropic Messages API (or anything speaking it at `ANTHROPIC_BASE_URL`).
pub struct AnthropicClient {
    http: reqwest::Client,
    opts: AnthropicOptions,
}

/// Why one attempt at a model call failed.
pub(crate) enum Failure {
    /// Worth another attempt (after at least `after`, when the server said so).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Final.
    Fatal(Error),
}

/// Runs `attempt` until it succeeds, fails for good, or `policy` gives up,
/// waiting with backoff in between. `attempt` also says whether it sent
/// deltas, so watchers can be told to discard them before the next try.
pub(crate) async fn with_retries<F, Fut>(
    policy: &RetryPolicy,
    model: &str,
    deltas: Option<&DeltaSender>,
    mut attempt: F,
) -> Result<ModelResponse>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (std::result::Result<ModelResponse, Failure>, bool)>,
{
    let mut retry = 0u32;
    loop {
        let (outcome, sent_deltas) = attempt().await;
        match outcome {
            Ok(r) => return Ok(r),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry { why, after }) => {
                if retry >= policy.max_retries {
                    return Err(Error::Model(format!(
                        "{why} (gave up after {} attempts)",
                        retry + 1
                    )));
                }
                let wait = policy.delay(retry, after);
                tracing::warn!(%model, retry = retry + 1, wait_ms = wait.as_millis() as u64, %why, "model call failed; retrying");
                tokio::time::sleep(wait).await;
                retry += 1;
                if sent_deltas {
                    if let Some(tx) = deltas {
                        let _ = tx.send(ModelDelta::Restart { attempt: retry });
                    }
                }
            }
        }
    }
}

impl AnthropicClient {
    /// A client with explicit options.
    pub fn new(opts: AnthropicOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(concat!("apna/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("building HTTP client: {e}")))?;
        Ok(AnthropicClient { http, opts })
    }

    /// A client from `ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY` and `ANTHROPIC_MODEL`.
    pub fn from_config(cfg: &Config) -> Result<Self> {
        Self::new(AnthropicOptions::new(
            &cfg.anthropic_base_url,
            cfg.anthropic_api_key.clone(),
            &cfg.anthropic_model,
        ))
    }

    /// The options in use.
    pub fn options(&self) -> &AnthropicOptions {
        &self.opts
    }

    /// The JSON body for `req` (see [`messages_body`]) for this client's model.
    pub fn request_body(&self, req: &ModelRequest, stream: bool) -> Result<Value> {
        let mut body = messages_body(req)?;
        body["model"] = Value::String(self.opts.model.clone());
        if stream {
            body["stream"] = Value::Bool(true);
        }
        Ok(body)
    }

    async fn attempt(
        &self,
        body: &Value,
        deltas: Option<&DeltaSender>,
        sent_deltas: &mut bool,
    ) -> std::result::Result<ModelResponse, Failure> {
        let key = self.opts.api_key.as_deref().ok_or_else(|| {
            Failure::Fatal(Error::Model(
                "ANTHROPIC_API_KEY is not set; set it (or ANTHROPIC_BASE_URL to a compatible server) and retry".into(),
            ))
        })?;
        let resp = self
            .http
            .post(format!("{}/v1/messages", self.opts.base_url))
            .header("x-api-key", key)
            .header("anthropic-version", API_VERSION)
            .header("content-type", "application/json")
            .json(body)
            .send()
            .await
            .map_err(|e| Failure::Retry {
                why: network_error(&e),
                after: None,
            })?;
        let status = resp.status();
        if !status.is_success() {
            let after = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            let why = format!("HTTP {}: {}", status.as_u16(), api_error_message(&text));
            return Err(if is_retryable_status(status.as_u16()) {
                Failure::Retry { why, after }
            } else {
                Failure::Fatal(Error::Model(why))
            });
        }
        if body["stream"] == Value::Bool(true) {
            self.read_stream(resp, deltas, sent_deltas).await
        } else {
            let bytes = resp.bytes().await.map_err(|e| Failure::Retry {
                why: network_error(&e),
                after: None,
            })?;
            parse_message(&bytes).map_err(|why| Failure::Retry { why, after: None })
        }
    }

    async fn read_stream(
        &self,
        resp: reqwest::Response,
        deltas: Option<&DeltaSender>,
        sent_deltas: &mut bool,
    ) -> std::result::Result<ModelResponse, Failure> {
        let mut parser = SseParser::default();
        let mut asm = StreamAssembler::new();
        let mut body = resp.bytes_stream();
        let outcome = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Failure::Retry {
                    why: network_error(&e),
                    after: None,
                })?;
                for ev in parser.push(&chunk) {
                    asm.apply(&ev, deltas).map_err(stream_failure)?;
                }
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

/// The response a stream assembled, once reading it ended with `outcome`:
/// a stream cut before `message_stop` is worth another attempt.
pub(crate) fn finish_stream(
    asm: StreamAssembler,
    outcome: std::result::Result<(), Failure>,
    sent_deltas: &mut bool,
) -> std::result::Result<ModelResponse, Failure> {
    *sent_deltas |= asm.sent_deltas();
    outcome?;
    if !asm.is_finished() {
        return Err(Failure::Retry {
            why: "the stream ended before message_stop".into(),
            after: None,
        });
    }
    asm.finish().map_err(stream_failure)
}

#[async_trait]
impl Model for AnthropicClient {
    fn model_id(&self) -> &str {
        &self.opts.model
    }

    async fn complete(
        &self,
        req: &ModelRequest,
        deltas: Option<&DeltaSender>,
    ) -> Result<ModelResponse> {
        let body = self.request_body(req, self.opts.stream)?;
        let span = tracing::debug_span!("model", xray = "Anthropic", model = %self.opts.model);
        tracing::Instrument::instrument(
            with_retries(&self.opts.retry, &self.opts.model, deltas, || async {
                let mut sent_deltas = false;
                let outcome = self.attempt(&body, deltas, &mut sent_deltas).await;
                (outcome, sent_deltas)
            }),
            span,
        )
        .await
    }
}

/// A stream's failure as a retry decision.
pub(crate) fn stream_failure(e: StreamError) -> Failure {
    match e {
        StreamError::Api { kind, message } => {
            let why = format!("{kind} mid-stream: {message}");
            if matches!(
                kind.as_str(),
                "overloaded_error" | "api_error" | "rate_limit_error" | "timeout_error"
            ) {
                Failure::Retry { why, after: None }
            } else {
                Failure::Fatal(Error::Model(why))
            }
        }
        StreamError::Malformed(why) => Failure::Retry {
            why: format!("malformed stream: {why}"),
            after: None,
        },
    }
}

/// The Messages API body for `req` without `model` and `stream` (which
/// providers put in different places), with cache breakpoints on the last
/// tool, the system prompt and the last block of the conversation.
pub fn messages_body(req: &ModelRequest) -> Result<Value> {
    let ephemeral = json!({ "type": "ephemeral" });
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "input_schema": t.input_schema,
            })
        })
        .collect();
    if let Some(last) = tools.last_mut() {
        last["cache_control"] = ephemeral.clone();
    }
    let mut messages = serde_json::to_value(&req.messages)
        .map_err(|e| Error::Internal(format!("serialising messages: {e}")))?;
    if let Some(block) = messages
        .as_array_mut()
        .and_then(|m| m.last_mut())
        .and_then(|m| m["content"].as_array_mut())
        .and_then(|c| c.last_mut())
    {
        block["cache_control"] = ephemeral.clone();
    }
    let mut body = json!({
        "max_tokens": req.max_tokens,
        "system": [{ "type": "text", "text": req.system, "cache_control": ephemeral }],
        "messages": messages,
    });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    Ok(body)
}

/// Whether an HTTP status from the API is worth retrying.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504 | 529)
}

fn network_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request timed out".into()
    } else if e.is_connect() {
        "could not connect to the model API".into()
    } else {
        format!("network error: {e}")
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn api_error_message(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v["error"].is_object() => format!(
            "{}: {}",
            v["error"]["type"].as_str().unwrap_or("error"),
            v["error"]["message"].as_str().unwrap_or_default()
        ),
        _ => body.chars().take(300).collect(),
    }
}

/// Parses a non-streaming Messages API answer.
pub fn parse_message(bytes: &[u8]) -> std::result::Result<ModelResponse, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("malformed response JSON: {e}"))?;
    let content = v["content"]
        .as_array()
        .ok_or_else(|| "response has no content array".to_string())?
        .iter()
        .filter_map(block_from_api)
        .collect();
    let mut usage = Usage::default();
    merge_usage(&mut usage, &v["usage"]);
    Ok(ModelResponse {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        model: v["model"].as_str().unwrap_or_default().to_string(),
        content,
        stop_reason: v["stop_reason"].as_str().map(str::to_string),
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        let d0 = p.delay(0, None);
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        let d3 = p.delay(3, None);
        assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(600))),
            p.max_retry_after
        );
        assert!(p.delay(40, None) <= p.max_delay);
    }

    #[test]
    fn request_body_marks_cache_breakpoints() {
        use super::super::model::{ModelMessage, ToolSpec};
        use crate::domain::{ContentBlock, Role};
        let c = AnthropicClient::new(AnthropicOptions::new("http://x", None, "m")).unwrap();
        let spec = |n: &str| ToolSpec {
            name: n.into(),
            description: "d".into(),
            input_schema: json!({"type": "object"}),
        };
        let req = ModelRequest {
            system: "sys".into(),
            tools: vec![spec("a"), spec("b")],
            messages: vec![ModelMessage {
                role: Role::User,
                content: vec![ContentBlock::Text { text: "hi".into() }],
            }],
            max_tokens: 10,
        };
        let b = c.request_body(&req, true).unwrap();
        assert_eq!(b["system"][0]["cache_control"]["type"], "ephemeral");
        assert!(b["tools"][0].get("cache_control").is_none());
        assert_eq!(b["tools"][1]["cache_control"]["type"], "ephemeral");
        assert_eq!(
            b["messages"][0]["content"][0]["cache_control"]["type"],
            "ephemeral"
        );
        assert_eq!(b["stream"], true);
    }
}
