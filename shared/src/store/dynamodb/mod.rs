//! The DynamoDB store (`DATABASE_URL=dynamodb://<table>`): the serverless
//! deployment's database, with no server, VPC or connection pool.
//!
//! # One table
//!
//! Every entity lives in one table keyed by `pk` (partition) and `sk` (sort),
//! so the things read together share a partition and come back in one Query:
//!
//! | entity | `pk` | `sk` |
//! |---|---|---|
//! | user | `USER#{id}` | `USER` |
//! | project | `PROJECT#{id}` | `PROJECT` |
//! | run lock | `PROJECT#{id}` | `LOCK` |
//! | messages appended together | `PROJECT#{id}` | `MSG#{first seq}` |
//! | version | `PROJECT#{id}` | `VERSION#{number}` |
//! | run | `RUN#{id}` | `RUN` |
//! | run event | `RUN#{id}` | `EVENT#{seq}` |
//! | step result | `RUN#{id}` | `STEP#{key}` |
//! | execution | `EXEC#{id}` | `EXEC` |
//! | history event | `EXEC#{id}` | `HIST#{seq}` |
//! | site, slug claims | see [`site`] | |
//!
//! Numbers in sort keys are zero-padded to 12 digits so string order is
//! number order. The definition (keys, indexes, TTL) is data in
//! `infra/dynamodb-table.json`, which the SAM template must match.
//!
//! # Indexes: sparse, and only for what is listed or swept
//!
//! An item is in a global secondary index only while it has that index's key
//! attributes, so each index holds just the items a query wants:
//!
//! - `by_owner` (`owner_key`, `activity_key` = last activity + id; all
//!   attributes): an owner's projects that are not deleted, most recent first —
//!   the project list. Deleting a project removes `owner_key`.
//! - `by_project` (`project_key`, `created_key`; keys only): a project's runs,
//!   newest first — the runs list, and the runs a purge must find.
//! - `by_spender` (`spend_owner`, `spend_at`; keys only): an owner's runs by
//!   creation time — the daily budget sums today's runs' cost.
//! - `by_state` (`state_key`, `state_at`; keys only): items in a state a sweep
//!   or a cap looks for — `IDLE` projects by last activity (hibernation),
//!   `DELETED` projects by deletion time (purge), `BUSY` projects by the time
//!   their run began (the sweep's reconciliation of stuck runs), `RUNNING` executions (resume
//!   after a restart), `ACTIVE#{owner}` runs (the active-runs cap). The key
//!   attributes are set and removed with the status.
//!
//! Keys-only indexes are not rewritten when a run's counters or an
//! execution's checkpoint change (the hot writes); the few reads that need
//! the items fetch them with BatchGetItem. Index reads are eventually
//! consistent (usually well under a second behind): a project created a
//! moment ago may miss from a list, and the caps (projects, active runs) are
//! soft by that much. No request path scans the table.
//!
//! # Where DynamoDB differs from SQL
//!
//! - Duplicates, the run lock, status compare-and-set and first-write-wins
//!   step results are conditional writes; `ConditionalCheckFailed` becomes
//!   the same `Conflict` or `false` the SQL stores give.
//! - Sequence numbers (messages, events, versions, history) are taken as
//!   *last + 1* with a conditional put that fails if the number is taken, and
//!   a retry. An `ADD` counter was the other choice; it reserves a number
//!   before its item exists, so an SSE reader polling "events after n" could
//!   pass a number whose item lands a moment later and never see it (the
//!   delta forwarder appends while the step does). Conditional puts keep the
//!   visible numbers a dense prefix at every instant, and cost a read instead
//!   of a second write (reads are a fifth of the price).
//! - The messages one call appends (an assistant reply and its tool results)
//!   are one item, so they land together without a transaction (which would
//!   double the write cost, and which dynalite lacks).
//! - Items over the 400 KB item limit keep their large attributes in the blob
//!   store ([`overflow`]).
//! - `purge_project` cannot be one transaction (100 items at most): it deletes
//!   children first and the project item last, so a purge cut short is
//!   finished by the next call (`purge`).
//! - Run events carry `expires_at` (TTL, `APNA_EVENT_RETENTION_DAYS`), so old
//!   progress streams expire without a sweep.
//! - Paging: event `after` and message offsets are sort-key ranges (the
//!   numbers are dense); project and run lists read offset + limit index
//!   entries, following `LastEvaluatedKey`, and drop the first `offset`
//!   (bounded by the per-user project cap).
//! - `touch_project` records activity at most once a minute: a write that
//!   moves `last_active` rewrites two index entries, and reading a project
//!   touches it.

mod item;
mod overflow;
mod purge;
mod site;
mod table;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, KeysAndAttributes, ReturnConsumedCapacity, Select,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde_json::Value;

use self::item::*;
use self::overflow::Overflow;
use super::{ExecutionLog, Store};
use crate::blob::BlobStore;
use crate::domain::{
    now, Execution, ExecutionStatus, FileDiff, HistoryEvent, Message, NewMessage, Page, Project,
    ProjectStatus, Run, RunEvent, RunEventKind, Screenshot, Site, User, Version,
};
use crate::error::{Error, Result};

pub use purge::PurgeProgress;
pub use table::{create_table, TABLE_JSON};

/// Index of an owner's live projects by last activity.
pub const BY_OWNER: &str = "by_owner";
/// Index of a project's runs by creation.
pub const BY_PROJECT: &str = "by_project";
/// Index of an owner's runs by creation time.
pub const BY_SPENDER: &str = "by_spender";
/// Sparse index of idle and deleted projects, running executions, active runs.
pub const BY_STATE: &str = "by_state";

/// Attempts at taking the next sequence number before giving up.
const APPEND_RETRIES: u32 = 50;
/// `touch_project` moves `last_active` only when it is older than this.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);
/// Highest number a numbered sort key holds (12 digits).
const MAX_NUMBER: i64 = 999_999_999_999;

/// How to reach the table.
#[derive(Debug, Clone)]
pub struct DynamoOptions {
    /// Table name (`dynamodb://<table>`).
    pub table: String,
    /// Endpoint override for emulators (`DYNAMODB_ENDPOINT`); region and
    /// credentials come from the usual AWS settings.
    pub endpoint: Option<String>,
    /// Days run events are kept before DynamoDB's TTL removes them (0 = forever).
    pub event_retention_days: u32,
}

/// Capacity units consumed, as DynamoDB reported them (`ReturnConsumedCapacity`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Consumed {
    /// Read capacity units (table and indexes).
    pub read: f64,
    /// Write capacity units (what the server reports: dynalite leaves out index writes).
    pub write: f64,
    /// Conditional writes that did not apply. DynamoDB charges them like
    /// writes (1 unit per KB of the item); dynalite reports nothing for them.
    pub failed_conditions: u64,
}

#[derive(Default)]
struct Meter {
    read_millis: AtomicU64,
    write_millis: AtomicU64,
    failed_conditions: AtomicU64,
}

impl Meter {
    fn add(counter: &AtomicU64, c: Option<&ConsumedCapacity>) {
        if let Some(units) = c.and_then(|c| c.capacity_units) {
            counter.fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
        }
    }
    fn read(&self, c: Option<&ConsumedCapacity>) {
        Self::add(&self.read_millis, c);
    }
    fn write(&self, c: Option<&ConsumedCapacity>) {
        Self::add(&self.write_millis, c);
    }
    fn failed_condition(&self) {
        self.failed_conditions.fetch_add(1, Ordering::Relaxed);
    }
}

/// The DynamoDB [`Store`]; see the module documentation for the design.
pub struct DynamoStore {
    client: Client,
    table: String,
    overflow: Overflow,
    event_retention_days: u32,
    meter: Meter,
}

/// An SDK error with its whole cause chain, bounded for logs and messages.
pub(crate) fn describe<E: std::error::Error>(e: &E) -> String {
    DisplayErrorContext(e)
        .to_string()
        .chars()
        .take(600)
        .collect()
}

fn store_err<E: std::error::Error>(op: &str, e: &E) -> Error {
    Error::Store(format!("dynamodb {op}: {}", describe(e)))
}

fn condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

/// An update or condition expression with its placeholder maps.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    sets: Vec<String>,
    removes: Vec<String>,
}

impl Expr {
    /// `#attr` for an attribute (every name goes through a placeholder, so
    /// DynamoDB's reserved words — status, name, owner, … — need no care).
    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#{attr}");
        self.names.insert(placeholder.clone(), attr.to_string());
        placeholder
    }
    fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }
    fn set(&mut self, attr: &str, v: AttributeValue) {
        let (n, v) = (self.name(attr), self.value(v));
        self.sets.push(format!("{n} = {v}"));
    }
    /// `attr = other` (copies another attribute of the same item).
    fn copy(&mut self, attr: &str, other: &str) {
        let (n, o) = (self.name(attr), self.name(other));
        self.sets.push(format!("{n} = {o}"));
    }
    fn remove(&mut self, attr: &str) {
        let n = self.name(attr);
        self.removes.push(n);
    }
    fn update(&self) -> String {
        let mut out = String::new();
        if !self.sets.is_empty() {
            out.push_str("SET ");
            out.push_str(&self.sets.join(", "));
        }
        if !self.removes.is_empty() {
            out.push_str(" REMOVE ");
            out.push_str(&self.removes.join(", "));
        }
        out
    }
    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

impl DynamoStore {
    /// What a conditional write did: `true` written, `false` its condition
    /// did not hold (counted, not an error).
    fn conditional<O, E, R>(
        &self,
        resp: std::result::Result<O, SdkError<E, R>>,
        capacity: impl FnOnce(&O) -> Option<&ConsumedCapacity>,
        what: &str,
    ) -> Result<bool>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match resp {
            Ok(r) => {
                self.meter.write(capacity(&r));
                Ok(true)
            }
            Err(e) if condition_failed(&e) => {
                self.meter.failed_condition();
                Ok(false)
            }
            Err(e) => Err(store_err(what, &e)),
        }
    }

    /// Puts `item` unless another holder has it: the item is absent or its
    /// `holder_attr` is already `holder` (run locks, slugs). `false` when
    /// someone else holds it.
    pub(super) async fn put_unless_held(
        &self,
        item: Item,
        holder_attr: &str,
        holder: &str,
        what: &str,
    ) -> Result<bool> {
        let resp = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #holder = :holder")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#holder", holder_attr)
            .expression_attribute_values(":holder", s(holder))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        self.conditional(resp, |r| r.consumed_capacity.as_ref(), what)
    }

    /// Deletes the item at `item_key` if its `holder_attr` is `holder`;
    /// `false` when it is absent or someone else's.
    pub(super) async fn delete_if_held(
        &self,
        item_key: Item,
        holder_attr: &str,
        holder: &str,
        what: &str,
    ) -> Result<bool> {
        let resp = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(item_key))
            .condition_expression("#holder = :holder")
            .expression_attribute_names("#holder", holder_attr)
            .expression_attribute_values(":holder", s(holder))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        self.conditional(resp, |r| r.consumed_capacity.as_ref(), what)
    }

    /// A store over an existing table; items too large for DynamoDB go to `blobs`.
    pub async fn connect(options: DynamoOptions, blobs: Arc<dyn BlobStore>) -> Result<Self> {
        let region = aws_config::meta::region::RegionProviderChain::default_provider()
            .or_else(aws_sdk_dynamodb::config::Region::new("us-east-1"));
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(region)
            .load()
            .await;
        let mut config = aws_sdk_dynamodb::config::Builder::from(&shared)
            .interceptor(crate::xray::aws::XRayInterceptor::from_env());
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let client = Client::from_conf(config.build());
        Ok(Self::with_client(client, options, blobs))
    }

    /// A store over a client built elsewhere (tests and benches share one).
    pub fn with_client(client: Client, options: DynamoOptions, blobs: Arc<dyn BlobStore>) -> Self {
        DynamoStore {
            overflow: Overflow::new(blobs, &options.table),
            client,
            table: options.table,
            event_retention_days: options.event_retention_days,
            meter: Meter::default(),
        }
    }

    /// Creates the table if it does not exist (emulators and tests; a
    /// deployment's table comes from the SAM template).
    pub async fn ensure_table(&self) -> Result<()> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                tracing::info!(table = %self.table, "creating the DynamoDB table");
                create_table(&self.client, &self.table).await
            }
            Err(e) => Err(store_err("describe table", &e)),
        }
    }

    /// The SDK client (tests read raw items with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Capacity consumed by this store so far.
    pub fn consumed(&self) -> Consumed {
        Consumed {
            read: self.meter.read_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            write: self.meter.write_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            failed_conditions: self.meter.failed_conditions.load(Ordering::Relaxed),
        }
    }

    fn query(&self) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
    }

    /// Every page of `q` until `max` items.
    async fn query_items(&self, q: QueryFluentBuilder, max: usize) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = q
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_err("query", &e))?;
            self.meter.read(resp.consumed_capacity.as_ref());
            out.extend(resp.items.unwrap_or_default());
            if out.len() >= max {
                out.truncate(max);
                return Ok(out);
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// How many items `q` matches.
    async fn query_count(&self, q: QueryFluentBuilder) -> Result<i64> {
        let q = q.select(Select::Count);
        let mut total = 0i64;
        let mut start = None;
        loop {
            let resp = q
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_err("query", &e))?;
            self.meter.read(resp.consumed_capacity.as_ref());
            total += i64::from(resp.count);
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(total),
            }
        }
    }

    /// Query `pk = :pk AND sk BETWEEN :lo AND :hi`, in order, up to `max`.
    async fn query_range(
        &self,
        pk: &str,
        lo: &str,
        hi: &str,
        forward: bool,
        max: usize,
    ) -> Result<Vec<Item>> {
        let q = self
            .query()
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":lo", s(lo))
            .expression_attribute_values(":hi", s(hi))
            .scan_index_forward(forward)
            .consistent_read(true)
            .limit(max.clamp(1, 1000) as i32);
        self.query_items(q, max).await
    }

    /// The items of a partition whose sort key starts with `prefix`, in order.
    async fn query_prefix(&self, pk: &str, prefix: &str) -> Result<Vec<Item>> {
        let q = self
            .query()
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true);
        let mut items = self.query_items(q, usize::MAX).await?;
        self.overflow.restore_all(&mut items).await?;
        Ok(items)
    }

    /// An index partition (`key = :k`, optionally `at < :before` or
    /// `at >= :since`), in index order, up to `max` entries.
    async fn query_index(
        &self,
        index: &str,
        key_attr: &str,
        key: &str,
        range: Option<(&str, &str, AttributeValue)>,
        forward: bool,
        max: usize,
    ) -> Result<Vec<Item>> {
        let mut q = self
            .query()
            .index_name(index)
            .expression_attribute_names("#k", key_attr)
            .expression_attribute_values(":k", s(key))
            .scan_index_forward(forward);
        q = match range {
            None => q.key_condition_expression("#k = :k"),
            Some((attr, op, v)) => q
                .key_condition_expression(format!("#k = :k AND #at {op} :at"))
                .expression_attribute_names("#at", attr)
                .expression_attribute_values(":at", v),
        };
        if max < usize::MAX {
            q = q.limit(max.clamp(1, 1000) as i32);
        }
        self.query_items(q, max).await
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| store_err("get", &e))?;
        self.meter.read(resp.consumed_capacity.as_ref());
        match resp.item {
            Some(mut item) => {
                self.overflow.restore(&mut item).await?;
                Ok(Some(item))
            }
            None => Ok(None),
        }
    }

    /// Items by key, up to 100 per request, in no particular order;
    /// `projection` limits the attributes returned.
    async fn batch_get(&self, keys: Vec<Item>, projection: &[&str]) -> Result<Vec<Item>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true);
            if !projection.is_empty() {
                let mut e = Expr::default();
                let names: Vec<String> = projection.iter().map(|a| e.name(a)).collect();
                request = request
                    .projection_expression(names.join(", "))
                    .set_expression_attribute_names(Some(e.names));
            }
            let mut pending = Some(
                request
                    .build()
                    .map_err(|e| Error::Internal(format!("batch get: {e}")))?,
            );
            let mut backoff = Duration::from_millis(10);
            while let Some(request) = pending.take() {
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| store_err("batch get", &e))?;
                for c in resp.consumed_capacity() {
                    self.meter.read(Some(c));
                }
                if let Some(mut items) = resp.responses.and_then(|mut r| r.remove(&self.table)) {
                    out.append(&mut items);
                }
                pending = resp
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        self.overflow.restore_all(&mut out).await?;
        Ok(out)
    }

    /// The items of `keys` (index entries), in the order of `keys`, skipping
    /// those gone since the index was read.
    async fn fetch_in_order(&self, keys: &[Item]) -> Result<Vec<Item>> {
        let wanted: Vec<Item> = keys
            .iter()
            .filter_map(|k| Some(key(k.opt_s(PK)?, k.opt_s(SK)?)))
            .collect();
        let mut by_pk: HashMap<String, Item> = self
            .batch_get(wanted.clone(), &[])
            .await?
            .into_iter()
            .filter_map(|i| Some((i.opt_s(PK)?, i)))
            .collect();
        Ok(wanted
            .iter()
            .filter_map(|k| by_pk.remove(&k.opt_s(PK)?))
            .collect())
    }

    /// Puts `item` unless an item with its key exists; `false` if one does.
    async fn put_new(&self, item: Item) -> Result<bool> {
        let resp = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        self.conditional(resp, |r| r.consumed_capacity.as_ref(), "put")
    }

    /// Applies `e` to the item at (pk, sk) if `condition` holds; `false` if it did not.
    async fn update_if(&self, pk: &str, sk: &str, mut e: Expr, condition: &str) -> Result<bool> {
        e.name(PK);
        let resp = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression(e.update())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names.clone()))
            .set_expression_attribute_values(e.values())
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        self.conditional(resp, |r| r.consumed_capacity.as_ref(), "update")
    }

    /// Writes `body` as the next numbered child of `pk` (sort key `prefix` +
    /// number) and returns its number: the last number plus one, taken with a
    /// conditional put and retried when another writer took it first. A body
    /// with `n` holds that many numbers (a message batch; its first is stored
    /// as `first`), otherwise one (stored as `seq`). Large `payload`
    /// attributes spill once, before the first attempt.
    async fn append_numbered(
        &self,
        pk: &str,
        prefix: &str,
        mut body: Item,
        owner: &str,
        payload: &[&str],
    ) -> Result<i64> {
        let spilled = self.overflow.spill(&mut body, owner, payload).await?;
        let number_attr = if body.contains_key("n") {
            "first"
        } else {
            "seq"
        };
        let mut backoff = Duration::from_millis(2);
        for _ in 0..APPEND_RETRIES {
            let last = self
                .query_range(pk, prefix, &numbered(prefix, MAX_NUMBER), false, 1)
                .await?;
            let next = match last.first() {
                Some(item) => last_number(item)? + 1,
                None => 1,
            };
            let mut item = body.clone();
            item.insert(PK.into(), s(pk));
            item.insert(SK.into(), s(numbered(prefix, next)));
            item.insert(number_attr.into(), n(next));
            if self.put_new(item).await? {
                return Ok(next);
            }
            let jitter = Duration::from_micros(rand::random::<u64>() % 2000);
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
        if let Some(key) = spilled {
            self.overflow.delete(&key).await?;
        }
        Err(Error::Store(format!(
            "could not take the next number under {pk} after {APPEND_RETRIES} attempts"
        )))
    }

    fn event_expiry(&self, created: DateTime<Utc>) -> Option<AttributeValue> {
        (self.event_retention_days > 0)
            .then(|| n(created.timestamp() + i64::from(self.event_retention_days) * 86_400))
    }
}

#[async_trait]
impl Store for DynamoStore {
    fn backend(&self) -> &'static str {
        "dynamodb"
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| store_err("describe table", &e))?;
        Ok(())
    }

    async fn upsert_user(&self, user: &User) -> Result<User> {
        if !self.put_new(user_item(user)).await? {
            return self
                .get_user(&user.id)
                .await?
                .ok_or_else(|| Error::Store("user vanished after insert".into()));
        }
        Ok(user.clone())
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        self.get(&user_pk(id), USER_ROOT)
            .await?
            .as_ref()
            .map(user_from)
            .transpose()
    }

    async fn create_project(&self, p: &Project) -> Result<()> {
        if self.put_new(project_item(p)).await? {
            Ok(())
        } else {
            Err(Error::Conflict(format!("project {} already exists", p.id)))
        }
    }

    async fn get_project(&self, id: &str) -> Result<Option<Project>> {
        self.get(&project_pk(id), PROJECT_ROOT)
            .await?
            .as_ref()
            .map(project_from)
            .transpose()
    }

    async fn list_projects(&self, owner: &str, page: Page) -> Result<Vec<Project>> {
        let (offset, limit) = (page.offset.max(0) as usize, page.limit.max(1) as usize);
        let items = self
            .query_index(BY_OWNER, OWNER_KEY, owner, None, false, offset + limit)
            .await?;
        items.iter().skip(offset).map(project_from).collect()
    }

    async fn count_projects(&self, owner: &str) -> Result<i64> {
        let q = self
            .query()
            .index_name(BY_OWNER)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", OWNER_KEY)
            .expression_attribute_values(":k", s(owner));
        self.query_count(q).await
    }

    async fn set_project_status(
        &self,
        id: &str,
        from: ProjectStatus,
        to: ProjectStatus,
        error: Option<&str>,
    ) -> Result<bool> {
        from.check_transition(to)?;
        let t = now();
        let mut e = Expr::default();
        e.set("status", s(to.as_str()));
        e.set("updated_at", ms(t));
        match error {
            Some(m) => e.set("error", s(m)),
            None => e.remove("error"),
        }
        match to {
            ProjectStatus::Deleted => {
                let (deleted, at) = (e.name("deleted_at"), e.value(ms(t)));
                e.sets
                    .push(format!("{deleted} = if_not_exists({deleted}, {at})"));
                e.set(STATE_KEY, s(STATE_DELETED));
                let state_at = e.name(STATE_AT);
                e.sets
                    .push(format!("{state_at} = if_not_exists({deleted}, {at})"));
                e.remove(OWNER_KEY);
            }
            ProjectStatus::Ready | ProjectStatus::Failed => {
                e.set(STATE_KEY, s(STATE_IDLE));
                e.copy(STATE_AT, "last_active");
            }
            ProjectStatus::Building => {
                e.set(STATE_KEY, s(STATE_BUSY));
                e.set(STATE_AT, ms(t));
            }
            _ => {
                e.remove(STATE_KEY);
                e.remove(STATE_AT);
            }
        }
        let (status, was) = (e.name("status"), e.value(s(from.as_str())));
        let condition = format!("attribute_exists(#pk) AND {status} = {was}");
        self.update_if(&project_pk(id), PROJECT_ROOT, e, &condition)
            .await
    }

    async fn set_preview_public(&self, id: &str, public: bool) -> Result<bool> {
        let mut e = Expr::default();
        e.set("preview_public", AttributeValue::Bool(public));
        e.set("updated_at", ms(now()));
        let deleted = e.name("deleted_at");
        let condition = format!("attribute_exists(#pk) AND attribute_not_exists({deleted})");
        self.update_if(&project_pk(id), PROJECT_ROOT, e, &condition)
            .await
    }

    async fn touch_project(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let mut e = Expr::default();
        e.set("last_active", ms(at));
        e.set(ACTIVITY_KEY, s(time_key(at, id)));
        // Only idle projects are in `by_state` with this value; for the others
        // it waits unused until the status puts the project there.
        e.set(STATE_AT, ms(at));
        let (last, deleted, threshold) = (
            e.name("last_active"),
            e.name("deleted_at"),
            e.value(ms(at - TOUCH_EVERY)),
        );
        // Deleted projects keep their deletion time in `state_at`.
        let condition = format!(
            "attribute_exists(#pk) AND attribute_not_exists({deleted}) AND {last} < {threshold}"
        );
        self.update_if(&project_pk(id), PROJECT_ROOT, e, &condition)
            .await?;
        Ok(())
    }

    async fn soft_delete_project(&self, id: &str) -> Result<bool> {
        let t = now();
        let mut e = Expr::default();
        e.set("status", s(ProjectStatus::Deleted.as_str()));
        e.set("deleted_at", ms(t));
        e.set("updated_at", ms(t));
        e.set(STATE_KEY, s(STATE_DELETED));
        e.set(STATE_AT, ms(t));
        e.remove(OWNER_KEY);
        let deleted = e.name("deleted_at");
        let condition = format!("attribute_exists(#pk) AND attribute_not_exists({deleted})");
        self.update_if(&project_pk(id), PROJECT_ROOT, e, &condition)
            .await
    }

    async fn idle_projects(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<Project>> {
        let limit = limit.clamp(1, 1000) as usize;
        let entries = self
            .query_index(
                BY_STATE,
                STATE_KEY,
                STATE_IDLE,
                Some((STATE_AT, "<", ms(before))),
                true,
                usize::MAX,
            )
            .await?;
        let mut out = Vec::new();
        // Batches of candidates, oldest first, until `limit` pass the checks
        // the index cannot make (it may lag, and it does not know the locks).
        for chunk in entries.chunks(100) {
            let projects = self.fetch_in_order(chunk).await?;
            let locks: Vec<Item> = projects
                .iter()
                .filter_map(|p| Some(key(p.opt_s(PK)?, LOCK)))
                .collect();
            let locked: std::collections::HashSet<String> = self
                .batch_get(locks, &[PK])
                .await?
                .iter()
                .filter_map(|l| l.opt_s(PK))
                .collect();
            for item in &projects {
                let p = project_from(item)?;
                if matches!(p.status, ProjectStatus::Ready | ProjectStatus::Failed)
                    && p.deleted_at.is_none()
                    && p.last_active < before
                    && !locked.contains(&project_pk(&p.id))
                {
                    out.push(p);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn building_projects(&self, limit: i64) -> Result<Vec<Project>> {
        let limit = limit.clamp(1, 1000) as usize;
        let entries = self
            .query_index(BY_STATE, STATE_KEY, STATE_BUSY, None, true, usize::MAX)
            .await?;
        let mut out = Vec::new();
        // The index may lag behind a status change: check each project itself.
        for chunk in entries.chunks(100) {
            for item in self.fetch_in_order(chunk).await? {
                let p = project_from(&item)?;
                if p.status == ProjectStatus::Building && p.deleted_at.is_none() {
                    out.push(p);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn deleted_projects(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<String>> {
        let entries = self
            .query_index(
                BY_STATE,
                STATE_KEY,
                STATE_DELETED,
                Some((STATE_AT, "<", ms(before))),
                true,
                limit.clamp(1, 1000) as usize,
            )
            .await?;
        Ok(entries
            .iter()
            .filter_map(|e| e.opt_s(PK))
            .map(|pk| id_of(&pk).to_string())
            .collect())
    }

    async fn purge_project(&self, id: &str) -> Result<bool> {
        Ok(matches!(
            self.purge_project_within(id, usize::MAX).await?,
            PurgeProgress::Done { .. }
        ))
    }

    async fn acquire_run_lock(&self, project_id: &str, run_id: &str) -> Result<bool> {
        let mut item = key(project_pk(project_id), LOCK);
        item.insert("run_id".into(), s(run_id));
        item.insert("acquired_at".into(), ms(now()));
        self.put_unless_held(item, "run_id", run_id, "put lock")
            .await
    }

    async fn release_run_lock(&self, project_id: &str, run_id: &str) -> Result<bool> {
        self.delete_if_held(
            key(project_pk(project_id), LOCK),
            "run_id",
            run_id,
            "delete lock",
        )
        .await
    }

    async fn run_lock_holder(&self, project_id: &str) -> Result<Option<String>> {
        Ok(self
            .get(&project_pk(project_id), LOCK)
            .await?
            .and_then(|i| i.opt_s("run_id")))
    }

    async fn create_run(&self, run: &Run) -> Result<()> {
        if self.put_new(run_item(run)).await? {
            Ok(())
        } else {
            Err(Error::Conflict(format!("run {} already exists", run.id)))
        }
    }

    async fn get_run(&self, id: &str) -> Result<Option<Run>> {
        self.get(&run_pk(id), RUN_ROOT)
            .await?
            .as_ref()
            .map(run_from)
            .transpose()
    }

    async fn update_run(&self, run: &Run) -> Result<()> {
        let mut e = Expr::default();
        let fields = run_mutable(run);
        for (k, v) in &fields {
            e.set(k, v.clone());
        }
        for k in RUN_OPTIONAL {
            if !fields.contains_key(k) {
                e.remove(k);
            }
        }
        e.set("updated_at", ms(now()));
        if run_is_active(run.status) {
            e.set(STATE_KEY, s(state_active(&run.owner)));
            e.copy(STATE_AT, "created_at");
        } else {
            e.remove(STATE_KEY);
            e.remove(STATE_AT);
        }
        if self
            .update_if(&run_pk(&run.id), RUN_ROOT, e, "attribute_exists(#pk)")
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!("run {} not found", run.id)))
        }
    }

    async fn list_runs(&self, project_id: &str, page: Page) -> Result<Vec<Run>> {
        let (offset, limit) = (page.offset.max(0) as usize, page.limit.max(1) as usize);
        let entries = self
            .query_index(
                BY_PROJECT,
                PROJECT_KEY,
                project_id,
                None,
                false,
                offset + limit,
            )
            .await?;
        let keys: Vec<Item> = entries.into_iter().skip(offset).collect();
        self.fetch_in_order(&keys)
            .await?
            .iter()
            .map(run_from)
            .collect()
    }

    async fn count_active_runs(&self, owner: &str) -> Result<i64> {
        let q = self
            .query()
            .index_name(BY_STATE)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", STATE_KEY)
            .expression_attribute_values(":k", s(state_active(owner)));
        self.query_count(q).await
    }

    async fn cost_since(&self, owner: &str, since: DateTime<Utc>) -> Result<f64> {
        let entries = self
            .query_index(
                BY_SPENDER,
                SPEND_OWNER,
                owner,
                Some((SPEND_AT, ">=", ms(since))),
                true,
                usize::MAX,
            )
            .await?;
        let keys = entries
            .iter()
            .filter_map(|k| Some(key(k.opt_s(PK)?, k.opt_s(SK)?)))
            .collect();
        self.batch_get(keys, &["cost_usd"])
            .await?
            .iter()
            .map(|i| i.get_f64("cost_usd"))
            .sum()
    }

    async fn append_messages(&self, project_id: &str, msgs: &[NewMessage]) -> Result<Vec<Message>> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let stored: Vec<StoredMessage> = msgs
            .iter()
            .map(|m| StoredMessage {
                id: uuid::Uuid::now_v7().to_string(),
                run_id: m.run_id.clone(),
                role: m.role,
                content: m.content.clone(),
                tool_calls: m.tool_calls.clone(),
                file_diffs: m.file_diffs.clone(),
            })
            .collect();
        let t = now();
        let body = HashMap::from([
            ("msgs".to_string(), json(&stored)?),
            ("n".to_string(), n(stored.len())),
            ("created_at".to_string(), ms(t)),
        ]);
        let first = self
            .append_numbered(&project_pk(project_id), MSG, body, project_id, &["msgs"])
            .await?;
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
                created_at: t,
            })
            .collect())
    }

    async fn list_messages(&self, project_id: &str, page: Page) -> Result<Vec<Message>> {
        let pk = project_pk(project_id);
        let start = page.offset.max(0) + 1;
        let end = (start + page.limit.max(1) - 1).min(MAX_NUMBER);
        // A batch holding `start` may begin before it: the last batch that
        // begins at or before `start`, then the batches that begin after.
        let mut items = self
            .query_range(&pk, MSG, &numbered(MSG, start), false, 1)
            .await?;
        if start < end {
            items.extend(
                self.query_range(
                    &pk,
                    &numbered(MSG, start + 1),
                    &numbered(MSG, end),
                    true,
                    usize::MAX,
                )
                .await?,
            );
        }
        self.overflow.restore_all(&mut items).await?;
        let mut out = Vec::new();
        for item in &items {
            out.extend(
                messages_from(item, project_id)?
                    .into_iter()
                    .filter(|m| (start..=end).contains(&m.seq)),
            );
        }
        Ok(out)
    }

    async fn append_event(
        &self,
        run_id: &str,
        kind: RunEventKind,
        data: &Value,
    ) -> Result<RunEvent> {
        let t = now();
        let mut body = HashMap::from([
            ("run_id".to_string(), s(run_id)),
            ("kind".to_string(), s(kind.as_str())),
            ("data".to_string(), json(data)?),
            ("created_at".to_string(), ms(t)),
        ]);
        if let Some(expiry) = self.event_expiry(t) {
            body.insert(EXPIRES_AT.into(), expiry);
        }
        let seq = self
            .append_numbered(&run_pk(run_id), EVENT, body, run_id, &["data"])
            .await?;
        Ok(RunEvent {
            run_id: run_id.to_string(),
            seq,
            kind,
            data: data.clone(),
            created_at: t,
        })
    }

    async fn list_events(&self, run_id: &str, after: i64, limit: i64) -> Result<Vec<RunEvent>> {
        let first = after.clamp(0, MAX_NUMBER - 1) + 1;
        let mut items = self
            .query_range(
                &run_pk(run_id),
                &numbered(EVENT, first),
                &numbered(EVENT, MAX_NUMBER),
                true,
                limit.clamp(1, 1000) as usize,
            )
            .await?;
        self.overflow.restore_all(&mut items).await?;
        items.iter().map(event_from).collect()
    }

    async fn put_step_result(&self, run_id: &str, key: &str, output: &Value) -> Result<Value> {
        let mut item = item::key(run_pk(run_id), format!("{STEP}{key}"));
        item.insert("run_id".into(), s(run_id));
        item.insert("key".into(), s(key));
        item.insert("output".into(), json(output)?);
        item.insert("created_at".into(), ms(now()));
        let spilled = self.overflow.spill(&mut item, run_id, &["output"]).await?;
        if self.put_new(item).await? {
            return Ok(output.clone());
        }
        if let Some(blob) = spilled {
            self.overflow.delete(&blob).await?;
        }
        self.get_step_result(run_id, key)
            .await?
            .ok_or_else(|| Error::Store("step result vanished after insert".into()))
    }

    async fn get_step_result(&self, run_id: &str, key: &str) -> Result<Option<Value>> {
        self.get(&run_pk(run_id), &format!("{STEP}{key}"))
            .await?
            .map(|i| i.get_json("output"))
            .transpose()
    }

    async fn create_version(
        &self,
        project_id: &str,
        run_id: Option<&str>,
        snapshot_key: &str,
        summary: &str,
        file_diffs: &[FileDiff],
    ) -> Result<Version> {
        let t = now();
        let mut body = HashMap::from([
            ("project_id".to_string(), s(project_id)),
            ("snapshot_key".to_string(), s(snapshot_key)),
            ("summary".to_string(), s(summary)),
            ("file_diffs".to_string(), json(&file_diffs)?),
            ("created_at".to_string(), ms(t)),
        ]);
        if let Some(r) = run_id {
            body.insert("run_id".into(), s(r));
        }
        let number = self
            .append_numbered(
                &project_pk(project_id),
                VERSION,
                body,
                project_id,
                &["file_diffs"],
            )
            .await?;
        Ok(Version {
            project_id: project_id.to_string(),
            number,
            run_id: run_id.map(str::to_string),
            snapshot_key: snapshot_key.to_string(),
            summary: summary.to_string(),
            file_diffs: file_diffs.to_vec(),
            screenshots: Vec::new(),
            created_at: t,
        })
    }

    async fn set_version_screenshots(
        &self,
        project_id: &str,
        number: i64,
        screenshots: &[Screenshot],
    ) -> Result<bool> {
        if !(1..=MAX_NUMBER).contains(&number) {
            return Ok(false);
        }
        let mut e = Expr::default();
        e.set("screenshots", json(&screenshots)?);
        self.update_if(
            &project_pk(project_id),
            &numbered(VERSION, number),
            e,
            "attribute_exists(#pk)",
        )
        .await
    }

    async fn list_versions(&self, project_id: &str) -> Result<Vec<Version>> {
        self.query_prefix(&project_pk(project_id), VERSION)
            .await?
            .iter()
            .map(version_from)
            .collect()
    }

    async fn get_version(&self, project_id: &str, number: i64) -> Result<Option<Version>> {
        if !(1..=MAX_NUMBER).contains(&number) {
            return Ok(None);
        }
        self.get(&project_pk(project_id), &numbered(VERSION, number))
            .await?
            .as_ref()
            .map(version_from)
            .transpose()
    }

    async fn get_site(&self, project_id: &str) -> Result<Option<Site>> {
        self.site_get(project_id).await
    }

    async fn save_site(&self, site: &Site, expected_job: Option<&str>) -> Result<bool> {
        self.site_save(site, expected_job).await
    }

    async fn claim_slug(&self, slug: &str, project_id: &str) -> Result<bool> {
        self.slug_claim(slug, project_id).await
    }

    async fn release_slug(&self, slug: &str, project_id: &str) -> Result<bool> {
        self.slug_release(slug, project_id).await
    }

    async fn slug_owner(&self, slug: &str) -> Result<Option<String>> {
        self.slug_owner_of(slug).await
    }
}

#[async_trait]
impl ExecutionLog for DynamoStore {
    async fn create_execution(&self, exec: &Execution) -> Result<()> {
        if self.put_new(execution_item(exec)?).await? {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "execution {} already exists",
                exec.id
            )))
        }
    }

    async fn get_execution(&self, id: &str) -> Result<Option<Execution>> {
        self.get(&exec_pk(id), EXEC_ROOT)
            .await?
            .as_ref()
            .map(execution_from)
            .transpose()
    }

    async fn update_execution(&self, exec: &Execution) -> Result<()> {
        let mut e = Expr::default();
        let fields = execution_mutable(exec)?;
        for (k, v) in &fields {
            if k != "updated_at" {
                e.set(k, v.clone());
            }
        }
        for k in EXECUTION_OPTIONAL {
            if !fields.contains_key(k) {
                e.remove(k);
            }
        }
        e.set("updated_at", ms(now()));
        if exec.status == ExecutionStatus::Running {
            e.set(STATE_KEY, s(STATE_RUNNING));
            e.copy(STATE_AT, "started_at");
        } else {
            e.remove(STATE_KEY);
            e.remove(STATE_AT);
        }
        if self
            .update_if(&exec_pk(&exec.id), EXEC_ROOT, e, "attribute_exists(#pk)")
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!("execution {} not found", exec.id)))
        }
    }

    async fn running_executions(&self) -> Result<Vec<Execution>> {
        let entries = self
            .query_index(BY_STATE, STATE_KEY, STATE_RUNNING, None, true, usize::MAX)
            .await?;
        let mut out = Vec::new();
        for chunk in entries.chunks(100) {
            for item in self.fetch_in_order(chunk).await? {
                let e = execution_from(&item)?;
                if e.status == ExecutionStatus::Running {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    async fn append_history(
        &self,
        execution_id: &str,
        event_type: &str,
        state_name: Option<&str>,
        data: &Value,
    ) -> Result<HistoryEvent> {
        let t = now();
        let mut body = HashMap::from([
            ("execution_id".to_string(), s(execution_id)),
            ("event_type".to_string(), s(event_type)),
            ("data".to_string(), json(data)?),
            ("timestamp".to_string(), ms(t)),
        ]);
        if let Some(state) = state_name {
            body.insert("state_name".into(), s(state));
        }
        let seq = self
            .append_numbered(&exec_pk(execution_id), HIST, body, execution_id, &["data"])
            .await?;
        Ok(HistoryEvent {
            execution_id: execution_id.to_string(),
            seq,
            event_type: event_type.to_string(),
            state_name: state_name.map(str::to_string),
            data: data.clone(),
            timestamp: t,
        })
    }

    async fn list_history(&self, execution_id: &str) -> Result<Vec<HistoryEvent>> {
        self.query_prefix(&exec_pk(execution_id), HIST)
            .await?
            .iter()
            .map(history_from)
            .collect()
    }
}
