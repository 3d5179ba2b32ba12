//! What every request handler shares.

use std::sync::Arc;

use crate::alerts::Alerts;
use crate::auth::password::Passwords;
use crate::auth::tokens::Tokens;
use crate::config::Config;
use crate::crypto::Sealer;
use crate::engine::Engine;
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
    /// Submits, runs and watches executions (this node's slots are `engine.node`).
    pub engine: Engine,
    /// Alert evaluation and the delivery queue.
    pub alerts: Alerts,
}

impl AppState {
    pub fn plugins(&self) -> &PluginHost {
        &self.registry.host
    }
}
