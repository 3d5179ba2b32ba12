//! Executions: their rows and the statements every part shares. One file per job:
//! `queue.rs` (admission into the queue, claims, leases and their hand-back), `progress.rs`
//! (a run's writes under its lease: step results, the end, body steps kept as a `for_each`
//! goes or while parked), `query.rs` (reads: one execution, lists, counts, the candidates of
//! bulk actions) and `recovery.rs` (an operator's cancel, retry, replay and resume).

mod progress;
mod query;
mod queue;
mod recovery;
#[cfg(test)]
mod tests;

use crate::paging::{Arg, List};
use sqlx::FromRow;
use sqlx::Row;

use dibop_core::{ExecutionStatus, StepKind, StepStatus, TriggeredBy, new_id, now_ms};

use super::api_calls::ApiCallRecord;
use super::batch::{Batch, Param};
use super::lease::Lease;
use super::{Backend, Page, Store};

#[derive(Debug, Clone, FromRow)]
pub struct ExecutionRow {
    pub id: String,
    pub enterprise_id: String,
    pub orchestration_id: String,
    pub orchestration_version: i64,
    #[sqlx(try_from = "String")]
    pub status: ExecutionStatus,
    #[sqlx(try_from = "String")]
    pub triggered_by: TriggeredBy,
    pub parameters: String,
    /// Its output when at most [`INLINE_OUTPUT_BYTES`]; a larger one is kept by reference (see
    /// `output_bytes`) and only [`get_execution`](crate::Store::get_execution) reads it.
    pub output: Option<String>,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    /// How many step results are committed: where a run resumes.
    pub steps_completed: i64,
    /// How many of them succeeded (the API's `steps_completed`).
    pub steps_succeeded: i64,
    pub steps_total: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Set for executions a `sub_orchestration` step started.
    pub parent_execution_id: Option<String>,
    /// 0 for top-level executions, parent's depth + 1 for sub-orchestrations.
    pub depth: i64,
    /// 1 once someone asked to cancel it.
    pub cancel_requested: i64,
    /// 1 while steps finished inside a container body wait in `body_steps` (a long wait in a
    /// body parked the execution).
    pub body_parked: i64,
    /// Why a failed or cancelled execution ended (see [`Finish::code`]).
    pub error_code: Option<String>,
    /// The execution this one replays from its failed step, and who asked.
    pub replay_of: Option<String>,
    pub replayed_by: Option<String>,
    /// The W3C `traceparent` it came with, if any.
    pub traceparent: Option<String>,
    /// The node that holds its lease (none while queued, parked or final).
    pub lease_owner: Option<String>,
    /// Raised by every claim: with the owner, it names one lease (see [`Lease`]).
    pub lease_epoch: i64,
    /// The size of an output larger than [`INLINE_OUTPUT_BYTES`], kept in `payloads` instead
    /// of this row (the queue, the claims and every list read this row).
    pub output_bytes: Option<i64>,
}

/// An execution's output up to this many bytes is kept in its row; a larger one (up to the
/// engine's 32 MiB) by reference, in `payloads`.
pub const INLINE_OUTPUT_BYTES: usize = 64 * 1024;

/// The output of an execution as its row takes it, with the size of one kept by reference:
/// larger than [`INLINE_OUTPUT_BYTES`], it goes to `payloads` with a statement pushed to
/// `batch` (before the row's `UPDATE`, in the same transaction).
fn by_reference(batch: &mut Batch, execution_id: &str, output: Option<String>) -> (Option<String>, Option<i64>) {
    match output {
        Some(text) if text.len() > INLINE_OUTPUT_BYTES => {
            let bytes = i64::try_from(text.len()).unwrap_or(i64::MAX);
            batch.push(
                "INSERT INTO payloads (execution_id, name, body) VALUES ($1, 'output', $2) \
                 ON CONFLICT (execution_id, name) DO UPDATE SET body = excluded.body",
                vec![execution_id.into(), text.into()],
            );
            (None, Some(bytes))
        }
        inline => (inline, None),
    }
}

impl ExecutionRow {
    /// Its trace id (the caller's, or derived from its id).
    pub fn trace_id(&self) -> String {
        dibop_core::trace::trace_id(&self.id, self.traceparent.as_deref())
    }

    /// Whether it has ended (see [`ExecutionStatus::is_final`]).
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// The lease it was claimed under, when a node holds it.
    pub fn lease(&self) -> Option<Lease> {
        let owner = self.lease_owner.clone()?;
        Some(Lease { execution_id: self.id.clone(), owner, epoch: self.lease_epoch })
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct StepResultRow {
    pub position: i64,
    pub name: String,
    #[sqlx(rename = "type")]
    #[sqlx(try_from = "String")]
    pub kind: StepKind,
    #[sqlx(try_from = "String")]
    pub status: StepStatus,
    pub system: Option<String>,
    pub operation: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    /// Trace material (JSON): attempts, plugin timings, log lines, stderr.
    pub detail: Option<String>,
}

pub struct NewExecution {
    pub orchestration_id: String,
    pub orchestration_version: i64,
    pub triggered_by: String,
    pub parameters: String,
    pub idempotency_key: Option<String>,
    pub steps_total: i64,
    /// (parent execution id, parent depth) for sub-orchestrations.
    pub parent: Option<(String, i64)>,
    /// The W3C `traceparent` its trace continues from.
    pub traceparent: Option<String>,
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Finish {
    pub status: ExecutionStatus,
    pub output: Option<String>,
    pub error: Option<String>,
    /// For `failed` and `cancelled`: `STEP_FAILED`, `OUTPUT_FAILED`, `CANCELLED` or `INTERNAL`;
    /// `STEP_FAILED` for `paused`.
    pub code: Option<&'static str>,
}

impl Finish {
    /// Ended `failed` with `code` (`STEP_FAILED`, `OUTPUT_FAILED` or `INTERNAL`).
    pub fn failed(code: &'static str, error: String) -> Self {
        Self { status: ExecutionStatus::Failed, output: None, error: Some(error), code: Some(code) }
    }

    /// Ended `cancelled`.
    pub fn cancelled(error: String) -> Self {
        Self { status: ExecutionStatus::Cancelled, output: None, error: Some(error), code: Some("CANCELLED") }
    }

    /// Paused by the step that failed with `error` (not an end: it has no `finished_at`, and a
    /// resume queues it again).
    pub fn paused(error: String) -> Self {
        Self { status: ExecutionStatus::Paused, output: None, error: Some(error), code: Some("STEP_FAILED") }
    }
}

/// An execution that a write just ended: what the engine reports to the metrics.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    pub status: ExecutionStatus,
    pub started_at: Option<i64>,
}

/// What committing a step answers.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    /// Someone asked to cancel the execution.
    pub cancel_requested: bool,
    /// Set when this step ended the execution.
    pub ended: Option<Ended>,
}

/// A step that finished inside a `for_each` or `parallel` body, kept while its execution is
/// parked by a long wait in a body.
#[derive(Debug, Clone, FromRow)]
pub struct BodyStepRow {
    /// Where it sits, e.g. `each[2].decode` (unique within the execution).
    pub label: String,
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub partial: i64,
    /// Its trace record (JSON) for the container's detail.
    pub record: String,
}

const EXECUTION: &str = "id, enterprise_id, orchestration_id, orchestration_version, status, triggered_by, parameters, output, \
     error, idempotency_key, steps_completed, steps_succeeded, steps_total, created_at, started_at, finished_at, parent_execution_id, depth, cancel_requested, body_parked, error_code, \
     replay_of, replayed_by, traceparent, lease_owner, lease_epoch, output_bytes";

/// The condition of a fenced write's last `UPDATE` (see [`Batch::fence`]): the execution is
/// running under `lease`. Its owner and epoch are appended to `params`, and the condition names
/// them by their places there.
fn held(lease: &Lease, params: &mut Vec<Param>) -> String {
    params.push((&lease.owner).into());
    params.push(lease.epoch.into());
    let owner = params.len() - 1;
    format!("status = 'running' AND lease_owner = ${owner} AND lease_epoch = ${}", owner + 1)
}

const STEP: &str =
    "position, name, type, status, system, operation, input, output, error, attempts, started_at, duration_ms, detail";

/// The places left in the queue of the enterprise `$n` (NULL when it is gone), as an admission
/// reads them. On PostgreSQL, `admission_room` (migration 0024) first takes an advisory lock on
/// the enterprise held until the admission commits, and counts in a snapshot taken after it:
/// admissions of one enterprise are serialized across nodes and each sees those before it. On
/// SQLite the one writer runs admissions one after another anyway.
fn room(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("admission_room(${n})"),
        Backend::Sqlite => format!(
            "(SELECT e.max_queued_executions - (SELECT COUNT(*) FROM executions q \
             WHERE q.enterprise_id = ${n} AND q.status = 'queued') FROM enterprises e WHERE e.id = ${n})"
        ),
    }
}

/// Whether a new execution must fit under its enterprise's `max_queued_executions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBound {
    /// Refused while the enterprise has `max_queued_executions` executions queued (status
    /// `queued`): a trigger from outside (execute, webhook, schedule).
    Enforced,
    /// Always inserted: work an admitted execution started (a sub-orchestration's child), which
    /// must not fail for want of room.
    Exempt,
}

/// What admitting an execution into the store did.
#[derive(Debug)]
pub enum Inserted {
    /// A new execution (queued, or running under the claim).
    Created(ExecutionRow),
    /// The execution of the same idempotency key, created within the last 24 h.
    Existing(ExecutionRow),
    /// Nothing was written: the enterprise has `bound` (its `max_queued_executions`) executions
    /// queued or more.
    QueueFull { bound: i64 },
}

/// Which executions a list or a replay takes.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub orchestration_id: Option<String>,
    pub status: Option<String>,
    pub triggered_by: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Text the error contains (case-insensitive).
    pub error: Option<String>,
}

impl ExecutionFilter {
    /// The LIKE pattern of `error`: lower-cased, its wildcards escaped.
    fn error_pattern(&self) -> Option<String> {
        self.error.as_ref().map(|text| {
            let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        })
    }

    /// The WHERE clause over `executions` and its arguments (`$1` is the enterprise).
    fn clause<'a>(&'a self, enterprise_id: &'a str, pattern: Option<&'a str>) -> (String, Vec<Arg<'a>>) {
        let mut clause = String::from("enterprise_id = $1");
        let mut args: Vec<Arg<'a>> = vec![enterprise_id.into()];
        let mut add = |condition: &str, value: Arg<'a>| {
            args.push(value);
            clause.push_str(&condition.replace("$?", &format!("${}", args.len())));
        };
        if let Some(id) = &self.orchestration_id {
            add(" AND orchestration_id = $?", id.as_str().into());
        }
        if let Some(status) = &self.status {
            add(" AND status = $?", status.as_str().into());
        }
        if let Some(trigger) = &self.triggered_by {
            add(" AND triggered_by = $?", trigger.as_str().into());
        }
        if let Some(from) = self.from_ms {
            add(" AND created_at >= $?", Some(from).into());
        }
        if let Some(to) = self.to_ms {
            add(" AND created_at <= $?", Some(to).into());
        }
        if let Some(pattern) = pattern {
            add(" AND LOWER(error) LIKE $? ESCAPE '\\'", pattern.into());
        }
        (clause, args)
    }
}
