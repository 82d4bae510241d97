//! The checkpoints one agent step keeps with `Store::put_step_result` (first
//! write wins), so a retried step neither calls the model twice nor applies
//! an edit twice, and reading them back.

use serde_json::Value;

use super::model::ModelResponse;
use super::tools::ToolOutput;
use crate::domain::ContentBlock;
use crate::error::Result;
use crate::store::Store;

/// The key of one checkpoint of step `n` of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKey<'a> {
    /// `step:{n}:model` — the model's answer, stored before any tool runs.
    Model(u32),
    /// `step:{n}:tool:{tool_use_id}` — one tool call's result.
    Tool(u32, &'a str),
    /// `step:{n}:done` — the step's outcome, returned as-is by later retries.
    Done(u32),
}

impl std::fmt::Display for StepKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepKey::Model(n) => write!(f, "step:{n}:model"),
            StepKey::Tool(n, id) => write!(f, "step:{n}:tool:{id}"),
            StepKey::Done(n) => write!(f, "step:{n}:done"),
        }
    }
}

impl StepKey<'_> {
    /// The stored value under this key for `run_id`, if any.
    pub async fn get(&self, store: &dyn Store, run_id: &str) -> Result<Option<Value>> {
        store.get_step_result(run_id, &self.to_string()).await
    }

    /// Stores `value` unless something is stored already; returns what is stored.
    pub async fn put(&self, store: &dyn Store, run_id: &str, value: &Value) -> Result<Value> {
        store
            .put_step_result(run_id, &self.to_string(), value)
            .await
    }
}

/// A tool call of a step whose result is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The model's `tool_use` id.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Tool input as the model sent it.
    pub input: Value,
    /// What the tool returned.
    pub output: ToolOutput,
}

/// The tool calls of step `step` that have run (their results are recorded),
/// in the order the model asked for them. Empty when the model's answer is
/// not recorded yet.
pub async fn recorded_tool_calls(
    store: &dyn Store,
    run_id: &str,
    step: u32,
) -> Result<Vec<RecordedCall>> {
    let Some(answer) = StepKey::Model(step).get(store, run_id).await? else {
        return Ok(Vec::new());
    };
    let answer: ModelResponse = serde_json::from_value(answer)?;
    let mut calls = Vec::new();
    for block in answer.content {
        let ContentBlock::ToolUse { id, name, input } = block else {
            continue;
        };
        let Some(output) = StepKey::Tool(step, &id).get(store, run_id).await? else {
            continue;
        };
        let output: ToolOutput = serde_json::from_value(output)?;
        calls.push(RecordedCall {
            id,
            name,
            input,
            output,
        });
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_stored_names() {
        assert_eq!(StepKey::Model(3).to_string(), "step:3:model");
        assert_eq!(
            StepKey::Tool(3, "toolu_1").to_string(),
            "step:3:tool:toolu_1"
        );
        assert_eq!(StepKey::Done(12).to_string(), "step:12:done");
    }
}
