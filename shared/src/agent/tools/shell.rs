//! Tools that look at or run processes: `check_logs` and `run_command`.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{object_schema, parse_input, truncate_utf8, Tool, ToolOutput};
use crate::agent::model::ToolSpec;
use crate::error::{Error, Result};
use crate::sandbox::{ExecRequest, Sandbox};

/// Most bytes of command output returned to the model.
pub const MAX_COMMAND_OUTPUT: usize = 30_000;
/// Default and longest command timeouts.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest timeout the model may ask for.
pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Most log bytes returned by `check_logs`.
pub const MAX_LOG_BYTES: usize = 20_000;

#[derive(Deserialize)]
struct LogsInput {
    #[serde(default)]
    lines: Option<usize>,
}

/// `check_logs {lines?}`: the tail of the dev server's log.
pub struct CheckLogs;

#[async_trait]
impl Tool for CheckLogs {
    fn name(&self) -> &'static str {
        "check_logs"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "Show the last lines of the Vite dev server's log (compile errors, HMR \
                          updates). Use it after changes to see whether the app still compiles."
                .into(),
            input_schema: object_schema(
                json!({ "lines": { "type": "integer", "minimum": 1, "maximum": 500, "description": "How many lines (default 100)" } }),
                &[],
            ),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: LogsInput = parse_input(self.name(), input, r#"{"lines": 100}"#)?;
        let lines = i.lines.unwrap_or(100).clamp(1, 500);
        let mut log = sandbox.logs(lines).await?;
        if log.len() > MAX_LOG_BYTES {
            // The end of a log is what matters: keep the tail.
            let mut start = log.len() - MAX_LOG_BYTES;
            while !log.is_char_boundary(start) {
                start += 1;
            }
            log = format!("[earlier output cut]\n{}", &log[start..]);
        }
        if log.trim().is_empty() {
            log = "(the log is empty)".into();
        }
        Ok(ToolOutput::ok(log, "checked the dev server log"))
    }
}

#[derive(Deserialize)]
struct CommandInput {
    command: String,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

/// `run_command {command, timeout_secs?}`: a shell command in the project root.
pub struct RunCommand;

/// Whether `command` would start a second dev server (the sandbox already runs one).
fn starts_dev_server(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    let runs_dev = words
        .windows(2)
        .any(|w| matches!(w[0], "npm" | "pnpm" | "yarn" | "bun" | "run") && w[1] == "dev");
    let bare_vite = matches!(words.as_slice(), ["vite"] | ["npx", "vite"]);
    runs_dev || bare_vite
}

#[async_trait]
impl Tool for RunCommand {
    fn name(&self) -> &'static str {
        "run_command"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: format!(
                "Run a shell command in the project root inside the sandbox, e.g. `npm install zod` \
                 or `npx tsc --noEmit`. Output is capped at {MAX_COMMAND_OUTPUT} bytes. Never start \
                 the dev server: it is already running with hot reload."
            ),
            input_schema: object_schema(
                json!({
                    "command": { "type": "string", "description": "Command line, run with sh -c" },
                    "timeout_secs": { "type": "integer", "minimum": 1, "maximum": MAX_COMMAND_TIMEOUT.as_secs(), "description": "Kill it after this many seconds (default 120)" },
                }),
                &["command"],
            ),
        }
    }

    async fn run(&self, sandbox: &dyn Sandbox, input: &Value) -> Result<ToolOutput> {
        let i: CommandInput = parse_input(self.name(), input, r#"{"command": "npm install zod"}"#)?;
        let command = i.command.trim();
        if command.is_empty() {
            return Err(Error::InvalidInput("command is empty".into()));
        }
        if command.contains('\0') {
            return Err(Error::InvalidInput("command contains a NUL byte".into()));
        }
        if starts_dev_server(command) {
            return Err(Error::InvalidInput(
                "the dev server is already running with hot reload; do not start another. \
                 Use check_logs to see its output"
                    .into(),
            ));
        }
        let timeout = i
            .timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT)
            .clamp(Duration::from_secs(1), MAX_COMMAND_TIMEOUT);
        let out = sandbox
            .exec(&ExecRequest {
                command: command.to_string(),
                timeout,
                max_output: MAX_COMMAND_OUTPUT,
            })
            .await?;
        let mut text = out.output;
        let cut = truncate_utf8(&mut text, MAX_COMMAND_OUTPUT) || out.truncated;
        if cut {
            text.push_str(&format!(
                "\n[output truncated at {MAX_COMMAND_OUTPUT} bytes]"
            ));
        }
        let status = if out.timed_out {
            format!("timed out after {}s and was killed", timeout.as_secs())
        } else {
            match out.exit_code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".to_string(),
            }
        };
        let is_error = out.timed_out || out.exit_code != Some(0);
        let shown: String = command.chars().take(80).collect();
        Ok(ToolOutput {
            content: format!("{status}\n{text}"),
            is_error,
            summary: if is_error {
                format!("ran {shown} ({status})")
            } else {
                format!("ran {shown}")
            },
            path: None,
            file_diff: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::starts_dev_server;

    #[test]
    fn dev_server_commands_are_recognised() {
        for c in [
            "npm run dev",
            "npm dev",
            "pnpm dev",
            "yarn dev",
            "vite",
            "npx vite",
            "cd . && npm run dev",
        ] {
            assert!(starts_dev_server(c), "{c}");
        }
        for c in [
            "npm install zod",
            "npx vite build",
            "npx tsc --noEmit",
            "npm run build",
        ] {
            assert!(!starts_dev_server(c), "{c}");
        }
    }
}
