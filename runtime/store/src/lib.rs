//! Storage: the one interface the rest of the runtime uses for persistent state.
//!
//! Both backends go through one `sqlx::AnyPool` and the same SQL text: the schema sticks to
//! types both understand (TEXT ids, BIGINT unix-millisecond timestamps, TEXT JSON), and `$n`
//! placeholders work on both. Where the dialects must differ (locking, upserts) a method matches
//! on [`Backend`]. Each backend keeps its own migrations folder, embedded in the binary.
//!
//! Invariant: every method that reads or writes tenant data takes the enterprise id and filters
//! on it; handlers never build SQL.

mod alerts;
mod api_calls;
mod audit;
mod batch;
mod cache;
mod canonical;
mod circuits;
mod connections;
mod executions;
mod fault;
mod identity;
pub mod limiter;
mod orchestrations;
mod paging;
mod plugins;
mod ratelimit;
mod retention;
mod schedules;
mod signers;
mod tokens;
mod webhooks;

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use alerts::{AlertRow, AlertRuleRow, NewAlert};
pub use api_calls::{ApiCallFilter, ApiCallRow, ApiCallSample};
pub use api_calls::{ApiCallRecord, CallOrigin};
pub use audit::{AuditFilter, AuditRow};
pub use canonical::{CanonicalRow, Lineage};
pub use circuits::CircuitRow;
pub use connections::{ConnectionFields, ConnectionRow};
pub use fault::{ACQUIRE_TIMEOUT, is_unavailable, unavailable_in};
pub use executions::{
    BodyStepRow, Ended, ExecutionFilter, ExecutionRow, Finish, NewExecution, Recorded, StepResultRow,
};
pub use identity::{
    ApiKey, ApiKeyWithEnterprise, Enterprise, NewApiKey, NewEnterprise, NewUser, PlatformUsers, SettingsPatch, User,
    UserPatch,
};
pub use orchestrations::{OrchestrationRow, VersionRow};
pub use plugins::{NewPlugin, PluginRow};
pub use signers::{MAX_SIGNERS, SignerRow};
pub use tokens::TokenRow;
pub use webhooks::{NewWebhook, WebhookRow};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A page of a list: the SQL `LIMIT`/`OFFSET` of one request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Every write, and reads that must see their own transaction. On SQLite its one
    /// connection is the database's one writer.
    pool: AnyPool,
    /// Plain reads. On SQLite, read-only connections of their own (WAL lets them read while the
    /// writer commits); on PostgreSQL the same pool as `pool`.
    reads: AnyPool,
    backend: Backend,
    caches: std::sync::Arc<cache::Caches>,
    /// The group commit of SQLite's writer (unused on PostgreSQL).
    group: std::sync::Arc<batch::Group>,
}

impl Store {
    /// Opens the database named by `url` (or the default SQLite file in `data_dir`); on SQLite,
    /// `full_sync` makes every commit wait for the disk (`PRAGMA synchronous = FULL` instead of
    /// `NORMAL`).
    pub async fn connect(
        url: Option<&SecretString>,
        data_dir: &Path,
        max_connections: u32,
        full_sync: bool,
    ) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = match url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("dibop.db").display()),
        };
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite:");
        };
        let options = AnyConnectOptions::from_str(&url).context("parsing the database URL")?;
        let connect = |connections: u32, read_only: bool| {
            AnyPoolOptions::new()
                .max_connections(connections)
                // A request waits seconds at most for a connection: a database that refuses
                // them is answered 503 in seconds, not after sqlx's default 30 s.
                .acquire_timeout(ACQUIRE_TIMEOUT)
                // A pinged-before-use connection costs a round trip per query. A SQLite file
                // cannot drop the connection; PostgreSQL ones are checked (a server restart
                // drops them), within the acquire timeout.
                .test_before_acquire(backend == Backend::Postgres)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            if read_only {
                                conn.execute("PRAGMA query_only = ON").await?;
                            } else {
                                conn.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;").await?;
                                conn.execute(if full_sync {
                                    "PRAGMA synchronous = FULL"
                                } else {
                                    "PRAGMA synchronous = NORMAL"
                                })
                                .await?;
                            }
                        }
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let context = || format!("connecting to the {backend:?} database");
        let (pool, reads) = match backend {
            Backend::Postgres => {
                let pool = connect(max_connections.max(1), false).await.with_context(context)?;
                (pool.clone(), pool)
            }
            // SQLite has one writer: a single connection serializes writes in the pool instead
            // of letting them collide and back off in SQLite's busy handler. Readers do not
            // wait for it in WAL mode (the writer's first connection switched the file to it).
            Backend::Sqlite => {
                let pool = connect(1, false).await.with_context(context)?;
                let reads = connect(max_connections.max(1), true).await.with_context(context)?;
                (pool, reads)
            }
        };
        Ok(Self { pool, reads, backend, caches: std::sync::Arc::default(), group: std::sync::Arc::default() })
    }

    /// The pool for plain reads.
    fn reads(&self) -> &AnyPool {
        &self.reads
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.migrator().run(&self.pool).await.context("applying migrations")
    }

    /// Whether the database answers and every embedded migration is applied.
    pub async fn ready(&self) -> anyhow::Result<bool> {
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = $1")
            .bind(true)
            .fetch_one(self.reads())
            .await?;
        Ok(applied as usize >= self.migrator().iter().count())
    }

    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }
}

/// Whether `err` is a violation of a unique constraint (mapped to 409 by callers).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::Store;

    #[tokio::test]
    async fn sqlite_commits_wait_for_the_disk_only_when_asked() {
        for (full_sync, expected) in [(false, 1_i64), (true, 2)] {
            let dir = std::env::temp_dir().join(format!("dibop-store-sync-{}-{full_sync}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let store = Store::connect(None, &dir, 1, full_sync).await.expect("connects");
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.pool).await.expect("pragma");
            assert_eq!(level, expected, "full_sync = {full_sync}");
            store.close().await;
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
