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
    pub tokens: Arc<Tokens>,
    /// The Argon2 gate and the dummy hash.
    pub passwords: Arc<Passwords>,
    pub config: Arc<Config>,
    /// Starts, runs and watches executions (`engine::executions`), and holds the parts every
    /// handler reaches through the methods below (one copy of each, the engine's).
    pub engine: Engine,
    /// Alert evaluation and the delivery queue.
    pub alerts: Alerts,
    /// Flips when the node starts shutting down: handlers that wait (execute) answer then.
    pub draining: Draining,
}

impl AppState {
    pub fn store(&self) -> &Store {
        self.engine.store()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        self.engine.registry()
    }

    pub fn sealer(&self) -> &Arc<Sealer> {
        self.engine.sealer()
    }

    pub fn limiter(&self) -> &Arc<RateLimiter> {
        self.engine.limiter()
    }

    pub fn plugins(&self) -> &PluginHost {
        self.engine.plugins()
    }
}
