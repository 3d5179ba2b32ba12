//! Service levels: what an orchestration promises (its `sla_target`) and how its runs measure
//! against it. `GET /observability/sla` reports the figures and the `sla_breach` alert rule
//! fires on them; both read them here.

use dibop_core::ExecutionStatus;

use crate::store::OrchestrationRow;

/// Success-rate target in percent of an orchestration that sets none (and of every system).
pub const DEFAULT_TARGET: f64 = 99.0;

/// The orchestration's `sla_target`, else [`DEFAULT_TARGET`].
pub fn target(orchestration: &OrchestrationRow) -> f64 {
    serde_json::from_str::<crate::engine::definition::Definition>(&orchestration.definition)
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

#[cfg(test)]
mod tests {
    #[test]
    fn only_success_counts_and_no_runs_have_no_rate() {
        let statuses = ["success", "partial", "success", "cancelled"];
        let successes = statuses.iter().filter(|s| super::succeeded(s)).count() as u64;
        assert_eq!(super::success_rate(successes, 4), Some(50.0));
        assert_eq!(super::success_rate(0, 0), None);
    }
}
