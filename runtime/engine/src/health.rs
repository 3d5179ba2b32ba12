//! Health and service levels: the statistics and health of each system an enterprise calls,
//! the SLA figures of its orchestrations and systems, and the rules both share (what counts as
//! a success, the target, percentiles). `GET /api-calls/systems`, `GET /systems`,
//! `GET /observability/sla` and the `sla_breach` alert rule read them here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dibop_core::{ApiCallStatus, CircuitState, ExecutionStatus, Window, World};
use dibop_plugin_host::registry::Registry;
use dibop_store::{OrchestrationRow, Page, Store};
use serde::Serialize;
use utoipa::ToSchema;

use crate::definition::Definition;

/// Success-rate target in percent of an orchestration that sets none (and of every system).
pub const DEFAULT_TARGET: f64 = 99.0;

/// The orchestration's `sla_target`, else [`DEFAULT_TARGET`].
pub fn target(orchestration: &OrchestrationRow) -> f64 {
    serde_json::from_str::<Definition>(&orchestration.definition)
        .ok()
        .and_then(|d| d.sla_target)
        .unwrap_or(DEFAULT_TARGET)
}

/// Whether a run with this status counts as a success: `partial` and `cancelled` do not.
pub fn succeeded(status: &str) -> bool {
    status == ExecutionStatus::Success.as_str()
}

/// Percent of `runs` that succeeded (`None` without runs).
pub fn success_rate(successes: u64, runs: u64) -> Option<f64> {
    (runs > 0).then(|| successes as f64 * 100.0 / runs as f64)
}

/// The value at percentile `p` of `sorted` (nearest rank; 0 when empty).
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Per-system statistics over a window.
#[derive(Serialize, ToSchema)]
pub struct SystemStats {
    pub system: String,
    pub calls: u64,
    pub success: u64,
    pub error: u64,
    pub timeout: u64,
    /// Calls from steps refused by an open circuit or the outbound rate limit (not in `calls`).
    pub circuit_open: u64,
    pub rate_limited: u64,
    /// Percent of calls that succeeded.
    pub success_rate: f64,
    pub latency_p50_ms: i64,
    pub latency_p95_ms: i64,
    pub latency_p99_ms: i64,
    pub last_call: Option<DateTime<Utc>>,
    /// healthy (>= 95% success), degraded (>= 50%, or a connection's circuit is half-open, or
    /// failing calls are being counted towards opening it), offline (below, the last 3 calls
    /// failed, or a connection's circuit is open), unchecked (no calls in the window).
    pub health: String,
}

/// The statistics of every system the enterprise can call (those without calls included).
pub async fn systems(
    store: &Store,
    registry: &Registry,
    enterprise_id: &str,
    window: Window,
) -> sqlx::Result<Vec<SystemStats>> {
    let since = dibop_core::now_ms() - window.as_millis();
    let samples = store.api_call_samples(enterprise_id, since).await?;
    let mut by_system: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for sample in samples {
        by_system.entry(sample.system.clone()).or_default().push(sample);
    }
    for system in registry.newest(enterprise_id, World::Connector).await? {
        by_system.entry(system.slug).or_default();
    }
    let circuits = store.circuits(enterprise_id).await?;
    let mut stats = Vec::new();
    for (system, all) in by_system {
        let count = |s: ApiCallStatus| all.iter().filter(|x| x.status == s).count() as u64;
        let (circuit_open, rate_limited) = (count(ApiCallStatus::CircuitOpen), count(ApiCallStatus::RateLimited));
        // Health and latency count the requests that went out; the refused ones are counted apart.
        let samples: Vec<_> = all.iter().filter(|x| x.status.reached_system()).collect();
        let (success, error, timeout) =
            (count(ApiCallStatus::Success), count(ApiCallStatus::Error), count(ApiCallStatus::Timeout));
        let calls = samples.len() as u64;
        let mut durations: Vec<i64> = samples.iter().map(|s| s.duration_ms).collect();
        durations.sort_unstable();
        let rate = if calls == 0 { 0.0 } else { (success as f64 * 10_000.0 / calls as f64).round() / 100.0 };
        let last_three_failed = samples.len() >= 3 && samples.iter().rev().take(3).all(|s| s.status.is_failure());
        let circuit = |state: CircuitState| circuits.iter().any(|(s, c)| *s == system && c.state == state);
        let failing = circuits.iter().any(|(s, c)| *s == system && c.failures > 0);
        let health = match calls {
            _ if circuit(CircuitState::Open) => "offline",
            0 if circuit(CircuitState::HalfOpen) || failing => "degraded",
            0 => "unchecked",
            _ if last_three_failed || rate < 50.0 => "offline",
            _ if rate < 95.0 || circuit(CircuitState::HalfOpen) || failing => "degraded",
            _ => "healthy",
        };
        stats.push(SystemStats {
            system,
            calls,
            success,
            error,
            timeout,
            circuit_open,
            rate_limited,
            success_rate: rate,
            latency_p50_ms: percentile(&durations, 50.0),
            latency_p95_ms: percentile(&durations, 95.0),
            latency_p99_ms: percentile(&durations, 99.0),
            last_call: samples.last().and_then(|s| DateTime::from_timestamp_millis(s.timestamp)),
            health: health.into(),
        });
    }
    Ok(stats)
}

/// Service level of one orchestration or system over the window.
#[derive(Serialize, ToSchema)]
pub struct SlaFigures {
    /// Orchestration id, or system slug.
    pub id: String,
    pub name: String,
    /// Executions (orchestrations) or API calls (systems) in the window.
    pub executions: u64,
    pub successes: u64,
    pub failures: u64,
    /// Successes in percent of all, two decimals; `null` without executions.
    pub success_rate: Option<f64>,
    /// The target in percent (the orchestration's `sla_target`, default 99.0).
    pub target: f64,
    /// green: at or above target; amber: less than one point below; red: further below.
    pub state: String,
    /// Seconds since the last failure in the window, `null` without one.
    pub seconds_since_last_failure: Option<i64>,
    pub duration_p50_ms: i64,
    pub duration_p95_ms: i64,
    pub duration_p99_ms: i64,
}

/// Figures from (succeeded, duration ms, at ms) samples.
fn figures(id: String, name: String, target: f64, samples: &[(bool, i64, i64)]) -> SlaFigures {
    let now = dibop_core::now_ms();
    let executions = samples.len() as u64;
    let successes = samples.iter().filter(|s| s.0).count() as u64;
    let success_rate = success_rate(successes, executions).map(|rate| (rate * 100.0).round() / 100.0);
    let state = match success_rate {
        Some(rate) if rate < target - 1.0 => "red",
        Some(rate) if rate < target => "amber",
        _ => "green",
    };
    let last_failure = samples.iter().filter(|s| !s.0).map(|s| s.2).max();
    let mut durations: Vec<i64> = samples.iter().map(|s| s.1).collect();
    durations.sort_unstable();
    SlaFigures {
        id,
        name,
        executions,
        successes,
        failures: executions - successes,
        success_rate,
        target,
        state: state.into(),
        seconds_since_last_failure: last_failure.map(|at| (now - at).max(0) / 1000),
        duration_p50_ms: percentile(&durations, 50.0),
        duration_p95_ms: percentile(&durations, 95.0),
        duration_p99_ms: percentile(&durations, 99.0),
    }
}

/// The SLA figures since `since_ms` per orchestration of the enterprise (its finished
/// executions; `partial` and `cancelled` count as failures) and per system (its API calls).
pub async fn sla(
    store: &Store,
    enterprise_id: &str,
    since_ms: i64,
) -> sqlx::Result<(Vec<SlaFigures>, Vec<SlaFigures>)> {
    let mut by_orchestration: BTreeMap<String, Vec<(bool, i64, i64)>> = BTreeMap::new();
    for (orchestration, status, duration, at) in store.finished_executions(enterprise_id, since_ms).await? {
        by_orchestration.entry(orchestration).or_default().push((succeeded(&status), duration, at));
    }
    let (rows, _) = store.list_orchestrations(enterprise_id, Page { limit: 10_000, offset: 0 }).await?;
    let mut orchestrations = Vec::new();
    for row in rows {
        let target = target(&row);
        let samples = by_orchestration.remove(&row.id).unwrap_or_default();
        orchestrations.push(figures(row.id, row.name, target, &samples));
    }
    let mut by_system: BTreeMap<String, Vec<(bool, i64, i64)>> = BTreeMap::new();
    for sample in store.api_call_samples(enterprise_id, since_ms).await? {
        by_system.entry(sample.system).or_default().push((
            !sample.status.is_failure(),
            sample.duration_ms,
            sample.timestamp,
        ));
    }
    let systems = by_system
        .into_iter()
        .map(|(system, samples)| figures(system.clone(), system, DEFAULT_TARGET, &samples))
        .collect();
    Ok((orchestrations, systems))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_success_counts_and_no_runs_have_no_rate() {
        let statuses = ["success", "partial", "success", "cancelled"];
        let successes = statuses.iter().filter(|s| super::succeeded(s)).count() as u64;
        assert_eq!(super::success_rate(successes, 4), Some(50.0));
        assert_eq!(super::success_rate(0, 0), None);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(super::percentile(&sorted, 50.0), 50);
        assert_eq!(super::percentile(&sorted, 99.0), 99);
        assert_eq!(super::percentile(&[7], 99.0), 7);
        assert_eq!(super::percentile(&[], 50.0), 0);
    }
}
