//! Migrations once per deploy (PostgreSQL, APNA_TEST_POSTGRES_URL): with
//! `APNA_DB_MIGRATIONS=check`, as every function has on AWS, an app facing an
//! unmigrated database fails naming the migrate step; after the migrate step
//! (run as the database's owner) it works as a role that may not create
//! anything, which is all the functions' database user needs.

use std::sync::Arc;

use apna::domain::{Project, ProjectStatus, Run};
use sqlx::Connection;

async fn open(url: &str) -> apna::error::Result<Arc<dyn apna::store::Store>> {
    let dir = tempfile::tempdir().unwrap();
    let config = apna::testing::fixtures::config(
        dir.path(),
        &[("DATABASE_URL", url), ("APNA_DB_MIGRATIONS", "check")],
    );
    let blobs: Arc<dyn apna::blob::BlobStore> =
        Arc::new(apna::blob::FsBlobStore::new(dir.path()).await.unwrap());
    apna::store::open(&config, blobs).await
}

/// `url` with another user and password.
fn as_user(url: &str, user: &str, password: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_username(user).unwrap();
    u.set_password(Some(password)).unwrap();
    u.to_string()
}

#[tokio::test]
async fn the_app_checks_the_schema_and_runs_as_a_role_without_create() {
    let Some(owner_url) = apna::testing::services::fresh_postgres_url().await else {
        return;
    };
    // An empty database: the app refuses, naming the step that fixes it.
    let err = open(&owner_url)
        .await
        .err()
        .expect("an unmigrated database is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("migrate step")
            && msg.contains("MigrateFunction")
            && msg.contains("apna migrate"),
        "{msg}"
    );
    // Checking changed nothing.
    let mut owner = sqlx::PgConnection::connect(&owner_url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(tables, 0, "the check must not create anything");

    // The migrate step, as the owner: once, then nothing to do.
    let m = apna::store::migrate(&owner_url).await.unwrap().unwrap();
    assert!(!m.applied.is_empty() && m.version == *m.applied.last().unwrap());
    // Every migration this build carries (0001_init, 0002_sites,
    // 0003_preview_public, …), none skipped.
    let mut files: Vec<i64> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.split_once('_')?.0.parse().ok()
        })
        .collect();
    files.sort_unstable();
    assert!(files.len() >= 3, "{files:?}");
    assert_eq!(m.applied, files);
    let again = apna::store::migrate(&owner_url).await.unwrap().unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.version, m.version);

    // The functions' role: data only, no CREATE anywhere.
    let app = format!("apna_app_{}", uuid::Uuid::new_v4().simple());
    let db = url::Url::parse(&owner_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    for sql in [
        format!("CREATE ROLE {app} LOGIN PASSWORD 'app-pass' NOCREATEDB NOCREATEROLE"),
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {db} TO {app}"),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
        format!("GRANT USAGE ON SCHEMA public TO {app}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}"),
    ] {
        sqlx::query(&sql).execute(&mut owner).await.unwrap();
    }
    let app_url = as_user(&owner_url, &app, "app-pass");
    let mut as_app = sqlx::PgConnection::connect(&app_url).await.unwrap();
    let denied = sqlx::query("CREATE TABLE sneaky (x int)")
        .execute(&mut as_app)
        .await
        .unwrap_err()
        .to_string();
    assert!(denied.contains("permission denied"), "{denied}");

    let store = open(&app_url)
        .await
        .expect("the app connects as the data-only role");
    let mut p = Project::new("alice", "a todo list", "vite-react");
    p.status = ProjectStatus::Ready;
    store.create_project(&p).await.unwrap();
    let run = Run::new(&p.id, "alice", "make it");
    store.create_run(&run).await.unwrap();
    assert!(store.acquire_run_lock(&p.id, &run.id).await.unwrap());
    assert_eq!(store.get_project(&p.id).await.unwrap().unwrap().id, p.id);
    // The later migrations' tables and columns, as the data-only role:
    // 0002 (sites and their slugs), 0003 (public previews).
    assert!(store.claim_slug("todo-list", &p.id).await.unwrap());
    let mut site = apna::domain::Site::new(&p.id);
    site.slug = Some("todo-list".into());
    assert!(store.save_site(&site, None).await.unwrap());
    assert_eq!(
        store
            .get_site(&p.id)
            .await
            .unwrap()
            .unwrap()
            .slug
            .as_deref(),
        Some("todo-list")
    );
    assert!(store.set_preview_public(&p.id, true).await.unwrap());
    as_app.close().await.unwrap();
    drop(store);
    // Roles outlive the test database: drop this one.
    for sql in [
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app}"),
        format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {app}"),
        format!("REVOKE ALL ON SCHEMA public FROM {app}"),
        format!("REVOKE ALL ON DATABASE {db} FROM {app}"),
        format!("DROP ROLE {app}"),
    ] {
        sqlx::query(&sql).execute(&mut owner).await.unwrap();
    }
}

#[tokio::test]
async fn a_changed_migration_is_named() {
    let Some(url) = apna::testing::services::fresh_postgres_url().await else {
        return;
    };
    apna::store::migrate(&url).await.unwrap();
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea")
        .execute(&mut c)
        .await
        .unwrap();
    let msg = open(&url).await.err().unwrap().to_string();
    assert!(msg.contains("differs from this build"), "{msg}");
}
