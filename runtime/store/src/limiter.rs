//! Per-enterprise fixed-window rate limiting (and the login throttle, which is the same counter).
//!
//! On PostgreSQL the counters live in the database so that every node sharing it counts the same
//! hits; a SQLite database belongs to one process, so there they are kept in memory and cost no
//! write per request. In memory the counters are kept in two bounded tables, so unauthenticated
//! traffic cannot reset the counters that protect accounts and tenants: logins' counters (per
//! address and per account: `login...` buckets, whose keys anyone can choose) in one, the
//! tenants' (API, executions, outbound calls: buckets of authenticated callers) in the other,
//! each at most [`MAX_LOCAL_BUCKETS`]. When a new counter would pass a table's bound, counters of
//! ended windows go first, then the least recently hit eighth of those still under their limit.
//! A counter at its limit (an account locked out, a tenant throttled) is never evicted before
//! its window ends; when a table holds nothing else, the new bucket's hit is refused (shed)
//! instead.
//!
//! [`RateLimiter::hit`] counts before the caller acts, atomically (under the mutex, or in one
//! `INSERT ... ON CONFLICT DO UPDATE ... RETURNING`), so a limit is exact under concurrency: a
//! caller that acts only when its hit was allowed can never act more than `limit` times per
//! window. [`RateLimiter::release`] gives a hit back when the caller did not act after all.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{Backend, Store};

/// The outcome of counting one request against a limit.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// When the current window ends, unix seconds.
    pub reset_unix: i64,
}

impl Decision {
    /// Seconds until the window ends (at least 1), for `Retry-After`.
    pub fn retry_after_secs(&self) -> u64 {
        u64::try_from(self.reset_unix - now_secs()).unwrap_or(0).max(1)
    }
}

/// Most counters kept in memory per table (about 20 MiB with the longest keys, 260-byte login
/// buckets; two tables).
pub const MAX_LOCAL_BUCKETS: usize = 65_536;

/// Counts hits per bucket and fixed window.
pub struct RateLimiter {
    counters: Counters,
}

enum Counters {
    /// Logins' counters, then the tenants'.
    Local([Mutex<LocalCounters>; 2]),
    Shared(Store),
}

/// The table of `bucket`: 0 for the login throttle (keys chosen by unauthenticated callers),
/// 1 for the tenants' limits.
fn table(bucket: &str) -> usize {
    if bucket.starts_with("login") { 0 } else { 1 }
}

/// The in-memory counters, bounded.
struct LocalCounters {
    windows: HashMap<String, LocalWindow>,
    /// Order of the counters' last hits, to evict the least recently used.
    next_seq: u64,
    cap: usize,
}

struct LocalWindow {
    /// Start and end of the window, unix ms.
    start: i64,
    end: i64,
    hits: i64,
    /// The limit of the last hit: a counter that reached it is kept until its window ends.
    limit: i64,
    seq: u64,
}

impl LocalCounters {
    fn new(cap: usize) -> Self {
        Self { windows: HashMap::new(), next_seq: 0, cap: cap.max(8) }
    }

    /// Adds a hit to `bucket` in the window `[start, end)` and returns its count; `None` when
    /// the table is full of counters at their limits (the hit is shed).
    fn hit(&mut self, bucket: &str, limit: i64, start: i64, end: i64) -> Option<i64> {
        self.next_seq += 1;
        let seq = self.next_seq;
        if let Some(window) = self.windows.get_mut(bucket) {
            if window.start != start {
                *window = LocalWindow { start, end, hits: 0, limit, seq };
            }
            window.hits += 1;
            window.limit = limit;
            window.seq = seq;
            return Some(window.hits);
        }
        if !self.make_room(dibop_core::now_ms()) {
            return None;
        }
        self.windows.insert(bucket.to_owned(), LocalWindow { start, end, hits: 1, limit, seq });
        Some(1)
    }

    /// Keeps the table under its bound before a new counter is added; false when every counter
    /// left is at its limit in a running window.
    fn make_room(&mut self, now: i64) -> bool {
        if self.windows.len() < self.cap {
            return true;
        }
        self.windows.retain(|_, w| w.end > now);
        if self.windows.len() < self.cap {
            return true;
        }
        let mut seqs: Vec<u64> = self.windows.values().filter(|w| w.hits < w.limit).map(|w| w.seq).collect();
        if seqs.is_empty() {
            return false;
        }
        let cut = seqs.len() / 8;
        let (_, newest_evicted, _) = seqs.select_nth_unstable(cut);
        let newest_evicted = *newest_evicted;
        self.windows.retain(|_, w| w.hits >= w.limit || w.seq > newest_evicted);
        true
    }
}

impl Counters {
    fn local(cap: usize) -> Self {
        Counters::Local([Mutex::new(LocalCounters::new(cap)), Mutex::new(LocalCounters::new(cap))])
    }
}

/// The table that holds `bucket`, locked.
fn lock<'a>(
    tables: &'a [Mutex<LocalCounters>; 2],
    bucket: &str,
) -> anyhow::Result<std::sync::MutexGuard<'a, LocalCounters>> {
    tables[table(bucket)].lock().map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))
}

/// The clock in unix seconds.
fn now_secs() -> i64 {
    dibop_core::now_ms().div_euclid(1000)
}

/// Start of the window of `window_secs` that contains now, and its end, in unix seconds.
fn window(window_secs: i64) -> (i64, i64) {
    let now = now_secs();
    let start = now - now.rem_euclid(window_secs);
    (start, start + window_secs)
}

impl RateLimiter {
    /// Counters for `store`: in memory, at most `local_buckets` per table, on SQLite.
    pub fn new(store: &Store, local_buckets: usize) -> Self {
        let counters = match store.backend() {
            Backend::Sqlite => Counters::local(local_buckets),
            Backend::Postgres => Counters::Shared(store.clone()),
        };
        Self { counters }
    }

    /// In-memory counters bounded to `cap` per table (tests use a small bound).
    pub fn local(cap: usize) -> Self {
        Self { counters: Counters::local(cap) }
    }

    /// Counts one hit on `bucket` and tells whether it stays within `limit` per `window_secs`.
    pub async fn hit(&self, bucket: &str, limit: u64, window_secs: i64) -> anyhow::Result<Decision> {
        let (start, reset_unix) = window(window_secs);
        let hits = match &self.counters {
            Counters::Local(tables) => {
                let mut map = lock(tables, bucket)?;
                let capped = i64::try_from(limit).unwrap_or(i64::MAX);
                match map.hit(bucket, capped, start * 1000, reset_unix * 1000) {
                    Some(hits) => hits,
                    // No room: shed this hit rather than forget a counter at its limit.
                    None => return Ok(Decision { allowed: false, limit, remaining: 0, reset_unix }),
                }
            }
            Counters::Shared(store) => store.rate_limit_hit(bucket, start * 1000).await?,
        };
        let hits = u64::try_from(hits).unwrap_or(u64::MAX);
        Ok(Decision { allowed: hits <= limit, limit, remaining: limit.saturating_sub(hits), reset_unix })
    }

    /// How `bucket` stands in its current window without counting a hit.
    pub async fn peek(&self, bucket: &str, limit: u64, window_secs: i64) -> anyhow::Result<Decision> {
        let (start, reset_unix) = window(window_secs);
        let hits = match &self.counters {
            Counters::Local(tables) => {
                let map = lock(tables, bucket)?;
                map.windows.get(bucket).filter(|w| w.start == start * 1000).map_or(0, |w| w.hits)
            }
            Counters::Shared(store) => store.rate_limit_count(bucket, start * 1000).await?,
        };
        let hits = u64::try_from(hits).unwrap_or(u64::MAX);
        Ok(Decision { allowed: hits < limit, limit, remaining: limit.saturating_sub(hits), reset_unix })
    }

    /// Gives back one hit counted on `bucket` in the current window of `window_secs` (the caller
    /// counted, then did not act: a login that succeeded, or found the password gate full).
    pub async fn release(&self, bucket: &str, window_secs: i64) -> anyhow::Result<()> {
        let (start, _) = window(window_secs);
        match &self.counters {
            Counters::Local(tables) => {
                let mut map = lock(tables, bucket)?;
                if let Some(w) = map.windows.get_mut(bucket).filter(|w| w.start == start * 1000) {
                    w.hits = (w.hits - 1).max(0);
                }
            }
            Counters::Shared(store) => store.rate_limit_release(bucket, start * 1000).await?,
        }
        Ok(())
    }

    /// Forgets `bucket` (a successful login clears its failures).
    pub async fn clear(&self, bucket: &str) -> anyhow::Result<()> {
        match &self.counters {
            Counters::Local(tables) => {
                lock(tables, bucket)?.windows.remove(bucket);
            }
            Counters::Shared(store) => store.rate_limit_clear(bucket).await?,
        }
        Ok(())
    }

    /// Drops windows older than an hour (longest window in use is 15 minutes).
    pub async fn prune(&self) -> anyhow::Result<()> {
        let cutoff = (now_secs() - 3600) * 1000;
        match &self.counters {
            Counters::Local(tables) => {
                for map in tables {
                    map.lock()
                        .map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?
                        .windows
                        .retain(|_, w| w.start >= cutoff);
                }
            }
            Counters::Shared(store) => {
                store.rate_limit_prune(cutoff).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(limiter: &RateLimiter) -> [usize; 2] {
        let Counters::Local(tables) = &limiter.counters else { unreachable!() };
        [0, 1].map(|i| tables[i].lock().expect("lock").windows.len())
    }

    #[tokio::test]
    async fn memory_stays_bounded_and_the_oldest_counters_go_first() {
        let limiter = RateLimiter::local(64);
        for i in 0..1000 {
            limiter.hit(&format!("login:{i}@x.example"), 5, 900).await.expect("hit");
        }
        assert!(sizes(&limiter)[0] <= 64, "{:?}", sizes(&limiter));
        let Counters::Local(tables) = &limiter.counters else { unreachable!() };
        let map = tables[0].lock().expect("lock");
        assert!(map.windows.contains_key("login:999@x.example"));
        assert!(!map.windows.contains_key("login:0@x.example"));
    }

    #[tokio::test]
    async fn a_flood_of_new_login_buckets_resets_no_lockout_and_no_tenant_counter() {
        let limiter = RateLimiter::local(64);
        for _ in 0..6 {
            limiter.hit("login:victim@x.example", 5, 900).await.expect("hit");
        }
        for _ in 0..10 {
            limiter.hit("api:enterprise", 1000, 60).await.expect("hit");
        }
        for i in 0..10_000 {
            limiter.hit(&format!("login:{i}@flood.example"), 5, 900).await.expect("hit");
        }
        assert!(!limiter.hit("login:victim@x.example", 5, 900).await.expect("hit").allowed, "still locked");
        assert_eq!(limiter.hit("api:enterprise", 1000, 60).await.expect("hit").remaining, 1000 - 11);
        assert!(sizes(&limiter).iter().all(|n| *n <= 64), "{:?}", sizes(&limiter));
    }

    #[tokio::test]
    async fn a_table_full_of_lockouts_sheds_new_buckets() {
        let limiter = RateLimiter::local(8);
        for i in 0..8 {
            for _ in 0..2 {
                limiter.hit(&format!("login:{i}@x.example"), 1, 900).await.expect("hit");
            }
        }
        let shed = limiter.hit("login:new@x.example", 5, 900).await.expect("hit");
        assert!(!shed.allowed && shed.remaining == 0);
        assert_eq!(sizes(&limiter)[0], 8);
        for i in 0..8 {
            assert!(!limiter.hit(&format!("login:{i}@x.example"), 1, 900).await.expect("hit").allowed);
        }
        // The tenants' table is another: it still counts.
        assert!(limiter.hit("exec:enterprise", 5, 60).await.expect("hit").allowed);
    }

    #[tokio::test]
    async fn a_released_hit_is_given_back() {
        let limiter = RateLimiter::local(64);
        for _ in 0..3 {
            limiter.hit("b", 3, 900).await.expect("hit");
        }
        assert!(!limiter.hit("b", 3, 900).await.expect("hit").allowed);
        limiter.release("b", 900).await.expect("release");
        limiter.release("b", 900).await.expect("release");
        assert!(limiter.hit("b", 3, 900).await.expect("hit").allowed);
    }
}
