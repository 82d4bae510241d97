//! Where the external services for tests are (started by `tests/run`).
//!
//! Each accessor returns the service URL, or `None` (with a printed "skipped")
//! when the variable is unset; with `APNA_REQUIRE_SERVICES=1` (as `tests/run`
//! sets) a missing service is a test failure instead, so CI never skips.

fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("APNA_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{var} is not set but APNA_REQUIRE_SERVICES=1: start it with tests/run");
            }
            eprintln!("skipped: {var} is not set (tests/run sets it)");
            None
        }
    }
}

/// PostgreSQL URL for a database the test may freely write to.
pub fn postgres_url() -> Option<String> {
    service("APNA_TEST_POSTGRES_URL")
}

/// moto_server base URL (S3 and Step Functions APIs).
pub fn moto_url() -> Option<String> {
    let url = service("APNA_TEST_MOTO_URL")?;
    // The AWS SDK needs some credentials; moto accepts any.
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var(k).is_err() {
            std::env::set_var(k, v);
        }
    }
    Some(url)
}

/// A new, empty PostgreSQL database for one test (so tests that count rows do
/// not see each other's data); its URL, or `None` as for [`postgres_url`].
pub async fn fresh_postgres_url() -> Option<String> {
    use sqlx::Connection;
    let base = postgres_url()?;
    let name = format!("apna_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&base).expect("APNA_TEST_POSTGRES_URL is a URL");
    url.set_path(&name);
    Some(url.to_string())
}

/// Whether tests must not skip for a missing optional tool (`APNA_REQUIRE_SERVICES=1`).
pub fn services_required() -> bool {
    std::env::var("APNA_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// DynamoDB emulator endpoint (dynalite, started by `tests/run`).
pub fn dynamodb_url() -> Option<String> {
    let url = service("APNA_TEST_DYNAMODB_URL")?;
    // The AWS SDK signs every request; the emulator accepts any credentials.
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var(k).is_err() {
            std::env::set_var(k, v);
        }
    }
    Some(url)
}

/// A DynamoDB store on a new, empty table of the emulator, spilling large
/// items to a blob directory under `blob_dir`; `None` as for [`dynamodb_url`].
#[cfg(feature = "dynamodb")]
pub async fn fresh_dynamodb(
    blob_dir: &std::path::Path,
) -> Option<std::sync::Arc<crate::store::DynamoStore>> {
    use crate::store::dynamodb::{create_table, DynamoOptions, DynamoStore};
    let endpoint = dynamodb_url()?;
    let table = format!("apna-t-{}", uuid::Uuid::new_v4().simple());
    let blobs = std::sync::Arc::new(crate::blob::FsBlobStore::new(blob_dir).await.unwrap());
    let store = DynamoStore::connect(
        DynamoOptions {
            table: table.clone(),
            endpoint: Some(endpoint),
            event_retention_days: 30,
        },
        blobs,
    )
    .await
    .unwrap();
    create_table(store.client(), &table)
        .await
        .expect("create the test table");
    Some(std::sync::Arc::new(store))
}
