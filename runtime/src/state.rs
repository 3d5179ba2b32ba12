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
    /// Flips when the node starts shutting down: handlers that wait (execute) answer then.
    pub draining: Draining,
}

/// Whether the node started shutting down. A handler that waits selects on
/// [`Draining::started`] so that it answers (with what it knows so far) while the connection is
/// still open, instead of being cut when the grace period ends.
#[derive(Clone)]
pub struct Draining(tokio::sync::watch::Receiver<Option<tokio::time::Instant>>);

impl Draining {
    /// Watches `since`: when the shutdown signal came (`serve` sends it; the grace period
    /// counts from there).
    pub fn new(since: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>) -> Self {
        Self(since)
    }

    /// Whether the shutdown has started.
    pub fn now(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Resolves when the shutdown starts (at once if it has, or if the switch is gone).
    pub async fn started(&self) {
        let _ = self.0.clone().wait_for(Option::is_some).await;
    }
}

impl AppState {
    pub fn plugins(&self) -> &PluginHost {
        &self.registry.host
    }
}
