//! The SQL stores: one body of queries, instantiated for SQLite and PostgreSQL.
//!
//! The queries use `$n` placeholders, which both engines accept (SQLite treats
//! them as named parameters numbered in order of appearance), and only types
//! both map the same way (TEXT, BIGINT, DOUBLE PRECISION). A macro stamps the
//! body out per backend so each is compiled against its own concrete driver,
//! instead of going through `sqlx::Any` and its narrower type support.
//!
//! Sequence numbers (message seq, event seq, version number) are computed as
//! `MAX + 1` inside the INSERT, so on SQLite the statement takes the write lock
//! first; on PostgreSQL two concurrent inserts can collide on the primary key,
//! which [`retry_unique`] absorbs by trying again.

#[cfg(feature = "sqlite")]
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{PgPool, Row};

use super::{ExecutionLog, Store};
use crate::domain::{
    from_millis, now, Execution, ExecutionStatus, FileDiff, HistoryEvent, Message, NewMessage,
    Page, Project, ProjectStatus, Role, Run, RunEvent, RunEventKind, RunStatus, Screenshot, Site,
    Usage, User, Version,
};
use crate::error::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often an insert that lost a sequence-number race is retried.
const UNIQUE_RETRIES: usize = 20;

/// The embedded default: a SQLite file (WAL mode) under `APNA_DATA_DIR`.
#[cfg(feature = "sqlite")]
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

#[cfg(feature = "sqlite")]
impl SqliteStore {
    /// Opens (creating if missing) a SQLite database and runs migrations.
    /// `sqlite::memory:` gives a private in-memory database (tests).
    pub async fn connect(url: &str) -> Result<Self> {
        let memory = url.contains(":memory:");
        let mut opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::Config {
                var: "DATABASE_URL",
                message: format!("not a SQLite URL: {e}"),
            })?
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if !memory {
            opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            if let Some(dir) = opts.get_filename().parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)?;
                }
            }
        }
        // Each connection to `:memory:` is its own database, so keep exactly one.
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

/// PostgreSQL (RDS in production).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (pool of 16) and runs migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_pool(url, 16).await
    }

    /// Connects with at most `max_connections` pooled connections (1–2 per
    /// Lambda instance keeps a fleet of functions within RDS's limit), and
    /// applies the migrations.
    pub async fn connect_with_pool(url: &str, max_connections: u32) -> Result<Self> {
        let pool = Self::pool(url, max_connections).await?;
        MIGRATOR.run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// Connects without changing the schema: fails, naming the migrate step,
    /// when a migration of this build is not applied. For deployments where
    /// migrations run once per deploy and the app's role may not create tables.
    pub async fn connect_checked(url: &str, max_connections: u32) -> Result<Self> {
        let pool = Self::pool(url, max_connections).await?;
        check_schema(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// A pool that connects on first use, without the schema check: for a
    /// function that seldom or never reads the store, so its cold start does
    /// not wait on the database.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy(url)
            .map_err(|e| Error::Store(format!("not a PostgreSQL URL: {e}")))?;
        Ok(PostgresStore { pool })
    }

    async fn pool(url: &str, max_connections: u32) -> Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| Error::Store(format!("cannot connect to PostgreSQL: {e}")))
    }
}

/// What [`migrate_postgres`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Migrated {
    /// Versions applied by this call.
    pub applied: Vec<i64>,
    /// The schema's version afterwards (the newest migration).
    pub version: i64,
}

/// The migrations this build needs: (version, checksum, description).
fn wanted_migrations() -> Vec<(i64, Vec<u8>, String)> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m.checksum.to_vec(), m.description.to_string()))
        .collect()
}

/// Applies this build's migrations to the PostgreSQL database at `url` (as
/// a role that may create tables: the deploy's migrate step, `apna migrate`).
pub async fn migrate_postgres(url: &str) -> Result<Migrated> {
    let pool = PostgresStore::pool(url, 1).await?;
    let before = applied_versions(&pool).await?.unwrap_or_default();
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    let wanted = wanted_migrations();
    Ok(Migrated {
        applied: wanted
            .iter()
            .map(|(v, _, _)| *v)
            .filter(|v| !before.iter().any(|(b, _)| b == v))
            .collect(),
        version: wanted.last().map_or(0, |(v, _, _)| *v),
    })
}

/// The migrations recorded as applied, or `None` when none ever were.
async fn applied_versions(pool: &PgPool) -> Result<Option<Vec<(i64, Vec<u8>)>>> {
    let rows = sqlx::query(
        "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await;
    match rows {
        Ok(rows) => Ok(Some(
            rows.iter()
                .map(|r| Ok((r.try_get("version")?, r.try_get("checksum")?)))
                .collect::<Result<_>>()?,
        )),
        // undefined_table: this database was never migrated.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The text every "schema not ready" error ends with.
const RUN_MIGRATE: &str = "run the migrate step first: on AWS the stack's MigrateFunction, which \
every `sam deploy` runs (infra/README.md); elsewhere `apna migrate` with the same DATABASE_URL \
as a role that may create tables";

/// Checks that every migration of this build is applied, unchanged.
async fn check_schema(pool: &PgPool) -> Result<()> {
    let Some(applied) = applied_versions(pool).await? else {
        return Err(Error::Store(format!(
            "the database has no Apna schema yet; {RUN_MIGRATE}"
        )));
    };
    for (version, checksum, description) in wanted_migrations() {
        match applied.iter().find(|(v, _)| *v == version) {
            None => {
                return Err(Error::Store(format!(
                    "the database schema is behind this build: migration {version} ({description}) is not applied; {RUN_MIGRATE}"
                )))
            }
            Some((_, c)) if *c != checksum => {
                return Err(Error::Store(format!(
                    "migration {version} ({description}) in the database differs from this build's: the database was migrated by another version of Apna"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("serialize: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Store(format!("corrupt JSON column: {e}")))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A duplicate key is a `Conflict` naming the thing; anything else a store error.
fn conflict_if_exists(e: sqlx::Error, what: &str, id: &str) -> Error {
    if is_unique_violation(&e) {
        Error::Conflict(format!("{what} {id} already exists"))
    } else {
        e.into()
    }
}

/// Runs `f` again while it fails on a unique violation (a lost seq race).
async fn retry_unique<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Err(e) if is_unique_violation(&e) && tries < UNIQUE_RETRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(1 + rand::random::<u64>() % 5)).await;
            }
            other => return other.map_err(Error::from),
        }
    }
}

macro_rules! sql_store {
    ($store:ident, $row:ty, $backend:literal) => {
        impl $store {
            fn project(r: &$row) -> Result<Project> {
                Ok(Project {
                    id: r.try_get("id")?,
                    owner: r.try_get("owner")?,
                    name: r.try_get("name")?,
                    prompt: r.try_get("prompt")?,
                    template: r.try_get("template")?,
                    status: ProjectStatus::parse(&r.try_get::<String, _>("status")?)?,
                    error: r.try_get("error")?,
                    created_at: from_millis(r.try_get("created_at")?),
                    updated_at: from_millis(r.try_get("updated_at")?),
                    last_active: from_millis(r.try_get("last_active")?),
                    deleted_at: r.try_get::<Option<i64>, _>("deleted_at")?.map(from_millis),
                    preview_public: r.try_get("preview_public")?,
                })
            }

            fn site(r: &$row) -> Result<Site> {
                let time = |col: &str| -> Result<Option<DateTime<Utc>>> {
                    Ok(r.try_get::<Option<i64>, _>(col)?.map(from_millis))
                };
                Ok(Site {
                    project_id: r.try_get("project_id")?,
                    slug: r.try_get("slug")?,
                    version: r.try_get("version")?,
                    deploy_id: r.try_get("deploy_id")?,
                    published_at: time("published_at")?,
                    job: r.try_get("job")?,
                    pending_version: r.try_get("pending_version")?,
                    pending_slug: r.try_get("pending_slug")?,
                    pending_since: time("pending_since")?,
                    last_error: r.try_get("last_error")?,
                    updated_at: from_millis(r.try_get("updated_at")?),
                })
            }

            fn run(r: &$row) -> Result<Run> {
                Ok(Run {
                    id: r.try_get("id")?,
                    project_id: r.try_get("project_id")?,
                    owner: r.try_get("owner")?,
                    message: r.try_get("message")?,
                    status: RunStatus::parse(&r.try_get::<String, _>("status")?)?,
                    step: r.try_get("step")?,
                    attempts: r.try_get("attempts")?,
                    usage: Usage {
                        input_tokens: r.try_get("input_tokens")?,
                        output_tokens: r.try_get("output_tokens")?,
                        cache_read_tokens: r.try_get("cache_read_tokens")?,
                        cache_write_tokens: r.try_get("cache_write_tokens")?,
                    },
                    cost_usd: r.try_get("cost_usd")?,
                    stop_reason: r.try_get("stop_reason")?,
                    error: r.try_get("error")?,
                    summary: r.try_get("summary")?,
                    created_at: from_millis(r.try_get("created_at")?),
                    updated_at: from_millis(r.try_get("updated_at")?),
                    finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_millis),
                })
            }

            fn message(r: &$row) -> Result<Message> {
                Ok(Message {
                    id: r.try_get("id")?,
                    project_id: r.try_get("project_id")?,
                    run_id: r.try_get("run_id")?,
                    seq: r.try_get("seq")?,
                    role: Role::parse(&r.try_get::<String, _>("role")?)?,
                    content: from_json(&r.try_get::<String, _>("content")?)?,
                    tool_calls: from_json(&r.try_get::<String, _>("tool_calls")?)?,
                    file_diffs: from_json(&r.try_get::<String, _>("file_diffs")?)?,
                    created_at: from_millis(r.try_get("created_at")?),
                })
            }

            fn event(r: &$row) -> Result<RunEvent> {
                Ok(RunEvent {
                    run_id: r.try_get("run_id")?,
                    seq: r.try_get("seq")?,
                    kind: RunEventKind::parse(&r.try_get::<String, _>("kind")?)?,
                    data: from_json(&r.try_get::<String, _>("data")?)?,
                    created_at: from_millis(r.try_get("created_at")?),
                })
            }

            fn version(r: &$row) -> Result<Version> {
                Ok(Version {
                    project_id: r.try_get("project_id")?,
                    number: r.try_get("number")?,
                    run_id: r.try_get("run_id")?,
                    snapshot_key: r.try_get("snapshot_key")?,
                    summary: r.try_get("summary")?,
                    file_diffs: from_json(&r.try_get::<String, _>("file_diffs")?)?,
                    screenshots: from_json(&r.try_get::<String, _>("screenshots")?)?,
                    created_at: from_millis(r.try_get("created_at")?),
                })
            }

            fn execution(r: &$row) -> Result<Execution> {
                let opt_json = |col: &str| -> Result<Option<Value>> {
                    match r.try_get::<Option<String>, _>(col)? {
                        Some(s) => Ok(Some(from_json(&s)?)),
                        None => Ok(None),
                    }
                };
                Ok(Execution {
                    id: r.try_get("id")?,
                    state_machine: r.try_get("state_machine")?,
                    status: ExecutionStatus::parse(&r.try_get::<String, _>("status")?)?,
                    input: from_json(&r.try_get::<String, _>("input")?)?,
                    output: opt_json("output")?,
                    error: r.try_get("error")?,
                    checkpoint: opt_json("checkpoint")?,
                    started_at: from_millis(r.try_get("started_at")?),
                    updated_at: from_millis(r.try_get("updated_at")?),
                })
            }

            fn history(r: &$row) -> Result<HistoryEvent> {
                Ok(HistoryEvent {
                    execution_id: r.try_get("execution_id")?,
                    seq: r.try_get("seq")?,
                    event_type: r.try_get("event_type")?,
                    state_name: r.try_get("state_name")?,
                    data: from_json(&r.try_get::<String, _>("data")?)?,
                    timestamp: from_millis(r.try_get("timestamp")?),
                })
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn upsert_user(&self, user: &User) -> Result<User> {
                sqlx::query(
                    "INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&user.id)
                .bind(&user.email)
                .bind(ms(user.created_at))
                .execute(&self.pool)
                .await?;
                self.get_user(&user.id)
                    .await?
                    .ok_or_else(|| Error::Store("user vanished after insert".into()))
            }

            async fn get_user(&self, id: &str) -> Result<Option<User>> {
                let row = sqlx::query("SELECT id, email, created_at FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| {
                    Ok(User {
                        id: r.try_get("id")?,
                        email: r.try_get("email")?,
                        created_at: from_millis(r.try_get("created_at")?),
                    })
                })
                .transpose()
            }

            async fn create_project(&self, p: &Project) -> Result<()> {
                sqlx::query(
                    "INSERT INTO projects (id, owner, name, prompt, template, status, error, \
                     created_at, updated_at, last_active, deleted_at, preview_public) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&p.id)
                .bind(&p.owner)
                .bind(&p.name)
                .bind(&p.prompt)
                .bind(&p.template)
                .bind(p.status.as_str())
                .bind(&p.error)
                .bind(ms(p.created_at))
                .bind(ms(p.updated_at))
                .bind(ms(p.last_active))
                .bind(p.deleted_at.map(ms))
                .bind(p.preview_public)
                .execute(&self.pool)
                .await
                .map_err(|err| conflict_if_exists(err, "project", &p.id))?;
                Ok(())
            }

            async fn get_project(&self, id: &str) -> Result<Option<Project>> {
                let row = sqlx::query("SELECT * FROM projects WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::project).transpose()
            }

            async fn list_projects(&self, owner: &str, page: Page) -> Result<Vec<Project>> {
                let rows = sqlx::query(
                    "SELECT * FROM projects WHERE owner = $1 AND deleted_at IS NULL \
                     ORDER BY last_active DESC, id LIMIT $2 OFFSET $3",
                )
                .bind(owner)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::project).collect()
            }

            async fn count_projects(&self, owner: &str) -> Result<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM projects WHERE owner = $1 AND deleted_at IS NULL",
                )
                .bind(owner)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("n")?)
            }

            async fn set_project_status(
                &self,
                id: &str,
                from: ProjectStatus,
                to: ProjectStatus,
                error: Option<&str>,
            ) -> Result<bool> {
                from.check_transition(to)?;
                let t = ms(now());
                let deleted_at = (to == ProjectStatus::Deleted).then_some(t);
                let res = sqlx::query(
                    "UPDATE projects SET status = $1, error = $2, updated_at = $3, \
                     deleted_at = COALESCE($4, deleted_at) WHERE id = $5 AND status = $6",
                )
                .bind(to.as_str())
                .bind(error)
                .bind(t)
                .bind(deleted_at)
                .bind(id)
                .bind(from.as_str())
                .execute(&self.pool)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn set_preview_public(&self, id: &str, public: bool) -> Result<bool> {
                let res = sqlx::query(
                    "UPDATE projects SET preview_public = $1, updated_at = $2 \
                     WHERE id = $3 AND deleted_at IS NULL",
                )
                .bind(public)
                .bind(ms(now()))
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn touch_project(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "UPDATE projects SET last_active = $1 WHERE id = $2 AND last_active < $3",
                )
                .bind(ms(at))
                .bind(id)
                .bind(ms(at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn soft_delete_project(&self, id: &str) -> Result<bool> {
                let t = ms(now());
                let res = sqlx::query(
                    "UPDATE projects SET status = 'deleted', deleted_at = $1, updated_at = $2 \
                     WHERE id = $3 AND deleted_at IS NULL",
                )
                .bind(t)
                .bind(t)
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn idle_projects(
                &self,
                before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<Project>> {
                let rows = sqlx::query(
                    "SELECT * FROM projects p WHERE p.status IN ('ready', 'failed') \
                     AND p.deleted_at IS NULL AND p.last_active < $1 \
                     AND NOT EXISTS (SELECT 1 FROM run_locks l WHERE l.project_id = p.id) \
                     ORDER BY p.last_active LIMIT $2",
                )
                .bind(ms(before))
                .bind(limit.clamp(1, 1000))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::project).collect()
            }

            async fn building_projects(&self, limit: i64) -> Result<Vec<Project>> {
                let rows = sqlx::query(
                    "SELECT * FROM projects WHERE status = 'building' AND deleted_at IS NULL \
                     ORDER BY updated_at LIMIT $1",
                )
                .bind(limit.clamp(1, 1000))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::project).collect()
            }

            async fn deleted_projects(
                &self,
                before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT id FROM projects WHERE deleted_at IS NOT NULL AND deleted_at < $1 \
                     ORDER BY deleted_at LIMIT $2",
                )
                .bind(ms(before))
                .bind(limit.clamp(1, 1000))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| r.try_get("id").map_err(Into::into))
                    .collect()
            }

            async fn purge_project(&self, id: &str) -> Result<bool> {
                let mut tx = self.pool.begin().await?;
                let deleted = sqlx::query(
                    "DELETE FROM projects WHERE id = $1 AND deleted_at IS NOT NULL",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !deleted {
                    return Ok(false);
                }
                // Generation executions are named by their run id.
                for sql in [
                    "DELETE FROM history_events WHERE execution_id IN \
                     (SELECT id FROM runs WHERE project_id = $1)",
                    "DELETE FROM executions WHERE id IN (SELECT id FROM runs WHERE project_id = $1)",
                    "DELETE FROM step_results WHERE run_id IN (SELECT id FROM runs WHERE project_id = $1)",
                    "DELETE FROM run_events WHERE run_id IN (SELECT id FROM runs WHERE project_id = $1)",
                    "DELETE FROM runs WHERE project_id = $1",
                    "DELETE FROM messages WHERE project_id = $1",
                    "DELETE FROM versions WHERE project_id = $1",
                    "DELETE FROM run_locks WHERE project_id = $1",
                    "DELETE FROM sites WHERE project_id = $1",
                    "DELETE FROM slugs WHERE project_id = $1",
                ] {
                    sqlx::query(sql).bind(id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn acquire_run_lock(&self, project_id: &str, run_id: &str) -> Result<bool> {
                let res = sqlx::query(
                    "INSERT INTO run_locks (project_id, run_id, acquired_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (project_id) DO NOTHING",
                )
                .bind(project_id)
                .bind(run_id)
                .bind(ms(now()))
                .execute(&self.pool)
                .await?;
                if res.rows_affected() == 1 {
                    return Ok(true);
                }
                Ok(self.run_lock_holder(project_id).await?.as_deref() == Some(run_id))
            }

            async fn release_run_lock(&self, project_id: &str, run_id: &str) -> Result<bool> {
                let res =
                    sqlx::query("DELETE FROM run_locks WHERE project_id = $1 AND run_id = $2")
                        .bind(project_id)
                        .bind(run_id)
                        .execute(&self.pool)
                        .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn run_lock_holder(&self, project_id: &str) -> Result<Option<String>> {
                let row = sqlx::query("SELECT run_id FROM run_locks WHERE project_id = $1")
                    .bind(project_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.try_get("run_id")).transpose()?)
            }

            async fn create_run(&self, run: &Run) -> Result<()> {
                sqlx::query(
                    "INSERT INTO runs (id, project_id, owner, message, status, step, attempts, \
                     input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, \
                     stop_reason, error, summary, created_at, updated_at, finished_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                )
                .bind(&run.id)
                .bind(&run.project_id)
                .bind(&run.owner)
                .bind(&run.message)
                .bind(run.status.as_str())
                .bind(run.step)
                .bind(run.attempts)
                .bind(run.usage.input_tokens)
                .bind(run.usage.output_tokens)
                .bind(run.usage.cache_read_tokens)
                .bind(run.usage.cache_write_tokens)
                .bind(run.cost_usd)
                .bind(&run.stop_reason)
                .bind(&run.error)
                .bind(&run.summary)
                .bind(ms(run.created_at))
                .bind(ms(run.updated_at))
                .bind(run.finished_at.map(ms))
                .execute(&self.pool)
                .await
                .map_err(|err| conflict_if_exists(err, "run", &run.id))?;
                Ok(())
            }

            async fn get_run(&self, id: &str) -> Result<Option<Run>> {
                let row = sqlx::query("SELECT * FROM runs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::run).transpose()
            }

            async fn update_run(&self, run: &Run) -> Result<()> {
                let res = sqlx::query(
                    "UPDATE runs SET status = $1, step = $2, attempts = $3, input_tokens = $4, \
                     output_tokens = $5, cache_read_tokens = $6, cache_write_tokens = $7, \
                     cost_usd = $8, stop_reason = $9, error = $10, summary = $11, \
                     updated_at = $12, finished_at = $13 WHERE id = $14",
                )
                .bind(run.status.as_str())
                .bind(run.step)
                .bind(run.attempts)
                .bind(run.usage.input_tokens)
                .bind(run.usage.output_tokens)
                .bind(run.usage.cache_read_tokens)
                .bind(run.usage.cache_write_tokens)
                .bind(run.cost_usd)
                .bind(&run.stop_reason)
                .bind(&run.error)
                .bind(&run.summary)
                .bind(ms(now()))
                .bind(run.finished_at.map(ms))
                .bind(&run.id)
                .execute(&self.pool)
                .await?;
                if res.rows_affected() == 0 {
                    return Err(Error::NotFound(format!("run {} not found", run.id)));
                }
                Ok(())
            }

            async fn list_runs(&self, project_id: &str, page: Page) -> Result<Vec<Run>> {
                let rows = sqlx::query(
                    "SELECT * FROM runs WHERE project_id = $1 ORDER BY created_at DESC, id DESC \
                     LIMIT $2 OFFSET $3",
                )
                .bind(project_id)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::run).collect()
            }

            async fn count_active_runs(&self, owner: &str) -> Result<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM runs WHERE owner = $1 \
                     AND status IN ('queued', 'running')",
                )
                .bind(owner)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("n")?)
            }

            async fn cost_since(&self, owner: &str, since: DateTime<Utc>) -> Result<f64> {
                let row = sqlx::query(
                    "SELECT COALESCE(SUM(cost_usd), 0.0) AS c FROM runs \
                     WHERE owner = $1 AND created_at >= $2",
                )
                .bind(owner)
                .bind(ms(since))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("c")?)
            }

            async fn append_messages(
                &self,
                project_id: &str,
                msgs: &[NewMessage],
            ) -> Result<Vec<Message>> {
                let mut encoded = Vec::with_capacity(msgs.len());
                for m in msgs {
                    encoded.push((
                        to_json(&m.content)?,
                        to_json(&m.tool_calls)?,
                        to_json(&m.file_diffs)?,
                    ));
                }
                let ids: Vec<String> = msgs.iter().map(|_| uuid::Uuid::now_v7().to_string()).collect();
                let t = ms(now());
                retry_unique(|| async {
                    let mut tx = self.pool.begin().await?;
                    let mut out = Vec::with_capacity(msgs.len());
                    for ((m, (content, calls, diffs)), id) in
                        msgs.iter().zip(&encoded).zip(&ids)
                    {
                        // INSERT … SELECT MAX+1 makes the first statement a write, so
                        // SQLite takes its write lock before reading the max.
                        let row = sqlx::query(
                            "INSERT INTO messages (id, project_id, run_id, seq, role, content, \
                             tool_calls, file_diffs, created_at) \
                             SELECT $1, $2, $3, COALESCE(MAX(seq), 0) + 1, $4, $5, $6, $7, $8 \
                             FROM messages WHERE project_id = $9 RETURNING *",
                        )
                        .bind(id)
                        .bind(project_id)
                        .bind(&m.run_id)
                        .bind(m.role.as_str())
                        .bind(content)
                        .bind(calls)
                        .bind(diffs)
                        .bind(t)
                        .bind(project_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        out.push(row);
                    }
                    tx.commit().await?;
                    Ok(out)
                })
                .await?
                .iter()
                .map(Self::message)
                .collect()
            }

            async fn list_messages(&self, project_id: &str, page: Page) -> Result<Vec<Message>> {
                let rows = sqlx::query(
                    "SELECT * FROM messages WHERE project_id = $1 ORDER BY seq LIMIT $2 OFFSET $3",
                )
                .bind(project_id)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::message).collect()
            }

            async fn append_event(&self, run_id: &str, kind: RunEventKind, data: &Value) -> Result<RunEvent> {
                let data = to_json(data)?;
                let t = ms(now());
                let row = retry_unique(|| {
                    sqlx::query(
                        "INSERT INTO run_events (run_id, seq, kind, data, created_at) \
                         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM run_events \
                         WHERE run_id = $5 RETURNING *",
                    )
                    .bind(run_id)
                    .bind(kind.as_str())
                    .bind(&data)
                    .bind(t)
                    .bind(run_id)
                    .fetch_one(&self.pool)
                })
                .await?;
                Self::event(&row)
            }

            async fn list_events(&self, run_id: &str, after: i64, limit: i64) -> Result<Vec<RunEvent>> {
                let rows = sqlx::query(
                    "SELECT * FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(run_id)
                .bind(after)
                .bind(limit.clamp(1, 1000))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::event).collect()
            }

            async fn put_step_result(&self, run_id: &str, key: &str, output: &Value) -> Result<Value> {
                sqlx::query(
                    "INSERT INTO step_results (run_id, key, output, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (run_id, key) DO NOTHING",
                )
                .bind(run_id)
                .bind(key)
                .bind(to_json(output)?)
                .bind(ms(now()))
                .execute(&self.pool)
                .await?;
                self.get_step_result(run_id, key)
                    .await?
                    .ok_or_else(|| Error::Store("step result vanished after insert".into()))
            }

            async fn get_step_result(&self, run_id: &str, key: &str) -> Result<Option<Value>> {
                let row =
                    sqlx::query("SELECT output FROM step_results WHERE run_id = $1 AND key = $2")
                        .bind(run_id)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await?;
                match row {
                    Some(r) => Ok(Some(from_json(&r.try_get::<String, _>("output")?)?)),
                    None => Ok(None),
                }
            }

            async fn create_version(
                &self,
                project_id: &str,
                run_id: Option<&str>,
                snapshot_key: &str,
                summary: &str,
                file_diffs: &[FileDiff],
            ) -> Result<Version> {
                let diffs = to_json(&file_diffs)?;
                let t = ms(now());
                let row = retry_unique(|| {
                    sqlx::query(
                        "INSERT INTO versions (project_id, number, run_id, snapshot_key, summary, \
                         file_diffs, created_at) \
                         SELECT $1, COALESCE(MAX(number), 0) + 1, $2, $3, $4, $5, $6 \
                         FROM versions WHERE project_id = $7 RETURNING *",
                    )
                    .bind(project_id)
                    .bind(run_id)
                    .bind(snapshot_key)
                    .bind(summary)
                    .bind(&diffs)
                    .bind(t)
                    .bind(project_id)
                    .fetch_one(&self.pool)
                })
                .await?;
                Self::version(&row)
            }

            async fn set_version_screenshots(
                &self,
                project_id: &str,
                number: i64,
                screenshots: &[Screenshot],
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE versions SET screenshots = $1 WHERE project_id = $2 AND number = $3",
                )
                .bind(to_json(&screenshots)?)
                .bind(project_id)
                .bind(number)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_versions(&self, project_id: &str) -> Result<Vec<Version>> {
                let rows =
                    sqlx::query("SELECT * FROM versions WHERE project_id = $1 ORDER BY number")
                        .bind(project_id)
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter().map(Self::version).collect()
            }

            async fn get_version(&self, project_id: &str, number: i64) -> Result<Option<Version>> {
                let row =
                    sqlx::query("SELECT * FROM versions WHERE project_id = $1 AND number = $2")
                        .bind(project_id)
                        .bind(number)
                        .fetch_optional(&self.pool)
                        .await?;
                row.as_ref().map(Self::version).transpose()
            }

            async fn get_site(&self, project_id: &str) -> Result<Option<Site>> {
                let row = sqlx::query("SELECT * FROM sites WHERE project_id = $1")
                    .bind(project_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::site).transpose()
            }

            async fn save_site(&self, s: &Site, expected_job: Option<&str>) -> Result<bool> {
                // Expecting no job: insert, or update a row that has none.
                // Expecting one: update only the row that holds it.
                let sql = match expected_job {
                    None => "INSERT INTO sites (project_id, slug, version, deploy_id, published_at, \
                         job, pending_version, pending_slug, pending_since, last_error, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (project_id) DO UPDATE SET slug = excluded.slug, \
                         version = excluded.version, deploy_id = excluded.deploy_id, \
                         published_at = excluded.published_at, job = excluded.job, \
                         pending_version = excluded.pending_version, \
                         pending_slug = excluded.pending_slug, pending_since = excluded.pending_since, \
                         last_error = excluded.last_error, updated_at = excluded.updated_at \
                         WHERE sites.job IS NULL",
                    Some(_) => "UPDATE sites SET slug = $2, version = $3, deploy_id = $4, \
                         published_at = $5, job = $6, pending_version = $7, pending_slug = $8, \
                         pending_since = $9, last_error = $10, updated_at = $11 \
                         WHERE project_id = $1 AND job = $12",
                };
                let mut q = sqlx::query(sql)
                    .bind(&s.project_id)
                    .bind(&s.slug)
                    .bind(s.version)
                    .bind(&s.deploy_id)
                    .bind(s.published_at.map(ms))
                    .bind(&s.job)
                    .bind(s.pending_version)
                    .bind(&s.pending_slug)
                    .bind(s.pending_since.map(ms))
                    .bind(&s.last_error)
                    .bind(ms(s.updated_at));
                if let Some(job) = expected_job {
                    q = q.bind(job);
                }
                Ok(q.execute(&self.pool).await?.rows_affected() == 1)
            }

            async fn claim_slug(&self, slug: &str, project_id: &str) -> Result<bool> {
                sqlx::query(
                    "INSERT INTO slugs (slug, project_id, claimed_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (slug) DO NOTHING",
                )
                .bind(slug)
                .bind(project_id)
                .bind(ms(now()))
                .execute(&self.pool)
                .await?;
                Ok(self.slug_owner(slug).await?.as_deref() == Some(project_id))
            }

            async fn release_slug(&self, slug: &str, project_id: &str) -> Result<bool> {
                let res = sqlx::query("DELETE FROM slugs WHERE slug = $1 AND project_id = $2")
                    .bind(slug)
                    .bind(project_id)
                    .execute(&self.pool)
                    .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn slug_owner(&self, slug: &str) -> Result<Option<String>> {
                let row = sqlx::query("SELECT project_id FROM slugs WHERE slug = $1")
                    .bind(slug)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.try_get("project_id")).transpose()?)
            }
        }

        #[async_trait]
        impl ExecutionLog for $store {
            async fn create_execution(&self, e: &Execution) -> Result<()> {
                sqlx::query(
                    "INSERT INTO executions (id, state_machine, status, input, output, error, \
                     checkpoint, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&e.id)
                .bind(&e.state_machine)
                .bind(e.status.as_str())
                .bind(to_json(&e.input)?)
                .bind(e.output.as_ref().map(to_json).transpose()?)
                .bind(&e.error)
                .bind(e.checkpoint.as_ref().map(to_json).transpose()?)
                .bind(ms(e.started_at))
                .bind(ms(e.updated_at))
                .execute(&self.pool)
                .await
                .map_err(|err| conflict_if_exists(err, "execution", &e.id))?;
                Ok(())
            }

            async fn get_execution(&self, id: &str) -> Result<Option<Execution>> {
                let row = sqlx::query("SELECT * FROM executions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::execution).transpose()
            }

            async fn update_execution(&self, e: &Execution) -> Result<()> {
                let res = sqlx::query(
                    "UPDATE executions SET status = $1, output = $2, error = $3, checkpoint = $4, \
                     updated_at = $5 WHERE id = $6",
                )
                .bind(e.status.as_str())
                .bind(e.output.as_ref().map(to_json).transpose()?)
                .bind(&e.error)
                .bind(e.checkpoint.as_ref().map(to_json).transpose()?)
                .bind(ms(now()))
                .bind(&e.id)
                .execute(&self.pool)
                .await?;
                if res.rows_affected() == 0 {
                    return Err(Error::NotFound(format!("execution {} not found", e.id)));
                }
                Ok(())
            }

            async fn running_executions(&self) -> Result<Vec<Execution>> {
                let rows = sqlx::query(
                    "SELECT * FROM executions WHERE status = 'RUNNING' ORDER BY started_at",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::execution).collect()
            }

            async fn append_history(
                &self,
                execution_id: &str,
                event_type: &str,
                state_name: Option<&str>,
                data: &Value,
            ) -> Result<HistoryEvent> {
                let data = to_json(data)?;
                let t = ms(now());
                let row = retry_unique(|| {
                    sqlx::query(
                        "INSERT INTO history_events (execution_id, seq, event_type, state_name, \
                         data, timestamp) SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 \
                         FROM history_events WHERE execution_id = $6 RETURNING *",
                    )
                    .bind(execution_id)
                    .bind(event_type)
                    .bind(state_name)
                    .bind(&data)
                    .bind(t)
                    .bind(execution_id)
                    .fetch_one(&self.pool)
                })
                .await?;
                Self::history(&row)
            }

            async fn list_history(&self, execution_id: &str) -> Result<Vec<HistoryEvent>> {
                let rows = sqlx::query(
                    "SELECT * FROM history_events WHERE execution_id = $1 ORDER BY seq",
                )
                .bind(execution_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::history).collect()
            }
        }
    };
}

#[cfg(feature = "sqlite")]
sql_store!(SqliteStore, sqlx::sqlite::SqliteRow, "sqlite");
sql_store!(PostgresStore, sqlx::postgres::PgRow, "postgres");
