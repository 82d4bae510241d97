//! The nouns of Apna: users, projects, conversation messages, runs, run events,
//! versions and workflow executions, plus the one place status transitions are
//! checked.
//!
//! Timestamps are UTC; the stores keep them as epoch milliseconds so SQLite,
//! PostgreSQL and DynamoDB hold identical values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// The user id in single-user mode (`apna serve` without `APNA_JWT_SECRET`).
pub const LOCAL_USER: &str = "local";

/// The starter a project begins from when the request names none (see `starter`).
pub const DEFAULT_TEMPLATE: &str = "app";

/// The current time, truncated to milliseconds (the stores' resolution), so a
/// value read back compares equal to the value written.
pub fn now() -> DateTime<Utc> {
    from_millis(Utc::now().timestamp_millis())
}

/// Epoch milliseconds to a UTC timestamp (out-of-range values clamp to the epoch).
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// A new project id: a UUID, which is also a valid DNS label for preview hosts.
pub fn new_project_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new run id: a time-ordered UUID (v7), also used as the execution name.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether `id` has the shape of an id we issue (so it is safe in hosts, keys and paths).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A person using Apna; `id` is the token's `sub`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Stable user id (JWT `sub`, or `local` in single-user mode).
    pub id: String,
    /// Optional e-mail address.
    pub email: Option<String>,
    /// When the user was first seen.
    pub created_at: DateTime<Utc>,
}

/// Lifecycle of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectStatus {
    /// Just created; no run has started yet.
    Creating,
    /// A run is generating or changing the app.
    Building,
    /// The app is built and the preview is (or can be) served.
    Ready,
    /// The last run failed; the project is still usable.
    Failed,
    /// The sandbox was removed after a verified snapshot; any access wakes it.
    Hibernated,
    /// Soft-deleted.
    Deleted,
}

impl ProjectStatus {
    /// The status as stored and sent over the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectStatus::Creating => "creating",
            ProjectStatus::Building => "building",
            ProjectStatus::Ready => "ready",
            ProjectStatus::Failed => "failed",
            ProjectStatus::Hibernated => "hibernated",
            ProjectStatus::Deleted => "deleted",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "creating" => ProjectStatus::Creating,
            "building" => ProjectStatus::Building,
            "ready" => ProjectStatus::Ready,
            "failed" => ProjectStatus::Failed,
            "hibernated" => ProjectStatus::Hibernated,
            "deleted" => ProjectStatus::Deleted,
            other => return Err(Error::Store(format!("unknown project status {other:?}"))),
        })
    }

    /// Whether a project may move from `self` to `next`. The one place this is decided.
    pub fn can_become(self, next: ProjectStatus) -> bool {
        use ProjectStatus::*;
        matches!(
            (self, next),
            (Creating, Building | Failed | Deleted)
                | (Building, Ready | Failed | Deleted)
                | (Ready, Building | Hibernated | Deleted)
                | (Failed, Building | Ready | Hibernated | Deleted)
                | (Hibernated, Ready | Building | Deleted)
        )
    }

    /// Checks a transition, with an error naming both ends.
    pub fn check_transition(self, next: ProjectStatus) -> Result<()> {
        if self.can_become(next) {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "project cannot go from {} to {}",
                self.as_str(),
                next.as_str()
            )))
        }
    }
}

/// An app being built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    /// Project id (UUID; also the preview host label).
    pub id: String,
    /// Owner's user id.
    pub owner: String,
    /// Display name, derived from the first prompt.
    pub name: String,
    /// The prompt the project was created from.
    pub prompt: String,
    /// Template name (`vite-react`).
    pub template: String,
    /// Lifecycle status.
    pub status: ProjectStatus,
    /// Last error shown to the user, when status is `failed`.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last modification of this record.
    pub updated_at: DateTime<Utc>,
    /// Last time a person or a run touched the project (drives hibernation).
    pub last_active: DateTime<Utc>,
    /// Set when soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Whether anyone with the link may open the preview (multi-user mode;
    /// otherwise the owner's signed preview token is needed).
    #[serde(default)]
    pub preview_public: bool,
}

impl Project {
    /// A new project in status `creating`.
    pub fn new(owner: &str, prompt: &str, template: &str) -> Self {
        let t = now();
        Project {
            id: new_project_id(),
            owner: owner.to_string(),
            name: name_from_prompt(prompt),
            prompt: prompt.to_string(),
            template: template.to_string(),
            status: ProjectStatus::Creating,
            error: None,
            created_at: t,
            updated_at: t,
            last_active: t,
            deleted_at: None,
            preview_public: false,
        }
    }
}

/// A short display name from a prompt: its first words, at most 48 characters.
pub fn name_from_prompt(prompt: &str) -> String {
    let words: Vec<&str> = prompt.split_whitespace().collect();
    let mut name = String::new();
    for w in words {
        if name.chars().count() + w.chars().count() + 1 > 48 {
            break;
        }
        if !name.is_empty() {
            name.push(' ');
        }
        name.push_str(w);
    }
    if name.is_empty() {
        let cut: String = prompt.trim().chars().take(48).collect();
        if cut.is_empty() {
            return "Untitled app".into();
        }
        return cut;
    }
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => name,
    }
}

/// Who wrote a conversation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person, or tool results sent back to the model.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// Parses a stored role.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            other => Err(Error::Store(format!("unknown role {other:?}"))),
        }
    }
}

/// One block of message content, in the Anthropic Messages shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// The model asks for a tool call.
    ToolUse {
        /// Tool-use id, echoed by the matching result.
        id: String,
        /// Tool name.
        name: String,
        /// Tool arguments.
        #[schema(value_type = Object)]
        input: Value,
    },
    /// An image: a stored one in messages, inlined as base64 in model requests.
    Image {
        /// Where the image's bytes are.
        source: ImageSource,
    },
    /// The element the person selected in the preview; the model gets it as text.
    Selection {
        /// What was selected.
        selection: ElementSelection,
    },
    /// The result of a tool call, sent back to the model.
    ToolResult {
        /// The id of the `tool_use` this answers.
        tool_use_id: String,
        /// Result text.
        content: String,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

/// Where an image block's bytes are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// In the project's blob store (how messages keep images).
    Stored(ImageRef),
    /// Inline, as the Messages API takes it (only in model requests).
    Base64 {
        /// `image/png`, `image/jpeg`, `image/webp` or `image/gif`.
        media_type: String,
        /// The image, base64.
        data: String,
    },
}

/// A stored image, as a message refers to it (see `crate::images`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageRef {
    /// Lower-case hex SHA-256 of the stored bytes; read it at
    /// `GET /api/projects/{id}/images/{image_id}`.
    pub id: String,
    /// The stored image's type: `image/png`, `image/jpeg`, `image/webp` or `image/gif`.
    pub media_type: String,
    /// Width in pixels, after any scaling.
    pub width: u32,
    /// Height in pixels, after any scaling.
    pub height: u32,
    /// Stored size in bytes.
    pub size: u64,
}

impl ImageRef {
    /// Input tokens the model counts for it: `width × height / 750`, as Anthropic documents.
    pub fn estimated_tokens(&self) -> u64 {
        (u64::from(self.width) * u64::from(self.height)).div_ceil(750)
    }
}

/// Longest `path:line:column` of an element ([`ElementSelection::source`],
/// a text edit's `source`), in characters: its path then stays within the
/// 1,024 bytes a project path may have.
pub const MAX_SOURCE_CHARS: usize = 256;

/// Where an element is written, `src/App.tsx:12:5`: a relative path whose
/// segments do not start with `.` or `~` and hold no `\`, `:` or control
/// character, then a 1-based line and column of at most nine digits without
/// leading zeros. The OpenAPI document carries the same rule as a pattern
/// ([`SOURCE_PATTERN`]; a test checks the two agree).
pub fn source_location(source: &str) -> Option<(&str, u32, u32)> {
    fn number(s: &str) -> Option<u32> {
        let ok = (1..=9).contains(&s.len())
            && !s.starts_with('0')
            && s.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| s.parse().ok()).flatten()
    }
    fn segment(s: &str) -> bool {
        !s.is_empty()
            && !s.starts_with(['.', '~'])
            && !s.chars().any(|c| matches!(c, '\\' | ':') || c.is_control())
    }
    if source.chars().count() > MAX_SOURCE_CHARS {
        return None;
    }
    let mut parts = source.rsplitn(3, ':');
    let col = number(parts.next()?)?;
    let line = number(parts.next()?)?;
    let path = parts.next()?;
    path.split('/').all(segment).then_some((path, line, col))
}

/// [`source_location`]'s rule as an OpenAPI (ECMA-262) pattern.
pub const SOURCE_PATTERN: &str = r"^[^/\\:.~\x00-\x1F\x7F-\x9F][^/\\:\x00-\x1F\x7F-\x9F]*(/[^/\\:.~\x00-\x1F\x7F-\x9F][^/\\:\x00-\x1F\x7F-\x9F]*)*:[1-9][0-9]{0,8}:[1-9][0-9]{0,8}$";

/// An element the person picked in the preview with "Select".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ElementSelection {
    /// Where the element is written: `path:line:column` (1-based), e.g.
    /// `src/App.tsx:12:5`, as the preview's `data-apna-src` gives it. The
    /// path is relative; its segments do not start with `.` or `~`.
    #[schema(
        max_length = 256,
        pattern = r"^[^/\\:.~\x00-\x1F\x7F-\x9F][^/\\:\x00-\x1F\x7F-\x9F]*(/[^/\\:.~\x00-\x1F\x7F-\x9F][^/\\:\x00-\x1F\x7F-\x9F]*)*:[1-9][0-9]{0,8}:[1-9][0-9]{0,8}$",
        example = "src/App.tsx:12:5"
    )]
    pub source: String,
    /// Its tag name, e.g. `button`.
    #[schema(
        min_length = 1,
        max_length = 40,
        pattern = "^[A-Za-z0-9-]+$",
        example = "h1"
    )]
    pub tag: String,
    /// Its `class` attribute. NUL characters are stored as U+FFFD.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub classes: String,
    /// Its text (shortened by the preview). NUL characters are stored as U+FFFD.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub text: String,
}

impl ElementSelection {
    /// Longest `classes` or `text` accepted.
    pub const MAX_TEXT: usize = 1000;

    /// The file, line and column of [`ElementSelection::source`], when it has that shape.
    pub fn location(&self) -> Option<(&str, u32, u32)> {
        source_location(&self.source)
    }

    /// The selection checked (the rules the OpenAPI document states), with
    /// NUL characters replaced as in prompts; the path is checked where a
    /// file is read.
    pub fn checked(mut self) -> Result<Self> {
        let bad = |m: String| Err(Error::InvalidInput(format!("selection: {m}")));
        if self.location().is_none() {
            return bad(format!(
                "source must look like src/App.tsx:12:5 (at most {MAX_SOURCE_CHARS} characters), got {:?}",
                self.source.chars().take(80).collect::<String>()
            ));
        }
        if self.tag.is_empty()
            || self.tag.len() > 40
            || !self
                .tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("tag must be an HTML tag name such as h1 or button".into());
        }
        if self.classes.chars().count() > Self::MAX_TEXT
            || self.text.chars().count() > Self::MAX_TEXT
        {
            return bad(format!(
                "classes and text may have at most {} characters",
                Self::MAX_TEXT
            ));
        }
        self.classes = self.classes.replace('\0', "\u{FFFD}");
        self.text = self.text.replace('\0', "\u{FFFD}");
        Ok(self)
    }

    /// The selection as the model reads it: a tag with the facts, then one sentence.
    pub fn describe(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('"', "&quot;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let at = match self.location() {
            Some((path, line, col)) => format!("{path} line {line}, column {col}"),
            None => esc(&self.source),
        };
        format!(
            "<selected_element source=\"{}\" tag=\"{}\" class=\"{}\">{}</selected_element>\n\
             The person selected this element in the preview: the <{}> written at {at}. \
             Their message is about it; change that element in that file.",
            esc(&self.source),
            esc(&self.tag),
            esc(&self.classes),
            esc(&self.text),
            esc(&self.tag),
        )
    }
}

/// What happened to a file in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileAction {
    /// The file did not exist before.
    Create,
    /// The file changed.
    Update,
    /// The file was removed.
    Delete,
}

/// A change to one file, as in the seed's `file_diffs`, plus a unified diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileDiff {
    /// Path relative to the project root.
    pub path: String,
    /// Create, update or delete.
    pub action: FileAction,
    /// Size in bytes after the change (0 for deletes).
    pub size: u64,
    /// Lines added.
    pub added: u32,
    /// Lines removed.
    pub removed: u32,
    /// Unified diff (absent for binary files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// A stored conversation message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// Message id.
    pub id: String,
    /// Project the conversation belongs to.
    pub project_id: String,
    /// The run that produced it, if any.
    pub run_id: Option<String>,
    /// Position in the project's conversation, from 1.
    pub seq: i64,
    /// Author.
    pub role: Role,
    /// Content blocks (text, tool_use, tool_result).
    pub content: Vec<ContentBlock>,
    /// Tool calls with their outputs, as in the seed (`[{tool, input, output}]`).
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<Value>,
    /// File changes this message made.
    pub file_diffs: Vec<FileDiff>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// A message to append; the store assigns id, seq and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Run that produced it.
    pub run_id: Option<String>,
    /// Author.
    pub role: Role,
    /// Content blocks.
    pub content: Vec<ContentBlock>,
    /// Tool calls with outputs.
    pub tool_calls: Vec<Value>,
    /// File changes.
    pub file_diffs: Vec<FileDiff>,
}

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, the workflow has not started it yet.
    Queued,
    /// The workflow is executing it.
    Running,
    /// Finished; a version was recorded.
    Succeeded,
    /// Stopped with an error.
    Failed,
    /// Stopped by the person.
    Cancelled,
}

impl RunStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            other => return Err(Error::Store(format!("unknown run status {other:?}"))),
        })
    }

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// Tokens used by model calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: i64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: i64,
}

impl Usage {
    /// Adds another call's usage.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }
}

/// One generation: a create or a chat message, carried out by one workflow execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// Run id (also the execution name).
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Owner's user id.
    pub owner: String,
    /// The person's message that started it.
    pub message: String,
    /// Status.
    pub status: RunStatus,
    /// Agent steps taken (model calls).
    pub step: i64,
    /// Verify attempts made.
    pub attempts: i64,
    /// Token usage, summed over the run.
    pub usage: Usage,
    /// Cost in US dollars, summed over the run.
    pub cost_usd: f64,
    /// Why the run stopped, when it did not simply finish.
    pub stop_reason: Option<String>,
    /// Error shown to the person when it failed.
    pub error: Option<String>,
    /// The model's closing summary.
    pub summary: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Run {
    /// A new queued run.
    pub fn new(project_id: &str, owner: &str, message: &str) -> Self {
        let t = now();
        Run {
            id: new_run_id(),
            project_id: project_id.to_string(),
            owner: owner.to_string(),
            message: message.to_string(),
            status: RunStatus::Queued,
            step: 0,
            attempts: 0,
            usage: Usage::default(),
            cost_usd: 0.0,
            stop_reason: None,
            error: None,
            summary: None,
            created_at: t,
            updated_at: t,
            finished_at: None,
        }
    }
}

/// An event of a run, ordered by `seq`, streamed to the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunEvent {
    /// The run.
    pub run_id: String,
    /// Position in the run's event stream, from 1.
    pub seq: i64,
    /// Event kind: `status`, `text`, `tool`, `diagnostics`, `usage`, `done`, `error`.
    #[schema(value_type = String)]
    pub kind: RunEventKind,
    /// Event payload.
    #[schema(value_type = Object)]
    pub data: Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// What a [`RunEvent`] reports. Stored and sent as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunEventKind {
    /// A phase change (`queued`, `sandbox`, `agent`, `verify`, `finalize`) with a line for people.
    Status,
    /// A batch of streamed model text (`restart: true` discards what came before).
    Delta,
    /// The model's complete text of one step.
    Text,
    /// One tool call and its summary.
    Tool,
    /// The build check's findings.
    Diagnostics,
    /// Tokens and cost of one model call, and the run's totals.
    Usage,
    /// The run ended; always the last event.
    Done,
    /// The event stream itself failed (sent by the API, never stored).
    Error,
}

impl RunEventKind {
    /// Every kind, in declaration order.
    pub const ALL: [RunEventKind; 8] = [
        RunEventKind::Status,
        RunEventKind::Delta,
        RunEventKind::Text,
        RunEventKind::Tool,
        RunEventKind::Diagnostics,
        RunEventKind::Usage,
        RunEventKind::Done,
        RunEventKind::Error,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunEventKind::Status => "status",
            RunEventKind::Delta => "delta",
            RunEventKind::Text => "text",
            RunEventKind::Tool => "tool",
            RunEventKind::Diagnostics => "diagnostics",
            RunEventKind::Usage => "usage",
            RunEventKind::Done => "done",
            RunEventKind::Error => "error",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Result<RunEventKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::Store(format!("unknown run event kind {s:?}")))
    }

    /// Whether nothing follows an event of this kind in a run's stream.
    pub fn is_terminal(self) -> bool {
        self == RunEventKind::Done
    }
}

impl std::fmt::Display for RunEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RunEventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl RunEvent {
    /// Whether this event ends its run's stream.
    pub fn is_terminal(&self) -> bool {
        self.kind.is_terminal()
    }
}

/// A finished run's snapshot of the project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Version {
    /// Project.
    pub project_id: String,
    /// Version number, from 1.
    pub number: i64,
    /// The run that produced it (none for a restore).
    pub run_id: Option<String>,
    /// Blob-store key of the snapshot manifest.
    pub snapshot_key: String,
    /// Summary shown in the version list.
    pub summary: String,
    /// Files changed against the previous version.
    pub file_diffs: Vec<FileDiff>,
    /// The app as the browser check after Verify saw it (desktop first);
    /// empty when the check was skipped or the build never passed.
    #[serde(default)]
    pub screenshots: Vec<Screenshot>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// A project's published site: what serves now and what is being published.
///
/// The site's files live in the blob store (see `publish`); this row says
/// which version serves under which slug, and holds at most one publish in
/// progress (`job`), so two publishes of one project cannot interleave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Site {
    /// Project.
    pub project_id: String,
    /// The slug the site serves under; `None` when not published.
    pub slug: Option<String>,
    /// The version that serves.
    pub version: Option<i64>,
    /// The deploy (build output) that serves.
    pub deploy_id: Option<String>,
    /// When the serving version was published.
    pub published_at: Option<DateTime<Utc>>,
    /// The publish in progress (its workflow execution name), if any.
    pub job: Option<String>,
    /// The version the publish in progress will serve.
    pub pending_version: Option<i64>,
    /// The slug the publish in progress will serve under.
    pub pending_slug: Option<String>,
    /// When the publish in progress started.
    pub pending_since: Option<DateTime<Utc>>,
    /// Why the last publish failed (cleared by the next success).
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Site {
    /// A project's site before its first publish.
    pub fn new(project_id: &str) -> Self {
        Site {
            project_id: project_id.to_string(),
            slug: None,
            version: None,
            deploy_id: None,
            published_at: None,
            job: None,
            pending_version: None,
            pending_slug: None,
            pending_since: None,
            last_error: None,
            updated_at: now(),
        }
    }
}

/// A screenshot of a version's running app, stored by content in the blob
/// store (`projects/{id}/screenshots/{sha256}.png`) and served by
/// `GET /api/projects/{id}/screenshots/{sha256}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Screenshot {
    /// `desktop` (1280×800) or `phone` (390×844).
    pub viewport: String,
    /// Width in CSS pixels.
    pub width: u32,
    /// Height in CSS pixels.
    pub height: u32,
    /// SHA-256 of the PNG, lowercase hex: its name in the blob store.
    pub sha256: String,
    /// Size of the PNG in bytes.
    pub bytes: u64,
}

impl Screenshot {
    /// Where the PNG of `sha256` is kept for `project_id`.
    pub fn blob_key(project_id: &str, sha256: &str) -> String {
        format!("projects/{project_id}/screenshots/{sha256}.png")
    }

    /// Whether `s` can name a screenshot (64 lowercase hex digits).
    pub fn is_valid_sha256(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

/// Status of a workflow execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Still executing.
    Running,
    /// Reached a Succeed or end state.
    Succeeded,
    /// Reached a Fail state or an uncaught error.
    Failed,
    /// Stopped from outside.
    Aborted,
    /// Exceeded its TimeoutSeconds.
    TimedOut,
}

impl ExecutionStatus {
    /// The status as stored (Step Functions' spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::Aborted => "ABORTED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "RUNNING" => ExecutionStatus::Running,
            "SUCCEEDED" => ExecutionStatus::Succeeded,
            "FAILED" => ExecutionStatus::Failed,
            "ABORTED" => ExecutionStatus::Aborted,
            "TIMED_OUT" => ExecutionStatus::TimedOut,
            other => return Err(Error::Store(format!("unknown execution status {other:?}"))),
        })
    }
}

/// A workflow execution (one per run for the generation state machine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Execution {
    /// Execution name (the run id for generations).
    pub id: String,
    /// State machine name, e.g. `generation`.
    pub state_machine: String,
    /// Status.
    pub status: ExecutionStatus,
    /// Execution input.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Output when succeeded.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Error name and cause when failed.
    pub error: Option<String>,
    /// Where to resume after a restart: `{ "state": name, "input": value }`.
    #[schema(value_type = Option<Object>)]
    pub checkpoint: Option<Value>,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

/// One entry of an execution's history, like the Step Functions console's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEvent {
    /// Execution.
    pub execution_id: String,
    /// Position, from 1.
    pub seq: i64,
    /// e.g. `StateEntered`, `TaskScheduled`, `TaskSucceeded`, `StateExited`.
    pub event_type: String,
    /// The state it concerns, if any.
    pub state_name: Option<String>,
    /// Input, output or error details.
    #[schema(value_type = Object)]
    pub data: Value,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
}

/// A page request: at most `limit` items after the opaque `cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Items to return (clamped to 1..=200 by stores).
    pub limit: i64,
    /// Offset into the ordered list.
    pub offset: i64,
}

impl Page {
    /// The largest page a store returns.
    pub const MAX: i64 = 200;

    /// A page with limits clamped to sane values.
    pub fn new(limit: i64, offset: i64) -> Self {
        Page {
            limit: limit.clamp(1, Self::MAX),
            offset: offset.max(0),
        }
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::new(50, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_checked() {
        use ProjectStatus::*;
        assert!(Creating.can_become(Building));
        assert!(Ready.can_become(Hibernated));
        assert!(Hibernated.can_become(Ready));
        assert!(!Deleted.can_become(Ready));
        assert!(!Building.can_become(Hibernated));
        assert!(!Ready.can_become(Ready));
        assert!(Deleted.check_transition(Building).is_err());
    }

    #[test]
    fn names_come_from_prompts() {
        assert_eq!(
            name_from_prompt("a habit tracker with a dark theme"),
            "A habit tracker with a dark theme"
        );
        assert_eq!(name_from_prompt("   "), "Untitled app");
        assert!(name_from_prompt(&"word ".repeat(50)).chars().count() <= 48);
    }

    #[test]
    fn ids_are_dns_labels() {
        assert!(is_valid_id(&new_project_id()));
        assert!(is_valid_id(&new_run_id()));
        assert!(!is_valid_id("../x"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"a".repeat(64)));
    }
}
