//! The parsed form of an Amazon States Language definition and its load-time
//! checks. Everything the interpreter does not implement is rejected here, with
//! the state and field named, so a definition never fails half-way through a run
//! because of an unsupported feature.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::choice::ChoiceRule;
use crate::error::{Error, Result};

/// A parsed, validated state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    /// The top-level block of states.
    pub states: States,
    /// Execution-wide timeout, if any.
    pub timeout_seconds: Option<u64>,
}

/// A block of states with its entry point (the machine itself, or a Map's processor).
#[derive(Debug, Clone)]
pub struct States {
    /// First state to run.
    pub start_at: String,
    /// States by name.
    pub states: BTreeMap<String, State>,
}

/// One state, by `Type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "Type")]
pub enum State {
    /// Calls a resource through the [`super::TaskInvoker`].
    Task(TaskState),
    /// Branches on the input.
    Choice(ChoiceState),
    /// Sleeps.
    Wait(WaitState),
    /// Passes (and optionally reshapes) its input.
    Pass(PassState),
    /// Runs a block of states for each item of an array.
    Map(Box<MapState>),
    /// Ends the execution successfully.
    Succeed(SucceedState),
    /// Ends the execution with an error.
    Fail(FailState),
}

impl State {
    /// The `Type` as written in the definition.
    pub fn type_name(&self) -> &'static str {
        match self {
            State::Task(_) => "Task",
            State::Choice(_) => "Choice",
            State::Wait(_) => "Wait",
            State::Pass(_) => "Pass",
            State::Map(_) => "Map",
            State::Succeed(_) => "Succeed",
            State::Fail(_) => "Fail",
        }
    }
}

/// How a state continues: `Next` or `End: true` (checked at load time).
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    /// The next state.
    pub next: Option<&'a str>,
    /// Whether this state ends its block.
    pub end: bool,
}

impl State {
    /// Where a Task, Pass, Wait or Map state goes next; `None` for the others.
    pub fn transition(&self) -> Option<Transition<'_>> {
        let (next, end) = match self {
            State::Task(s) => (&s.next, s.end),
            State::Pass(s) => (&s.next, s.end),
            State::Wait(s) => (&s.next, s.end),
            State::Map(s) => (&s.next, s.end),
            _ => return None,
        };
        Some(Transition {
            next: next.as_deref(),
            end,
        })
    }
}

/// A Retry entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Retrier {
    /// Error names this entry handles.
    pub error_equals: Vec<String>,
    /// First delay (default 1 s).
    #[serde(default = "one_f64")]
    pub interval_seconds: f64,
    /// Retries allowed (default 3).
    #[serde(default = "three")]
    pub max_attempts: u32,
    /// Multiplier of the delay per attempt (default 2).
    #[serde(default = "two_f64")]
    pub backoff_rate: f64,
    /// Cap on the delay.
    #[serde(default)]
    pub max_delay_seconds: Option<f64>,
    /// `FULL` randomizes each delay in `[0, delay]`; `NONE` (default) does not.
    #[serde(default)]
    pub jitter_strategy: Option<Jitter>,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
}

/// Retry jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Jitter {
    /// Uniform random delay in `[0, computed delay]`.
    Full,
    /// The computed delay as is.
    None,
}

fn one_f64() -> f64 {
    1.0
}
fn two_f64() -> f64 {
    2.0
}
fn three() -> u32 {
    3
}

/// A Catch entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Catcher {
    /// Error names this entry handles.
    pub error_equals: Vec<String>,
    /// Where to go.
    pub next: String,
    /// Where to put `{Error, Cause}` in the state's input (default `$`).
    #[serde(default = "root_path")]
    pub result_path: Option<String>,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
}

fn root_path() -> Option<String> {
    Some("$".into())
}

/// A Task state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TaskState {
    /// Passed to the invoker as is (an ARN or a `${Placeholder}`).
    pub resource: String,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
    /// Selects the part of the input the state sees.
    #[serde(default = "root_path")]
    pub input_path: Option<String>,
    /// Payload template for the task input.
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Payload template applied to the task result.
    #[serde(default)]
    pub result_selector: Option<Value>,
    /// Where the result goes in the input (`null` discards it).
    #[serde(default = "root_path")]
    pub result_path: Option<String>,
    /// Selects the part of the output passed on.
    #[serde(default = "root_path")]
    pub output_path: Option<String>,
    /// Retry policy.
    #[serde(default)]
    pub retry: Vec<Retrier>,
    /// Error routing.
    #[serde(default)]
    pub catch: Vec<Catcher>,
    /// Fails one attempt with `States.Timeout` after this long.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// The next state.
    #[serde(default)]
    pub next: Option<String>,
    /// Whether this state ends its block.
    #[serde(default)]
    pub end: bool,
}

/// A Choice state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ChoiceState {
    /// Rules, raw; parsed into [`ChoiceRule`]s by validation.
    pub choices: Vec<Value>,
    /// Where to go when no rule matches.
    #[serde(default)]
    pub default: Option<String>,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
    /// Selects the part of the input the rules see.
    #[serde(default = "root_path")]
    pub input_path: Option<String>,
    /// Selects the part of the output passed on.
    #[serde(default = "root_path")]
    pub output_path: Option<String>,
    /// Parsed `choices`, filled in by [`StateMachine::parse`].
    #[serde(skip)]
    pub rules: Vec<(ChoiceRule, String)>,
}

/// A Wait state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct WaitState {
    /// Fixed delay.
    #[serde(default)]
    pub seconds: Option<u64>,
    /// Delay read from the input.
    #[serde(default)]
    pub seconds_path: Option<String>,
    /// Wait until this RFC 3339 time.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Wait until the RFC 3339 time read from the input.
    #[serde(default)]
    pub timestamp_path: Option<String>,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
    /// Selects the part of the input the state sees.
    #[serde(default = "root_path")]
    pub input_path: Option<String>,
    /// Selects the part of the output passed on.
    #[serde(default = "root_path")]
    pub output_path: Option<String>,
    /// The next state.
    #[serde(default)]
    pub next: Option<String>,
    /// Whether this state ends its block.
    #[serde(default)]
    pub end: bool,
}

/// A Pass state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PassState {
    /// Fixed result (instead of the effective input).
    #[serde(default)]
    pub result: Option<Value>,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
    /// Selects the part of the input the state sees.
    #[serde(default = "root_path")]
    pub input_path: Option<String>,
    /// Payload template.
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Where the result goes in the input (`null` discards it).
    #[serde(default = "root_path")]
    pub result_path: Option<String>,
    /// Selects the part of the output passed on.
    #[serde(default = "root_path")]
    pub output_path: Option<String>,
    /// The next state.
    #[serde(default)]
    pub next: Option<String>,
    /// Whether this state ends its block.
    #[serde(default)]
    pub end: bool,
}

/// A Map state's processor (`ItemProcessor` or the legacy `Iterator`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Processor {
    /// Only `{"Mode": "INLINE"}` is supported.
    #[serde(default)]
    pub processor_config: Option<ProcessorConfig>,
    /// First state.
    pub start_at: String,
    /// States, raw; parsed by validation.
    pub states: BTreeMap<String, Value>,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `ProcessorConfig` of a Map (inline only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ProcessorConfig {
    /// Must be `INLINE`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// A Map state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MapState {
    /// Path of the array to iterate (default `$`).
    #[serde(default = "root_path")]
    pub items_path: Option<String>,
    /// Parallel iterations at most (0 = no limit).
    #[serde(default)]
    pub max_concurrency: u32,
    /// The processor.
    #[serde(default)]
    pub item_processor: Option<Processor>,
    /// The legacy spelling of `ItemProcessor`.
    #[serde(default)]
    pub iterator: Option<Processor>,
    /// Template for each item's input.
    #[serde(default)]
    pub item_selector: Option<Value>,
    /// The legacy spelling of `ItemSelector`.
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
    /// Selects the part of the input the state sees.
    #[serde(default = "root_path")]
    pub input_path: Option<String>,
    /// Payload template applied to the array of results.
    #[serde(default)]
    pub result_selector: Option<Value>,
    /// Where the results go in the input (`null` discards them).
    #[serde(default = "root_path")]
    pub result_path: Option<String>,
    /// Selects the part of the output passed on.
    #[serde(default = "root_path")]
    pub output_path: Option<String>,
    /// Retry policy.
    #[serde(default)]
    pub retry: Vec<Retrier>,
    /// Error routing.
    #[serde(default)]
    pub catch: Vec<Catcher>,
    /// The next state.
    #[serde(default)]
    pub next: Option<String>,
    /// Whether this state ends its block.
    #[serde(default)]
    pub end: bool,
    /// Parsed processor, filled in by [`StateMachine::parse`].
    #[serde(skip)]
    pub block: Option<Box<States>>,
}

/// A Succeed state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SucceedState {
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
    /// Selects the part of the input the state sees.
    #[serde(default = "root_path")]
    pub input_path: Option<String>,
    /// Selects the part of the output passed on.
    #[serde(default = "root_path")]
    pub output_path: Option<String>,
}

/// A Fail state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct FailState {
    /// Error name.
    #[serde(default)]
    pub error: Option<String>,
    /// Human-readable cause.
    #[serde(default)]
    pub cause: Option<String>,
    /// Error name read from the input.
    #[serde(default)]
    pub error_path: Option<String>,
    /// Cause read from the input.
    #[serde(default)]
    pub cause_path: Option<String>,
    /// Ignored; documentation only.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The top level of a definition, before its states are parsed one by one
/// (so that errors can name the state).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawMachine {
    start_at: String,
    states: BTreeMap<String, Value>,
    #[serde(default, rename = "Comment")]
    _comment: Option<String>,
    #[serde(default, rename = "Version")]
    _version: Option<String>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

fn invalid(msg: String) -> Error {
    Error::Workflow(msg)
}

impl StateMachine {
    /// Parses and validates a definition: unknown state types or fields, missing
    /// transitions and `Next` targets that do not exist are errors naming the state.
    pub fn parse(json: &str) -> Result<StateMachine> {
        let raw: RawMachine = serde_json::from_str(json)
            .map_err(|e| invalid(format!("invalid state machine definition: {e}")))?;
        let states = parse_block(&raw.start_at, raw.states, "")?;
        Ok(StateMachine {
            states,
            timeout_seconds: raw.timeout_seconds,
        })
    }
}

impl StateMachine {
    /// Every Task `Resource` in the machine, Map processors included (so a
    /// backend can check at startup that it can run each one).
    pub fn task_resources(&self) -> std::collections::BTreeSet<&str> {
        fn walk<'a>(block: &'a States, out: &mut std::collections::BTreeSet<&'a str>) {
            for state in block.states.values() {
                match state {
                    State::Task(t) => {
                        out.insert(t.resource.as_str());
                    }
                    State::Map(m) => {
                        if let Some(b) = &m.block {
                            walk(b, out);
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        walk(&self.states, &mut out);
        out
    }
}

/// Parses a block of states; `scope` prefixes state names in errors (for Map processors).
fn parse_block(start_at: &str, raw: BTreeMap<String, Value>, scope: &str) -> Result<States> {
    let mut states = BTreeMap::new();
    for (name, value) in raw {
        let label = format!("{scope}{name}");
        if name.is_empty() || name.chars().count() > 80 {
            return Err(invalid(format!(
                "state {label:?}: names must be 1 to 80 characters"
            )));
        }
        let mut state: State =
            serde_json::from_value(value).map_err(|e| invalid(format!("state {label:?}: {e}")))?;
        prepare_state(&label, &mut state)?;
        states.insert(name, state);
    }
    let block = States {
        start_at: start_at.to_string(),
        states,
    };
    check_targets(&block, scope)?;
    Ok(block)
}

/// Per-state checks and the parsing of nested parts (choice rules, Map processors).
fn prepare_state(label: &str, state: &mut State) -> Result<()> {
    let err = |m: &str| invalid(format!("state {label:?}: {m}"));
    match state {
        State::Task(t) => {
            check_transition(label, &t.next, t.end)?;
            check_retry(label, &t.retry)?;
            if t.timeout_seconds == Some(0) {
                return Err(err("TimeoutSeconds must be positive"));
            }
            check_template(label, "Parameters", t.parameters.as_ref())?;
            check_template(label, "ResultSelector", t.result_selector.as_ref())?;
        }
        State::Pass(p) => {
            check_transition(label, &p.next, p.end)?;
            check_template(label, "Parameters", p.parameters.as_ref())?;
        }
        State::Wait(w) => {
            check_transition(label, &w.next, w.end)?;
            let given = [
                w.seconds.is_some(),
                w.seconds_path.is_some(),
                w.timestamp.is_some(),
                w.timestamp_path.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if given != 1 {
                return Err(err(
                    "exactly one of Seconds, SecondsPath, Timestamp, TimestampPath is required",
                ));
            }
            if let Some(ts) = &w.timestamp {
                chrono::DateTime::parse_from_rfc3339(ts)
                    .map_err(|e| err(&format!("Timestamp {ts:?}: {e}")))?;
            }
        }
        State::Choice(c) => {
            if c.choices.is_empty() {
                return Err(err("Choices must not be empty"));
            }
            let mut rules = Vec::with_capacity(c.choices.len());
            for (i, raw) in c.choices.iter().enumerate() {
                let (rule, next) =
                    ChoiceRule::parse_top(raw).map_err(|m| err(&format!("Choices[{i}]: {m}")))?;
                rules.push((rule, next));
            }
            c.rules = rules;
        }
        State::Map(m) => {
            check_transition(label, &m.next, m.end)?;
            check_retry(label, &m.retry)?;
            let processor = match (m.item_processor.take(), m.iterator.take()) {
                (Some(p), None) | (None, Some(p)) => p,
                (None, None) => return Err(err("ItemProcessor (or Iterator) is required")),
                (Some(_), Some(_)) => {
                    return Err(err("give ItemProcessor or Iterator, not both"));
                }
            };
            if let Some(mode) = processor
                .processor_config
                .as_ref()
                .and_then(|c| c.mode.as_ref())
            {
                if mode != "INLINE" {
                    return Err(err(&format!(
                        "ProcessorConfig.Mode {mode:?} is not supported (only INLINE)"
                    )));
                }
            }
            if m.item_selector.is_some() && m.parameters.is_some() {
                return Err(err("give ItemSelector or Parameters, not both"));
            }
            check_template(label, "ItemSelector", m.item_selector.as_ref())?;
            check_template(label, "Parameters", m.parameters.as_ref())?;
            check_template(label, "ResultSelector", m.result_selector.as_ref())?;
            let block = parse_block(&processor.start_at, processor.states, &format!("{label}/"))?;
            m.block = Some(Box::new(block));
        }
        State::Fail(f) => {
            if f.error.is_some() && f.error_path.is_some() {
                return Err(err("give Error or ErrorPath, not both"));
            }
            if f.cause.is_some() && f.cause_path.is_some() {
                return Err(err("give Cause or CausePath, not both"));
            }
        }
        State::Succeed(_) => {}
    }
    Ok(())
}

fn check_transition(label: &str, next: &Option<String>, end: bool) -> Result<()> {
    match (next, end) {
        (Some(_), false) | (None, true) => Ok(()),
        (Some(_), true) => Err(invalid(format!(
            "state {label:?}: give Next or End, not both"
        ))),
        (None, false) => Err(invalid(format!(
            "state {label:?}: Next or \"End\": true is required"
        ))),
    }
}

fn check_retry(label: &str, retry: &[Retrier]) -> Result<()> {
    for r in retry {
        if r.error_equals.is_empty() {
            return Err(invalid(format!(
                "state {label:?}: Retry ErrorEquals must not be empty"
            )));
        }
        if r.backoff_rate < 1.0 || r.interval_seconds < 0.0 {
            return Err(invalid(format!(
                "state {label:?}: Retry BackoffRate must be >= 1 and IntervalSeconds >= 0"
            )));
        }
    }
    Ok(())
}

/// Checks every `key.$` of a payload template: a path or a parsable intrinsic.
fn check_template(label: &str, field: &str, template: Option<&Value>) -> Result<()> {
    fn walk(v: &Value, at: &str) -> std::result::Result<(), String> {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k.ends_with(".$") {
                        let Value::String(expr) = v else {
                            return Err(format!("{at}.{k}: a `.$` key needs a string value"));
                        };
                        super::template::check_expression(expr)
                            .map_err(|e| format!("{at}.{k}: {e}"))?;
                    } else {
                        walk(v, &format!("{at}.{k}"))?;
                    }
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{at}[{i}]"))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    match template {
        Some(t) => walk(t, field).map_err(|m| invalid(format!("state {label:?}: {m}"))),
        None => Ok(()),
    }
}

/// Every StartAt/Next/Default/Catch target must exist in its block.
fn check_targets(block: &States, scope: &str) -> Result<()> {
    let exists = |target: &str, from: &str, field: &str| -> Result<()> {
        if block.states.contains_key(target) {
            Ok(())
        } else {
            Err(invalid(format!(
                "state {:?}: {field} {target:?} is not a state{}",
                format!("{scope}{from}"),
                if scope.is_empty() {
                    String::new()
                } else {
                    format!(" of {}", scope.trim_end_matches('/'))
                }
            )))
        }
    };
    if !block.states.contains_key(&block.start_at) {
        return Err(invalid(format!(
            "StartAt {:?} is not a state{}",
            block.start_at,
            if scope.is_empty() {
                String::new()
            } else {
                format!(" of {}", scope.trim_end_matches('/'))
            }
        )));
    }
    for (name, state) in &block.states {
        let catch: &[Catcher] = match state {
            State::Task(t) => &t.catch,
            State::Map(m) => &m.catch,
            State::Pass(_) | State::Wait(_) => &[],
            State::Choice(c) => {
                for (_, next) in &c.rules {
                    exists(next, name, "Next")?;
                }
                if let Some(d) = &c.default {
                    exists(d, name, "Default")?;
                }
                &[]
            }
            State::Succeed(_) | State::Fail(_) => &[],
        };
        if let Some(next) = state.transition().and_then(|t| t.next) {
            exists(next, name, "Next")?;
        }
        for c in catch {
            exists(&c.next, name, "Catch Next")?;
            if c.error_equals.is_empty() {
                return Err(invalid(format!(
                    "state {:?}: Catch ErrorEquals must not be empty",
                    format!("{scope}{name}")
                )));
            }
        }
    }
    Ok(())
}
