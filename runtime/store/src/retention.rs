//! Retention: what is older than each enterprise's `retention_days` goes, in bounded batches,
//! and on SQLite the pages it freed go back to the disk.
//!
//! Each batch is one short transaction of at most [`PURGE_BATCH`] rows, with a pause between
//! batches, so SQLite's one writer (and PostgreSQL's row locks) pass to other writes between
//! them instead of waiting for the whole sweep. An execution goes with its step results and
//! kept body steps (they cascade) and its API-call rows in the same transaction: a reader never
//! sees an execution gone while any of them remain. API-call rows of no purged execution
//! (connection tests, calls of an execution that is not finished) and audit rows go by their
//! own time, in batches too.
//!
//! Space: on SQLite a purge leaves free pages in the file; the database is kept in
//! `auto_vacuum = INCREMENTAL` mode (set on a new file, switched once by `Store::migrate` on
//! an older one), and after each sweep `PRAGMA incremental_vacuum` returns the free pages to
//! the disk, a bounded number per statement. On PostgreSQL deleted rows are reclaimed by
//! autovacuum for reuse by new rows; the files do not shrink (that takes a `VACUUM FULL`,
//! which locks the tables: an operator's decision).

use std::time::Duration;

use dibop_core::now_ms;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::{Backend, Store};

/// Most executions (with their step results, kept body steps and API-call rows), or most rows
/// of another table, one purge transaction deletes.
pub const PURGE_BATCH: i64 = 1_000;
/// The pause between two batches, in which other writes get the writer.
const BETWEEN_BATCHES: Duration = Duration::from_millis(10);
/// Most free pages one `PRAGMA incremental_vacuum` returns to the disk (8 MiB of 4 KiB pages).
const VACUUM_PAGES: i64 = 2_048;
/// `PRAGMA auto_vacuum`'s value for INCREMENTAL.
pub(crate) const AUTO_VACUUM_INCREMENTAL: i64 = 2;
const DAY_MS: i64 = 86_400_000;
/// Statuses of finished executions, the only ones purged (a `paused` execution waits for a
/// resume: it is kept with its steps however old it is).
const FINISHED: &str = "('success', 'failed', 'partial', 'cancelled')";

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub executions: u64,
    /// API-call rows, those of the purged executions included.
    pub api_calls: u64,
    /// Transactions the sweep took (every table's batches, empty last ones included).
    pub batches: u64,
    /// SQLite pages returned to the disk by the incremental vacuum.
    pub pages_released: u64,
}

type AnyQuery<'q> = Query<'q, sqlx::Any, AnyArguments<'q>>;

impl Store {
    /// Deletes finished executions (with their step results, the trace material), API-call rows
    /// and audit-log rows older than their enterprise's `retention_days`, in batches; then, on
    /// SQLite, returns the freed pages to the disk. Canonical records are kept.
    pub async fn purge_expired(&self) -> sqlx::Result<Purged> {
        self.purge_expired_at(now_ms()).await
    }

    /// [`Store::purge_expired`] as if it were `now` (unix ms).
    pub async fn purge_expired_at(&self, now: i64) -> sqlx::Result<Purged> {
        let mut purged = Purged::default();
        let enterprises: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, retention_days FROM enterprises ORDER BY id").fetch_all(self.reads()).await?;
        for (enterprise, days) in &enterprises {
            let cutoff = now - days * DAY_MS;
            loop {
                let (executions, api_calls) = self.purge_executions_batch(enterprise, cutoff).await?;
                purged.executions += executions;
                purged.api_calls += api_calls;
                purged.batches += 1;
                if executions < PURGE_BATCH as u64 {
                    break;
                }
                tokio::time::sleep(BETWEEN_BATCHES).await;
            }
            let by_enterprise =
                |sql: &'static str| move || sqlx::query(sql).bind(enterprise.as_str()).bind(cutoff).bind(PURGE_BATCH);
            let (api_calls, batches) = self
                .delete_in_batches(by_enterprise(
                    "DELETE FROM api_calls WHERE id IN \
                     (SELECT id FROM api_calls WHERE enterprise_id = $1 AND timestamp < $2 LIMIT $3)",
                ))
                .await?;
            purged.api_calls += api_calls;
            purged.batches += batches;
            let (_, batches) = self
                .delete_in_batches(by_enterprise(
                    "DELETE FROM audit_log WHERE id IN \
                     (SELECT id FROM audit_log WHERE enterprise_id = $1 AND at < $2 LIMIT $3)",
                ))
                .await?;
            purged.batches += batches;
        }
        // Platform-level rows (failed logins of unknown addresses) are kept 90 days.
        let (_, batches) = self
            .delete_in_batches(|| {
                sqlx::query(
                    "DELETE FROM audit_log WHERE id IN \
                     (SELECT id FROM audit_log WHERE enterprise_id IS NULL AND at < $1 LIMIT $2)",
                )
                .bind(now - 90 * DAY_MS)
                .bind(PURGE_BATCH)
            })
            .await?;
        purged.batches += batches;
        // Schedule slots only guard against firing twice; a day of them is plenty.
        let (_, batches) = self
            .delete_in_batches(|| {
                sqlx::query(
                    "DELETE FROM schedule_fires WHERE (orchestration_id, slot) IN \
                     (SELECT orchestration_id, slot FROM schedule_fires WHERE fired_at < $1 LIMIT $2)",
                )
                .bind(now - DAY_MS)
                .bind(PURGE_BATCH)
            })
            .await?;
        purged.batches += batches;
        purged.pages_released = self.release_free_pages().await?;
        Ok(purged)
    }

    /// One transaction: the enterprise's oldest finished executions created before `cutoff`
    /// (at most [`PURGE_BATCH`]), their step results and kept body steps (cascade) and their
    /// API-call rows. Answers how many executions and API calls went.
    async fn purge_executions_batch(&self, enterprise: &str, cutoff: i64) -> sqlx::Result<(u64, u64)> {
        let mut tx = self.pool.begin().await?;
        // The outer conditions are checked again on the row deleted (PostgreSQL re-reads a row
        // changed meanwhile), so an execution retried since the inner read stays.
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "DELETE FROM executions WHERE enterprise_id = $1 AND status IN {FINISHED} AND created_at < $2 \
             AND id IN (SELECT id FROM executions WHERE enterprise_id = $1 AND status IN {FINISHED} \
             AND created_at < $2 ORDER BY created_at LIMIT $3) RETURNING id"
        ))
        .bind(enterprise)
        .bind(cutoff)
        .bind(PURGE_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.rollback().await?;
            return Ok((0, 0));
        }
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql =
            format!("DELETE FROM api_calls WHERE enterprise_id = $1 AND execution_id IN ({})", placeholders.join(", "));
        let mut query = sqlx::query(&sql).bind(enterprise);
        for id in &ids {
            query = query.bind(id.as_str());
        }
        let api_calls = query.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok((ids.len() as u64, api_calls))
    }

    /// Runs the statement `make` builds (a `DELETE` of at most [`PURGE_BATCH`] rows, each one
    /// its own transaction) until one deletes fewer; answers the rows and the batches.
    async fn delete_in_batches<'q>(&self, make: impl Fn() -> AnyQuery<'q>) -> sqlx::Result<(u64, u64)> {
        let (mut rows, mut batches) = (0, 0);
        loop {
            let deleted = make().execute(&self.pool).await?.rows_affected();
            rows += deleted;
            batches += 1;
            if deleted < PURGE_BATCH as u64 {
                return Ok((rows, batches));
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
    }

    /// SQLite: returns the file's free pages to the disk, [`VACUUM_PAGES`] per statement with
    /// a pause between, then checkpoints so that the file itself shrinks; answers how many
    /// pages went. Nothing on PostgreSQL, or on a file not in incremental auto-vacuum mode
    /// (its free pages stay and are reused).
    pub async fn release_free_pages(&self) -> sqlx::Result<u64> {
        if self.backend != Backend::Sqlite {
            return Ok(0);
        }
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum").fetch_one(&self.pool).await?;
        if mode != AUTO_VACUUM_INCREMENTAL {
            return Ok(0);
        }
        let mut released = 0;
        let mut free: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(&self.pool).await?;
        while free > 0 {
            sqlx::query(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})")).execute(&self.pool).await?;
            let left: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(&self.pool).await?;
            if left >= free {
                break;
            }
            released += u64::try_from(free - left).unwrap_or(0);
            free = left;
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
        if released > 0 {
            // The file shrinks when the write-ahead log is copied back; a passive checkpoint
            // waits for no reader (one that is busy leaves it to the next automatic one).
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await?;
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;
    use crate::testing::fresh_store as fresh;

    const NOW: i64 = 1_800_000_000_000;
    /// Finished executions past the retention: three batches (1,000, 1,000, 500).
    const EXPIRED: i64 = 2_500;
    /// API-call rows past the retention that belong to no execution (connection tests): two
    /// batches (1,000, 200).
    const LOOSE_CALLS: i64 = 1_200;

    async fn run(store: &Store, sql: &str) {
        sqlx::query(sql).execute(&store.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(store: &Store, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&store.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `n` executions `<prefix>-<i>` of enterprise `e`, `age_days` old, in `status`, each with
    /// two step results of about 1 KB and one API-call row.
    async fn executions(store: &Store, e: &str, prefix: &str, n: i64, age_days: i64, status: &str) {
        let created = NOW - age_days * DAY_MS;
        let series = format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})");
        run(
            store,
            &format!(
                "INSERT INTO executions (id, enterprise_id, orchestration_id, orchestration_version, status, \
             triggered_by, parameters, steps_total, created_at) \
             {series} SELECT '{prefix}-' || i, '{e}', 'o-{e}', 1, '{status}', 'api', '{{}}', 2, {created} FROM n"
            ),
        )
        .await;
        for position in 0..2 {
            run(
                store,
                &format!(
                    "INSERT INTO step_results (execution_id, position, name, type, status, output, attempts, \
                 started_at, duration_ms) \
                 {series} SELECT '{prefix}-' || i, {position}, 's{position}', 'transform', 'success', \
                 '{output}', 1, {created}, 5 FROM n",
                    output = "x".repeat(1000)
                ),
            )
            .await;
        }
        run(
            store,
            &format!(
                "INSERT INTO api_calls (id, enterprise_id, timestamp, system, method, url, status, duration_ms, \
             request_bytes, response_bytes, execution_id) \
             {series} SELECT 'call-{prefix}-' || i, '{e}', {created}, 'rest', 'GET', 'http://x/', 'success', \
             5, 0, 0, '{prefix}-' || i FROM n"
            ),
        )
        .await;
    }

    async fn enterprise(store: &Store, e: &str, retention_days: i64) {
        run(
            store,
            &format!(
                "INSERT INTO enterprises (id, name, slug, timezone, retention_days, created_at, updated_at) \
             VALUES ('{e}', '{e}', '{e}', 'UTC', {retention_days}, 0, 0)"
            ),
        )
        .await;
        run(
            store,
            &format!(
                "INSERT INTO orchestrations (id, enterprise_id, name, status, version, definition, created_at, \
             updated_at) VALUES ('o-{e}', '{e}', 'o', 'active', 1, '{{}}', 0, 0)"
            ),
        )
        .await;
    }

    async fn purges_in_batches_and_keeps_what_is_not_expired(postgres: Option<&str>, name: &str) {
        let (store, dir) = fresh(postgres, name).await;
        enterprise(&store, "e1", 30).await;
        enterprise(&store, "e2", 365).await;
        executions(&store, "e1", "old", EXPIRED, 40, "success").await;
        executions(&store, "e1", "stuck", 10, 40, "running").await;
        executions(&store, "e1", "new", 10, 5, "failed").await;
        executions(&store, "e2", "kept", 10, 40, "success").await;
        run(
            &store,
            &format!(
                "INSERT INTO api_calls (id, enterprise_id, timestamp, system, method, url, status, duration_ms, \
             request_bytes, response_bytes) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {LOOSE_CALLS}) \
             SELECT 'loose-' || i, 'e1', {}, 'rest', 'GET', 'http://x/', 'success', 5, 0, 0 FROM n",
                NOW - 40 * DAY_MS
            ),
        )
        .await;
        let sqlite = store.backend() == Backend::Sqlite;
        let pages_before = if sqlite { count(&store, "PRAGMA page_count").await } else { 0 };

        let purged = store.purge_expired_at(NOW).await.expect("purges");

        assert_eq!(purged.executions, EXPIRED as u64);
        // The calls of the expired executions, the loose ones, and those of the unfinished
        // executions, which go by their own time (the executions stay).
        assert_eq!(purged.api_calls, (EXPIRED + LOOSE_CALLS + 10) as u64);
        // e1: 3 batches of executions, 2 of loose API calls, 1 of audit rows; e2: one of each;
        // then the platform's audit rows and the schedule slots: one each.
        assert_eq!(purged.batches, 3 + 2 + 1 + 3 + 1 + 1, "{purged:?}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM executions WHERE id LIKE 'old-%'").await, 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM step_results WHERE execution_id LIKE 'old-%'").await, 0);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM api_calls WHERE enterprise_id = 'e1' AND timestamp < 1").await,
            0
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM api_calls WHERE id LIKE 'loose-%' OR id LIKE 'call-old-%'").await,
            0
        );
        // Unfinished, recent, and another enterprise's longer retention: untouched, with their rows.
        for prefix in ["stuck", "new", "kept"] {
            let like = format!("'{prefix}-%'");
            assert_eq!(count(&store, &format!("SELECT COUNT(*) FROM executions WHERE id LIKE {like}")).await, 10);
            let steps = format!("SELECT COUNT(*) FROM step_results WHERE execution_id LIKE {like}");
            assert_eq!(count(&store, &steps).await, 20, "{prefix}");
            if prefix != "stuck" {
                let calls = format!("SELECT COUNT(*) FROM api_calls WHERE execution_id LIKE {like}");
                assert_eq!(count(&store, &calls).await, 10, "{prefix}");
            }
        }
        if sqlite {
            // The freed pages went back to the disk: the file is smaller, with no free page left.
            let pages_after = count(&store, "PRAGMA page_count").await;
            assert!(purged.pages_released > 0, "{purged:?}");
            assert!(pages_after < pages_before / 2, "{pages_before} pages before, {pages_after} after");
            assert_eq!(count(&store, "PRAGMA freelist_count").await, 0);
        }
        // A second sweep finds nothing.
        let again = store.purge_expired_at(NOW).await.expect("purges");
        assert_eq!((again.executions, again.api_calls), (0, 0));
        store.close().await;
        // A PostgreSQL database is left to the suite's cleanup (`dibop_t_*`), as the e2e
        // tests' are.
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn sqlite_purges_in_batches_and_returns_the_pages_to_the_disk() {
        purges_in_batches_and_keeps_what_is_not_expired(None, "sqlite").await;
    }

    /// Runs when `DIBOP_TEST_DATABASE_URL` names a PostgreSQL server (as the e2e suite does).
    #[tokio::test]
    async fn postgres_purges_in_batches() {
        let Some(base) = crate::testing::postgres() else {
            eprintln!("skipped: set DIBOP_TEST_DATABASE_URL to run on PostgreSQL");
            return;
        };
        purges_in_batches_and_keeps_what_is_not_expired(Some(&base), "postgres").await;
    }

    #[tokio::test]
    async fn a_sqlite_file_made_without_auto_vacuum_is_switched_once() {
        let dir = std::env::temp_dir().join(format!("dibop-retention-switch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.join("dibop.db").display());
        // An older install's file: tables made before the mode was set.
        let mut old = sqlx::SqliteConnection::connect(&url).await.expect("open");
        sqlx::query("CREATE TABLE leftover (x TEXT)").execute(&mut old).await.expect("table");
        old.close().await.expect("close");

        let store = Store::connect(None, &dir, 1, false).await.expect("connects");
        store.migrate().await.expect("migrates");
        assert_eq!(count(&store, "PRAGMA auto_vacuum").await, AUTO_VACUUM_INCREMENTAL);
        store.close().await;
        // A new file has it from the start.
        let (fresh, fresh_dir) = fresh(None, "new").await;
        assert_eq!(count(&fresh, "PRAGMA auto_vacuum").await, AUTO_VACUUM_INCREMENTAL);
        fresh.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&fresh_dir);
    }
}
