//! The orchestration engine: executions are queued in the database and run by workers that
//! claim them under a lease (renewed by a heartbeat), resume from the last committed step, and
//! commit each step's result before the next starts.
//!
//! Invariant: a step's result is committed before the next step starts, and a step's
//! idempotency key (`<execution id>:<step name>`) is the same on every attempt and after a
//! restart, so a step that was in flight when a node died runs again with the same key.
//!
//! Map: `handle` (this node's slots, shares and stop switches) <- `worker` (claims and
//! leases) -> `runner` (one execution) -> `step` (one step by type) -> `blocks` (container
//! steps, which run bodies through `flow` and `step` again).

pub mod admission;
mod blocks;
pub mod definition;
mod flow;
mod handle;
pub mod mapping;
mod runner;
pub mod schedule;
mod step;
mod worker;

use std::sync::Arc;

use serde_json::{Value, json};

pub use handle::{EngineHandle, Stop, StopSignal};
use runner::INLINE_WAIT_MS;
use step::{StepOutcome, run_step};
use worker::run_claimed;
pub use worker::{run_now, start};

/// Largest output of a step (and of an execution), as JSON text: later steps read it, so a
/// larger one fails the step instead of being cut.
pub const MAX_STEP_OUTPUT: usize = 4 * 1024 * 1024;
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

/// Reports an execution that a write just ended to the metrics (the store reports nothing).
fn count_ended(ended: Option<crate::store::Ended>) {
    if let Some(ended) = ended {
        crate::metrics::get().execution_ended(ended.status.as_str(), ended.started_at);
    }
}

/// Shared so the API can hold one.
pub type Engine = Arc<EngineHandle>;
