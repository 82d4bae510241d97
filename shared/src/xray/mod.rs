//! X-Ray subsegments for what a Lambda invocation waits on: AWS calls (the
//! store on DynamoDB, snapshots on S3, Step Functions, secrets), the model
//! and sandboxes.
//!
//! Lambda records a segment per sampled invocation and puts its trace header
//! in `_X_AMZN_TRACE_ID` (the Rust runtime sets it before each call); a
//! subsegment is one JSON document sent over UDP to the daemon at
//! `AWS_XRAY_DAEMON_ADDRESS`, with that segment as parent. There is no
//! official X-Ray SDK for Rust, and the protocol is this small, so it is
//! written here: [`XRayLayer`] turns spans that carry an `xray` field into
//! subsegments, and so each SQL statement sqlx reports (its `sqlx::query`
//! event, which carries the statement's summary and duration: sqlx has no
//! other hook); [`aws::XRayInterceptor`] does the same for every AWS SDK
//! operation. Outside Lambda (no header, no daemon) both do nothing.

pub mod aws;

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The daemon's UDP header line, before every document.
const HEADER: &str = "{\"format\": \"json\", \"version\": 1}\n";

/// The trace an invocation belongs to, from `_X_AMZN_TRACE_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    /// `Root=1-…`: the trace id.
    pub root: String,
    /// `Parent=…`: the invocation's segment id.
    pub parent: String,
    /// `Sampled=1`: X-Ray keeps this trace.
    pub sampled: bool,
}

impl TraceHeader {
    /// Parses `Root=…;Parent=…;Sampled=…` (any order, other keys ignored).
    pub fn parse(header: &str) -> Option<TraceHeader> {
        let (mut root, mut parent, mut sampled) = (None, None, false);
        for part in header.split(';') {
            match part.trim().split_once('=') {
                Some(("Root", v)) if !v.is_empty() => root = Some(v.to_string()),
                Some(("Parent", v)) if !v.is_empty() => parent = Some(v.to_string()),
                Some(("Sampled", v)) => sampled = v == "1",
                _ => {}
            }
        }
        Some(TraceHeader {
            root: root?,
            parent: parent?,
            sampled,
        })
    }

    /// The current invocation's header, when Lambda set one.
    pub fn current() -> Option<TraceHeader> {
        std::env::var("_X_AMZN_TRACE_ID")
            .ok()
            .as_deref()
            .and_then(TraceHeader::parse)
    }
}

/// One finished subsegment.
#[derive(Debug, Clone, Serialize)]
pub struct Subsegment {
    /// What was called (`DynamoDB`, `model`, `sandbox`, …).
    pub name: String,
    /// `aws` for AWS services, `remote` for other network calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'static str>,
    /// Seconds since the epoch.
    pub start_time: f64,
    /// Seconds since the epoch.
    pub end_time: f64,
    /// A 4xx answer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
    /// A 5xx answer or no answer at all.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fault: bool,
    /// `aws.operation`, `aws.request_id` for AWS calls.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub aws: Map<String, Value>,
    /// Searchable key/values (the project and run ids).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub annotations: Map<String, Value>,
    /// `database_type` and `sanitized_query` for SQL statements.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub sql: Map<String, Value>,
}

impl Subsegment {
    /// A subsegment called `name` that ran from `start` to `end`.
    pub fn new(name: impl Into<String>, start: SystemTime, end: SystemTime) -> Subsegment {
        Subsegment {
            name: name.into(),
            namespace: None,
            start_time: epoch_secs(start),
            end_time: epoch_secs(end),
            error: false,
            fault: false,
            aws: Map::new(),
            annotations: Map::new(),
            sql: Map::new(),
        }
    }

    /// The document the daemon takes (header line included).
    pub fn document(&self, trace: &TraceHeader) -> String {
        let mut doc = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        doc.insert("id".into(), Value::String(segment_id()));
        doc.insert("trace_id".into(), Value::String(trace.root.clone()));
        doc.insert("parent_id".into(), Value::String(trace.parent.clone()));
        doc.insert("type".into(), Value::String("subsegment".into()));
        format!("{HEADER}{}", Value::Object(doc))
    }
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// 16 hex digits, as X-Ray wants segment ids.
fn segment_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Where subsegments go: the daemon Lambda runs next to the function.
#[derive(Debug)]
pub struct Daemon {
    socket: UdpSocket,
    addr: SocketAddr,
}

impl Daemon {
    /// The daemon `AWS_XRAY_DAEMON_ADDRESS` names, if any.
    pub fn from_env() -> Option<Daemon> {
        Daemon::at(&std::env::var("AWS_XRAY_DAEMON_ADDRESS").ok()?)
    }

    /// The daemon at `address`: `host:port`, or `udp:host:port tcp:host:port`.
    pub fn at(address: &str) -> Option<Daemon> {
        let udp = address
            .split_whitespace()
            .find_map(|a| a.strip_prefix("udp:"))
            .unwrap_or(address.trim());
        let addr = udp.to_socket_addrs().ok()?.next()?;
        let bind: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).ok()?;
        // A full socket buffer must never hold up the function.
        socket.set_nonblocking(true).ok()?;
        Some(Daemon { socket, addr })
    }

    /// Sends `sub` under the current invocation's trace, if it is sampled.
    /// Best effort: X-Ray never fails a call.
    pub fn send(&self, sub: &Subsegment) {
        let Some(trace) = TraceHeader::current().filter(|t| t.sampled) else {
            return;
        };
        let doc = sub.document(&trace);
        if let Err(e) = self.socket.send_to(doc.as_bytes(), self.addr) {
            tracing::debug!(error = %e, "x-ray subsegment not sent");
        }
    }
}

/// The process's daemon, found once.
pub fn daemon() -> Option<&'static Daemon> {
    static DAEMON: std::sync::OnceLock<Option<Daemon>> = std::sync::OnceLock::new();
    DAEMON.get_or_init(Daemon::from_env).as_ref()
}

/// sqlx's per-statement event (debug level; the logs' filter leaves it out).
const SQL_TARGET: &str = "sqlx::query";
/// The SQL store on Lambda is PostgreSQL (SQLite is for `apna serve`).
const SQL_DATABASE: &str = "PostgreSQL";

/// What [`XRayLayer`] wants to see: spans with an `xray` field and sqlx's
/// statement events. Its per-layer filter, so the logs' level does not hide
/// them and it sees nothing else.
pub fn wanted(m: &Metadata<'_>) -> bool {
    // Not `is_event()`: sqlx first asks `enabled!`, whose callsite is a hint.
    (m.is_span() && m.fields().field("xray").is_some())
        || (!m.is_span() && m.target() == SQL_TARGET)
}

/// A [`Layer`] that sends a subsegment for every span with an `xray` field
/// (its value names the subsegment; `project_id`/`run_id` fields become
/// annotations, an `error` field marks a fault) and for every SQL statement.
pub struct XRayLayer {
    daemon: &'static Daemon,
}

impl XRayLayer {
    /// The layer, when this process runs under X-Ray (a daemon address is set).
    pub fn from_env() -> Option<XRayLayer> {
        daemon().map(|daemon| XRayLayer { daemon })
    }
}

/// What a traced span has collected until it closes.
struct Open {
    start: SystemTime,
    sub: FieldsOf,
}

#[derive(Default)]
struct FieldsOf {
    name: Option<String>,
    fault: bool,
    annotations: Map<String, Value>,
}

impl Visit for FieldsOf {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "xray" => self.name = Some(value.to_string()),
            "project_id" | "run_id" => {
                self.annotations
                    .insert(field.name().into(), Value::String(value.to_string()));
            }
            "error" => self.fault = true,
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

/// The fields of sqlx's statement event that a subsegment needs.
#[derive(Default)]
struct Statement {
    summary: Option<String>,
    elapsed_secs: Option<f64>,
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.summary = Some(value.to_string());
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.summary = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

impl<S> Layer<S> for XRayLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != SQL_TARGET {
            return;
        }
        let mut st = Statement::default();
        event.record(&mut st);
        let Some(secs) = st.elapsed_secs.filter(|s| s.is_finite() && *s >= 0.0) else {
            return;
        };
        // The event comes when the statement has finished.
        let end = SystemTime::now();
        let start = end
            .checked_sub(std::time::Duration::from_secs_f64(secs))
            .unwrap_or(end);
        let mut sub = Subsegment::new(SQL_DATABASE, start, end);
        sub.namespace = Some("remote");
        sub.sql
            .insert("database_type".into(), Value::String(SQL_DATABASE.into()));
        if let Some(q) = st.summary {
            // sqlx's summary: the statement's first words, never bound values.
            sub.sql.insert("sanitized_query".into(), Value::String(q));
        }
        self.daemon.send(&sub);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().fields().field("xray").is_none() {
            return;
        }
        let mut fields = FieldsOf::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Open {
                start: SystemTime::now(),
                sub: fields,
            });
        }
    }

    fn on_record(&self, id: &Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<Open>() {
                values.record(&mut open.sub);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let Some(name) = open.sub.name else { return };
        let mut sub = Subsegment::new(name, open.start, SystemTime::now());
        sub.namespace = Some("remote");
        sub.fault = open.sub.fault;
        sub.annotations = open.sub.annotations;
        self.daemon.send(&sub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_parse_as_lambda_writes_them() {
        let h = TraceHeader::parse(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .unwrap();
        assert_eq!(h.root, "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(h.parent, "53995c3f42cd8ad8");
        assert!(h.sampled);
        let h = TraceHeader::parse("Sampled=0;Parent=a;Root=r;Lineage=x:1").unwrap();
        assert!(!h.sampled);
        assert_eq!(TraceHeader::parse("Root=r;Sampled=1"), None, "no parent");
        assert_eq!(TraceHeader::parse(""), None);
    }

    #[test]
    fn documents_are_subsegments_of_the_invocation() {
        let t = TraceHeader::parse("Root=1-a-b;Parent=0123456789abcdef;Sampled=1").unwrap();
        let start = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250);
        let mut sub = Subsegment::new(
            "DynamoDB",
            start,
            start + std::time::Duration::from_millis(12),
        );
        sub.namespace = Some("aws");
        sub.aws.insert("operation".into(), "PutItem".into());
        let doc = sub.document(&t);
        let (header, body) = doc.split_once('\n').unwrap();
        assert_eq!(header, "{\"format\": \"json\", \"version\": 1}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["type"], "subsegment");
        assert_eq!(v["trace_id"], "1-a-b");
        assert_eq!(v["parent_id"], "0123456789abcdef");
        assert_eq!(v["name"], "DynamoDB");
        assert_eq!(v["namespace"], "aws");
        assert_eq!(v["aws"]["operation"], "PutItem");
        assert_eq!(v["start_time"].as_f64().unwrap(), 1_700_000_000.25);
        assert!((v["end_time"].as_f64().unwrap() - 1_700_000_000.262).abs() < 1e-6);
        let id = v["id"].as_str().unwrap();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(v.get("fault").is_none() && v.get("error").is_none());
    }

    #[test]
    fn daemon_addresses_take_both_forms() {
        assert_eq!(
            Daemon::at("127.0.0.1:2000").unwrap().addr,
            "127.0.0.1:2000".parse().unwrap()
        );
        assert_eq!(
            Daemon::at("tcp:127.0.0.1:2001 udp:127.0.0.1:2002")
                .unwrap()
                .addr,
            "127.0.0.1:2002".parse().unwrap()
        );
        assert!(Daemon::at("not an address").is_none());
    }
}
