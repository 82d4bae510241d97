//! X-Ray subsegments as a Lambda's daemon receives them: a UDP socket on
//! loopback stands in for the daemon, the DynamoDB store talks to the
//! emulator, and traced spans go through the layer `apna::lambda` installs.
//! One test: the daemon address and trace header are process-wide.

use std::net::UdpSocket;
use std::time::Duration;

use apna::domain::Project;
use apna::xray::XRayLayer;
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// Every document the daemon got since the last call (header checked).
fn received(daemon: &UdpSocket) -> Vec<Value> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = daemon.recv(&mut buf) {
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let (header, body) = text.split_once('\n').unwrap();
        assert_eq!(header, r#"{"format": "json", "version": 1}"#);
        out.push(serde_json::from_str(body).unwrap());
    }
    out
}

#[tokio::test]
async fn aws_calls_and_traced_spans_become_subsegments_of_the_invocation() {
    if apna::testing::services::dynamodb_url().is_none() {
        assert!(
            !apna::testing::services::services_required(),
            "APNA_TEST_DYNAMODB_URL is required"
        );
        eprintln!("skipped: no DynamoDB emulator (APNA_TEST_DYNAMODB_URL)");
        return;
    }
    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    std::env::set_var(
        "AWS_XRAY_DAEMON_ADDRESS",
        daemon.local_addr().unwrap().to_string(),
    );
    let root = "1-67891233-abcdef012345678912345678";
    let parent = "53995c3f42cd8ad8";
    std::env::set_var(
        "_X_AMZN_TRACE_ID",
        format!("Root={root};Parent={parent};Sampled=1"),
    );

    // Every store call is one DynamoDB operation, named as X-Ray names them.
    let blobs = tempfile::tempdir().unwrap();
    let store = apna::testing::services::fresh_dynamodb(blobs.path())
        .await
        .unwrap();
    received(&daemon);
    let project = Project::new("u1", "Traced", "vite-react");
    apna::store::Store::create_project(&*store, &project)
        .await
        .unwrap();
    let docs = received(&daemon);
    assert!(!docs.is_empty(), "no subsegment for the store call");
    for d in &docs {
        assert_eq!(d["type"], "subsegment", "{d}");
        assert_eq!(d["trace_id"], root, "{d}");
        assert_eq!(d["parent_id"], parent, "{d}");
        assert_eq!(d["name"], "DynamoDB", "{d}");
        assert_eq!(d["namespace"], "aws", "{d}");
        assert!(d["end_time"].as_f64() >= d["start_time"].as_f64(), "{d}");
        assert!(d.get("fault").is_none(), "{d}");
    }
    let ops: Vec<&str> = docs
        .iter()
        .filter_map(|d| d["aws"]["operation"].as_str())
        .collect();
    assert!(
        ops.iter()
            .any(|o| o.contains("PutItem") || o.contains("TransactWriteItems")),
        "{ops:?}"
    );

    // A refused call is marked as a client error, not a fault.
    let other = apna::store::DynamoStore::with_client(
        store.client().clone(),
        apna::store::dynamodb::DynamoOptions {
            table: "no-such-table".into(),
            endpoint: None,
            event_retention_days: 30,
        },
        std::sync::Arc::new(apna::blob::FsBlobStore::new(blobs.path()).await.unwrap()),
    );
    assert!(apna::store::Store::get_project(&other, &project.id)
        .await
        .is_err());
    let docs = received(&daemon);
    assert!(
        docs.iter()
            .any(|d| d["error"] == true && d.get("fault").is_none()),
        "{docs:?}"
    );

    // Spans with an `xray` field (model, sandbox calls) through the layer.
    let subscriber = tracing_subscriber::registry().with(XRayLayer::from_env().unwrap());
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        let span = tracing::debug_span!(
            "sandboxd",
            xray = "sandbox",
            project_id = "p-1",
            uri = "/v1/exec"
        );
        span.in_scope(|| std::thread::sleep(Duration::from_millis(20)));
        drop(span);
        tracing::debug_span!("untraced", project_id = "p-1").in_scope(|| {});
    }
    let docs = received(&daemon);
    assert_eq!(docs.len(), 1, "only the span with an xray field: {docs:?}");
    let d = &docs[0];
    assert_eq!(d["name"], "sandbox");
    assert_eq!(d["namespace"], "remote");
    assert_eq!(d["annotations"]["project_id"], "p-1");
    assert_eq!(d["parent_id"], parent);
    let took = d["end_time"].as_f64().unwrap() - d["start_time"].as_f64().unwrap();
    assert!(took >= 0.019, "{took}");

    // PostgreSQL statements, through the layer with the filter the Lambda
    // entry points install: one subsegment per statement, with its summary.
    if let Some(url) = apna::testing::services::fresh_postgres_url().await {
        let pg = apna::store::PostgresStore::connect(&url).await.unwrap();
        apna::store::Store::create_project(&pg, &project)
            .await
            .unwrap();
        received(&daemon);
        let subscriber = tracing_subscriber::registry().with(
            XRayLayer::from_env()
                .unwrap()
                .with_filter(tracing_subscriber::filter::filter_fn(apna::xray::wanted)),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        let got = apna::store::Store::get_project(&pg, &project.id)
            .await
            .unwrap();
        assert_eq!(got.map(|p| p.id), Some(project.id.clone()));
        let docs = received(&daemon);
        assert!(!docs.is_empty(), "no subsegment for the SQL statement");
        for d in &docs {
            assert_eq!(d["name"], "PostgreSQL", "{d}");
            assert_eq!(d["namespace"], "remote", "{d}");
            assert_eq!(d["parent_id"], parent, "{d}");
            assert_eq!(d["sql"]["database_type"], "PostgreSQL", "{d}");
            assert!(d["end_time"].as_f64() >= d["start_time"].as_f64(), "{d}");
        }
        let queries: Vec<&str> = docs
            .iter()
            .filter_map(|d| d["sql"]["sanitized_query"].as_str())
            .collect();
        assert!(
            queries
                .iter()
                .any(|q| q.to_uppercase().starts_with("SELECT")),
            "{queries:?}"
        );
        assert!(
            !queries.iter().any(|q| q.contains(&project.id)),
            "bound values stay out: {queries:?}"
        );
    } else {
        assert!(
            !apna::testing::services::services_required(),
            "APNA_TEST_POSTGRES_URL is required"
        );
    }

    // An invocation X-Ray does not sample sends nothing.
    std::env::set_var(
        "_X_AMZN_TRACE_ID",
        format!("Root={root};Parent={parent};Sampled=0"),
    );
    apna::store::Store::get_project(&*store, &project.id)
        .await
        .unwrap();
    assert!(received(&daemon).is_empty());
}
