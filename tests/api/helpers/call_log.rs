//! What a mock system saw: each request's key (such as `{step}/{id}` or a vehicle id) and when
//! it came, by the wall clock (unix ms), to check that each call came once and that a rate limit
//! held in every second of the clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The requests a mock saw; clones share them.
#[derive(Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<(String, i64)>>>);

impl CallLog {
    /// Notes a request with `key`, now.
    pub fn record(&self, key: String) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis();
        self.0.lock().expect("lock").push((key, i64::try_from(now).expect("ms")));
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<(String, i64)> {
        self.0.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.0.lock().expect("lock").len()
    }

    /// How many times each key came.
    pub fn times_each(&self) -> HashMap<String, usize> {
        let mut times = HashMap::new();
        for (key, _) in self.calls() {
            *times.entry(key).or_default() += 1;
        }
        times
    }

    /// The most requests that came in one second of the clock, of keys starting with one of
    /// `prefixes` followed by `/` (all when empty).
    pub fn busiest_second(&self, prefixes: &[&str]) -> usize {
        let counted = |key: &str| prefixes.is_empty() || prefixes.iter().any(|p| key.starts_with(&format!("{p}/")));
        let mut per_second: HashMap<i64, usize> = HashMap::new();
        for (_, at) in self.calls().into_iter().filter(|(key, _)| counted(key)) {
            *per_second.entry(at.div_euclid(1000)).or_default() += 1;
        }
        per_second.into_values().max().unwrap_or(0)
    }
}
