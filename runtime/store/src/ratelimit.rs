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

/// `reserve_permit`'s statement: the window of the next permit, its place in it, and whether
/// the window before the earliest one had permits left (1 or 0, kept in `room_before`), granted
/// only when it begins by `$5`. `$2` is the earliest window, `$3` the limit, `$4` the period.
/// Every expression reads the cursor as it is under the row's lock, so callers on any node agree.
static RESERVE: LazyLock<String> = LazyLock::new(|| {
    const NEXT: &str = "CASE WHEN outbound_permits.window_start < $2 THEN $2 \
                        WHEN outbound_permits.granted < $3 THEN outbound_permits.window_start \
                        ELSE outbound_permits.window_start + $4 END";
    format!(
        "INSERT INTO outbound_permits (bucket, window_start, granted, room_before) SELECT $1, $2, 1, 1 WHERE $2 <= $5 \
         ON CONFLICT (bucket) DO UPDATE SET window_start = {NEXT}, \
         granted = CASE WHEN outbound_permits.window_start < $2 THEN 1 \
                        WHEN outbound_permits.granted < $3 THEN outbound_permits.granted + 1 ELSE 1 END, \
         room_before = CASE WHEN outbound_permits.window_start < $2 - $4 \
                            OR (outbound_permits.window_start = $2 - $4 AND outbound_permits.granted < $3) THEN 1 ELSE 0 END \
         WHERE {NEXT} <= $5 RETURNING window_start, granted, room_before"
    )
});

/// A permit [`Store::reserve_permit`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Start of its window (unix ms).
    pub window_ms: i64,
    /// Its place in the window: 1 to the limit, in the order the permits were taken.
    pub place: i64,
    /// The window before the earliest one asked for still had permits left when this one was
    /// taken (they are given to nobody any more: the cursor moved on). A call asking late in
    /// the running window (`earliest` is the next one) may then start at once.
    pub room_before: bool,
}

/// Whether the window starting at `window` has permits left, by the cursor as it is.
fn has_room((window_start, granted): (i64, i64), window: i64, limit: i64) -> bool {
    window_start < window || (window_start == window && granted < limit)
}

/// The cursor `(window_start, granted)` after one more permit: [`RESERVE`]'s arithmetic.
fn next_permit((window_start, granted): (i64, i64), earliest: i64, limit: i64, period_ms: i64) -> (i64, i64) {
    if window_start < earliest {
        (earliest, 1)
    } else if granted < limit {
        (window_start, granted + 1)
    } else {
        (window_start + period_ms, 1)
    }
}

impl Store {
    /// Takes the next permit of the outbound limit `bucket` (`limit` calls per `period_ms`, in
    /// windows aligned to the period), in arrival order across nodes: one of the window starting
    /// at `earliest` when it has permits left, else the first later window that has. Answers the
    /// start of the permit's window (unix ms), the permit's place in it (1 to `limit`, in the
    /// order they were taken) and whether the window before `earliest` still had permits left,
    /// or `None`, taking nothing, when that window would begin after `latest`. On PostgreSQL
    /// one statement, whose row lock orders the nodes' callers. On SQLite (one node) the cursor
    /// is kept in memory, read from the database the first time, and only a permit of a later
    /// window is written through before it is given (those are what parked calls hold across a
    /// restart): a call in the running window costs no write. After a crash, the window it happened in may see up to one more limit's worth
    /// of calls.
    pub async fn reserve_permit(
        &self,
        bucket: &str,
        earliest: i64,
        limit: i64,
        period_ms: i64,
        latest: i64,
    ) -> sqlx::Result<Option<Granted>> {
        if self.backend == crate::Backend::Postgres {
            let taken: Option<(i64, i64, i64)> = sqlx::query_as(&RESERVE)
                .bind(bucket)
                .bind(earliest)
                .bind(limit)
                .bind(period_ms)
                .bind(latest)
                .fetch_all(&self.pool)
                .await
                .map(crate::first)?;
            return Ok(taken.map(|(window_ms, place, room)| Granted { window_ms, place, room_before: room == 1 }));
        }
        self.load_cursor(bucket).await?;
        let (granted, room_before) = {
            let mut cursors = self.caches.permits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let cursor = cursors.entry(bucket.to_owned()).or_insert((i64::MIN, 0));
            let next = next_permit(*cursor, earliest, limit, period_ms);
            if next.0 > latest {
                return Ok(None);
            }
            let room = has_room(*cursor, earliest - period_ms, limit);
            *cursor = next;
            (next, room)
        };
        if granted.0 > earliest {
            // Moves the stored cursor forward only (concurrent writes may land out of order).
            sqlx::query(
                "INSERT INTO outbound_permits (bucket, window_start, granted) VALUES ($1, $2, $3) \
                 ON CONFLICT (bucket) DO UPDATE SET window_start = excluded.window_start, granted = excluded.granted \
                 WHERE excluded.window_start > outbound_permits.window_start \
                 OR (excluded.window_start = outbound_permits.window_start AND excluded.granted > outbound_permits.granted)",
            )
            .bind(bucket)
            .bind(granted.0)
            .bind(granted.1)
            .execute(&self.pool)
            .await?;
        }
        Ok(Some(Granted { window_ms: granted.0, place: granted.1, room_before }))
    }

    /// SQLite: reads the cursor of `bucket` from the database the first time this process
    /// takes a permit of it.
    async fn load_cursor(&self, bucket: &str) -> sqlx::Result<()> {
        let cursors = &self.caches.permits;
        if cursors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(bucket) {
            return Ok(());
        }
        let stored: Option<(i64, i64)> =
            sqlx::query_as("SELECT window_start, granted FROM outbound_permits WHERE bucket = $1")
                .bind(bucket)
                .fetch_optional(self.reads())
                .await?;
        let mut map = cursors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(bucket.to_owned()).or_insert(stored.unwrap_or((i64::MIN, 0)));
        Ok(())
    }

    /// Forgets the permit cursors of a deleted connection.
    pub(crate) async fn forget_permits(&self, connection_id: &str) -> sqlx::Result<()> {
        let prefix = outbound_prefix(connection_id);
        self.caches
            .permits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|b, _| !b.starts_with(&prefix));
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

#[cfg(test)]
mod tests {
    use super::{has_room, next_permit};

    #[test]
    fn a_cursor_fills_its_window_then_moves_to_the_next() {
        let second = 1_000;
        assert_eq!(
            next_permit((i64::MIN, 0), 5_000, 2, second),
            (5_000, 1),
            "a new cursor starts at the earliest window"
        );
        assert_eq!(next_permit((5_000, 1), 5_000, 2, second), (5_000, 2));
        assert_eq!(next_permit((5_000, 2), 5_000, 2, second), (6_000, 1), "a full window gives the next one's");
        assert_eq!(next_permit((6_000, 1), 5_000, 2, second), (6_000, 2), "permits ahead are taken in order");
        assert_eq!(next_permit((6_000, 2), 9_000, 2, second), (9_000, 1), "a cursor left behind starts again");
        assert!(has_room((4_000, 2), 5_000, 2), "a window nobody took permits of has room");
        assert!(has_room((5_000, 1), 5_000, 2));
        assert!(!has_room((5_000, 2), 5_000, 2), "a full window has none");
        assert!(!has_room((6_000, 1), 5_000, 2), "nor one the cursor has left");
    }

    /// On SQLite the cursor lives in memory; a permit of a later window is written through, so
    /// a new process on the same file (after a restart) goes on after it.
    #[tokio::test]
    async fn sqlite_keeps_the_cursor_in_memory_and_writes_later_windows_through() {
        let (store, _dir) = crate::testing::fresh_store(None, "permits").await;
        let bucket = crate::outbound_bucket("c1", 1_000);
        let take = |earliest| {
            let (store, bucket) = (store.clone(), bucket.clone());
            async move {
                let taken = store.reserve_permit(&bucket, earliest, 2, 1_000, earliest + 10_000).await;
                taken.expect("permit").map(|g| (g.window_ms, g.place))
            }
        };
        assert_eq!(take(5_000).await, Some((5_000, 1)));
        assert_eq!(take(5_000).await, Some((5_000, 2)));
        let stored = |store: crate::Store, bucket: String| async move {
            sqlx::query_as::<_, (i64, i64)>("SELECT window_start, granted FROM outbound_permits WHERE bucket = $1")
                .bind(bucket)
                .fetch_optional(store.reads())
                .await
                .expect("read")
        };
        assert_eq!(stored(store.clone(), bucket.clone()).await, None, "the running window's permits cost no write");
        assert_eq!(take(5_000).await, Some((6_000, 1)));
        assert_eq!(stored(store.clone(), bucket.clone()).await, Some((6_000, 1)), "a later window's is written");
        // Too far for this caller: nothing taken.
        assert_eq!(store.reserve_permit(&bucket, 5_000, 2, 1_000, 5_500).await.expect("permit"), None);
        // Another process (its memory empty) reads the cursor and goes on after it.
        store.caches.permits.lock().expect("cursors").clear();
        assert_eq!(take(5_000).await, Some((6_000, 2)));
        assert_eq!(take(5_000).await, Some((7_000, 1)));
        store.forget_permits("c1").await.expect("forget");
        assert_eq!(take(5_000).await, Some((5_000, 1)), "a deleted connection's cursor is gone");
        // Asked for 6_000 (late in the running window 5_000): whether 5_000 had permits left is
        // said, for the first such call only (the cursor moved on).
        let late = |store: crate::Store, bucket: String| async move {
            store.reserve_permit(&bucket, 6_000, 2, 1_000, 20_000).await.expect("permit").expect("granted")
        };
        let first = late(store.clone(), bucket.clone()).await;
        assert_eq!((first.window_ms, first.place, first.room_before), (6_000, 1, true));
        let second = late(store.clone(), bucket.clone()).await;
        assert_eq!((second.window_ms, second.place, second.room_before), (6_000, 2, false));
    }
}
