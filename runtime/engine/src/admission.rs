//! The one way an execution comes into being. Every trigger (execute, webhook, schedule,
//! sub-orchestration, retry) passes [`submit`] (or [`count`] for a retry, which reuses its
//! row), so the enterprise's executions-per-minute limit holds whatever started the work.
//!
//! Admission also pushes back when the enterprise's queue is long: a trigger from outside
//! ([`QueueBound::Enforced`]: execute, webhook, schedule; retries and replays through
//! [`settle`]) is refused while the enterprise has `max_queued_executions` executions with
//! status `queued` (parked and running ones do not count), instead of being accepted and
//! failing later. The count and the insert are one statement serialized per enterprise, so the
//! bound is exact across nodes; a refusal writes nothing and gives the executions-per-minute hit
//! back. A sub-orchestration's child ([`QueueBound::Exempt`]) is never refused by the bound:
//! its parent was admitted, and admitted work completes. A schedule slot refused this way is
//! recorded as missed by the scheduler; nothing fails.

use crate::Engine;
use dibop_store::limiter::Decision;
use dibop_store::{ExecutionRow, Inserted, NewExecution, QueueBound};

/// The `Retry-After` of a refusal for a full queue: queues drain at the pace of the workers and
/// the systems they call, so a sender (an event relay retransmitting on non-2xx) comes back
/// after a few seconds rather than at once.
pub const QUEUE_FULL_RETRY_AFTER_SECS: u64 = 5;

/// Why an execution was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("execution rate limit of {limit} per minute exceeded")]
    RateLimited { limit: u64, retry_after_secs: u64 },
    /// The enterprise has `bound` (its `max_queued_executions`) executions queued; nothing
    /// was written.
    #[error("{bound} executions are queued, the enterprise's max_queued_executions")]
    QueueFull { bound: i64, retry_after_secs: u64 },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<sqlx::Error> for Refusal {
    fn from(err: sqlx::Error) -> Self {
        Self::Failed(err.into())
    }
}

/// An admitted execution.
pub struct Admitted {
    pub execution: ExecutionRow,
    /// False when an idempotency key answered an existing execution.
    pub created: bool,
    /// The enterprise's execution limit after this one (for `X-RateLimit-*` headers).
    pub decision: Decision,
}

/// Counts one execution against the enterprise's limit; `per_minute` when the caller knows
/// it (an authenticated principal), else it is read from the enterprise.
pub async fn count(engine: &Engine, enterprise_id: &str, per_minute: Option<i64>) -> Result<Decision, Refusal> {
    let per_minute = match per_minute {
        Some(n) => n,
        None => engine
            .store
            .get_enterprise(enterprise_id)
            .await?
            .map(|e| e.executions_per_minute)
            .ok_or_else(|| anyhow::anyhow!("enterprise {enterprise_id} no longer exists"))?,
    };
    let limit = u64::try_from(per_minute).unwrap_or(0);
    let decision = engine.limiter.hit(&bucket(enterprise_id), limit, 60).await?;
    if !decision.allowed {
        return Err(Refusal::RateLimited { limit, retry_after_secs: decision.retry_after_secs() });
    }
    Ok(decision)
}

/// The end of an admission that [`count`] counted and the store then tried (a retry or a
/// replay, which have their own writes): the row it created, `None` when the store found
/// nothing to do, or the refusal for a full queue or a failed write, with the count given back.
pub async fn settle(
    engine: &Engine,
    enterprise_id: &str,
    tried: sqlx::Result<Option<Inserted>>,
) -> Result<Option<ExecutionRow>, Refusal> {
    match tried.transpose() {
        None => Ok(None),
        Some(tried) => conclude(engine, enterprise_id, tried).await.map(Some),
    }
}

/// The row of a counted admission the store made (created or found by its idempotency key), or
/// the refusal for a full queue or a failed write, with the count given back.
async fn conclude(
    engine: &Engine,
    enterprise_id: &str,
    tried: sqlx::Result<Inserted>,
) -> Result<ExecutionRow, Refusal> {
    let refusal = match tried {
        Ok(Inserted::Created(row) | Inserted::Existing(row)) => return Ok(row),
        Ok(Inserted::QueueFull { bound }) => {
            Refusal::QueueFull { bound, retry_after_secs: QUEUE_FULL_RETRY_AFTER_SECS }
        }
        Err(err) => Refusal::from(err),
    };
    give_back(engine, enterprise_id).await;
    Err(refusal)
}

/// Gives the executions-per-minute hit of an admission that did not happen back (hit, then
/// act; release when not acting). A failed release leaves one hit too many in this window.
async fn give_back(engine: &Engine, enterprise_id: &str) {
    if let Err(err) = engine.limiter.release(&bucket(enterprise_id), 60).await {
        tracing::warn!(enterprise = %enterprise_id, error = %err, "giving back an execution-limit hit failed");
    }
}

/// The executions-per-minute counter of the enterprise.
fn bucket(enterprise_id: &str) -> String {
    format!("exec:{enterprise_id}")
}

/// Admits a new execution: counts it, then queues it (or, with `run_here`, inserts it already
/// running under this node's lease) and wakes a worker for a queued one. With
/// [`QueueBound::Enforced`], a full queue refuses it ([`Refusal::QueueFull`]) with nothing
/// written and the count given back, as does a failed insert.
pub async fn submit(
    engine: &Engine,
    enterprise_id: &str,
    per_minute: Option<i64>,
    new: NewExecution,
    run_here: bool,
    bound: QueueBound,
) -> Result<Admitted, Refusal> {
    let decision = count(engine, enterprise_id, per_minute).await?;
    let inserted = if run_here {
        let lease = i64::try_from(engine.settings.lease_ms).unwrap_or(30_000);
        engine.store.start_execution(enterprise_id, new, &engine.node.node_id, lease, bound).await
    } else {
        engine.store.enqueue_execution(enterprise_id, new, bound).await
    };
    let created = matches!(inserted, Ok(Inserted::Created(_)));
    let execution = conclude(engine, enterprise_id, inserted).await?;
    if created && !run_here {
        engine.node.wake();
    }
    Ok(Admitted { execution, created, decision })
}
