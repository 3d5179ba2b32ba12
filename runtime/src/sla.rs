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

/// Percent of runs that succeeded (`None` without runs); `partial` and `cancelled` count as
/// failures.
pub fn success_rate<'a>(statuses: impl IntoIterator<Item = &'a str>) -> Option<f64> {
    let (mut runs, mut successes) = (0_u64, 0_u64);
    for status in statuses {
        runs += 1;
        successes += u64::from(status == ExecutionStatus::Success.as_str());
    }
    (runs > 0).then(|| successes as f64 * 100.0 / runs as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_success_counts_and_no_runs_have_no_rate() {
        assert_eq!(super::success_rate(["success", "partial", "success", "cancelled"]), Some(50.0));
        assert_eq!(super::success_rate([]), None);
    }
}
