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
mod lease;
pub mod limiter;
mod orchestrations;
mod paging;
mod plugins;
mod ratelimit;
pub use ratelimit::{Granted, outbound_bucket};
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
use sqlx::{Acquire, AnyPool, Executor};

pub use alerts::{AlertRow, AlertRuleRow, NewAlert};
pub use api_calls::{ApiCallFilter, ApiCallRow, ApiCallSample};
pub use api_calls::{ApiCallRecord, CallOrigin};
pub use audit::{AuditFilter, AuditRow};
pub use canonical::{CanonicalRow, Lineage};
pub use circuits::CircuitRow;
pub use connections::{ConnectionFields, ConnectionRow};
pub use executions::{
    BodyStepRow, Ended, ExecutionFilter, ExecutionRow, Finish, Inserted, NewExecution, QueueBound, Recorded,
    StepResultRow,
};
pub use fault::{ACQUIRE_TIMEOUT, is_unavailable, unavailable_in};
pub use identity::{
    ApiKey, ApiKeyWithEnterprise, Enterprise, NewApiKey, NewEnterprise, NewUser, PlatformUsers, SettingsPatch, User,
    UserPatch,
};
pub use lease::{Lease, is_lease_lost};
pub use orchestrations::{OrchestrationRow, VersionRow};
pub use plugins::{NewPlugin, PluginRow};
pub use retention::{PURGE_BATCH, Purged};
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

/// How [`Store::open`] opens the database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections of the pool (on SQLite: of the read-only pool; the writer is one).
    pub max_connections: u32,
    /// SQLite only: every commit waits for the disk (`PRAGMA synchronous = FULL` instead of
    /// `NORMAL`).
    pub full_sync: bool,
    /// SQLite only: the largest the database file may grow to, in bytes (`PRAGMA
    /// max_page_count` on the writer). A write that would grow it further fails with
    /// `SQLITE_FULL` (answered 503), as a full disk does, before the disk is full.
    pub sqlite_max_bytes: Option<u64>,
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
        Self::open(url, data_dir, &Options { max_connections, full_sync, sqlite_max_bytes: None }).await
    }

    /// Opens the database named by `url` (or the default SQLite file in `data_dir`) with
    /// `options`.
    pub async fn open(url: Option<&SecretString>, data_dir: &Path, options: &Options) -> anyhow::Result<Self> {
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
        let connect_options = AnyConnectOptions::from_str(&url).context("parsing the database URL")?;
        let (full_sync, max_bytes) = (options.full_sync, options.sqlite_max_bytes);
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
                                // Takes effect on a new file (before its first table); an
                                // existing one is switched once by `Store::migrate`.
                                conn.execute("PRAGMA auto_vacuum = INCREMENTAL").await?;
                                conn.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;").await?;
                                conn.execute(if full_sync {
                                    "PRAGMA synchronous = FULL"
                                } else {
                                    "PRAGMA synchronous = NORMAL"
                                })
                                .await?;
                                if let Some(max_bytes) = max_bytes {
                                    let page_size: i64 =
                                        sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut *conn).await?;
                                    let pages = i64::try_from(max_bytes).unwrap_or(i64::MAX) / page_size.max(1);
                                    conn.execute(format!("PRAGMA max_page_count = {}", pages.max(1)).as_str()).await?;
                                }
                            }
                        }
                        Ok(())
                    })
                })
                .connect_with(connect_options.clone())
        };
        let context = || format!("connecting to the {backend:?} database");
        let (pool, reads) = match backend {
            Backend::Postgres => {
                let pool = connect(options.max_connections.max(1), false).await.with_context(context)?;
                (pool.clone(), pool)
            }
            // SQLite has one writer: a single connection serializes writes in the pool instead
            // of letting them collide and back off in SQLite's busy handler. Readers do not
            // wait for it in WAL mode (the writer's first connection switched the file to it).
            Backend::Sqlite => {
                let pool = connect(1, false).await.with_context(context)?;
                let reads = connect(options.max_connections.max(1), true).await.with_context(context)?;
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

    /// Applies the embedded migrations that are not applied yet; on SQLite, then switches a
    /// database made before incremental auto-vacuum to it (once: one `VACUUM`, which rewrites
    /// the file and needs about its size free on the disk; when that fails the server starts
    /// anyway, and purged pages are reused instead of returned).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.migrator().run(&self.pool).await.context("applying migrations")?;
        if self.backend == Backend::Sqlite {
            let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum").fetch_one(&self.pool).await?;
            if mode != retention::AUTO_VACUUM_INCREMENTAL {
                tracing::info!("switching the SQLite file to incremental auto-vacuum (one VACUUM)");
                let mut conn = self.pool.acquire().await?;
                if let Err(err) = conn.execute("PRAGMA auto_vacuum = INCREMENTAL; VACUUM").await {
                    tracing::warn!(error = %err, "switching the SQLite file to incremental auto-vacuum failed; purged pages are reused but not returned to the disk");
                }
            }
        }
        Ok(())
    }

    /// Whether the database answers, every embedded migration is applied and a write commits,
    /// with room for one more: the probe rewrites `write_probe`'s row and, inside the same
    /// transaction, inserts [`PROBE_ROOM`] bytes and rolls them back. A read alone does not
    /// notice a full disk; the rolled-back insert notices a database at its size cap (it needs
    /// pages) without leaving anything behind, and the committed update notices a write-ahead
    /// log, a disk or a server that cannot take a commit. Unbounded: the caller bounds it.
    pub async fn ready(&self) -> Result<(), NotReady> {
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = $1")
            .bind(true)
            .fetch_one(self.reads())
            .await
            .map_err(NotReady::Unreadable)?;
        if (applied as usize) < self.migrator().iter().count() {
            return Err(NotReady::Migrations);
        }
        self.probe_write().await.map_err(NotReady::Unwritable)
    }

    async fn probe_write(&self) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE write_probe SET at = $1 WHERE id = 1").bind(dibop_core::now_ms()).execute(&mut *tx).await?;
        let mut room = tx.begin().await?;
        sqlx::query("INSERT INTO write_probe (id, at, room) VALUES (2, 0, $1)")
            .bind(PROBE_TEXT.as_str())
            .execute(&mut *room)
            .await?;
        room.rollback().await?;
        tx.commit().await
    }

    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }
}

/// The one row a writing statement with `RETURNING` answered, read with `fetch_all`: on
/// SQLite such a statement commits (in autocommit) only when it is stepped to its end, and
/// reports a failed commit (a full disk) only there. `fetch_one` and `fetch_optional` stop at
/// the first row and never see it, so a write that was never stored would be answered as done.
fn only<T>(rows: Vec<T>) -> sqlx::Result<T> {
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

/// Like [`only`], for a write that may touch no row.
fn first<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

/// Why [`Store::ready`] says no.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("migrations are not all applied")]
    Migrations,
    #[error("the database cannot be read: {0}")]
    Unreadable(sqlx::Error),
    #[error("the database cannot commit a write: {0}")]
    Unwritable(sqlx::Error),
}

/// Bytes the readiness probe inserts and rolls back: about four pages, a little more than one
/// execution's rows take (see the README's storage figures).
pub const PROBE_ROOM: usize = 16 * 1024;

/// [`PROBE_ROOM`] bytes of text that no compression shrinks (PostgreSQL compresses long
/// values; a compressed probe would need no room). Made once.
static PROBE_TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(probe_room);

fn probe_room() -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut text = String::with_capacity(PROBE_ROOM);
    while text.len() < PROBE_ROOM {
        // xorshift64: cheap bytes with no repeats a compressor could use.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!("{state:016x}"));
    }
    text.truncate(PROBE_ROOM);
    text
}

/// Whether `err` is a violation of a unique constraint (mapped to 409 by callers).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// What the store's unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use sqlx::Connection;

    use super::Store;

    /// A migrated store: SQLite in a new temporary directory, or, given `postgres` (the URL of
    /// an existing database), a new database on that server, named `dibop_t_*` so that CI's
    /// cleanup drops it when a test fails midway. Answers the store and its directory.
    pub async fn fresh_store(postgres: Option<&str>, name: &str) -> (Store, std::path::PathBuf) {
        let unique = dibop_core::new_id().replace('-', "");
        let dir = std::env::temp_dir().join(format!("dibop-store-{name}-{unique}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = match postgres {
            None => None,
            Some(base) => {
                sqlx::any::install_default_drivers();
                let database = format!("dibop_t_{name}_{unique}");
                let mut admin = sqlx::AnyConnection::connect(base).await.expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.expect("create");
                admin.close().await.expect("close");
                let (server, _) = base.split('?').next().unwrap_or(base).rsplit_once('/').expect("a path");
                Some(secrecy::SecretString::from(format!("{server}/{database}")))
            }
        };
        let store = Store::connect(url.as_ref(), &dir, 2, false).await.expect("connects");
        store.migrate().await.expect("migrates");
        (store, dir)
    }

    /// The PostgreSQL database tests may create theirs beside (`DIBOP_TEST_DATABASE_URL`).
    pub fn postgres() -> Option<String> {
        std::env::var("DIBOP_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty())
    }
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
