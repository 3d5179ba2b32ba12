//! Which database errors are faults of the database or of the disk under it (it is down,
//! restarting, refusing or dropping connections, out of space, slow past the pool's bound)
//! rather than bugs. Callers answer them "unavailable, retry shortly" (the API's 503 with
//! `Retry-After`; the engine hands the execution back to the queue) instead of failing.
//!
//! This is the one place that decides; [`is_unavailable`] looks at one `sqlx::Error`,
//! [`unavailable_in`] at every cause of an `anyhow::Error`.

use std::time::Duration;

use sqlx::error::DatabaseError;

/// Longest a request waits for a database connection: past it the pool answers
/// `PoolTimedOut`, which [`is_unavailable`] counts, so a database that refuses connections (or
/// a pool held by slow statements) is answered in seconds instead of sqlx's default 30 s.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether `err` says the database (or its disk) cannot serve right now, as opposed to a bug
/// in a statement or a row (constraint violations, decode errors: those stay errors).
///
/// Counted: no connection within [`ACQUIRE_TIMEOUT`], a closed pool, I/O and TLS errors, a
/// crashed SQLite worker; PostgreSQL SQLSTATEs of class 08 (connection exception), 53
/// (insufficient resources: 53100 disk full, 53300 too many connections), 57P01-57P03 (admin
/// or crash shutdown, cannot connect now), 57014 (a statement cancelled by a timeout),
/// 58030 (I/O error), 25006 (read-only transaction: a standby after a failover), 40001 and
/// 40P01 (serialization failure, deadlock: the same request succeeds when retried); SQLite
/// primary result codes BUSY (5), LOCKED (6), READONLY (8), IOERR (10), FULL (13), CANTOPEN
/// (14) and PROTOCOL (15).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => database_unavailable(db.as_ref()),
        _ => false,
    }
}

/// Whether any cause of `err` is an error [`is_unavailable`] counts, or a file write that
/// found the disk full (`StorageFull`, `QuotaExceeded`).
pub fn unavailable_in(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(sql) = cause.downcast_ref::<sqlx::Error>() {
            return is_unavailable(sql);
        }
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
    })
}

fn database_unavailable(db: &dyn DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return sqlstate_unavailable(pg.code());
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return db.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(sqlite_code_unavailable);
    }
    false
}

/// A PostgreSQL SQLSTATE that says "the server cannot do it now".
fn sqlstate_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "58030" | "25006" | "40001" | "40P01")
}

/// A SQLite (extended) result code whose primary code says "the file cannot be written or
/// read now".
fn sqlite_code_unavailable(extended: i32) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    const PROTOCOL: i32 = 15;
    matches!(extended & 0xff, BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN | PROTOCOL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_level_errors_are_unavailable() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        assert!(is_unavailable(&sqlx::Error::WorkerCrashed));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unavailable(&sqlx::Error::Io(refused)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_unavailable(&sqlx::Error::Io(reset)));
    }

    #[test]
    fn bugs_are_not_unavailable() {
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
        assert!(!is_unavailable(&sqlx::Error::Protocol("bad message".into())));
        assert!(!is_unavailable(&sqlx::Error::Decode("not a number".into())));
    }

    #[test]
    fn postgres_sqlstates() {
        for code in ["08006", "08001", "08P01", "53100", "53300", "53200", "57P01", "57P02", "57P03", "57014"] {
            assert!(sqlstate_unavailable(code), "{code}");
        }
        for code in ["58030", "25006", "40001", "40P01"] {
            assert!(sqlstate_unavailable(code), "{code}");
        }
        // Unique and foreign-key violations, syntax errors, undefined tables, bad input.
        for code in ["23505", "23503", "42601", "42P01", "22P02", "57000", "XX000"] {
            assert!(!sqlstate_unavailable(code), "{code}");
        }
    }

    #[test]
    fn sqlite_codes_by_their_primary_code() {
        // SQLITE_FULL, SQLITE_IOERR_WRITE (10 | 3 << 8), SQLITE_BUSY_SNAPSHOT (5 | 2 << 8),
        // SQLITE_READONLY_DBMOVED (8 | 4 << 8), SQLITE_CANTOPEN, SQLITE_LOCKED, SQLITE_PROTOCOL.
        for code in [13, 778, 517, 1032, 14, 6, 15] {
            assert!(sqlite_code_unavailable(code), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_CONSTRAINT_FOREIGNKEY (787),
        // SQLITE_CORRUPT, SQLITE_MISMATCH, SQLITE_TOOBIG.
        for code in [1, 2067, 787, 11, 20, 18] {
            assert!(!sqlite_code_unavailable(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_real_sqlite_full_is_unavailable_and_a_constraint_violation_is_not() {
        use sqlx::{Connection, Executor};
        let dir = std::env::temp_dir().join(format!("dibop-fault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("full.db");
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB)").await.expect("create");
        conn.execute("INSERT INTO t VALUES (1, x'00')").await.expect("insert");
        let duplicate = conn.execute("INSERT INTO t VALUES (1, x'00')").await.expect_err("duplicate");
        assert!(!is_unavailable(&duplicate), "{duplicate}");
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut conn).await.expect("pages");
        conn.execute(format!("PRAGMA max_page_count = {pages}").as_str()).await.expect("cap");
        let full = conn.execute("INSERT INTO t VALUES (2, zeroblob(100000))").await.expect_err("full");
        assert!(is_unavailable(&full), "{full}");
        assert!(unavailable_in(&anyhow::Error::from(full).context("queueing an execution")));
        conn.close().await.expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_disk_under_a_file_write_is_unavailable() {
        let full = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull)).context("caching");
        assert!(unavailable_in(&full));
        let missing = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!unavailable_in(&missing));
        assert!(!unavailable_in(&anyhow::anyhow!("a bug")));
    }
}
