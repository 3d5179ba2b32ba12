//! What every request handler shares.

use std::sync::Arc;

use crate::auth::password::Passwords;
use crate::auth::tokens::Tokens;
use crate::config::Config;
use crate::crypto::Sealer;
use crate::engine::EngineHandle;
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
    pub engine: Arc<EngineHandle>,
    /// The alert delivery queue and its HTTP client.
    pub alerts: Arc<crate::alerts::Outbox>,
}

impl AppState {
    pub fn plugins(&self) -> &PluginHost {
        &self.registry.host
    }
}
