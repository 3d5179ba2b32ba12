//! Resilience of a connection's calls from steps: the circuit breaker and the outbound rate
//! limit, both shared by every node through the database, and the upstream's `Retry-After`.
//!
//! A step's call is admitted by [`admit`] before it runs: a circuit that is open refuses it at
//! once (`circuit_open`); one whose open time passed lets exactly one trial call through (the
//! node that claims it in the database) and refuses the others until the trial ends; then a
//! permit of the connection's rate limit is taken, waiting for the next minute's window while
//! the step's deadline allows (`rate_limited` when it does not). After the call, [`settle`]
//! counts it: a call whose system did not answer (connection error, timeout, 5xx) is a failure,
//! one it answered (any other status) is a success, and a call that made no request (or was
//! denied by the allow-list, or answered 429) changes nothing.
//!
//! A refused call leaves an API-call row with status `circuit_open` or `rate_limited`, so the
//! refusals show in `GET /api-calls` next to the requests. The connection test runner and
//! `POST /systems/{slug}/ping` are not guarded: they are how an operator checks a system.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Engine;
use dibop_core::{FieldError, now_ms};
use dibop_plugin_host::CallError;
use dibop_plugin_host::outbound::{ApiCallRecord, CallOrigin};
use dibop_store::{CircuitRow, ConnectionRow};

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

/// Calls a minute the connection's steps make, counted by all nodes together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// 1 to 1000000.
    #[schema(example = 60)]
    pub requests_per_minute: u32,
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
            let ok = (1..=1_000_000).contains(&rate.requests_per_minute);
            check(ok, "rate_limit.requests_per_minute", "must be from 1 to 1000000");
        }
        errors
    }
}

/// How a connection's circuit stands, as shown.
pub fn circuit_state(row: Option<&CircuitRow>) -> &'static str {
    match row.map(|r| r.state.as_str()) {
        Some("open") => "open",
        Some("half_open") => "half_open",
        _ => "closed",
    }
}

/// A call that may go ahead; `trial` when it is the trial call of a half-open circuit.
#[derive(Debug)]
pub struct Admitted {
    pub trial: bool,
}

/// Why a step's call did not go ahead: the error the step sees and the API-call row to keep.
pub struct Refused {
    pub error: CallError,
    pub record: ApiCallRecord,
}

/// Admits one call of `connection` from a step whose call must end by `deadline`.
pub async fn admit(
    engine: &Engine,
    connection: &ConnectionRow,
    policy: &Resilience,
    origin: &CallOrigin,
    deadline: Instant,
) -> Result<Admitted, Refused> {
    let started = Instant::now();
    let refuse = |code: &'static str, message: String| Refused {
        record: refusal_record(connection, origin, code, &message, started),
        error: CallError { code: code.into(), message, retryable: true, http_status: None },
    };
    let mut trial = false;
    // A database that does not answer must not stop calls: the breaker fails open.
    let circuit = engine.store.circuit_for_call(&connection.id).await.unwrap_or_else(|e| {
        tracing::warn!(connection = %connection.id, error = %e, "reading the circuit");
        None
    });
    if let Some(circuit) = circuit.filter(|c| c.state != "closed") {
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
            let message = if circuit.state == "open" {
                format!(
                    "circuit of connection {} is open after {} consecutive failures; the next trial call is due at {retry_at}",
                    connection.name, circuit.failures
                )
            } else {
                format!("circuit of connection {} is half-open and its trial call is still running", connection.name)
            };
            return Err(refuse("circuit_open", message));
        }
        trial = true;
    }
    // The enterprise's quota bounds every connection's own limit, also one saved before the
    // quota was lowered (unread, the connection's own limit or 60 applies).
    let quota = match engine.store.outbound_limit(&connection.enterprise_id).await {
        Ok(limit) => Some(u64::try_from(limit).unwrap_or(60)),
        Err(e) => {
            tracing::warn!(connection = %connection.id, error = %e, "reading the outbound quota");
            None
        }
    };
    let own = policy.rate_limit.as_ref().map(|own| u64::from(own.requests_per_minute));
    let limit = match (own, quota) {
        (Some(own), Some(quota)) => own.min(quota),
        (own, quota) => own.or(quota).unwrap_or(60),
    };
    let bucket = format!("outbound:{}", connection.id);
    loop {
        let decision = match engine.limiter.hit(&bucket, limit, 60).await {
            Ok(decision) => decision,
            Err(e) => {
                tracing::warn!(connection = %connection.id, error = %e, "counting an outbound call");
                break;
            }
        };
        if decision.allowed {
            break;
        }
        let reset = Duration::from_millis(u64::try_from(decision.reset_unix * 1000 - now_ms()).unwrap_or(0));
        if Instant::now() + reset >= deadline {
            let message = format!(
                "connection {} allows {limit} calls a minute and its steps used them; no permit came before the step's deadline",
                connection.name
            );
            if trial {
                // The trial did not run: the next caller may claim it.
                if let Err(e) = engine.store.release_circuit_trial(&connection.id).await {
                    tracing::warn!(connection = %connection.id, error = %e, "releasing a circuit trial");
                }
            }
            return Err(refuse("rate_limited", message));
        }
        tokio::time::sleep(reset + Duration::from_millis(5)).await;
    }
    Ok(Admitted { trial })
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
            if row.state == "open" && row.opened_at == Some(now) {
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
        None => c.status == "timeout" || c.status == "error",
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
    status: &'static str,
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

    fn call(status: &'static str, code: Option<u16>, headers: &[(&str, &str)]) -> ApiCallRecord {
        ApiCallRecord {
            status_code: code,
            status,
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

    #[test]
    fn policy_bounds() {
        assert!(Resilience::default().problems().is_empty());
        let bad = Resilience {
            circuit_breaker: CircuitBreaker { failure_threshold: 0, open_ms: 10 },
            rate_limit: Some(RateLimit { requests_per_minute: 0 }),
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
}
