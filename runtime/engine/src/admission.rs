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
//!
//! Before that, admission paces an orchestration whose calls are throttled ([`pace`]): when
//! its executions parked for outbound permits that are booked more than [`PACE_AFTER_MS`]
//! ahead, each new execute or webhook admission of it waits a little (at most [`MAX_HOLD_MS`])
//! before it is counted and queued. Work booked that far ahead only lengthens the line; a
//! sender flooding such an orchestration is slowed to about the pace its work drains at,
//! instead of taking the nodes' and the database's time from every other tenant (measured
//! by `scripts/measure-fairness.py`). Nothing is refused by it, and the enterprise's other
//! orchestrations are not slowed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::Engine;
use dibop_core::now_ms;
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

/// Admissions of an orchestration are held while its throttled calls are booked more than
/// this far ahead (ms): up to it, a burst is admitted at once.
pub const PACE_AFTER_MS: i64 = 1_000;

/// An admission is held for this share (1 / n) of how far the bookings reach past
/// [`PACE_AFTER_MS`].
const HOLD_SHARE: i64 = 4;

/// Longest hold of one admission (ms): a sender waits at most this long for an answer.
pub const MAX_HOLD_MS: i64 = 1_000;

/// Most orchestrations a node remembers a throttled horizon of; past it, horizons already
/// passed are forgotten, and while all are still ahead a new one is not noted (its admissions
/// are not held; nothing else changes).
const MAX_HORIZONS: usize = 10_000;

/// How far ahead each orchestration's throttled calls are booked, as this node saw them park:
/// by orchestration id, its enterprise and the latest start of an outbound permit one of its
/// executions parked for (unix ms). A hold is asked for by enterprise and orchestration, so
/// another tenant naming the id learns nothing from it; the lookup allocates nothing (every
/// execute and webhook asks).
#[derive(Default)]
pub struct Horizons(Mutex<HashMap<String, (String, i64)>>);

impl Horizons {
    /// Notes that a call of an execution of `orchestration_id` parked for a permit starting at
    /// `starts_at`.
    pub fn throttled(&self, enterprise_id: &str, orchestration_id: &str, starts_at: i64) {
        let mut horizons = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if horizons.len() >= MAX_HORIZONS && !horizons.contains_key(orchestration_id) {
            let now = now_ms();
            horizons.retain(|_, (_, until)| *until > now);
            if horizons.len() >= MAX_HORIZONS {
                return;
            }
        }
        let (_, until) =
            horizons.entry(orchestration_id.to_owned()).or_insert_with(|| (enterprise_id.to_owned(), starts_at));
        *until = (*until).max(starts_at);
    }

    /// How long an admission of `orchestration_id` at `now` waits: a quarter of how far its
    /// throttled calls are booked beyond [`PACE_AFTER_MS`], at most [`MAX_HOLD_MS`]. A sender
    /// with `n` submissions in flight is held to about `n` per hold, and the hold shrinks as
    /// the booked calls drain, so the line settles a little over [`PACE_AFTER_MS`] long.
    pub fn hold(&self, enterprise_id: &str, orchestration_id: &str, now: i64) -> Duration {
        let horizons = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ahead = match horizons.get(orchestration_id) {
            Some((enterprise, until)) if enterprise == enterprise_id => until - now,
            _ => 0,
        };
        Duration::from_millis(u64::try_from(((ahead - PACE_AFTER_MS) / HOLD_SHARE).clamp(0, MAX_HOLD_MS)).unwrap_or(0))
    }
}

/// Holds an admission of `orchestration_id` from outside while its throttled calls are booked
/// far ahead (see [`Horizons::hold`]). Nothing is written before or during the hold: a caller
/// that goes away meanwhile left nothing behind.
pub async fn pace(engine: &Engine, enterprise_id: &str, orchestration_id: &str) {
    let hold = engine.node.horizons.hold(enterprise_id, orchestration_id, now_ms());
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Horizons, MAX_HOLD_MS, MAX_HORIZONS, PACE_AFTER_MS};
    use std::time::Duration;

    #[test]
    fn admissions_are_held_by_how_far_their_throttled_calls_are_booked_beyond_the_mark() {
        let horizons = Horizons::default();
        let now = 1_000_000;
        assert_eq!(horizons.hold("e", "o1", now), Duration::ZERO, "nothing throttled, nothing held");
        horizons.throttled("e", "o1", now + PACE_AFTER_MS);
        assert_eq!(horizons.hold("e", "o1", now), Duration::ZERO, "a burst up to the mark goes at once");
        horizons.throttled("e", "o1", now + PACE_AFTER_MS + 1_200);
        assert_eq!(horizons.hold("e", "o1", now), Duration::from_millis(300));
        horizons.throttled("e", "o1", now + 500);
        assert_eq!(horizons.hold("e", "o1", now), Duration::from_millis(300), "the latest booking counts");
        assert_eq!(horizons.hold("e", "o1", now + 800), Duration::from_millis(100), "the hold shrinks as it drains");
        assert_eq!(horizons.hold("e", "o2", now), Duration::ZERO, "other orchestrations are not held");
        assert_eq!(horizons.hold("other", "o1", now), Duration::ZERO, "nor another enterprise naming the id");
        horizons.throttled("e", "o1", now + 3_600_000);
        assert_eq!(
            horizons.hold("e", "o1", now),
            Duration::from_millis(MAX_HOLD_MS as u64),
            "never longer than the bound"
        );
    }

    #[test]
    fn a_node_remembers_a_bounded_number_of_horizons_and_forgets_passed_ones_first() {
        let horizons = Horizons::default();
        let now = dibop_core::now_ms();
        for i in 0..MAX_HORIZONS {
            horizons.throttled("e", &format!("o{i}"), now + 60_000);
        }
        horizons.throttled("e", "late", now + 60_000);
        assert_eq!(horizons.hold("e", "late", now), Duration::ZERO, "full of horizons ahead: a new one is not noted");
        horizons.throttled("e", "o0", now + 120_000);
        assert!(!horizons.hold("e", "o0", now).is_zero(), "a known one still moves on");
        let passed = Horizons::default();
        for i in 0..MAX_HORIZONS {
            passed.throttled("e", &format!("o{i}"), now - 1);
        }
        passed.throttled("e", "late", now + 60_000);
        assert!(!passed.hold("e", "late", now).is_zero(), "passed horizons make room");
    }
}
