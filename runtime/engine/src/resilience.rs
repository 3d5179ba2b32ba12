//! Resilience of a connection's calls from steps: the circuit breaker and the outbound rate
//! limit, both shared by every node through the database, and the upstream's `Retry-After`.
//!
//! A step's call is admitted by [`admit`] before it runs: a circuit that is open refuses it at
//! once (`circuit_open`); one whose open time passed lets exactly one trial call through (the
//! node that claims it in the database) and refuses the others until the trial ends. Then the
//! call takes a permit of the connection's rate limit. Permits are granted in arrival order by
//! every node together ([`dibop_store::Store::reserve_permit`]): the next free one may belong
//! to a later window, and the call waits for it (for its slot: the calls queued for one window
//! start one after another over its first half, [`Permit::slot`]). A wait of up to
//! [`INLINE_PERMIT_MS`] is slept in place; a longer one parks the execution like a long `wait`
//! ([`Throttled::Park`]): its slot is free, and the step, when the execution resumes (on any
//! node), uses the permit it holds instead of queueing again. Only a permit further away than
//! the policy's `max_wait_ms` (an hour unless set) fails the call `rate_limited`; the time
//! spent waiting never counts against the step's `timeout_ms`. A call starts in the first part
//! of its permit's window only ([`Permit::usable_until`]; the first to ask in the last part of
//! a window that has permits left starts at once, counted in the next one), and its first
//! request is paced again when it leaves ([`StepPacer`]): one that reaches the network after
//! [`Permit::send_by`] (many calls that woke at one window's start take turns on few cores)
//! takes the next permit and waits for its window in place when that is near, or is not sent
//! and the step tries again on that permit (parking if it is far). So a system counting calls
//! by the clock sees no more than the limit in any window. After the call, [`settle`] counts
//! it: a call whose system did not answer (connection error, timeout, 5xx) is a failure, one it
//! answered (any other status) is a success, and a call that made no request (or was denied by
//! the allow-list, or answered 429) changes nothing.
//!
//! A refused call leaves an API-call row with status `circuit_open` or `rate_limited`, so the
//! refusals show in `GET /api-calls` next to the requests. The connection test runner and
//! `POST /systems/{slug}/ping` are not guarded: they are how an operator checks a system.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Engine;
use dibop_core::{ApiCallStatus, CircuitState, FieldError, now_ms};
use dibop_plugin_host::CallError;
use dibop_plugin_host::outbound::{ApiCallRecord, CallOrigin, Pacer};
use dibop_store::{CircuitRow, ConnectionRow, Store};

/// Longest a `Retry-After` of an upstream delays a step's next attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// A connection's resilience policy (`resilience` on a connection).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Resilience {
    pub circuit_breaker: CircuitBreaker,
    /// `null` (the default): the enterprise's `rate_limits.outbound_requests_per_minute`
    /// (60 unless a platform admin changed it), which also bounds a connection's own limit.
    pub rate_limit: Option<RateLimit>,
}

/// When the circuit opens and how long it stays open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreaker {
    /// Consecutive failed calls that open the circuit (1 to 1000, default 5).
    #[schema(example = 5)]
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before one trial call goes through, ms (100 to
    /// 3600000, default 30000).
    #[schema(example = 30000)]
    pub open_ms: u64,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self { failure_threshold: 5, open_ms: 30_000 }
    }
}

/// How many calls the connection's steps make, counted by all nodes together, and how long a
/// call may wait for its turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Calls a minute, 1 to 1000000. Give this or `requests_per_second` (or neither: the
    /// enterprise's outbound quota applies); either is bounded by that quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 60)]
    pub requests_per_minute: Option<u32>,
    /// Calls a second, 1 to 10000 (60 times it at most the enterprise's outbound quota).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 20)]
    pub requests_per_second: Option<u32>,
    /// Longest a call waits for a permit, ms (0 to 604800000; default 3600000, an hour). A call
    /// whose turn is further away fails `rate_limited`; a shorter wait parks the execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 3_600_000)]
    pub max_wait_ms: Option<u64>,
}

/// How long a call waits for a permit unless its connection says otherwise: an hour.
pub const DEFAULT_MAX_WAIT_MS: u64 = 3_600_000;

/// Longest `max_wait_ms`: a week.
pub const MAX_MAX_WAIT_MS: u64 = 604_800_000;

/// A wait for a permit up to this long is slept in place (holding the execution's slot); a
/// longer one parks the execution, so that throttled work leaves the slots to other work.
pub const INLINE_PERMIT_MS: i64 = 250;

/// In a `for_each` or `parallel` body a call sleeps in place for a permit up to this long: its
/// container drains the limit with its other bodies meanwhile, and a park would hand back and
/// replay the whole container for every permit. A longer wait (the connection's permits are
/// taken by other work) parks the execution.
pub const BODY_PERMIT_MS: i64 = 10_000;

/// A parked call's execution is due this long before its permit's window begins, so that a
/// node has claimed and replayed it when the window opens (it sleeps the rest in place; at
/// most [`INLINE_PERMIT_MS`], or it would park again).
pub const PARK_LEAD_MS: i64 = 200;

impl RateLimit {
    /// The limit in calls a minute, for comparing with the enterprise's quota.
    pub fn per_minute(&self) -> Option<u64> {
        match (self.requests_per_minute, self.requests_per_second) {
            (Some(minute), _) => Some(u64::from(minute)),
            (None, Some(second)) => Some(u64::from(second) * 60),
            (None, None) => None,
        }
    }

    /// The field that states the limit, for errors about it.
    pub fn field(&self) -> &'static str {
        if self.requests_per_second.is_some() && self.requests_per_minute.is_none() {
            "resilience.rate_limit.requests_per_second"
        } else {
            "resilience.rate_limit.requests_per_minute"
        }
    }
}

/// The limit a connection's calls are held to: `limit` calls per `period_ms` (a second or a
/// minute), windows aligned to the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u64,
    pub period_ms: i64,
}

impl Rate {
    /// The stricter of the connection's own limit and the enterprise's outbound `quota` (calls a
    /// minute; `None` when it could not be read). A per-second limit above the quota (one saved
    /// before the quota was lowered) becomes the quota spread over the minute's seconds, or the
    /// quota a minute when that is under one a second.
    pub fn of(own: Option<&RateLimit>, quota: Option<u64>) -> Self {
        let minute = |limit: u64| Self { limit: limit.max(1), period_ms: 60_000 };
        let second = |limit: u64| Self { limit: limit.max(1), period_ms: 1_000 };
        match (own.and_then(|o| o.requests_per_second), own.and_then(|o| o.requests_per_minute), quota) {
            (_, Some(own), quota) => minute(quota.map_or(u64::from(own), |q| q.min(u64::from(own)))),
            (Some(own), None, Some(quota)) if u64::from(own) * 60 > quota => {
                if quota >= 60 {
                    second(quota / 60)
                } else {
                    minute(quota)
                }
            }
            (Some(own), None, _) => second(u64::from(own)),
            (None, None, quota) => minute(quota.unwrap_or(60)),
        }
    }

    fn describe(&self) -> String {
        let unit = if self.period_ms == 1_000 { "second" } else { "minute" };
        format!("{} calls a {unit}", self.limit)
    }
}

/// A permit of an outbound rate limit: a call may start once its window has begun (a permit of
/// a later window: at its slot, [`Permit::starts_at`]) and until [`Permit::usable_until`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permit {
    pub bucket: String,
    /// Start of the permit's window, unix ms.
    pub window_ms: i64,
    pub period_ms: i64,
    /// When a permit of a later window starts (unix ms): the calls queued for one window are
    /// spread evenly over its first half in the order they took their permits, rather than
    /// all woken at its start (see [`Permit::slot`]). A call asking in the last part of the
    /// running window while that window had permits left starts at once on the next window's
    /// permit (see `permit`). Absent for a permit of the running window (and in permits parked
    /// by earlier versions): its window's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_ms: Option<i64>,
}

impl Permit {
    /// The slot of the `place`-th (from 1) of `limit` permits of the window starting at
    /// `window_ms`, taken at `now`: a window still to come is drained in its first half, one
    /// permit every `period / 2 / limit`, so a backlog reaches the nodes and the system as a
    /// steady stream at the limit, not as a burst at each window's start (which took both
    /// cores of a small node at every second and slowed every tenant's requests then). The
    /// running window's permits start at once: nobody queues for them.
    fn slot(window_ms: i64, place: i64, limit: i64, period_ms: i64, now: i64) -> Option<i64> {
        (window_ms > now).then(|| window_ms + (place - 1).clamp(0, limit) * (period_ms / 2) / limit.max(1))
    }

    /// When a call may start on this permit (unix ms): its slot, or its window's start.
    pub fn starts_at(&self) -> i64 {
        self.slot_ms.unwrap_or(self.window_ms)
    }

    /// How much of the end of a window no call starts in (a quarter, at most 250 ms, so that a
    /// call waits for the next window no longer than it would sleep in place): a request
    /// started late in its window must not reach the system in the next one.
    fn margin(period_ms: i64) -> i64 {
        (period_ms / 4).min(INLINE_PERMIT_MS)
    }

    /// The last instant (unix ms) a call may start on this permit.
    pub fn usable_until(&self) -> i64 {
        self.window_ms + self.period_ms - Self::margin(self.period_ms)
    }

    /// The last instant (unix ms) the call's first request may leave on this permit: before
    /// the window's end by a tenth of it, at most 100 ms (the way to the system).
    pub fn send_by(&self) -> i64 {
        self.window_ms + self.period_ms - (self.period_ms / 10).min(100)
    }
}

/// The first window (unix ms) a call asking at `now` may take a permit of: the running one,
/// unless it is in the part of it no call starts in.
fn earliest_window(now: i64, period_ms: i64) -> i64 {
    let shifted = now + Permit::margin(period_ms);
    shifted - shifted.rem_euclid(period_ms)
}

impl Resilience {
    /// The policy stored with a connection (defaults for what it does not say).
    pub fn of(row: &ConnectionRow) -> Self {
        serde_json::from_str(&row.resilience).unwrap_or_default()
    }

    /// What is wrong with a policy given to the API, as field errors under `resilience`.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, path: &str, message: &str| {
            if !ok {
                errors.push(FieldError { path: format!("resilience.{path}"), message: message.into() });
            }
        };
        let breaker = &self.circuit_breaker;
        check(
            (1..=1000).contains(&breaker.failure_threshold),
            "circuit_breaker.failure_threshold",
            "must be from 1 to 1000",
        );
        check((100..=3_600_000).contains(&breaker.open_ms), "circuit_breaker.open_ms", "must be from 100 to 3600000");
        if let Some(rate) = &self.rate_limit {
            if let Some(minute) = rate.requests_per_minute {
                check((1..=1_000_000).contains(&minute), "rate_limit.requests_per_minute", "must be from 1 to 1000000");
            }
            if let Some(second) = rate.requests_per_second {
                check((1..=10_000).contains(&second), "rate_limit.requests_per_second", "must be from 1 to 10000");
            }
            check(
                rate.requests_per_minute.is_none() || rate.requests_per_second.is_none(),
                "rate_limit",
                "give requests_per_minute or requests_per_second, not both",
            );
            if let Some(wait) = rate.max_wait_ms {
                check(wait <= MAX_MAX_WAIT_MS, "rate_limit.max_wait_ms", "must be from 0 to 604800000");
            }
        }
        errors
    }
}

/// How a connection's circuit stands, as shown (no stored row: closed).
pub fn circuit_state(row: Option<&CircuitRow>) -> CircuitState {
    row.map_or(CircuitState::Closed, |r| r.state)
}

/// A call that may go ahead; `trial` when it is the trial call of a half-open circuit, on
/// `permit` (none when the database could not give one: calls are not stopped by it).
#[derive(Debug)]
pub struct Admitted {
    pub trial: bool,
    pub permit: Option<Permit>,
}

/// Why a step's call did not go ahead: the error the step sees and the API-call row to keep.
pub struct Refused {
    pub error: CallError,
    pub record: ApiCallRecord,
}

/// A call that may not go ahead now.
pub enum Throttled {
    /// Refused (circuit open, or no permit within the policy's `max_wait_ms`).
    Refused(Box<Refused>),
    /// Its permit's window is too far away to sleep for: the execution parks until it begins
    /// ([`PARK_LEAD_MS`] before) and the step calls again with `permit`.
    Park(Permit),
}

/// Admits one call of `connection` from a step. `held` is the permit the step took before its
/// execution parked, used when it is still good; otherwise the call takes the next permit. A
/// permit at most `inline_ms` away ([`INLINE_PERMIT_MS`], or [`BODY_PERMIT_MS`] in a body) is
/// slept for; a later one parks.
pub async fn admit(
    engine: &Engine,
    connection: &ConnectionRow,
    policy: &Resilience,
    origin: &CallOrigin,
    held: Option<Permit>,
    inline_ms: i64,
) -> Result<Admitted, Throttled> {
    let started = Instant::now();
    let refuse = |status: ApiCallStatus, message: String| {
        Throttled::Refused(Box::new(Refused {
            record: refusal_record(connection, origin, status, &message, started),
            error: CallError { code: status.as_str().into(), message, retryable: true, http_status: None },
        }))
    };
    let mut trial = false;
    // A database that does not answer must not stop calls: the breaker fails open.
    let circuit = engine.store.circuit_for_call(&connection.id).await.unwrap_or_else(|e| {
        tracing::warn!(connection = %connection.id, error = %e, "reading the circuit");
        None
    });
    if let Some(circuit) = circuit.filter(|c| c.state != CircuitState::Closed) {
        let open_ms = i64::try_from(policy.circuit_breaker.open_ms).unwrap_or(i64::MAX);
        let now = now_ms();
        let since = circuit.opened_at.unwrap_or(now);
        let claimed = since + open_ms <= now
            && engine.store.claim_circuit_trial(&connection.id, open_ms, now).await.unwrap_or_else(|e| {
                tracing::warn!(connection = %connection.id, error = %e, "claiming a circuit trial");
                false
            });
        if !claimed {
            let retry_at = chrono::DateTime::from_timestamp_millis(since + open_ms)
                .map_or_else(String::new, |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            let message = if circuit.state == CircuitState::Open {
                format!(
                    "circuit of connection {} is open after {} consecutive failures; the next trial call is due at {retry_at}",
                    connection.name, circuit.failures
                )
            } else {
                format!("circuit of connection {} is half-open and its trial call is still running", connection.name)
            };
            return Err(refuse(ApiCallStatus::CircuitOpen, message));
        }
        trial = true;
    }
    // The trial did not run (the call waits or was refused): the next caller may claim it.
    let untried = || async {
        if trial {
            release_trial(engine, connection).await;
        }
    };
    let permit = match permit(&engine.store, connection, policy, held).await {
        Ok(permit) => permit,
        Err(message) => {
            untried().await;
            return Err(refuse(ApiCallStatus::RateLimited, message));
        }
    };
    if let Some(permit) = &permit {
        let wait = permit.starts_at() - now_ms();
        if wait > inline_ms {
            untried().await;
            return Err(Throttled::Park(permit.clone()));
        }
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
        }
    }
    Ok(Admitted { trial, permit })
}

/// The trial call of `connection`'s half-open circuit did not run: the next caller may claim it.
pub async fn release_trial(engine: &Engine, connection: &ConnectionRow) {
    if let Err(e) = engine.store.release_circuit_trial(&connection.id).await {
        tracing::warn!(connection = %connection.id, error = %e, "releasing a circuit trial");
    }
}

/// The [`Pacer`] of one attempt of a step's call: its first request leaves inside the window
/// of the permit it was admitted with. Late, it takes the connection's next permit (in arrival
/// order, as [`admit`] does) and waits for its window in place when that is at most
/// `inline_ms` away and within half of the call's remaining time; otherwise the request is not
/// sent and the pacer keeps that permit ([`StepPacer::kept`]) for the step's next try. It holds
/// the store, not the engine: a warm instance keeps its last call's hooks, and the engine owns
/// the warm pool (a circle would keep every instance alive).
pub struct StepPacer {
    store: Store,
    connection: Arc<ConnectionRow>,
    policy: Arc<Resilience>,
    permit: Permit,
    inline_ms: i64,
    kept: Arc<Mutex<Option<Permit>>>,
}

impl StepPacer {
    pub fn new(
        engine: &Engine,
        connection: &Arc<ConnectionRow>,
        policy: &Arc<Resilience>,
        permit: Permit,
        inline_ms: i64,
    ) -> Arc<Self> {
        Arc::new(Self {
            store: engine.store.clone(),
            connection: connection.clone(),
            policy: policy.clone(),
            permit,
            inline_ms,
            kept: Arc::default(),
        })
    }

    /// The permit a late first request took and could not wait for, if any.
    pub fn kept(&self) -> Option<Permit> {
        self.kept.lock().ok().and_then(|mut kept| kept.take())
    }
}

impl Pacer for StepPacer {
    fn send_by(&self) -> i64 {
        self.permit.send_by()
    }

    fn repace(&self, remaining: Duration) -> BoxFuture<'static, Option<Duration>> {
        let (store, connection, policy) = (self.store.clone(), self.connection.clone(), self.policy.clone());
        let (inline_ms, kept) = (self.inline_ms, self.kept.clone());
        Box::pin(async move {
            match permit(&store, &connection, &policy, None).await {
                Ok(Some(next)) => {
                    let wait = (next.starts_at() - now_ms()).max(0);
                    let half = i64::try_from(remaining.as_millis() / 2).unwrap_or(i64::MAX);
                    if wait <= inline_ms.min(half) {
                        return Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)));
                    }
                    if let Ok(mut kept) = kept.lock() {
                        *kept = Some(next);
                    }
                    None
                }
                // The database could not say: calls are not stopped by it.
                Ok(None) => Some(Duration::ZERO),
                // Further away than the call may wait: the step asks again and is refused.
                Err(_) => None,
            }
        })
    }
}

/// The permit a call of `connection` goes on: `held` when it is still good, else the next one
/// of the connection's limit (`None` when the database could not say: calls are not stopped by
/// it). The error, a message, when the next permit is further away than the policy allows.
async fn permit(
    store: &Store,
    connection: &ConnectionRow,
    policy: &Resilience,
    held: Option<Permit>,
) -> Result<Option<Permit>, String> {
    // The enterprise's quota bounds every connection's own limit, also one saved before the
    // quota was lowered (unread, the connection's own limit or 60 a minute applies).
    let quota = match store.outbound_limit(&connection.enterprise_id).await {
        Ok(limit) => Some(u64::try_from(limit).unwrap_or(60)),
        Err(e) => {
            tracing::warn!(connection = %connection.id, error = %e, "reading the outbound quota");
            None
        }
    };
    let rate = Rate::of(policy.rate_limit.as_ref(), quota);
    let bucket = dibop_store::outbound_bucket(&connection.id, rate.period_ms);
    let now = now_ms();
    if let Some(held) = held.filter(|p| p.bucket == bucket && now <= p.usable_until()) {
        return Ok(Some(held));
    }
    let max_wait = policy.rate_limit.as_ref().and_then(|r| r.max_wait_ms).unwrap_or(DEFAULT_MAX_WAIT_MS);
    let latest = now.saturating_add(i64::try_from(max_wait).unwrap_or(i64::MAX / 2));
    let earliest = earliest_window(now, rate.period_ms);
    let limit = i64::try_from(rate.limit).unwrap_or(i64::MAX);
    match store.reserve_permit(&bucket, earliest, limit, rate.period_ms, latest).await {
        Ok(Some(granted)) => {
            // Asked in the last part of the running window (the earliest is the next one),
            // which still had permits: the call is counted in the next window (its permit) and
            // starts now. Whichever of the two the system counts it in stays within the limit:
            // the running one had room and gives no more permits, the next one counts it.
            let early = earliest > now && granted.window_ms == earliest && granted.room_before;
            let slot_ms = if early {
                Some(now)
            } else {
                Permit::slot(granted.window_ms, granted.place, limit, rate.period_ms, now)
            };
            Ok(Some(Permit { bucket, window_ms: granted.window_ms, period_ms: rate.period_ms, slot_ms }))
        }
        Ok(None) => Err(format!(
            "connection {} allows {} and its calls already waiting take them for longer than this call may wait ({max_wait} ms, resilience.rate_limit.max_wait_ms)",
            connection.name,
            rate.describe()
        )),
        Err(e) => {
            tracing::warn!(connection = %connection.id, error = %e, "taking an outbound permit");
            Ok(None)
        }
    }
}

/// Counts one finished call of `connection` for its circuit.
pub async fn settle(
    engine: &Engine,
    connection: &ConnectionRow,
    policy: &Resilience,
    calls: &[ApiCallRecord],
    timed_out: bool,
) {
    let Some(outcome) = outcome(calls, timed_out) else { return };
    let now = now_ms();
    let written = if outcome {
        engine.store.circuit_succeeded(&connection.id, now).await
    } else {
        let threshold = i64::from(policy.circuit_breaker.failure_threshold);
        engine.store.circuit_failed(&connection.enterprise_id, &connection.id, threshold, now).await.map(|row| {
            if row.state == CircuitState::Open && row.opened_at == Some(now) {
                tracing::warn!(connection = %connection.id, failures = row.failures, "circuit opened");
            }
        })
    };
    if let Err(e) = written {
        tracing::warn!(connection = %connection.id, error = %e, "recording a call for the circuit");
    }
}

/// Whether the system answered (`Some(true)`), did not (`Some(false)`), or the call says
/// nothing about it (`None`).
fn outcome(calls: &[ApiCallRecord], timed_out: bool) -> Option<bool> {
    let sent: Vec<&ApiCallRecord> =
        calls.iter().filter(|c| !c.error.as_deref().is_some_and(|e| e.starts_with("denied"))).collect();
    let last = sent.last()?;
    let down = |c: &ApiCallRecord| match c.status_code {
        None => matches!(c.status, ApiCallStatus::Timeout | ApiCallStatus::Error),
        Some(code) => code >= 500,
    };
    if down(last) || (timed_out && last.status_code.is_none()) {
        return Some(false);
    }
    (last.status_code != Some(429)).then_some(true)
}

/// How long an upstream asked to wait before the next attempt: the `Retry-After` of the last
/// request when it answered 429 or 503 (seconds or an HTTP date), at most [`MAX_RETRY_AFTER`].
pub fn retry_after(calls: &[ApiCallRecord]) -> Option<Duration> {
    let last = calls.last()?;
    if !matches!(last.status_code, Some(429 | 503)) {
        return None;
    }
    let value = last.response_headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))?.1.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let ms = at.timestamp_millis() - now_ms();
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The API-call row of a refused call.
fn refusal_record(
    connection: &ConnectionRow,
    origin: &CallOrigin,
    status: ApiCallStatus,
    message: &str,
    started: Instant,
) -> ApiCallRecord {
    let config: serde_json::Value = serde_json::from_str(&connection.config).unwrap_or_default();
    let base_url = config.get("base_url").and_then(|u| u.as_str()).unwrap_or_default().to_owned();
    ApiCallRecord {
        status,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        error: Some(message.to_owned()),
        ..ApiCallRecord::start(origin.clone(), "-".into(), base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(status: &str, code: Option<u16>, headers: &[(&str, &str)]) -> ApiCallRecord {
        ApiCallRecord {
            status_code: code,
            status: status.parse().expect("an API-call status"),
            response_headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..ApiCallRecord::start(CallOrigin::default(), "GET".into(), String::new())
        }
    }

    #[test]
    fn what_counts_for_the_circuit() {
        assert_eq!(outcome(&[], true), None);
        assert_eq!(outcome(&[call("error", Some(503), &[])], false), Some(false));
        assert_eq!(outcome(&[call("timeout", None, &[])], false), Some(false));
        assert_eq!(outcome(&[call("error", None, &[])], false), Some(false));
        assert_eq!(outcome(&[call("error", Some(404), &[])], false), Some(true));
        assert_eq!(outcome(&[call("error", Some(429), &[])], false), None);
        assert_eq!(outcome(&[call("error", Some(500), &[]), call("success", Some(200), &[])], false), Some(true));
        let mut denied = call("error", None, &[]);
        denied.error = Some("denied: x:1 is not in the connection's allowed hosts".into());
        assert_eq!(outcome(&[denied], false), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_and_bounded() {
        assert_eq!(retry_after(&[call("error", Some(429), &[("Retry-After", "2")])]), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&[call("error", Some(503), &[("retry-after", "86400")])]), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&[call("error", Some(500), &[("retry-after", "2")])]), None);
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(retry_after(&[call("error", Some(429), &[("retry-after", past)])]), Some(Duration::ZERO));
        assert_eq!(retry_after(&[call("error", Some(429), &[("retry-after", "soon")])]), None);
    }

    fn limit(minute: Option<u32>, second: Option<u32>) -> RateLimit {
        RateLimit { requests_per_minute: minute, requests_per_second: second, max_wait_ms: None }
    }

    #[test]
    fn the_stricter_of_the_connections_limit_and_the_quota_holds() {
        let minute = |limit| Rate { limit, period_ms: 60_000 };
        let second = |limit| Rate { limit, period_ms: 1_000 };
        assert_eq!(Rate::of(None, Some(60)), minute(60));
        assert_eq!(Rate::of(None, None), minute(60), "unread quota: 60 a minute");
        assert_eq!(Rate::of(Some(&limit(None, None)), Some(90)), minute(90), "only a max wait: the quota");
        assert_eq!(Rate::of(Some(&limit(Some(30), None)), Some(60)), minute(30));
        assert_eq!(Rate::of(Some(&limit(Some(100), None)), Some(60)), minute(60));
        assert_eq!(Rate::of(Some(&limit(None, Some(20))), Some(1200)), second(20));
        assert_eq!(Rate::of(Some(&limit(None, Some(20))), None), second(20));
        // A quota lowered under a per-second limit: spread over the seconds, or per minute.
        assert_eq!(Rate::of(Some(&limit(None, Some(20))), Some(600)), second(10));
        assert_eq!(Rate::of(Some(&limit(None, Some(20))), Some(30)), minute(30));
        assert_eq!(Rate::of(None, Some(0)), minute(1), "never zero: work waits, it is not stranded");
    }

    #[test]
    fn a_call_late_in_a_window_takes_a_permit_of_the_next() {
        assert_eq!(earliest_window(10_000, 1_000), 10_000);
        assert_eq!(earliest_window(10_749, 1_000), 10_000);
        assert_eq!(earliest_window(10_750, 1_000), 11_000, "the last quarter of a second is not started in");
        assert_eq!(earliest_window(119_750, 60_000), 120_000, "the last 250 ms of a minute are not started in");
        assert_eq!(earliest_window(119_749, 60_000), 60_000);
        let permit = Permit { bucket: "b".into(), window_ms: 11_000, period_ms: 1_000, slot_ms: None };
        assert_eq!(permit.usable_until(), 11_750);
        assert_eq!(permit.send_by(), 11_900, "its first request leaves by a tenth of the window before its end");
        let minute = Permit { bucket: "b".into(), window_ms: 60_000, period_ms: 60_000, slot_ms: None };
        assert_eq!(minute.send_by(), 119_900, "at most 100 ms before");
    }

    #[test]
    fn the_permits_of_a_later_window_are_spread_over_its_first_half_in_order() {
        // 50 a second, taken at 10_300 for the window at 11_000: one every 10 ms from its start.
        let slots: Vec<_> = (1..=50).map(|place| Permit::slot(11_000, place, 50, 1_000, 10_300)).collect();
        assert_eq!(slots[0], Some(11_000));
        assert_eq!(slots[1], Some(11_010));
        assert_eq!(slots[49], Some(11_490), "the last starts in the window's first half");
        assert!(slots.windows(2).all(|pair| pair[0] < pair[1]), "in the order the permits were taken");
        // A minute's 60 permits: one every half second.
        assert_eq!(Permit::slot(120_000, 60, 60, 60_000, 100_000), Some(149_500));
        // The running window's permits start at once.
        assert_eq!(Permit::slot(11_000, 7, 50, 1_000, 11_200), None);
        let permit = Permit { bucket: "b".into(), window_ms: 11_000, period_ms: 1_000, slot_ms: Some(11_250) };
        assert_eq!(permit.starts_at(), 11_250);
        assert!(permit.starts_at() < permit.usable_until(), "a slot leaves the call time to start in its window");
        let earlier = Permit { slot_ms: None, ..permit };
        assert_eq!(earlier.starts_at(), 11_000, "a permit parked by an earlier version starts with its window");
    }

    #[test]
    fn policy_bounds() {
        assert!(Resilience::default().problems().is_empty());
        let bad = Resilience {
            circuit_breaker: CircuitBreaker { failure_threshold: 0, open_ms: 10 },
            rate_limit: Some(RateLimit { requests_per_minute: Some(0), ..RateLimit::default() }),
        };
        let paths: Vec<String> = bad.problems().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "resilience.circuit_breaker.failure_threshold",
                "resilience.circuit_breaker.open_ms",
                "resilience.rate_limit.requests_per_minute"
            ]
        );
    }

    #[test]
    fn a_rate_is_per_minute_or_per_second_not_both_and_its_wait_is_bounded() {
        let paths = |rate: RateLimit| -> Vec<String> {
            let policy = Resilience { rate_limit: Some(rate), ..Resilience::default() };
            policy.problems().into_iter().map(|e| e.path).collect()
        };
        assert!(paths(limit(None, Some(20))).is_empty());
        assert!(paths(RateLimit { max_wait_ms: Some(0), ..limit(None, None) }).is_empty());
        assert_eq!(paths(limit(Some(60), Some(1))), ["resilience.rate_limit"]);
        assert_eq!(paths(limit(None, Some(10_001))), ["resilience.rate_limit.requests_per_second"]);
        let forever = RateLimit { max_wait_ms: Some(MAX_MAX_WAIT_MS + 1), ..limit(None, Some(1)) };
        assert_eq!(paths(forever), ["resilience.rate_limit.max_wait_ms"]);
        assert_eq!(limit(None, Some(20)).per_minute(), Some(1200));
        assert_eq!(limit(None, Some(20)).field(), "resilience.rate_limit.requests_per_second");
    }
}
