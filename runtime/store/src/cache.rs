//! Small read-through caches for rows the engine reads on every step. Writes through this
//! node's `Store` clear them; the time to live bounds how long another node's write may go
//! unseen.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bounded map whose entries expire.
pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity, entries: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                if entries.len() >= self.capacity {
                    entries.clear();
                }
            }
            entries.insert(key, (Instant::now(), value));
        }
    }

    pub fn remove(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// The caches of one `Store`.
pub struct Caches {
    /// Active plugins by enterprise id.
    pub plugins: TtlCache<String, Vec<super::PluginRow>>,
    /// Connections by (enterprise id, id or name).
    pub connections: TtlCache<(String, String), Option<super::ConnectionRow>>,
    /// Orchestration versions (immutable) by (orchestration id, version).
    pub versions: TtlCache<(String, i64), String>,
    /// Enabled alert rules by enterprise id.
    pub alert_rules: TtlCache<String, Vec<super::AlertRuleRow>>,
    /// The outbound calls a minute of each enterprise's connections without their own limit.
    pub outbound_limits: TtlCache<String, i64>,
    /// Connections whose circuit this node saw closed without failures: a step's call does not
    /// read the circuit again for a second (a failure here forgets the entry at once).
    pub healthy_circuits: TtlCache<String, ()>,
    /// SQLite only (one node): the permit cursors of outbound limits, by bucket, as
    /// `(window_start, granted)` (see `Store::reserve_permit`).
    pub permits: std::sync::Mutex<std::collections::HashMap<String, (i64, i64)>>,
}

/// How long a cached plugin list or connection is trusted without a local write.
pub const FRESH: Duration = Duration::from_secs(1);

impl Default for Caches {
    fn default() -> Self {
        Self {
            plugins: TtlCache::new(FRESH, 1_000),
            connections: TtlCache::new(FRESH, 10_000),
            versions: TtlCache::new(Duration::from_secs(3_600), 1_000),
            alert_rules: TtlCache::new(FRESH, 1_000),
            outbound_limits: TtlCache::new(FRESH, 10_000),
            healthy_circuits: TtlCache::new(FRESH, 10_000),
            permits: std::sync::Mutex::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_clear() {
        let cache = TtlCache::new(Duration::from_millis(30), 2);
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&"a"), None, "expired");
        cache.insert("b", 2);
        cache.insert("c", 3);
        cache.insert("d", 4);
        assert!(cache.get(&"d").is_some(), "a full cache makes room");
        cache.clear();
        assert_eq!(cache.get(&"d"), None);
    }
}
