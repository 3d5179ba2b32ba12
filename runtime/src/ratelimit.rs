//! Per-enterprise fixed-window rate limiting (and the login throttle, which is the same counter).
//!
//! On PostgreSQL the counters live in the database so that every node sharing it counts the same
//! hits; a SQLite database belongs to one process, so there they are kept in memory and cost no
//! write per request.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{Backend, Store};

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
        u64::try_from(self.reset_unix - chrono::Utc::now().timestamp()).unwrap_or(0).max(1)
    }
}

/// Counts hits per bucket and fixed window.
pub struct RateLimiter {
    counters: Counters,
}

enum Counters {
    /// bucket -> (window start in unix ms, hits)
    Local(Mutex<HashMap<String, (i64, i64)>>),
    Shared(Store),
}

/// Start of the window of `window_secs` that contains now, and its end, in unix seconds.
fn window(window_secs: i64) -> (i64, i64) {
    let now = chrono::Utc::now().timestamp();
    let start = now - now.rem_euclid(window_secs);
    (start, start + window_secs)
}

impl RateLimiter {
    pub fn new(store: &Store) -> Self {
        let counters = match store.backend() {
            Backend::Sqlite => Counters::Local(Mutex::default()),
            Backend::Postgres => Counters::Shared(store.clone()),
        };
        Self { counters }
    }

    /// Counts one hit on `bucket` and tells whether it stays within `limit` per `window_secs`.
    pub async fn hit(&self, bucket: &str, limit: u64, window_secs: i64) -> anyhow::Result<Decision> {
        let (start, reset_unix) = window(window_secs);
        let hits = match &self.counters {
            Counters::Local(map) => {
                let mut map = map.lock().map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?;
                let entry = map.entry(bucket.to_owned()).or_insert((start * 1000, 0));
                if entry.0 != start * 1000 {
                    *entry = (start * 1000, 0);
                }
                entry.1 += 1;
                entry.1
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
                map.get(bucket).filter(|(s, _)| *s == start * 1000).map_or(0, |(_, h)| *h)
            }
            Counters::Shared(store) => store.rate_limit_count(bucket, start * 1000).await?,
        };
        let hits = u64::try_from(hits).unwrap_or(u64::MAX);
        Ok(Decision { allowed: hits < limit, limit, remaining: limit.saturating_sub(hits), reset_unix })
    }

    /// Forgets `bucket` (a successful login clears its failures).
    pub async fn clear(&self, bucket: &str) -> anyhow::Result<()> {
        match &self.counters {
            Counters::Local(map) => {
                map.lock().map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?.remove(bucket);
            }
            Counters::Shared(store) => store.rate_limit_clear(bucket).await?,
        }
        Ok(())
    }

    /// Drops windows older than an hour (longest window in use is 15 minutes).
    pub async fn prune(&self) -> anyhow::Result<()> {
        let cutoff = (chrono::Utc::now().timestamp() - 3600) * 1000;
        match &self.counters {
            Counters::Local(map) => {
                map.lock().map_err(|_| anyhow::anyhow!("rate limiter lock poisoned"))?.retain(|_, (s, _)| *s >= cutoff);
            }
            Counters::Shared(store) => {
                store.rate_limit_prune(cutoff).await?;
            }
        }
        Ok(())
    }
}
