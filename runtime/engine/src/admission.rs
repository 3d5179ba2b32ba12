//! The one way an execution comes into being. Every trigger (execute, webhook, schedule,
//! sub-orchestration, retry) passes [`submit`] (or [`count`] for a retry, which reuses its
//! row), so the enterprise's executions-per-minute limit holds whatever started the work.

use crate::Engine;
use dibop_store::limiter::Decision;
use dibop_store::{ExecutionRow, NewExecution};

/// Why an execution was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("execution rate limit of {limit} per minute exceeded")]
    RateLimited { limit: u64, retry_after_secs: u64 },
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
    let decision = engine.limiter.hit(&format!("exec:{enterprise_id}"), limit, 60).await?;
    if !decision.allowed {
        return Err(Refusal::RateLimited { limit, retry_after_secs: decision.retry_after_secs() });
    }
    Ok(decision)
}

/// Admits a new execution: counts it, then queues it (or, with `run_here`, inserts it already
/// running under this node's lease) and wakes a worker for a queued one.
pub async fn submit(
    engine: &Engine,
    enterprise_id: &str,
    per_minute: Option<i64>,
    new: NewExecution,
    run_here: bool,
) -> Result<Admitted, Refusal> {
    let decision = count(engine, enterprise_id, per_minute).await?;
    let (execution, created) = if run_here {
        let lease = i64::try_from(engine.settings.lease_ms).unwrap_or(30_000);
        engine.store.start_execution(enterprise_id, new, &engine.node.node_id, lease).await?
    } else {
        let queued = engine.store.enqueue_execution(enterprise_id, new).await?;
        if queued.1 {
            engine.node.wake();
        }
        queued
    };
    Ok(Admitted { execution, created, decision })
}
