//! Warm connector instances: an instance that served a call successfully may serve later calls
//! of the same connection, saving the instantiation (and a JavaScript or Python runtime's start)
//! on each call.
//!
//! Invariant: an instance is only reused for the same enterprise, connection, plugin version,
//! configuration, credentials and limits (all part of its key), at most `max_uses` times, never
//! after a call that failed in any way (trap, limit, timeout or a plugin error) or whose
//! memories grew past 64 MiB, and never after sitting idle for a minute. The pool is bounded per key and in total.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::CallSpec;
use super::bindings::connector::Connector;
use super::host::State;

/// Idle instances older than this are dropped.
const IDLE: Duration = Duration::from_secs(60);
/// Warm instances kept per key, and in all.
const PER_KEY: usize = 4;
const TOTAL: usize = 32;

/// An instantiated connector with its store.
pub struct Warm {
    pub store: Store<State>,
    /// Set by the first call on this store.
    pub instance: Option<Connector>,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
    /// Calls served so far.
    pub uses: u32,
    idle_since: Instant,
}

impl Warm {
    pub fn new(store: Store<State>, stdout: MemoryOutputPipe, stderr: MemoryOutputPipe) -> Self {
        Self { store, instance: None, stdout, stderr, uses: 0, idle_since: Instant::now() }
    }
}

/// What a warm instance may be reused for.
pub fn key(spec: &CallSpec) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    spec.plugin.hash(&mut hasher);
    spec.origin.enterprise_id.hash(&mut hasher);
    spec.origin.connection_id.hash(&mut hasher);
    serde_json::Value::Object(spec.config.clone()).to_string().hash(&mut hasher);
    let mut secrets: Vec<_> = spec.secrets.iter().collect();
    secrets.sort();
    secrets.hash(&mut hasher);
    spec.allowed_hosts.hash(&mut hasher);
    spec.limits.memory_bytes.hash(&mut hasher);
    hasher.finish()
}

/// The idle warm instances, by key.
pub struct Pool {
    /// Calls one instance serves at most; 0 disables reuse.
    pub max_uses: u32,
    idle: Mutex<HashMap<u64, Vec<Warm>>>,
}

impl Pool {
    pub fn new(max_uses: u32) -> Self {
        Self { max_uses, idle: Mutex::default() }
    }

    /// An idle instance for `key`, if one is fresh enough.
    pub fn take(&self, key: u64) -> Option<Warm> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&key)?;
        while let Some(warm) = list.pop() {
            if warm.idle_since.elapsed() < IDLE {
                return Some(warm);
            }
        }
        None
    }

    /// Returns an instance after a successful call, unless it served its share.
    pub fn give_back(&self, key: u64, mut warm: Warm) {
        if warm.uses >= self.max_uses {
            return;
        }
        warm.idle_since = Instant::now();
        let Ok(mut idle) = self.idle.lock() else { return };
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= TOTAL {
            // Make room by dropping stale ones; if none, this one goes.
            idle.retain(|_, list| {
                list.retain(|w| w.idle_since.elapsed() < IDLE);
                !list.is_empty()
            });
            if idle.values().map(Vec::len).sum::<usize>() >= TOTAL {
                return;
            }
        }
        let list = idle.entry(key).or_default();
        if list.len() < PER_KEY {
            list.push(warm);
        }
    }
}
