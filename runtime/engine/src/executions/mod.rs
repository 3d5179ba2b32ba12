//! The use cases of executions: the one surface through which the server's handlers and the
//! engine's own triggers start an execution, wait for its end, cancel, retry, replay and resume
//! it. Each rule lives here once:
//! - an orchestration that is paused or archived runs nothing (execute, webhook, schedule,
//!   sub-orchestration, replay, resume);
//! - parameters are bound to the declaration of the version that runs ([`start`] binds the
//!   caller's, a replay or resume merges its overrides into the execution's own);
//! - every new or requeued execution passes admission (the enterprise's executions-per-minute
//!   limit and, for triggers from outside, its queue bound), and the workers are woken for it.
//!
//! The server (`runtime/src`) writes executions only through this module: CI
//! (`scripts/layer-rules.py`) fails when it calls the store's execution-writing functions.

mod operate;
mod start;
mod wait;

pub use operate::{Bulk, MAX_BULK, Replayed, Resumed, Selection, cancel, replay, resume, resume_many, retry};
pub use start::{Start, Started, Target, Trigger, execute, start};
pub use wait::{Draining, wait_for_end};

use dibop_core::FieldError;

use crate::admission::Refusal;

/// Why a use case of executions did nothing. Each case says what the caller asked that
/// cannot be done; [`ExecutionError::Failed`] is a fault of the platform.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The orchestration or execution asked for does not exist (for this enterprise); the text
    /// names it (`orchestration <id>`).
    #[error("{0} not found")]
    NotFound(String),
    /// The thing exists but is in a state that does not allow the action (an orchestration
    /// paused or archived, an execution already finished or not paused).
    #[error("{0}")]
    Conflict(String),
    /// A request header out of its bounds (the idempotency key).
    #[error("{0}")]
    BadRequest(String),
    /// Input that does not fit: parameters the orchestration does not take, a selection of
    /// executions that cannot be taken, a skip output past its bound; every problem listed.
    #[error("{}", list(.0))]
    Invalid(Vec<FieldError>),
    /// Admission refused it: the executions-per-minute limit or the enterprise's full queue.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ExecutionError {
    fn from(err: sqlx::Error) -> Self {
        Self::Failed(err.into())
    }
}

impl ExecutionError {
    /// One field problem.
    fn invalid(path: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(path, message)])
    }
}

/// Field problems as one line: `path message; path message`.
fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{} {}", e.path, e.message)).collect::<Vec<_>>().join("; ")
}
