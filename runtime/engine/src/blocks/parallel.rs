//! `parallel`: branches run side by side.

use serde_json::json;

use super::*;
use crate::definition::{MAX_BRANCHES, Step};
use crate::step::StepOutcome;

/// Runs every branch at once; the output maps each branch to its last output.
pub(super) async fn parallel<'a>(run: Run<'a>, step: &'a Step, scope: &'a Scope<'a>, label: &'a str) -> StepOutcome {
    let Run { engine, execution, .. } = run;
    let max_branches = engine.settings.max_parallel_branches.min(MAX_BRANCHES);
    if step.branches.len() > max_branches {
        let error = format!(
            "{} branches; a parallel step runs at most {max_branches} (DIBOP_MAX_PARALLEL_BRANCHES)",
            step.branches.len()
        );
        return StepOutcome::failed(None, None, error, 1);
    }
    let siblings = Siblings::of(step.branches.iter().map(|branch| &branch.steps[..]));
    let runs = step
        .branches
        .iter()
        .map(|branch| run_block(run, &siblings, &branch.steps, scope, json!({}), format!("{label}.{}", branch.name)));
    let mut results = futures_util::future::join_all(runs).await;
    let mut api_calls = Vec::new();
    if let Some(parked) = park(stopping(engine, execution), &mut results, &mut api_calls) {
        return StepOutcome::parked(parked, api_calls);
    }
    let mut output = serde_json::Map::new();
    let mut failed = Vec::new();
    let mut steps = Vec::new();
    let mut partial = false;
    for (branch, result) in step.branches.iter().zip(results) {
        if let Some(error) = result.error {
            failed.push(format!("branch {}: {error}", branch.name));
        }
        partial |= result.partial;
        steps.extend(result.steps);
        api_calls.extend(result.api_calls);
        output.insert(branch.name.clone(), result.last);
    }
    let detail =
        Some(TraceDetail { branches: Some(step.branches.len()), steps: Some(steps), ..TraceDetail::default() });
    if failed.is_empty() {
        StepOutcome { detail, partial, api_calls, ..StepOutcome::success(Value::Object(output)) }
    } else {
        StepOutcome { detail, partial, api_calls, ..StepOutcome::failed(None, None, failed.join("; "), 1) }
    }
}
