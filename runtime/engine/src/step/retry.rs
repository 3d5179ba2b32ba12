//! A step's `retry` policy in motion: which failed attempts it tries again ([`Rule`], matched
//! against a [`Failure`]) and how long it pauses before the next ([`Retrier`]).
//!
//! An attempt is tried again when no `never_retry` rule matches it and, with `retry_on` rules,
//! one of them does; without, when the connector called the error retryable. Rules are error
//! codes (`timeout`, `upstream_error`), HTTP statuses (`503`), status ranges (`500-599`,
//! `5xx`) and `connection` (a request that got no answer, not a timeout). The pause grows from
//! `initial_interval_ms` by `backoff_coefficient` up to `max_interval_ms` (60 s unless set),
//! less a random share of up to `jitter` of it; a system's `Retry-After` wins when longer. A
//! plugin call's step sleeps a short pause in place and parks its execution for a longer one.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::definition::{Retry, RetryRule as Rule, Step};
use crate::node::StopSignal;
use dibop_core::ApiCallStatus;
use dibop_plugin_host::CallError;
use dibop_plugin_host::outbound::ApiCallRecord;

/// The pause cap of a policy that sets no `max_interval_ms`.
const DEFAULT_MAX_INTERVAL_MS: u64 = 60_000;

impl Rule {
    fn matches(&self, failure: &Failure<'_>) -> bool {
        match self {
            Self::Code(code) => *code == failure.error.code,
            Self::Status(low, high) => failure.status.is_some_and(|s| (*low..=*high).contains(&s)),
            Self::Connection => failure.connection,
        }
    }
}

/// Rules of stored entries; one that does not read (saved before rules were checked) is taken
/// as an error code, as such entries always were.
fn rules(entries: &[String]) -> Vec<Rule> {
    entries.iter().map(|e| Rule::parse(e).unwrap_or_else(|_| Rule::Code(e.clone()))).collect()
}

/// A failed attempt as a policy sees it: its error, the HTTP status behind it, and whether its
/// last request got no answer.
pub struct Failure<'a> {
    error: &'a CallError,
    status: Option<u16>,
    connection: bool,
}

impl<'a> Failure<'a> {
    /// The failure of an attempt that answered `error` after making `calls` (its own requests).
    pub fn of(error: &'a CallError, calls: &[ApiCallRecord]) -> Self {
        let last = calls.iter().rev().find(|c| !c.error.as_deref().is_some_and(|e| e.starts_with("denied")));
        let status = error.http_status.or_else(|| last.and_then(|c| c.status_code));
        let connection = error.code != "timeout"
            && last.is_some_and(|c| c.status_code.is_none() && c.status == ApiCallStatus::Error);
        Self { error, status, connection }
    }
}

/// A step's retry policy in motion: which attempt this is and how long to wait before the next.
pub struct Retrier {
    policy: Option<Retry>,
    retry_on: Vec<Rule>,
    never: Vec<Rule>,
    pub attempt: u32,
    delay_ms: f64,
    /// A stopped execution makes no further attempt.
    signal: StopSignal,
}

impl Retrier {
    pub fn new(step: &Step, signal: StopSignal) -> Self {
        let delay_ms = step.retry.as_ref().map_or(0, |r| r.initial_interval_ms) as f64;
        let (retry_on, never) =
            step.retry.as_ref().map_or((Vec::new(), Vec::new()), |r| (rules(&r.retry_on), rules(&r.never_retry)));
        Self { policy: step.retry.clone(), retry_on, never, attempt: 1, delay_ms, signal }
    }

    /// Goes on from `attempt` (a step that parked before it), its backoff grown as far.
    pub fn resume_at(&mut self, attempt: u32) {
        let attempt = attempt.min(self.policy.as_ref().map_or(1, |p| p.max_attempts));
        while self.attempt < attempt {
            self.delay_ms *= self.policy.as_ref().map_or(1.0, |p| p.backoff_coefficient);
            self.attempt += 1;
        }
    }

    /// Whether the policy tries `failure` again (attempts aside).
    fn retries(&self, failure: &Failure<'_>) -> bool {
        if self.never.iter().any(|rule| rule.matches(failure)) {
            return false;
        }
        if self.retry_on.is_empty() {
            failure.error.retryable
        } else {
            self.retry_on.iter().any(|r| r.matches(failure))
        }
    }

    /// After a failed attempt: the pause before the next one (the policy's backoff less its
    /// jitter, or the upstream's `retry_after` when that is longer), counting that attempt; `None`
    /// when no other attempt is due.
    pub fn next_pause(&mut self, failure: &Failure<'_>, retry_after: Option<Duration>) -> Option<Duration> {
        let policy = self.policy.as_ref()?;
        if !self.retries(failure) || self.attempt >= policy.max_attempts {
            return None;
        }
        let cap = policy.max_interval_ms.unwrap_or(DEFAULT_MAX_INTERVAL_MS) as f64;
        let backoff = self.delay_ms.min(cap) * (1.0 - policy.jitter.unwrap_or(0.0).clamp(0.0, 1.0) * unit_random());
        self.delay_ms *= policy.backoff_coefficient;
        self.attempt += 1;
        Some(Duration::from_millis(backoff as u64).max(retry_after.unwrap_or_default()))
    }

    /// Sleeps `pause`; false when the execution stopped meanwhile (no further attempt).
    pub async fn sleep(&mut self, pause: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(pause) => true,
            _ = self.signal.stopped() => false,
        }
    }

    /// After a failed attempt: waits and answers true when another attempt is due.
    pub async fn again(&mut self, failure: &Failure<'_>, retry_after: Option<Duration>) -> bool {
        match self.next_pause(failure, retry_after) {
            Some(pause) => self.sleep(pause).await,
            None => false,
        }
    }
}

/// A number in [0, 1) that differs between calls (for jitter; not for secrets).
fn unit_random() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str, retryable: bool, http_status: Option<u16>) -> CallError {
        CallError { code: code.into(), message: String::new(), retryable, http_status }
    }

    fn call(status: &str, code: Option<u16>) -> ApiCallRecord {
        ApiCallRecord {
            status: status.parse().expect("an API-call status"),
            status_code: code,
            ..ApiCallRecord::start(Default::default(), "GET".into(), String::new())
        }
    }

    fn retrier(retry_on: &[&str], never: &[&str]) -> Retrier {
        let step: Step = serde_json::from_value(serde_json::json!({
            "name": "s", "type": "api_call",
            "retry": {"max_attempts": 3, "retry_on": retry_on, "never_retry": never}
        }))
        .expect("step");
        Retrier::new(&step, StopSignal::never())
    }

    #[test]
    fn entries_read_as_codes_statuses_ranges_and_connection() {
        assert_eq!(Rule::parse("503"), Ok(Rule::Status(503, 503)));
        assert_eq!(Rule::parse("500-599"), Ok(Rule::Status(500, 599)));
        assert_eq!(Rule::parse("4xx"), Ok(Rule::Status(400, 499)));
        assert_eq!(Rule::parse("connection"), Ok(Rule::Connection));
        assert_eq!(Rule::parse("upstream_error"), Ok(Rule::Code("upstream_error".into())));
        for wrong in ["600", "599-500", "9xx", "", "a b", "50-", "-3", "5xx-6"] {
            assert!(Rule::parse(wrong).is_err(), "{wrong:?}");
        }
    }

    #[test]
    fn never_wins_then_retry_on_then_the_connectors_word() {
        let unavailable = error("upstream_error", true, Some(503));
        let missing = error("not_found", false, Some(404));
        let refused = error("upstream_error", true, None);
        let refused_calls = [call("error", None)];
        let slow = error("timeout", true, None);
        let slow_calls = [call("timeout", None)];

        let default = retrier(&[], &[]);
        assert!(default.retries(&Failure::of(&unavailable, &[])));
        assert!(!default.retries(&Failure::of(&missing, &[])));

        let statuses = retrier(&["500-599", "404"], &["503"]);
        assert!(!statuses.retries(&Failure::of(&unavailable, &[])), "never_retry wins");
        assert!(statuses.retries(&Failure::of(&missing, &[])), "retry_on overrides the connector");
        assert!(!statuses.retries(&Failure::of(&slow, &slow_calls)));

        let classes = retrier(&["timeout", "connection"], &[]);
        assert!(classes.retries(&Failure::of(&slow, &slow_calls)));
        assert!(classes.retries(&Failure::of(&refused, &refused_calls)));
        assert!(!classes.retries(&Failure::of(&unavailable, &[call("error", Some(503))])));
        let no_connection = retrier(&[], &["connection"]);
        assert!(!no_connection.retries(&Failure::of(&refused, &refused_calls)));
        assert!(no_connection.retries(&Failure::of(&slow, &slow_calls)), "a timeout is not a connection error");
    }

    #[test]
    fn jitter_draws_from_the_lower_part_of_the_pause() {
        for _ in 0..100 {
            let u = unit_random();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
