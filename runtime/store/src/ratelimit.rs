//! Fixed-window counters in the database, so every node sharing it counts the same hits, and the
//! permit cursors of outbound rate limits (`outbound_permits`), which every node takes permits from.

use std::sync::LazyLock;

use super::Store;

/// The permit cursor of a connection's outbound limit per `period_ms` (see
/// [`Store::reserve_permit`]).
pub fn outbound_bucket(connection_id: &str, period_ms: i64) -> String {
    format!("{}{period_ms}", outbound_prefix(connection_id))
}

/// What the permit cursors of a connection's limits (one per period) begin with.
fn outbound_prefix(connection_id: &str) -> String {
    format!("outbound:{connection_id}:")
}

/// `reserve_permit`'s statement: the window of the next permit, granted only when it begins by
/// `$5`. `$2` is the earliest window, `$3` the limit, `$4` the period.
static RESERVE: LazyLock<String> = LazyLock::new(|| {
    const NEXT: &str = "CASE WHEN outbound_permits.window_start < $2 THEN $2 \
                        WHEN outbound_permits.granted < $3 THEN outbound_permits.window_start \
                        ELSE outbound_permits.window_start + $4 END";
    format!(
        "INSERT INTO outbound_permits (bucket, window_start, granted) SELECT $1, $2, 1 WHERE $2 <= $5 \
         ON CONFLICT (bucket) DO UPDATE SET window_start = {NEXT}, \
         granted = CASE WHEN outbound_permits.window_start < $2 THEN 1 \
                        WHEN outbound_permits.granted < $3 THEN outbound_permits.granted + 1 ELSE 1 END \
         WHERE {NEXT} <= $5 RETURNING window_start"
    )
});

impl Store {
    /// Takes the next permit of the outbound limit `bucket` (`limit` calls per `period_ms`, in
    /// windows aligned to the period), in arrival order across nodes: one of the window starting
    /// at `earliest` when it has permits left, else the first later window that has. Answers the
    /// start of the permit's window (unix ms), or `None`, taking nothing, when that window would
    /// begin after `latest`. One statement: the row lock orders concurrent callers.
    pub async fn reserve_permit(
        &self,
        bucket: &str,
        earliest: i64,
        limit: i64,
        period_ms: i64,
        latest: i64,
    ) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(&RESERVE)
            .bind(bucket)
            .bind(earliest)
            .bind(limit)
            .bind(period_ms)
            .bind(latest)
            .fetch_all(&self.pool)
            .await
            .map(crate::first)
    }

    /// Forgets the permit cursors of a deleted connection.
    pub(crate) async fn forget_permits(&self, connection_id: &str) -> sqlx::Result<()> {
        // Ids are ours (no LIKE wildcards in them).
        sqlx::query("DELETE FROM outbound_permits WHERE bucket LIKE $1")
            .bind(format!("{}%", outbound_prefix(connection_id)))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds one hit to `bucket` in the window starting at `window_start` and returns the count.
    pub async fn rate_limit_hit(&self, bucket: &str, window_start: i64) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO rate_limit_windows (bucket, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1 \
             RETURNING hits",
        )
        .bind(bucket)
        .bind(window_start)
        .fetch_all(&self.pool)
        .await
        .and_then(crate::only)
    }

    /// The hits of `bucket` in the window starting at `window_start`.
    pub async fn rate_limit_count(&self, bucket: &str, window_start: i64) -> sqlx::Result<i64> {
        let hits: Option<i64> =
            sqlx::query_scalar("SELECT hits FROM rate_limit_windows WHERE bucket = $1 AND window_start = $2")
                .bind(bucket)
                .bind(window_start)
                .fetch_optional(self.reads())
                .await?;
        Ok(hits.unwrap_or(0))
    }

    /// Takes one hit back from `bucket` in the window starting at `window_start`.
    pub async fn rate_limit_release(&self, bucket: &str, window_start: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE rate_limit_windows SET hits = hits - 1 WHERE bucket = $1 AND window_start = $2 AND hits > 0",
        )
        .bind(bucket)
        .bind(window_start)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets every window of `bucket`.
    pub async fn rate_limit_clear(&self, bucket: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM rate_limit_windows WHERE bucket = $1").bind(bucket).execute(&self.pool).await?;
        Ok(())
    }

    /// Deletes windows that started before `before` (unix ms).
    pub async fn rate_limit_prune(&self, before: i64) -> sqlx::Result<u64> {
        let done = sqlx::query("DELETE FROM rate_limit_windows WHERE window_start < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
