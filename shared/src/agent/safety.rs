//! Loop safety: a run's budget (steps, output tokens, dollars) and detection of
//! a model stuck repeating the same failing tool call.
//!
//! Both are plain functions over stored state, so the workflow's handlers can
//! call them on their own as well as through [`super::run_step`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::domain::{ContentBlock, Message, Role, Run};

/// How many times the same failure may happen before the run is stopped.
pub const REPEAT_LIMIT: usize = 3;

/// Why the agent loop must stop although the model has not finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum StopReason {
    /// `APNA_MAX_STEPS` model calls were made.
    MaxSteps {
        /// The limit.
        limit: u32,
    },
    /// `APNA_MAX_OUTPUT_TOKENS` output tokens were used.
    MaxOutputTokens {
        /// The limit.
        limit: u64,
        /// Tokens used so far.
        used: i64,
    },
    /// `APNA_MAX_COST_USD` dollars were spent.
    MaxCost {
        /// The limit.
        limit: f64,
        /// Dollars spent so far.
        spent: f64,
    },
    /// The person's runs today cost `APNA_MAX_DAILY_COST_USD`.
    DailyCost {
        /// The daily limit.
        limit: f64,
        /// Dollars spent today, this run included.
        spent: f64,
    },
    /// The model made the same failing call, or got the same error, again and again.
    RepeatedFailure {
        /// The tool it kept calling.
        tool: String,
        /// How many times.
        count: usize,
        /// The error it kept getting (shortened).
        error: String,
    },
}

impl StopReason {
    /// A short machine-readable code (`max_steps`, `repeated_failure`, …).
    pub fn code(&self) -> &'static str {
        match self {
            StopReason::MaxSteps { .. } => "max_steps",
            StopReason::MaxOutputTokens { .. } => "max_output_tokens",
            StopReason::MaxCost { .. } => "max_cost",
            StopReason::DailyCost { .. } => "daily_cost",
            StopReason::RepeatedFailure { .. } => "repeated_failure",
        }
    }

    /// A sentence for the person (stored as the run's stop reason).
    pub fn message(&self) -> String {
        match self {
            StopReason::MaxSteps { limit } => format!(
                "stopped after {limit} model calls, the limit per run (APNA_MAX_STEPS)"
            ),
            StopReason::MaxOutputTokens { limit, used } => format!(
                "stopped after {used} output tokens; the limit per run is {limit} (APNA_MAX_OUTPUT_TOKENS)"
            ),
            StopReason::MaxCost { limit, spent } => format!(
                "stopped after spending ${spent:.2}; the limit per run is ${limit:.2} (APNA_MAX_COST_USD)"
            ),
            StopReason::DailyCost { limit, spent } => format!(
                "stopped: ${spent:.2} of the ${limit:.2} daily model budget is used (APNA_MAX_DAILY_COST_USD); it resets at 00:00 UTC"
            ),
            StopReason::RepeatedFailure { tool, count, error } => format!(
                "stopped because the agent called {tool} {count} times with the same failure: {error}"
            ),
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// Whether `run` may make model call number `step` (from 1) within `config`'s budget.
pub fn check_budget(run: &Run, config: &Config, step: u32) -> Option<StopReason> {
    if step > config.max_steps {
        return Some(StopReason::MaxSteps {
            limit: config.max_steps,
        });
    }
    if run.usage.output_tokens.max(0) as u64 >= config.max_output_tokens {
        return Some(StopReason::MaxOutputTokens {
            limit: config.max_output_tokens,
            used: run.usage.output_tokens,
        });
    }
    if run.cost_usd >= config.max_cost_usd {
        return Some(StopReason::MaxCost {
            limit: config.max_cost_usd,
            spent: run.cost_usd,
        });
    }
    None
}

/// Input tokens the images of a model conversation cost (as Anthropic
/// documents it: `width × height / 750` each), before any are inlined.
pub fn image_tokens(messages: &[super::ModelMessage]) -> u64 {
    messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|b| match b {
            ContentBlock::Image {
                source: crate::domain::ImageSource::Stored(r),
            } => Some(r.estimated_tokens()),
            _ => None,
        })
        .sum()
}

/// Whether sending `image_tokens` of images, priced as uncached input,
/// would take `run` past its dollar budget: images are the one input whose
/// size the person chooses, so they are counted before the call.
pub fn check_image_budget(
    run: &Run,
    config: &Config,
    model: &str,
    image_tokens: u64,
) -> Option<StopReason> {
    let estimate = image_tokens as f64 * super::pricing::price(model).input / 1_000_000.0;
    (image_tokens > 0 && run.cost_usd + estimate > config.max_cost_usd).then_some(
        StopReason::MaxCost {
            limit: config.max_cost_usd,
            spent: run.cost_usd + estimate,
        },
    )
}

/// Midnight UTC today: where a daily budget starts.
pub fn start_of_day() -> chrono::DateTime<chrono::Utc> {
    let now = crate::domain::now();
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |t| t.and_utc())
}

/// Whether `owner` has used up the daily model budget, if there is one.
pub async fn check_daily_budget(
    store: &dyn crate::store::Store,
    owner: &str,
    config: &Config,
) -> crate::error::Result<Option<StopReason>> {
    let Some(limit) = config.max_daily_cost_usd else {
        return Ok(None);
    };
    let spent = store.cost_since(owner, start_of_day()).await?;
    Ok((spent >= limit).then_some(StopReason::DailyCost { limit, spent }))
}

/// The most output tokens one call may use: the per-call cap, or what is left of the run's budget.
pub fn max_tokens_for_call(run: &Run, config: &Config, per_call: u32) -> u32 {
    let left = config
        .max_output_tokens
        .saturating_sub(run.usage.output_tokens.max(0) as u64);
    left.clamp(1, per_call as u64) as u32
}

/// Whether, in `run_id`'s messages, one failing call (same tool and input) or one
/// error (same tool and message) happened [`REPEAT_LIMIT`] times.
pub fn detect_repetition(messages: &[Message], run_id: &str) -> Option<StopReason> {
    let mut calls: HashMap<&str, (&str, &Value)> = HashMap::new();
    let mut by_call: HashMap<(String, String), usize> = HashMap::new();
    let mut by_error: HashMap<(String, String), usize> = HashMap::new();
    for m in messages
        .iter()
        .filter(|m| m.run_id.as_deref() == Some(run_id))
    {
        for b in &m.content {
            match (m.role, b) {
                (Role::Assistant, ContentBlock::ToolUse { id, name, input }) => {
                    calls.insert(id.as_str(), (name.as_str(), input));
                }
                (
                    Role::User,
                    ContentBlock::ToolResult {
                        tool_use_id,
                        content,
                        is_error: true,
                    },
                ) => {
                    let Some((name, input)) = calls.get(tool_use_id.as_str()) else {
                        continue;
                    };
                    let short: String = content.chars().take(300).collect();
                    let c = by_call
                        .entry((name.to_string(), input.to_string()))
                        .or_default();
                    *c += 1;
                    let e = by_error
                        .entry((name.to_string(), short.clone()))
                        .or_default();
                    *e += 1;
                    let count = (*c).max(*e);
                    if count >= REPEAT_LIMIT {
                        return Some(StopReason::RepeatedFailure {
                            tool: name.to_string(),
                            count,
                            error: short,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap as Map;

    fn msg(run: &str, role: Role, content: Vec<ContentBlock>) -> Message {
        Message {
            id: "m".into(),
            project_id: "p".into(),
            run_id: Some(run.into()),
            seq: 0,
            role,
            content,
            tool_calls: vec![],
            file_diffs: vec![],
            created_at: crate::domain::now(),
        }
    }

    fn failing(run: &str, id: &str, old: &str, err: &str) -> Vec<Message> {
        vec![
            msg(
                run,
                Role::Assistant,
                vec![ContentBlock::ToolUse {
                    id: id.into(),
                    name: "edit_file".into(),
                    input: json!({"path": "a", "old_string": old, "new_string": "x"}),
                }],
            ),
            msg(
                run,
                Role::User,
                vec![ContentBlock::ToolResult {
                    tool_use_id: id.into(),
                    content: err.into(),
                    is_error: true,
                }],
            ),
        ]
    }

    #[test]
    fn third_identical_failure_stops() {
        let mut m = failing("r", "1", "a", "found 0 times");
        m.extend(failing("r", "2", "a", "found 0 times"));
        assert_eq!(detect_repetition(&m, "r"), None);
        m.extend(failing("other", "x", "a", "found 0 times"));
        assert_eq!(detect_repetition(&m, "r"), None);
        m.extend(failing("r", "3", "b", "found 0 times"));
        let stop = detect_repetition(&m, "r").unwrap();
        assert_eq!(stop.code(), "repeated_failure");
        assert!(stop.message().contains("edit_file 3 times"), "{stop}");
    }

    #[test]
    fn different_failures_do_not_stop() {
        let mut m = Vec::new();
        for i in 0..5 {
            m.extend(failing(
                "r",
                &i.to_string(),
                &format!("s{i}"),
                &format!("error {i}"),
            ));
        }
        assert_eq!(detect_repetition(&m, "r"), None);
    }

    #[test]
    fn budget_limits_each_resource() {
        let cfg = Config::from_vars(Map::from([
            ("APNA_MAX_STEPS".to_string(), "3".to_string()),
            ("APNA_MAX_OUTPUT_TOKENS".to_string(), "1000".to_string()),
            ("APNA_MAX_COST_USD".to_string(), "0.5".to_string()),
        ]))
        .unwrap();
        let mut run = Run::new("p", "u", "hi");
        assert_eq!(check_budget(&run, &cfg, 3), None);
        assert_eq!(check_budget(&run, &cfg, 4).unwrap().code(), "max_steps");
        assert_eq!(max_tokens_for_call(&run, &cfg, 16_000), 1000);
        run.usage.output_tokens = 1000;
        assert_eq!(
            check_budget(&run, &cfg, 1).unwrap().code(),
            "max_output_tokens"
        );
        run.usage.output_tokens = 10;
        run.cost_usd = 0.5;
        assert_eq!(check_budget(&run, &cfg, 1).unwrap().code(), "max_cost");
    }
}
