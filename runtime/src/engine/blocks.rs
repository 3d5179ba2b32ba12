//! Steps that hold other steps or time: `for_each`, `parallel`, `sub_orchestration`, `wait`.
//! The bodies of `for_each` and `parallel` run in memory under the same rules as the top level
//! ([`Flow`]); their step records go into the container's trace detail.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::definition::{self, Definition, MAX_BRANCHES, MAX_ITEMS, Step};
use super::flow::{self, Decision, Flow};
use super::{StepOutcome, Stop, mapping, run_claimed, run_step};
use crate::plugins::outbound::ApiCallRecord;
use crate::state::AppState;
use crate::store::{ExecutionRow, NewExecution, now_ms};

/// How deeply orchestrations may start one another.
pub const MAX_DEPTH: i64 = 8;

/// What a body left behind.
struct BlockResult {
    /// The output of its last step that ran.
    last: Value,
    error: Option<String>,
    partial: bool,
    /// One record per step (nested containers carry their own records in `detail`).
    steps: Vec<Value>,
    /// The outbound requests its steps made.
    api_calls: Vec<ApiCallRecord>,
}

/// Runs a body to its end against `scope`; `label` prefixes its steps' labels.
fn run_block<'a>(
    state: &'a AppState,
    execution: &'a ExecutionRow,
    steps: &'a [Step],
    scope: Value,
    label: String,
) -> BoxFuture<'a, BlockResult> {
    Box::pin(async move {
        let flat = definition::flatten(steps);
        let ahead = flow::handlers_ahead(&flat);
        let mut flow = Flow::new(scope);
        let mut records = Vec::new();
        let mut api_calls = Vec::new();
        let mut error = None;
        for (i, f) in flat.iter().enumerate() {
            // Cancellation (and shutdown) reach inside bodies between their steps.
            if let Some(why) = state.engine.signal(&execution.id).get() {
                error = Some(why.message().to_owned());
                break;
            }
            let step_label = format!("{label}.{}", f.step.name);
            let started = now_ms();
            let clock = Instant::now();
            let mut outcome = match flow.decide(f, ahead[i]) {
                Decision::Fail(e) => {
                    error = Some(e);
                    break;
                }
                Decision::Skip => StepOutcome::skipped(),
                Decision::Handle(output) => StepOutcome::success(output),
                Decision::Run => run_step(state, execution, f.step, &flow.scope, &step_label, false).await,
            };
            let row = outcome.row(f.step, i64::try_from(i).unwrap_or(0), started, clock.elapsed());
            records.push(json!({
                "label": step_label, "name": row.name, "type": row.kind, "status": row.status,
                "system": row.system, "operation": row.operation, "error": row.error, "attempts": row.attempts,
                "started_at_ms": row.started_at, "duration_ms": row.duration_ms, "detail": outcome.detail,
            }));
            flow.record(f.step, outcome.status, outcome.output.as_ref(), outcome.error.as_deref(), outcome.partial);
            api_calls.append(&mut outcome.api_calls);
        }
        if error.is_none() {
            error = flow.finish().err();
        }
        BlockResult { last: flow.last_output, error, partial: flow.partial, steps: records, api_calls }
    })
}

/// Runs the body once per item, at most `concurrency` at a time; the output is the list of each
/// item's last output, in item order.
pub(super) async fn for_each(
    state: &AppState,
    execution: &ExecutionRow,
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
    let max_items = state.config.max_for_each_items.min(MAX_ITEMS);
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
    let results: Vec<BlockResult> = futures_util::stream::iter(items.into_iter().enumerate())
        .map(|(index, item)| {
            let mut scope = scope.clone();
            scope["item"] = item;
            scope["index"] = json!(index);
            run_block(state, execution, &step.steps, scope, format!("{label}[{index}]"))
        })
        .buffered(concurrency)
        .collect()
        .await;
    let failed: Vec<String> =
        results.iter().enumerate().filter_map(|(i, r)| r.error.as_ref().map(|e| format!("item {i}: {e}"))).collect();
    let partial = results.iter().any(|r| r.partial);
    let mut steps = Vec::new();
    let mut api_calls = Vec::new();
    let mut outputs = Vec::new();
    for result in results {
        steps.extend(result.steps);
        api_calls.extend(result.api_calls);
        outputs.push(result.last);
    }
    let detail = Some(json!({"items": count, "concurrency": concurrency, "steps": steps}));
    let input = Some(json!({"items": count}));
    if failed.is_empty() {
        StepOutcome { input, detail, partial, api_calls, ..StepOutcome::success(Value::Array(outputs)) }
    } else {
        let error = format!("{} of {count} items failed; {}", failed.len(), failed.join("; "));
        StepOutcome { detail, partial, api_calls, ..StepOutcome::failed(None, input, error, 1) }
    }
}

/// Runs every branch at once; the output maps each branch to its last output.
pub(super) async fn parallel(
    state: &AppState,
    execution: &ExecutionRow,
    step: &Step,
    scope: &Value,
    label: &str,
) -> StepOutcome {
    let max_branches = state.config.max_parallel_branches.min(MAX_BRANCHES);
    if step.branches.len() > max_branches {
        let error = format!(
            "{} branches; a parallel step runs at most {max_branches} (DIBOP_MAX_PARALLEL_BRANCHES)",
            step.branches.len()
        );
        return StepOutcome::failed(None, None, error, 1);
    }
    let runs = step
        .branches
        .iter()
        .map(|branch| run_block(state, execution, &branch.steps, scope.clone(), format!("{label}.{}", branch.name)));
    let results = futures_util::future::join_all(runs).await;
    let mut output = serde_json::Map::new();
    let mut failed = Vec::new();
    let mut steps = Vec::new();
    let mut api_calls = Vec::new();
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
    let detail = Some(json!({"branches": step.branches.len(), "steps": steps}));
    if failed.is_empty() {
        StepOutcome { detail, partial, api_calls, ..StepOutcome::success(Value::Object(output)) }
    } else {
        StepOutcome { detail, partial, api_calls, ..StepOutcome::failed(None, None, failed.join("; "), 1) }
    }
}

/// Starts the child execution (once: its idempotency key is this step's), runs it on this
/// worker unless another node has it, and answers its output.
pub(super) async fn sub_orchestration(
    state: &AppState,
    execution: &ExecutionRow,
    step: &Step,
    label: &str,
    input: Value,
) -> StepOutcome {
    let fail = |message: String| StepOutcome::failed(None, Some(input.clone()), message, 1);
    if execution.depth >= MAX_DEPTH {
        return fail(format!("orchestrations nested deeper than {MAX_DEPTH} levels"));
    }
    let name = step.orchestration.clone().unwrap_or_default();
    let row = match state.store.find_orchestration(&execution.enterprise_id, &name).await {
        Ok(Some(row)) => row,
        Ok(None) => return fail(format!("orchestration {name:?} no longer exists")),
        Err(e) => return fail(format!("loading orchestration {name:?}: {e}")),
    };
    if matches!(row.status.as_str(), "paused" | "archived") {
        return fail(format!("orchestration {name:?} is {}", row.status));
    }
    let def: Definition = match serde_json::from_str(&row.definition) {
        Ok(def) => def,
        Err(e) => return fail(format!("orchestration {name:?}: {e}")),
    };
    let Value::Object(given) = &input else {
        return fail("parameters must be an object".into());
    };
    let parameters = match definition::bind_parameters(&def, given) {
        Ok(p) => p,
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| format!("{} {}", e.path, e.message)).collect();
            return fail(format!("orchestration {name:?}: {}", list.join("; ")));
        }
    };
    let new = NewExecution {
        orchestration_id: row.id.clone(),
        orchestration_version: row.version,
        triggered_by: "orchestration".into(),
        parameters: parameters.to_string(),
        idempotency_key: Some(format!("{}:{label}", execution.id)),
        steps_total: def.step_count(),
        parent: Some((execution.id.clone(), execution.depth)),
    };
    let child = match super::admission::submit(state, &execution.enterprise_id, None, new, false).await {
        Ok(admitted) => admitted.execution,
        Err(e) => return fail(format!("starting orchestration {name:?}: {e}")),
    };
    let lease = i64::try_from(state.config.lease_ms).unwrap_or(30_000);
    let mut signal = state.engine.signal(&execution.id);
    let child = loop {
        match state.store.execution(&child.id).await {
            Ok(Some(current)) if super::is_final(&current.status) => break current,
            Ok(_) => {}
            Err(e) => return fail(format!("reading execution {}: {e}", child.id)),
        }
        if let Some(why) = signal.get() {
            // The parent stops: a cancelled parent cancels its child; at shutdown the child
            // is handed back on its own and the parent finds it again when it resumes.
            if why == Stop::Cancel {
                let _ = state.store.cancel_execution(&execution.enterprise_id, &child.id).await;
            }
            return fail(format!("{} while orchestration {name:?} ran", why.message()));
        }
        match state.store.claim_execution_by_id(&child.id, &state.engine.node_id, lease).await {
            Ok(Some(claimed)) => {
                let mut child_run = run_claimed(state.clone(), claimed);
                tokio::select! {
                    () = &mut child_run => {}
                    why = signal.stopped() => {
                        state.engine.stop(&child.id, why);
                        if why == Stop::Cancel {
                            let _ = state.store.cancel_execution(&execution.enterprise_id, &child.id).await;
                        }
                        child_run.await;
                    }
                }
            }
            // Another worker has it (or it waits): look again shortly.
            Ok(None) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = signal.stopped() => {}
                }
            }
            Err(e) => return fail(format!("claiming execution {}: {e}", child.id)),
        }
    };
    let detail = Some(json!({"child_execution_id": child.id, "child_status": child.status}));
    let input = Some(json!({"orchestration_id": row.id, "execution_id": child.id, "parameters": parameters}));
    match child.status.as_str() {
        "success" | "partial" => {
            let output = child.output.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
            StepOutcome { input, detail, partial: child.status == "partial", ..StepOutcome::success(output) }
        }
        status => {
            let error = format!(
                "orchestration {name:?} ({}) ended {status}: {}",
                child.id,
                child.error.as_deref().unwrap_or("no error given")
            );
            StepOutcome { detail, ..StepOutcome::failed(None, input, error, 1) }
        }
    }
}

/// Pauses for `duration_ms` or until `until`. At the top level a long wait answers at once with
/// its due time, and the engine parks the execution until then. Inside a body (whose progress
/// lives in memory) it sleeps, at most `max_body_wait_ms`, and ends early when the execution
/// is cancelled or the node shuts down.
pub(super) async fn wait(
    state: &AppState,
    execution: &ExecutionRow,
    step: &Step,
    scope: &Value,
    top: bool,
) -> StepOutcome {
    let now = now_ms();
    let until_ms = match (&step.duration_ms, &step.until) {
        (Some(ms), _) => now + i64::try_from(*ms).unwrap_or(i64::MAX / 2),
        (None, Some(until)) => match mapping::resolve(&Value::String(until.clone()), scope) {
            Ok(Value::String(text)) => match chrono::DateTime::parse_from_rfc3339(&text) {
                Ok(at) => at.timestamp_millis(),
                Err(_) => {
                    return StepOutcome::failed(None, None, format!("until {text:?} is not an RFC 3339 instant"), 1);
                }
            },
            Ok(other) => {
                return StepOutcome::failed(None, None, format!("until resolved to {other}, not an instant"), 1);
            }
            Err(e) => return StepOutcome::failed(None, None, format!("until: {e}"), 1),
        },
        (None, None) => now,
    };
    let remaining = until_ms - now;
    let body_limit = i64::try_from(state.config.max_body_wait_ms).unwrap_or(i64::MAX);
    if !top && remaining > body_limit {
        let error = format!(
            "a wait inside for_each or parallel lasts at most {body_limit} ms (this one {remaining} ms); \
             put long waits at the top level, where they park the execution"
        );
        return StepOutcome::failed(None, None, error, 1);
    }
    if remaining > 0 && (!top || remaining <= super::INLINE_WAIT_MS) {
        let mut signal = state.engine.signal(&execution.id);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(u64::try_from(remaining).unwrap_or(0))) => {}
            why = signal.stopped() => return StepOutcome::failed(None, None, format!("wait {}", why.message()), 1),
        }
    }
    let until = chrono::DateTime::from_timestamp_millis(until_ms).unwrap_or_default();
    StepOutcome::success(json!({
        "until": until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "wait_ms": remaining.max(0),
    }))
}
