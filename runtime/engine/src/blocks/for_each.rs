//! `for_each`: a body run once per item, a bounded number at a time.

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::*;
use crate::Engine;
use crate::definition::{MAX_ITEMS, Step};
use crate::mapping;
use crate::step::StepOutcome;
use dibop_store::ExecutionRow;

/// Runs the body once per item, at most `concurrency` at a time; the output is the list of each
/// item's last output, in item order.
pub(super) async fn for_each(
    engine: &Engine,
    execution: &ExecutionRow,
    kept: &Kept,
    step: &Step,
    scope: &Value,
    label: &str,
) -> StepOutcome {
    let reference = step.items.clone().unwrap_or_default();
    let items = match mapping::resolve(&Value::String(reference.clone()), scope) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            let kind = match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                _ => "an object",
            };
            return StepOutcome::failed(None, None, format!("items {reference} is {kind}, not an array"), 1);
        }
        Err(e) => return StepOutcome::failed(None, None, format!("items: {e}"), 1),
    };
    let max_items = engine.settings.max_for_each_items.min(MAX_ITEMS);
    if items.len() > max_items {
        return StepOutcome::failed(
            None,
            None,
            format!("{} items; a for_each takes at most {max_items} (DIBOP_MAX_FOR_EACH_ITEMS)", items.len()),
            1,
        );
    }
    let count = items.len();
    let concurrency = step.concurrency.unwrap_or(1).max(1) as usize;
    let siblings = Siblings::of([&step.steps[..]]);
    let mut results: Vec<BlockResult> = futures_util::stream::iter(items.into_iter().enumerate())
        .map(|(index, item)| {
            let mut scope = scope.clone();
            scope["item"] = item;
            scope["index"] = json!(index);
            run_block(engine, execution, kept, &siblings, &step.steps, scope, format!("{label}[{index}]"))
        })
        .buffered(concurrency)
        .collect()
        .await;
    let mut api_calls = Vec::new();
    if let Some(parked) = park(stopping(engine, execution), &mut results, &mut api_calls) {
        return StepOutcome::parked(parked, api_calls);
    }
    let failed: Vec<String> =
        results.iter().enumerate().filter_map(|(i, r)| r.error.as_ref().map(|e| format!("item {i}: {e}"))).collect();
    let partial = results.iter().any(|r| r.partial);
    let mut steps = Vec::new();
    let mut outputs = Vec::new();
    for result in results {
        steps.extend(result.steps);
        api_calls.extend(result.api_calls);
        outputs.push(result.last);
    }
    let detail = Some(TraceDetail {
        items: Some(count),
        concurrency: Some(concurrency),
        steps: Some(steps),
        ..TraceDetail::default()
    });
    let input = Some(json!({"items": count}));
    if failed.is_empty() {
        StepOutcome { input, detail, partial, api_calls, ..StepOutcome::success(Value::Array(outputs)) }
    } else {
        let error = format!("{} of {count} items failed; {}", failed.len(), failed.join("; "));
        StepOutcome { detail, partial, api_calls, ..StepOutcome::failed(None, input, error, 1) }
    }
}
