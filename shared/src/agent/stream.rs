//! Server-sent events of the Anthropic Messages API, and how they add up to
//! the same [`ModelResponse`] the non-streaming call returns.
//!
//! The sequence is `message_start`, then per content block
//! `content_block_start`, `content_block_delta`* (`text_delta` or
//! `input_json_delta`), `content_block_stop`; then `message_delta` (stop reason,
//! output usage) and `message_stop`. `ping` may come anywhere; an `error`
//! event may replace the rest of the stream.

use serde_json::Value;

use super::model::{DeltaSender, ModelDelta, ModelResponse};
use crate::domain::{ContentBlock, Usage};

/// One parsed SSE event: its `event:` name and its `data:` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Event name (empty when the server sent none).
    pub event: String,
    /// Data lines joined by `\n`.
    pub data: String,
}

/// Splits a byte stream into SSE events; chunks may cut events (and UTF-8) anywhere.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Feeds a chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend(chunk.iter().filter(|b| **b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let mut ev = SseEvent {
                event: String::new(),
                data: String::new(),
            };
            let mut data_lines = Vec::new();
            for line in text.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => ev.event = value.to_string(),
                    "data" => data_lines.push(value),
                    _ => {}
                }
            }
            ev.data = data_lines.join("\n");
            if !ev.event.is_empty() || !ev.data.is_empty() {
                out.push(ev);
            }
        }
        out
    }
}

/// Why a stream could not be assembled.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamError {
    /// The server sent an `error` event (`kind` is e.g. `overloaded_error`).
    Api {
        /// The error type.
        kind: String,
        /// The error message.
        message: String,
    },
    /// An event was not the JSON it should be.
    Malformed(String),
}

enum Partial {
    Text(String),
    Tool {
        id: String,
        name: String,
        json: String,
    },
    Other,
}

/// Folds stream events into a [`ModelResponse`].
#[derive(Default)]
pub struct StreamAssembler {
    id: String,
    model: String,
    blocks: Vec<Partial>,
    stop_reason: Option<String>,
    usage: Usage,
    finished: bool,
    deltas_sent: bool,
}

impl StreamAssembler {
    /// A new assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `message_stop` was seen.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether any delta was forwarded (so a retry must tell listeners to restart).
    pub fn sent_deltas(&self) -> bool {
        self.deltas_sent
    }

    /// Applies one event, forwarding text and tool-input pieces to `deltas`.
    pub fn apply(
        &mut self,
        ev: &SseEvent,
        deltas: Option<&DeltaSender>,
    ) -> Result<(), StreamError> {
        if ev.event == "ping" || ev.data.is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| StreamError::Malformed(format!("{} event: {e}", ev.event)))?;
        let kind = v["type"].as_str().unwrap_or(ev.event.as_str());
        match kind {
            "message_start" => {
                let m = &v["message"];
                self.id = m["id"].as_str().unwrap_or_default().to_string();
                self.model = m["model"].as_str().unwrap_or_default().to_string();
                merge_usage(&mut self.usage, &m["usage"]);
            }
            "content_block_start" => {
                let index = index_of(&v)?;
                let b = &v["content_block"];
                let partial = match b["type"].as_str() {
                    Some("text") => Partial::Text(b["text"].as_str().unwrap_or("").to_string()),
                    Some("tool_use") => {
                        let name = b["name"].as_str().unwrap_or_default().to_string();
                        self.send(
                            deltas,
                            ModelDelta::ToolUse {
                                index,
                                name: name.clone(),
                            },
                        );
                        Partial::Tool {
                            id: b["id"].as_str().unwrap_or_default().to_string(),
                            name,
                            json: String::new(),
                        }
                    }
                    _ => Partial::Other,
                };
                while self.blocks.len() < index {
                    self.blocks.push(Partial::Other);
                }
                if self.blocks.len() == index {
                    self.blocks.push(partial);
                } else {
                    self.blocks[index] = partial;
                }
            }
            "content_block_delta" => {
                let index = index_of(&v)?;
                let d = &v["delta"];
                let piece = match d["type"].as_str() {
                    Some("text_delta") => d["text"].as_str().map(|t| (false, t.to_string())),
                    Some("input_json_delta") => {
                        d["partial_json"].as_str().map(|t| (true, t.to_string()))
                    }
                    _ => None,
                };
                let Some((is_json, piece)) = piece else {
                    return Ok(());
                };
                match (self.blocks.get_mut(index), is_json) {
                    (Some(Partial::Text(t)), false) => t.push_str(&piece),
                    (Some(Partial::Tool { json, .. }), true) => json.push_str(&piece),
                    _ => {
                        return Err(StreamError::Malformed(format!(
                            "delta for block {index} does not match its start"
                        )))
                    }
                }
                let delta = if is_json {
                    ModelDelta::ToolInput {
                        index,
                        partial_json: piece,
                    }
                } else {
                    ModelDelta::Text { index, text: piece }
                };
                self.send(deltas, delta);
            }
            "content_block_stop" => {}
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(r.to_string());
                }
                merge_usage(&mut self.usage, &v["usage"]);
            }
            "message_stop" => self.finished = true,
            "error" => {
                return Err(StreamError::Api {
                    kind: v["error"]["type"].as_str().unwrap_or("error").to_string(),
                    message: v["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                })
            }
            _ => {}
        }
        Ok(())
    }

    fn send(&mut self, deltas: Option<&DeltaSender>, d: ModelDelta) {
        if let Some(tx) = deltas {
            // A listener that went away must not fail the model call.
            let _ = tx.send(d);
            self.deltas_sent = true;
        }
    }

    /// The assembled response (tool inputs parsed; an empty input is `{}`).
    /// A tool input cut off by the output limit (`max_tokens`) becomes `{}`:
    /// asking again would only be cut off again; the step tells the model.
    pub fn finish(self) -> Result<ModelResponse, StreamError> {
        let cut_off = self.stop_reason.as_deref() == Some("max_tokens");
        let mut content = Vec::new();
        for b in self.blocks {
            match b {
                Partial::Text(text) => content.push(ContentBlock::Text { text }),
                Partial::Tool { id, name, json } => {
                    let input = match serde_json::from_str(&json) {
                        _ if json.trim().is_empty() => Value::Object(Default::default()),
                        Ok(v) => v,
                        Err(_) if cut_off => Value::Object(Default::default()),
                        Err(e) => {
                            return Err(StreamError::Malformed(format!(
                                "tool input of {name}: {e}"
                            )))
                        }
                    };
                    content.push(ContentBlock::ToolUse { id, name, input });
                }
                Partial::Other => {}
            }
        }
        Ok(ModelResponse {
            id: self.id,
            model: self.model,
            content,
            stop_reason: self.stop_reason,
            usage: self.usage,
        })
    }
}

fn index_of(v: &Value) -> Result<usize, StreamError> {
    v["index"]
        .as_u64()
        .map(|i| i as usize)
        .filter(|i| *i < 1024)
        .ok_or_else(|| StreamError::Malformed("content block event without a valid index".into()))
}

/// Overwrites the counters present in an API `usage` object (later events carry totals).
pub fn merge_usage(u: &mut Usage, v: &Value) {
    let set = |field: &str, slot: &mut i64| {
        if let Some(n) = v[field].as_i64() {
            *slot = n;
        }
    };
    set("input_tokens", &mut u.input_tokens);
    set("output_tokens", &mut u.output_tokens);
    set("cache_creation_input_tokens", &mut u.cache_write_tokens);
    set("cache_read_input_tokens", &mut u.cache_read_tokens);
}

/// A content block of an API response, or `None` for kinds the agent does not use.
pub fn block_from_api(v: &Value) -> Option<ContentBlock> {
    match v["type"].as_str()? {
        "text" => Some(ContentBlock::Text {
            text: v["text"].as_str()?.to_string(),
        }),
        "tool_use" => Some(ContentBlock::ToolUse {
            id: v["id"].as_str()?.to_string(),
            name: v["name"].as_str()?.to_string(),
            input: v
                .get("input")
                .cloned()
                .unwrap_or(Value::Object(Default::default())),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_split_chunks_and_crlf() {
        let mut p = SseParser::default();
        let raw = b"event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n: comment\n\nevent: message_stop\ndata: {}\n\n";
        let mut evs = Vec::new();
        for chunk in raw.chunks(3) {
            evs.extend(p.push(chunk));
        }
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event, "ping");
        assert_eq!(evs[1].event, "message_stop");
    }

    #[test]
    fn assembles_text_and_tool_input() {
        let evs = [
            r#"{"type":"message_start","message":{"id":"m1","model":"x","usage":{"input_tokens":5,"cache_read_input_tokens":7}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"read_file","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"pa"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"th\":\"a\"}"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut a = StreamAssembler::new();
        for e in evs {
            let ev = SseEvent {
                event: String::new(),
                data: e.to_string(),
            };
            a.apply(&ev, Some(&tx)).unwrap();
        }
        assert!(a.is_finished());
        let r = a.finish().unwrap();
        assert_eq!(r.text(), "Hello");
        assert_eq!(r.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(r.usage.output_tokens, 9);
        assert_eq!(r.usage.cache_read_tokens, 7);
        assert!(
            matches!(&r.content[1], ContentBlock::ToolUse { input, .. } if input["path"] == "a")
        );
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn error_event_is_reported() {
        let mut a = StreamAssembler::new();
        let ev = SseEvent {
            event: "error".into(),
            data: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                .into(),
        };
        assert!(
            matches!(a.apply(&ev, None), Err(StreamError::Api { kind, .. }) if kind == "overloaded_error")
        );
    }
}
