//! Items: key formats, typed attribute access, and each entity as an item.
//!
//! Times are epoch milliseconds (`N`), JSON-valued fields are JSON text (`S`),
//! as in the SQL stores, so every backend holds the same values. Attributes
//! that only exist to feed an index (see the module doc of `dynamodb`) are
//! written here too, so an entity and its index entries cannot drift apart.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{
    from_millis, ContentBlock, Execution, ExecutionStatus, FileDiff, HistoryEvent, Message,
    Project, ProjectStatus, Role, Run, RunEvent, RunEventKind, RunStatus, Usage, User, Version,
};
use crate::error::{Error, Result};

/// One DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

/// Partition key.
pub(super) const PK: &str = "pk";
/// Sort key.
pub(super) const SK: &str = "sk";
/// Blob key of attributes moved to the blob store (see `overflow`).
pub(super) const SPILL: &str = "spill";
/// Epoch seconds after which DynamoDB's TTL deletes the item (run events).
pub(super) const EXPIRES_AT: &str = "expires_at";

/// `by_owner`: an owner's projects that are not deleted, by last activity.
pub(super) const OWNER_KEY: &str = "owner_key";
pub(super) const ACTIVITY_KEY: &str = "activity_key";
/// `by_project`: a project's runs, by creation.
pub(super) const PROJECT_KEY: &str = "project_key";
pub(super) const CREATED_KEY: &str = "created_key";
/// `by_spender`: an owner's runs, by creation time (daily spend).
pub(super) const SPEND_OWNER: &str = "spend_owner";
pub(super) const SPEND_AT: &str = "spend_at";
/// `by_state`: items in a state a sweep or a quota looks for.
pub(super) const STATE_KEY: &str = "state_key";
pub(super) const STATE_AT: &str = "state_at";

/// `state_key` of projects hibernation may pick (ready or failed, not deleted).
pub(super) const STATE_IDLE: &str = "IDLE";
/// `state_key` of soft-deleted projects awaiting purge.
pub(super) const STATE_DELETED: &str = "DELETED";
/// `state_key` of projects a run is building (where a stuck run would show).
pub(super) const STATE_BUSY: &str = "BUSY";
/// `state_key` of executions still running.
pub(super) const STATE_RUNNING: &str = "RUNNING";

/// Sort-key prefixes of numbered children.
pub(super) const MSG: &str = "MSG#";
pub(super) const EVENT: &str = "EVENT#";
pub(super) const VERSION: &str = "VERSION#";
pub(super) const HIST: &str = "HIST#";
pub(super) const STEP: &str = "STEP#";

/// Sort keys of the root item of each partition.
pub(super) const USER_ROOT: &str = "USER";
pub(super) const PROJECT_ROOT: &str = "PROJECT";
pub(super) const RUN_ROOT: &str = "RUN";
pub(super) const EXEC_ROOT: &str = "EXEC";
/// Sort key of a project's run lock.
pub(super) const LOCK: &str = "LOCK";

pub(super) fn user_pk(id: &str) -> String {
    format!("USER#{id}")
}
pub(super) fn project_pk(id: &str) -> String {
    format!("PROJECT#{id}")
}
pub(super) fn run_pk(id: &str) -> String {
    format!("RUN#{id}")
}
pub(super) fn exec_pk(id: &str) -> String {
    format!("EXEC#{id}")
}

/// The id in a partition key (`PROJECT#abc` → `abc`).
pub(super) fn id_of(pk: &str) -> &str {
    pk.split_once('#').map_or(pk, |(_, id)| id)
}

/// A numbered sort key; zero-padded so string order is number order.
pub(super) fn numbered(prefix: &str, n: i64) -> String {
    format!("{prefix}{n:012}")
}

/// `state_key` of an owner's runs that have not ended (the active-runs cap).
pub(super) fn state_active(owner: &str) -> String {
    format!("ACTIVE#{owner}")
}

/// A sort key by time then id, so equal times still order the same way every time.
pub(super) fn time_key(t: DateTime<Utc>, id: &str) -> String {
    format!("{:015}#{id}", t.timestamp_millis().max(0))
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
pub(super) fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
pub(super) fn ms(t: DateTime<Utc>) -> AttributeValue {
    n(t.timestamp_millis())
}
pub(super) fn json(v: &impl Serialize) -> Result<AttributeValue> {
    serde_json::to_string(v)
        .map(AttributeValue::S)
        .map_err(|e| Error::Internal(format!("serialize: {e}")))
}

/// The key of an item (its `pk` and `sk`).
pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

/// Typed reads of an item's attributes; a wrong or missing one is a store error.
pub(super) trait Attrs {
    fn get_s(&self, name: &str) -> Result<&str>;
    fn opt_s(&self, name: &str) -> Option<String>;
    fn get_i64(&self, name: &str) -> Result<i64>;
    fn opt_i64(&self, name: &str) -> Result<Option<i64>>;
    fn get_f64(&self, name: &str) -> Result<f64>;
    fn get_time(&self, name: &str) -> Result<DateTime<Utc>> {
        Ok(from_millis(self.get_i64(name)?))
    }
    fn get_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        serde_json::from_str(self.get_s(name)?)
            .map_err(|e| Error::Store(format!("corrupt JSON attribute {name}: {e}")))
    }
}

impl Attrs for Item {
    fn get_s(&self, name: &str) -> Result<&str> {
        match self.get(name) {
            Some(AttributeValue::S(v)) => Ok(v),
            _ => Err(Error::Store(format!("item has no string attribute {name}"))),
        }
    }
    fn opt_s(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        }
    }
    fn get_i64(&self, name: &str) -> Result<i64> {
        self.opt_i64(name)?
            .ok_or_else(|| Error::Store(format!("item has no number attribute {name}")))
    }
    fn opt_i64(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::Store(format!("attribute {name} is not an integer: {v}"))),
            _ => Ok(None),
        }
    }
    fn get_f64(&self, name: &str) -> Result<f64> {
        match self.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| Error::Store(format!("attribute {name} is not a number: {v}"))),
            _ => Err(Error::Store(format!("item has no number attribute {name}"))),
        }
    }
}

fn put_opt(item: &mut Item, name: &str, v: Option<AttributeValue>) {
    if let Some(v) = v {
        item.insert(name.to_string(), v);
    }
}

pub(super) fn user_item(u: &User) -> Item {
    let mut item = key(user_pk(&u.id), USER_ROOT);
    item.insert("id".into(), s(&u.id));
    put_opt(&mut item, "email", u.email.as_ref().map(s));
    item.insert("created_at".into(), ms(u.created_at));
    item
}

pub(super) fn user_from(item: &Item) -> Result<User> {
    Ok(User {
        id: item.get_s("id")?.to_string(),
        email: item.opt_s("email"),
        created_at: item.get_time("created_at")?,
    })
}

/// The index attributes a project's status puts it under in `by_state`.
pub(super) fn project_state(p: &Project) -> Option<(&'static str, DateTime<Utc>)> {
    match (p.deleted_at, p.status) {
        (Some(at), _) => Some((STATE_DELETED, at)),
        (None, ProjectStatus::Ready | ProjectStatus::Failed) => Some((STATE_IDLE, p.last_active)),
        (None, ProjectStatus::Building) => Some((STATE_BUSY, p.updated_at)),
        _ => None,
    }
}

pub(super) fn project_item(p: &Project) -> Item {
    let mut item = key(project_pk(&p.id), PROJECT_ROOT);
    item.insert("id".into(), s(&p.id));
    item.insert("owner".into(), s(&p.owner));
    item.insert("name".into(), s(&p.name));
    item.insert("prompt".into(), s(&p.prompt));
    item.insert("template".into(), s(&p.template));
    item.insert("status".into(), s(p.status.as_str()));
    put_opt(&mut item, "error", p.error.as_ref().map(s));
    item.insert("created_at".into(), ms(p.created_at));
    item.insert("updated_at".into(), ms(p.updated_at));
    item.insert("last_active".into(), ms(p.last_active));
    put_opt(&mut item, "deleted_at", p.deleted_at.map(ms));
    item.insert(
        "preview_public".into(),
        AttributeValue::Bool(p.preview_public),
    );
    if p.deleted_at.is_none() {
        item.insert(OWNER_KEY.into(), s(&p.owner));
    }
    item.insert(ACTIVITY_KEY.into(), s(time_key(p.last_active, &p.id)));
    if let Some((state, at)) = project_state(p) {
        item.insert(STATE_KEY.into(), s(state));
        item.insert(STATE_AT.into(), ms(at));
    }
    item
}

pub(super) fn project_from(item: &Item) -> Result<Project> {
    Ok(Project {
        id: item.get_s("id")?.to_string(),
        owner: item.get_s("owner")?.to_string(),
        name: item.get_s("name")?.to_string(),
        prompt: item.get_s("prompt")?.to_string(),
        template: item.get_s("template")?.to_string(),
        status: ProjectStatus::parse(item.get_s("status")?)?,
        error: item.opt_s("error"),
        created_at: item.get_time("created_at")?,
        updated_at: item.get_time("updated_at")?,
        last_active: item.get_time("last_active")?,
        deleted_at: item.opt_i64("deleted_at")?.map(from_millis),
        // Items written before sharing existed have no attribute: private.
        preview_public: matches!(item.get("preview_public"), Some(AttributeValue::Bool(true))),
    })
}

pub(super) fn run_is_active(status: RunStatus) -> bool {
    !status.is_terminal()
}

pub(super) fn run_item(r: &Run) -> Item {
    let mut item = key(run_pk(&r.id), RUN_ROOT);
    item.insert("id".into(), s(&r.id));
    item.insert("project_id".into(), s(&r.project_id));
    item.insert("owner".into(), s(&r.owner));
    item.insert("message".into(), s(&r.message));
    item.extend(run_mutable(r));
    item.insert("created_at".into(), ms(r.created_at));
    item.insert("updated_at".into(), ms(r.updated_at));
    item.insert(PROJECT_KEY.into(), s(&r.project_id));
    item.insert(CREATED_KEY.into(), s(time_key(r.created_at, &r.id)));
    item.insert(SPEND_OWNER.into(), s(&r.owner));
    item.insert(SPEND_AT.into(), ms(r.created_at));
    if run_is_active(r.status) {
        item.insert(STATE_KEY.into(), s(state_active(&r.owner)));
        item.insert(STATE_AT.into(), ms(r.created_at));
    }
    item
}

/// The fields `update_run` overwrites that are always present.
pub(super) fn run_mutable(r: &Run) -> Item {
    let mut item = HashMap::from([
        ("status".to_string(), s(r.status.as_str())),
        ("step".to_string(), n(r.step)),
        ("attempts".to_string(), n(r.attempts)),
        ("input_tokens".to_string(), n(r.usage.input_tokens)),
        ("output_tokens".to_string(), n(r.usage.output_tokens)),
        (
            "cache_read_tokens".to_string(),
            n(r.usage.cache_read_tokens),
        ),
        (
            "cache_write_tokens".to_string(),
            n(r.usage.cache_write_tokens),
        ),
        ("cost_usd".to_string(), n(r.cost_usd)),
    ]);
    put_opt(&mut item, "stop_reason", r.stop_reason.as_ref().map(s));
    put_opt(&mut item, "error", r.error.as_ref().map(s));
    put_opt(&mut item, "summary", r.summary.as_ref().map(s));
    put_opt(&mut item, "finished_at", r.finished_at.map(ms));
    item
}

/// The optional fields `update_run` sets or clears.
pub(super) const RUN_OPTIONAL: [&str; 4] = ["stop_reason", "error", "summary", "finished_at"];

pub(super) fn run_from(item: &Item) -> Result<Run> {
    Ok(Run {
        id: item.get_s("id")?.to_string(),
        project_id: item.get_s("project_id")?.to_string(),
        owner: item.get_s("owner")?.to_string(),
        message: item.get_s("message")?.to_string(),
        status: RunStatus::parse(item.get_s("status")?)?,
        step: item.get_i64("step")?,
        attempts: item.get_i64("attempts")?,
        usage: Usage {
            input_tokens: item.get_i64("input_tokens")?,
            output_tokens: item.get_i64("output_tokens")?,
            cache_read_tokens: item.get_i64("cache_read_tokens")?,
            cache_write_tokens: item.get_i64("cache_write_tokens")?,
        },
        cost_usd: item.get_f64("cost_usd")?,
        stop_reason: item.opt_s("stop_reason"),
        error: item.opt_s("error"),
        summary: item.opt_s("summary"),
        created_at: item.get_time("created_at")?,
        updated_at: item.get_time("updated_at")?,
        finished_at: item.opt_i64("finished_at")?.map(from_millis),
    })
}

/// One message inside a batch item (seq and project come from the item).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredMessage {
    pub id: String,
    pub run_id: Option<String>,
    pub role: Role,
    pub content: Vec<ContentBlock>,
    pub tool_calls: Vec<Value>,
    pub file_diffs: Vec<FileDiff>,
}

/// The messages of a batch item, numbered from its `first` attribute.
pub(super) fn messages_from(item: &Item, project_id: &str) -> Result<Vec<Message>> {
    let first = item.get_i64("first")?;
    let created_at = item.get_time("created_at")?;
    let stored: Vec<StoredMessage> = item.get_json("msgs")?;
    Ok(stored
        .into_iter()
        .zip(first..)
        .map(|(m, seq)| Message {
            id: m.id,
            project_id: project_id.to_string(),
            run_id: m.run_id,
            seq,
            role: m.role,
            content: m.content,
            tool_calls: m.tool_calls,
            file_diffs: m.file_diffs,
            created_at,
        })
        .collect())
}

/// The last number a numbered item holds (a message batch holds several).
pub(super) fn last_number(item: &Item) -> Result<i64> {
    match item.opt_i64("n")? {
        Some(count) => Ok(item.get_i64("first")? + count - 1),
        None => item.get_i64("seq"),
    }
}

pub(super) fn event_from(item: &Item) -> Result<RunEvent> {
    Ok(RunEvent {
        run_id: item.get_s("run_id")?.to_string(),
        seq: item.get_i64("seq")?,
        kind: RunEventKind::parse(item.get_s("kind")?)?,
        data: item.get_json("data")?,
        created_at: item.get_time("created_at")?,
    })
}

pub(super) fn version_from(item: &Item) -> Result<Version> {
    Ok(Version {
        project_id: item.get_s("project_id")?.to_string(),
        number: item.get_i64("seq")?,
        run_id: item.opt_s("run_id"),
        snapshot_key: item.get_s("snapshot_key")?.to_string(),
        summary: item.get_s("summary")?.to_string(),
        file_diffs: item.get_json("file_diffs")?,
        screenshots: match item.opt_s("screenshots") {
            Some(_) => item.get_json("screenshots")?,
            None => Vec::new(),
        },
        created_at: item.get_time("created_at")?,
    })
}

pub(super) fn execution_item(e: &Execution) -> Result<Item> {
    let mut item = key(exec_pk(&e.id), EXEC_ROOT);
    item.insert("id".into(), s(&e.id));
    item.insert("state_machine".into(), s(&e.state_machine));
    item.insert("input".into(), json(&e.input)?);
    item.insert("started_at".into(), ms(e.started_at));
    item.extend(execution_mutable(e)?);
    if e.status == ExecutionStatus::Running {
        item.insert(STATE_KEY.into(), s(STATE_RUNNING));
        item.insert(STATE_AT.into(), ms(e.started_at));
    }
    Ok(item)
}

/// The fields `update_execution` overwrites that are present.
pub(super) fn execution_mutable(e: &Execution) -> Result<Item> {
    let mut item = HashMap::from([
        ("status".to_string(), s(e.status.as_str())),
        ("updated_at".to_string(), ms(e.updated_at)),
    ]);
    put_opt(
        &mut item,
        "output",
        e.output.as_ref().map(json).transpose()?,
    );
    put_opt(&mut item, "error", e.error.as_ref().map(s));
    put_opt(
        &mut item,
        "checkpoint",
        e.checkpoint.as_ref().map(json).transpose()?,
    );
    Ok(item)
}

/// The optional fields `update_execution` sets or clears.
pub(super) const EXECUTION_OPTIONAL: [&str; 3] = ["output", "error", "checkpoint"];

pub(super) fn execution_from(item: &Item) -> Result<Execution> {
    let opt_json = |name: &str| -> Result<Option<Value>> {
        match item.opt_s(name) {
            Some(_) => Ok(Some(item.get_json(name)?)),
            None => Ok(None),
        }
    };
    Ok(Execution {
        id: item.get_s("id")?.to_string(),
        state_machine: item.get_s("state_machine")?.to_string(),
        status: ExecutionStatus::parse(item.get_s("status")?)?,
        input: item.get_json("input")?,
        output: opt_json("output")?,
        error: item.opt_s("error"),
        checkpoint: opt_json("checkpoint")?,
        started_at: item.get_time("started_at")?,
        updated_at: item.get_time("updated_at")?,
    })
}

pub(super) fn history_from(item: &Item) -> Result<HistoryEvent> {
    Ok(HistoryEvent {
        execution_id: item.get_s("execution_id")?.to_string(),
        seq: item.get_i64("seq")?,
        event_type: item.get_s("event_type")?.to_string(),
        state_name: item.opt_s("state_name"),
        data: item.get_json("data")?,
        timestamp: item.get_time("timestamp")?,
    })
}

/// An item's size as DynamoDB counts it (names plus values), slightly over.
pub(super) fn size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        // A number takes at most 21 bytes however long its text.
        AttributeValue::N(_) => 21,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::L(l) => 3 + l.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
        AttributeValue::Ss(l) => l.iter().map(String::len).sum(),
        AttributeValue::Ns(l) => 21 * l.len(),
        AttributeValue::Bs(l) => l.iter().map(|b| b.as_ref().len()).sum(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_keys_sort_as_numbers() {
        let mut keys: Vec<String> = [10, 2, 1, 100, 99]
            .iter()
            .map(|&i| numbered(EVENT, i))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [1, 2, 10, 99, 100].map(|i| numbered(EVENT, i)).to_vec()
        );
        assert_eq!(id_of(&project_pk("abc-1")), "abc-1");
    }

    #[test]
    fn a_project_is_indexed_by_its_state() {
        let mut p = Project::new("alice", "a todo app", "vite-react");
        let item = project_item(&p);
        assert!(!item.contains_key(STATE_KEY), "creating is not idle");
        assert_eq!(project_from(&item).unwrap(), p);
        p.status = ProjectStatus::Ready;
        assert_eq!(project_item(&p).get_s(STATE_KEY).unwrap(), STATE_IDLE);
        p.deleted_at = Some(crate::domain::now());
        p.status = ProjectStatus::Deleted;
        let item = project_item(&p);
        assert_eq!(item.get_s(STATE_KEY).unwrap(), STATE_DELETED);
        assert!(
            !item.contains_key(OWNER_KEY),
            "deleted projects leave the owner's list"
        );
        assert_eq!(project_from(&item).unwrap(), p);
    }

    #[test]
    fn runs_and_executions_round_trip() {
        let mut r = Run::new("p", "alice", "make it blue");
        r.cost_usd = 0.0123;
        r.summary = Some("done".into());
        let item = run_item(&r);
        assert_eq!(run_from(&item).unwrap(), r);
        assert_eq!(item.get_s(STATE_KEY).unwrap(), "ACTIVE#alice");
        r.status = RunStatus::Succeeded;
        assert!(!run_item(&r).contains_key(STATE_KEY));
        let e = Execution {
            id: "x".into(),
            state_machine: "generation".into(),
            status: ExecutionStatus::Running,
            input: serde_json::json!({"a": 1}),
            output: None,
            error: None,
            checkpoint: Some(serde_json::json!({"state": "S"})),
            started_at: crate::domain::now(),
            updated_at: crate::domain::now(),
        };
        assert_eq!(execution_from(&execution_item(&e).unwrap()).unwrap(), e);
    }
}
