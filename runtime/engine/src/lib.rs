//! The orchestration engine: executions are queued in the database and run by workers that
//! claim them under a lease (renewed by a heartbeat), resume from the last committed step, and
//! commit each step's result before the next starts.
//!
//! Invariants:
//! - A step's result is committed before the next step starts, and a step's idempotency key
//!   (`<execution id>:<step name>`) is the same on every attempt and after a restart, so a step
//!   that was in flight when a node died runs again with the same key.
//! - Every execution comes into being through [`executions::start`] (execute, webhook,
//!   schedule, sub-orchestration: one status check, one parameter binding, then
//!   [`admission::submit`]; a retry, replay or resume through [`executions`]' operator actions,
//!   which count it with [`admission::count`]), so the enterprise's execution limit holds
//!   whatever started it, and its queue bound holds for every trigger but a
//!   sub-orchestration's child (admitted work completes).
//! - The server writes no execution itself: [`executions`] is its surface (checked in CI).
//! - The engine knows nothing of HTTP: it answers domain errors ([`admission::Refusal`],
//!   [`connections::ConnectionError`]) and tells the server what happened through [`Events`].
//!
//! Map: [`Engine`] (what a run needs, cheap to clone) and [`Node`] (this node's slots, shares
//! and stop switches) <- `worker` (claims and leases) -> `runner` (one execution) -> `step`
//! (one step by type) -> `blocks` (container steps, which run bodies through `flow` and `step`
//! again). [`definition`] parses and validates orchestrations, [`mapping`] evaluates their
//! JSONPath references, [`schedule`] fires cron triggers, [`connections`] calls a connection's
//! connector ([`host_auth`] adds its host-managed credentials), [`resilience`] guards its calls from steps (circuit breaker, outbound rate limit)
//! and [`canonical`] holds the canonical data domains.

pub mod admission;
mod blocks;
pub mod calendar;
pub mod canonical;
pub mod connections;
pub mod definition;
pub mod executions;
mod flow;
pub mod health;
pub mod host_auth;
pub mod mapping;
mod node;
pub mod resilience;
mod runner;
pub mod schedule;
pub mod schemas;
mod step;
pub mod trace;
mod urls;
mod worker;

use std::sync::Arc;

use dibop_core::crypto::Sealer;
use dibop_plugin_host::PluginHost;
use dibop_plugin_host::registry::Registry;
use dibop_store::limiter::RateLimiter;
use dibop_store::{Ended, Store};
use serde_json::{Value, json};

use dibop_store::ExecutionRow;
use futures_util::future::BoxFuture;
pub use node::{Node, Stop, StopSignal};
pub use worker::{start, stop};

/// The settings of the server that the engine reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a claimed execution stays this node's without a heartbeat, ms.
    pub lease_ms: u64,
    /// Most items one `for_each` step takes.
    pub max_for_each_items: usize,
    /// Most branches of one `parallel` step that run at once.
    pub max_parallel_branches: usize,
}

/// What the engine tells the rest of the server. The metrics and the alert rules subscribe;
/// both calls come from engine tasks and must not block.
pub trait Events: Send + Sync {
    /// A write just ended an execution (each execution ends once).
    fn execution_ended(&self, ended: Ended);
    /// This node's run of an execution is over: it ended, parked or went back to the queue.
    fn run_over(&self, enterprise_id: &str, execution_id: &str);
}

/// Everything a run needs, shared by the workers, the scheduler and the HTTP API that submits
/// and watches executions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    registry: Arc<Registry>,
    /// Opens connection credentials for a call.
    sealer: Arc<Sealer>,
    /// Counts executions against the enterprise's limit.
    limiter: Arc<RateLimiter>,
    node: Arc<Node>,
    settings: Arc<Settings>,
    events: Arc<dyn Events>,
    /// The definitions of the orchestration versions this node admitted or ran lately.
    definitions: Arc<definition::Parsed>,
    /// Runs a claimed execution to its end: the worker's own path, handed to a
    /// `sub_orchestration` step (its child) and to `executions::execute` (a waiting caller's
    /// execution in a free slot) so that they do not reach up into the worker.
    run_child: fn(Engine, ExecutionRow) -> BoxFuture<'static, ()>,
}

impl Engine {
    /// An engine over these parts; `events` hears of ended executions and finished runs.
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        sealer: Arc<Sealer>,
        limiter: Arc<RateLimiter>,
        node: Arc<Node>,
        settings: Settings,
        events: Arc<dyn Events>,
    ) -> Self {
        let run_child = worker::run_claimed;
        let definitions = Arc::new(definition::Parsed::default());
        Self { store, registry, sealer, limiter, node, settings: Arc::new(settings), events, definitions, run_child }
    }

    /// How many executions this node runs now.
    pub fn busy(&self) -> usize {
        self.node.busy()
    }

    /// The WebAssembly plugin host the registry loads into.
    pub fn plugins(&self) -> &PluginHost {
        &self.registry.host
    }

    /// The database the engine writes executions to; the server's handlers read and write the
    /// rest through it too.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The plugin versions this node has loaded.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Seals and opens connection credentials.
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.sealer
    }

    /// The enterprise rate limits (API requests, executions, outbound calls).
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// Reports an execution that a write just ended (the store reports nothing): what
    /// `finish_execution` answers, or a step's `Recorded::ended` (none when it did not end it).
    fn report_ended(&self, ended: impl Into<Option<Ended>>) {
        if let Some(ended) = ended.into() {
            self.events.execution_ended(ended);
        }
    }
}

/// Waits shorter than this run in the worker; longer ones hand the execution back to the queue
/// until they are due.
const INLINE_WAIT_MS: i64 = 2_000;

/// Largest output of a step (and of an execution), as JSON text: later steps read it, so a
/// larger one fails the step instead of being cut. A `for_each` over the items of one large
/// upstream answer reads it in place (see `mapping::Scope`), not once per item.
pub const MAX_STEP_OUTPUT: usize = 32 * 1024 * 1024;
/// Largest stored input and trace detail of a step; larger ones are replaced by a note.
const MAX_STORED_DETAIL: usize = 1024 * 1024;
/// Longest stored error of a step.
const MAX_STORED_ERROR: usize = 8 * 1024;

/// `value` as stored JSON text, or a note of its size when it is larger than `max`.
fn stored(value: &Value, max: usize, what: &str) -> String {
    let text = value.to_string();
    if text.len() <= max {
        return text;
    }
    json!({"_truncated": format!("{} bytes of {what} left out (at most {max})", text.len())}).to_string()
}
