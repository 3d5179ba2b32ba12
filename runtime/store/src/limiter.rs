//! Per-enterprise fixed-window rate limiting (and the login throttle, which is the same counter).
//!
//! On PostgreSQL the counters live in the database so that every node sharing it counts the same
//! hits; a SQLite database belongs to one process, so there they are kept in memory and cost no
//! write per request. In memory there are at most [`MAX_LOCAL_BUCKETS`] counters: when a new one
//! would pass the bound, counters of ended windows go first, then the eighth hit least recently.
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

/// Most counters kept in memory (about 20 MiB with the longest keys, 260-byte login buckets).
pub const MAX_LOCAL_BUCKETS: usize = 65_536;

/// Counts hits per bucket and fixed window.
pub struct RateLimiter {
    counters: Counters,
}

enum Counters {
    Local(Mutex<LocalCounters>),
    Shared(Store),
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
    seq: u64,
}

impl LocalCounters {
    fn new(cap: usize) -> Self {
        Self { windows: HashMap::new(), next_seq: 0, cap: cap.max(8) }
    }

    /// Adds a hit to `bucket` in the window `[start, end)` and returns its count.
    fn hit(&mut self, bucket: &str, start: i64, end: i64) -> i64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        if let Some(window) = self.windows.get_mut(bucket) {
            if window.start != start {
                *window = LocalWindow { start, end, hits: 0, seq };
            }
            window.hits += 1;
            window.seq = seq;
            return window.hits;
        }
        self.make_room(dibop_core::now_ms());
        self.windows.insert(bucket.to_owned(), LocalWindow { start, end, hits: 1, seq });
        1
    }

    /// Keeps the map under its bound before a new counter is added.
    fn make_room(&mut self, now: i64) {
        if self.windows.len() < self.cap {
            return;
        }
        self.windows.retain(|_, w| w.end > now);
        if self.windows.len() < self.cap {
            return;
        }
        let mut seqs: Vec<u64> = self.windows.values().map(|w| w.seq).collect();
        let cut = seqs.len() / 8;
        let (_, oldest_kept, _) = seqs.select_nth_unstable(cut);
        let oldest_kept = *oldest_kept;
        self.windows.retain(|_, w| w.seq >= oldest_kept);
    }
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
    pub fn new(store: &Store) -> Self {
        let counters = match store.backend() {
            Backend::Sqlite => Counters::Local(Mutex::new(LocalCounters::new(MAX_LOCAL_BUCKETS))),
            Backend::Postgres => Counters::Shared(store.clone()),
        };
        Self { counters }
    }

    /// In-memory counters bounded to `cap` (tests use a small bound).
    pub fn local(cap: usize) -> Self {
        Self { counters: Counters::Local(Mutex::new(LocalCounters::new(cap))) }
    }

    /// Counts one hit on `bucket` and tells whether it stays within `limit` per `window_secs`.
    pub async fn hit(&self, bucket: &str, limit: u64, window_secs: i64) -> anyhow::Result<Decision> {
        let (start, reset_unix) = window(window_secs);
        let hits = match &self.counters {
            Counters::Local(map) => {
                let mut map = map.lock().map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?;
                map.hit(bucket, start * 1000, reset_unix * 1000)
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
            Counters::Local(map) => {
                let map = map.lock().map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?;
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
            Counters::Local(map) => {
                let mut map = map.lock().map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?;
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
            Counters::Local(map) => {
                map.lock().map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?.windows.remove(bucket);
            }
            Counters::Shared(store) => store.rate_limit_clear(bucket).await?,
        }
        Ok(())
    }

    /// Drops windows older than an hour (longest window in use is 15 minutes).
    pub async fn prune(&self) -> anyhow::Result<()> {
        let cutoff = (now_secs() - 3600) * 1000;
        match &self.counters {
            Counters::Local(map) => {
                map.lock()
                    .map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?
                    .windows
                    .retain(|_, w| w.start >= cutoff);
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

    #[tokio::test]
    async fn memory_stays_bounded_and_the_oldest_counters_go_first() {
        let limiter = RateLimiter::local(64);
        for i in 0..1000 {
            limiter.hit(&format!("login:{i}@x.example"), 5, 900).await.expect("hit");
        }
        let Counters::Local(map) = &limiter.counters else { unreachable!() };
        let map = map.lock().expect("lock");
        assert!(map.windows.len() <= 64, "{}", map.windows.len());
        assert!(map.windows.contains_key("login:999@x.example"));
        assert!(!map.windows.contains_key("login:0@x.example"));
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
