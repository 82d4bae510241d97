//! Durable state: users, projects, messages, runs and their events, versions,
//! step results (for idempotent handlers), run locks, workflow executions and
//! published sites with their slugs.
//!
//! [`Store`] has two SQL implementations generated from one body of queries
//! (`sql.rs`): SQLite, the embedded default, and PostgreSQL for RDS; both run
//! versioned migrations at connect time, except PostgreSQL with
//! `APNA_DB_MIGRATIONS=check` (AWS), which only checks them: there the deploy
//! runs [`migrate`] once, as a role that may create tables. The third is DynamoDB
//! ([`dynamodb`], cargo feature `dynamodb`), the serverless deployment's
//! database. All three pass the same conformance suite
//! (`tests/store_conformance.rs` in this crate).

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::blob::BlobStore;
use crate::config::{dynamodb_table, Config, DbMigrations};
use crate::domain::{
    Execution, HistoryEvent, Message, NewMessage, Page, Project, ProjectStatus, Run, RunEvent,
    RunEventKind, Site, User, Version,
};
use crate::error::{Error, Result};

#[cfg(feature = "dynamodb")]
pub use dynamodb::DynamoStore;
#[cfg(feature = "sqlite")]
pub use sql::SqliteStore;
pub use sql::{migrate_postgres, Migrated, PostgresStore};

/// Workflow executions and their history: the part of the store the ASL
/// interpreter uses, so it (and its tests) need nothing else.
#[async_trait]
pub trait ExecutionLog: Send + Sync {
    /// Inserts an execution; `Conflict` if the id exists.
    async fn create_execution(&self, exec: &Execution) -> Result<()>;
    /// An execution by id.
    async fn get_execution(&self, id: &str) -> Result<Option<Execution>>;
    /// Overwrites status, output, error and checkpoint.
    async fn update_execution(&self, exec: &Execution) -> Result<()>;
    /// Executions still `RUNNING` (to resume after a restart).
    async fn running_executions(&self) -> Result<Vec<Execution>>;
    /// Appends a history event; returns it with its seq.
    async fn append_history(
        &self,
        execution_id: &str,
        event_type: &str,
        state_name: Option<&str>,
        data: &Value,
    ) -> Result<HistoryEvent>;
    /// An execution's history in order.
    async fn list_history(&self, execution_id: &str) -> Result<Vec<HistoryEvent>>;
}

/// Everything Apna persists. Implementations are safe to share between tasks
/// and processes (Lambdas): every operation that must be atomic is one
/// statement, one transaction or one conditional write.
#[async_trait]
pub trait Store: ExecutionLog + Send + Sync {
    /// Backend name for health reports (`sqlite`, `postgres`, `dynamodb`).
    fn backend(&self) -> &'static str;
    /// A cheap round trip, for `/healthz`.
    async fn ping(&self) -> Result<()>;

    /// Inserts the user if new; returns the stored user.
    async fn upsert_user(&self, user: &User) -> Result<User>;
    /// A user by id.
    async fn get_user(&self, id: &str) -> Result<Option<User>>;

    /// Inserts a new project.
    async fn create_project(&self, project: &Project) -> Result<()>;
    /// A project by id, deleted ones included.
    async fn get_project(&self, id: &str) -> Result<Option<Project>>;
    /// An owner's projects that are not deleted, most recently active first.
    async fn list_projects(&self, owner: &str, page: Page) -> Result<Vec<Project>>;
    /// Number of an owner's projects that are not deleted.
    async fn count_projects(&self, owner: &str) -> Result<i64>;
    /// Moves a project from `from` to `to` if it is still in `from` (compare-and-set;
    /// the transition must be allowed by [`ProjectStatus::can_become`]). `error` is
    /// stored alongside (cleared when `None`). Returns whether it moved.
    async fn set_project_status(
        &self,
        id: &str,
        from: ProjectStatus,
        to: ProjectStatus,
        error: Option<&str>,
    ) -> Result<bool>;
    /// Makes a live project's preview public or private again; `false` when
    /// there is no such project (or it is deleted).
    async fn set_preview_public(&self, id: &str, public: bool) -> Result<bool>;
    /// Records activity now (drives hibernation).
    async fn touch_project(&self, id: &str, at: DateTime<Utc>) -> Result<()>;
    /// Soft-deletes a project; `false` if it was already deleted or never existed.
    async fn soft_delete_project(&self, id: &str) -> Result<bool>;
    /// Projects that are `ready` or `failed`, not running, and inactive since `before`.
    async fn idle_projects(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<Project>>;
    /// Projects in status `building` (not deleted), least recently changed
    /// first: where a run whose workflow ended without finishing it would be
    /// stuck (the sweep's reconciliation looks here).
    async fn building_projects(&self, limit: i64) -> Result<Vec<Project>>;
    /// Ids of projects deleted before `before` (oldest first), due for purging.
    async fn deleted_projects(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<String>>;
    /// Removes a deleted project and everything recorded about it (runs,
    /// events, step results, executions, messages, versions, the project
    /// itself last). Idempotent: if it stops part-way (a crash, a timeout) the
    /// project is still deleted-and-due, and the next call removes the rest;
    /// the SQL stores do it in one transaction. `false` if the project is not
    /// deleted (or is already gone).
    async fn purge_project(&self, id: &str) -> Result<bool>;

    /// Takes the project's run lock for `run_id`. Atomic: of concurrent callers
    /// exactly one gets `true`. Re-acquiring by the holder returns `true`.
    async fn acquire_run_lock(&self, project_id: &str, run_id: &str) -> Result<bool>;
    /// Releases the lock if `run_id` holds it; returns whether it did.
    async fn release_run_lock(&self, project_id: &str, run_id: &str) -> Result<bool>;
    /// The run holding the project's lock, if any.
    async fn run_lock_holder(&self, project_id: &str) -> Result<Option<String>>;

    /// Inserts a run.
    async fn create_run(&self, run: &Run) -> Result<()>;
    /// A run by id.
    async fn get_run(&self, id: &str) -> Result<Option<Run>>;
    /// Overwrites a run's mutable fields (status, counters, usage, cost, errors).
    async fn update_run(&self, run: &Run) -> Result<()>;
    /// A project's runs, newest first.
    async fn list_runs(&self, project_id: &str, page: Page) -> Result<Vec<Run>>;
    /// Runs of an owner that have not ended.
    async fn count_active_runs(&self, owner: &str) -> Result<i64>;
    /// What `owner`'s runs created at or after `since` have cost so far, in USD.
    async fn cost_since(&self, owner: &str, since: DateTime<Utc>) -> Result<f64>;

    /// Appends messages to a project's conversation in one transaction, assigning seq.
    async fn append_messages(&self, project_id: &str, msgs: &[NewMessage]) -> Result<Vec<Message>>;
    /// A project's conversation in order.
    async fn list_messages(&self, project_id: &str, page: Page) -> Result<Vec<Message>>;

    /// Appends an event to a run's stream; returns it with its seq.
    async fn append_event(
        &self,
        run_id: &str,
        kind: RunEventKind,
        data: &Value,
    ) -> Result<RunEvent>;
    /// A run's events with seq > `after`, in order, at most `limit`.
    async fn list_events(&self, run_id: &str, after: i64, limit: i64) -> Result<Vec<RunEvent>>;

    /// Stores `output` under (run, key) if nothing is stored yet, and returns what is
    /// stored afterwards: a retried step gets the first attempt's result back.
    async fn put_step_result(&self, run_id: &str, key: &str, output: &Value) -> Result<Value>;
    /// The stored result for (run, key), if any.
    async fn get_step_result(&self, run_id: &str, key: &str) -> Result<Option<Value>>;

    /// Records a version with the next number for the project; returns it.
    async fn create_version(
        &self,
        project_id: &str,
        run_id: Option<&str>,
        snapshot_key: &str,
        summary: &str,
        file_diffs: &[crate::domain::FileDiff],
    ) -> Result<Version>;
    /// Sets a version's screenshots (replacing any); `false` when there is no such version.
    async fn set_version_screenshots(
        &self,
        project_id: &str,
        number: i64,
        screenshots: &[crate::domain::Screenshot],
    ) -> Result<bool>;
    /// A project's versions, oldest first.
    async fn list_versions(&self, project_id: &str) -> Result<Vec<Version>>;
    /// One version.
    async fn get_version(&self, project_id: &str, number: i64) -> Result<Option<Version>>;

    /// A project's site, if it was ever published.
    async fn get_site(&self, project_id: &str) -> Result<Option<Site>>;
    /// Writes `site` if the stored row's publish in progress is `expected_job`
    /// (a missing row counts as having none): compare-and-set, so of two
    /// publishes started at once only one proceeds. Returns whether it wrote.
    async fn save_site(&self, site: &Site, expected_job: Option<&str>) -> Result<bool>;
    /// Claims `slug` for `project_id`. Atomic across users: `false` when
    /// another project holds it; `true` when it was free or already this project's.
    async fn claim_slug(&self, slug: &str, project_id: &str) -> Result<bool>;
    /// Frees `slug` if `project_id` holds it; returns whether it did.
    async fn release_slug(&self, slug: &str, project_id: &str) -> Result<bool>;
    /// The project holding `slug`, if any.
    async fn slug_owner(&self, slug: &str) -> Result<Option<String>>;
}

/// Opens the store `DATABASE_URL` names. DynamoDB keeps items over its 400 KB
/// item limit in `blobs`; the SQL stores have no such limit and ignore it.
pub async fn open(config: &Config, blobs: Arc<dyn BlobStore>) -> Result<Arc<dyn Store>> {
    if let Some(table) = dynamodb_table(&config.database_url) {
        #[cfg(feature = "dynamodb")]
        {
            let options = dynamodb::DynamoOptions {
                table: table.to_string(),
                endpoint: config.dynamodb_endpoint.clone(),
                event_retention_days: config.event_retention_days,
            };
            let store = DynamoStore::connect(options, blobs).await?;
            // An emulator starts empty; on AWS the table is the stack's.
            if config.dynamodb_endpoint.is_some() {
                store.ensure_table().await?;
            }
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "dynamodb"))]
        {
            let _ = (table, blobs);
            return Err(dynamodb_not_built());
        }
    }
    if config.db_migrations == DbMigrations::Check && is_postgres(&config.database_url) {
        return Ok(Arc::new(
            PostgresStore::connect_checked(&config.database_url, config.db_pool_size).await?,
        ));
    }
    connect_with_pool(&config.database_url, config.db_pool_size).await
}

/// [`open`] for a function that does not use the store at cold start: a
/// PostgreSQL store connects on its first query instead (no connection, no
/// schema check now); the others open as [`open`] does, which costs no round
/// trip on AWS.
pub async fn open_lazy(config: &Config, blobs: Arc<dyn BlobStore>) -> Result<Arc<dyn Store>> {
    if is_postgres(&config.database_url) {
        return Ok(Arc::new(PostgresStore::connect_lazy(
            &config.database_url,
            config.db_pool_size,
        )?));
    }
    open(config, blobs).await
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Applies the schema migrations of this build to the database `url` names
/// (`apna migrate`, the deploy's migrate step). SQLite applies them at every
/// open anyway; DynamoDB has none.
pub async fn migrate(url: &str) -> Result<Option<Migrated>> {
    if is_postgres(url) {
        return migrate_postgres(url).await.map(Some);
    }
    if url.starts_with("sqlite:") {
        open_sqlite(url).await?;
    }
    Ok(None)
}

/// Opens (creating if missing) the SQLite database `url` names.
#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(SqliteStore::connect(url).await?))
}

/// A build without SQLite (the Lambdas) refuses a `sqlite://` URL.
#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_url: &str) -> Result<Arc<dyn Store>> {
    Err(Error::Config {
        var: "DATABASE_URL",
        message: "SQLite needs a build with `--features sqlite` (the `apna` CLI has it by default); use postgres://… or dynamodb://table".into(),
    })
}

#[cfg(not(feature = "dynamodb"))]
fn dynamodb_not_built() -> Error {
    Error::Config {
        var: "DATABASE_URL",
        message: "DynamoDB needs a build with `--features dynamodb`".into(),
    }
}

/// Opens a SQL store named by a URL: `sqlite://path` (created if missing) or
/// `postgres://…`. DynamoDB needs a blob store too: use [`open`].
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    connect_with_pool(url, 16).await
}

/// [`connect`] with a PostgreSQL pool of at most `pool` connections (`APNA_DB_POOL_SIZE`).
pub async fn connect_with_pool(url: &str, pool: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        open_sqlite(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect_with_pool(url, pool).await?))
    } else if dynamodb_table(url).is_some() {
        Err(Error::Config {
            var: "DATABASE_URL",
            message: "a DynamoDB store is opened with its blob store (store::open)".into(),
        })
    } else {
        Err(Error::Config {
            var: "DATABASE_URL",
            message: "expected sqlite://…, postgres://… or dynamodb://table".into(),
        })
    }
}
