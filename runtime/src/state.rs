//! What every request handler shares.

use std::sync::Arc;

use crate::alerts::Alerts;
use crate::auth::password::Passwords;
use crate::auth::tokens::Tokens;
use crate::config::Config;
use crate::crypto::Sealer;
use crate::engine::Engine;
use crate::engine::executions::Draining;
use crate::plugins::PluginHost;
use crate::plugins::registry::Registry;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// Shared state of a running server. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub tokens: Arc<Tokens>,
    /// The Argon2 gate and the dummy hash.
    pub passwords: Arc<Passwords>,
    pub limiter: Arc<RateLimiter>,
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub sealer: Arc<Sealer>,
    /// Starts, runs and watches executions (`engine::executions`); its store, registry, sealer
    /// and limiter are its own (the handlers use the fields above).
    pub engine: Engine,
    /// Alert evaluation and the delivery queue.
    pub alerts: Alerts,
    /// Flips when the node starts shutting down: handlers that wait (execute) answer then.
    pub draining: Draining,
}

impl AppState {
    pub fn plugins(&self) -> &PluginHost {
        &self.registry.host
    }
}
