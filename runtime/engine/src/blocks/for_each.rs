//! `for_each`: a body run once per item, a bounded number at a time. The items that finished
//! are committed as it goes (at most every [`KEEP_EVERY`]), so that an execution resumed on
//! another node after its own died replays them instead of running them again; its trace keeps
//! counts and the records of a few items, not one record per item.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::{JoinError, JoinHandle};

use super::*;
use crate::definition::{MAX_ITEMS, Step};
use crate::step::StepOutcome;

/// How often the items that finished since are committed.
const KEEP_EVERY: Duration = Duration::from_secs(1);
/// The trace keeps the records of the first this many items, and of the first this many failed
/// ones; the others are counted.
const TRACED_ITEMS: usize = 10;
/// The error of a failed `for_each` names at most this many of its failed items.
const NAMED_FAILURES: usize = 10;

/// Runs the body once per item, at most `concurrency` at a time; the output is the list of each
/// item's last output, in item order.
pub(super) async fn for_each<'a>(run: Run<'a>, step: &'a Step, scope: &'a Scope<'a>, label: &'a str) -> StepOutcome {
    let engine = run.engine;
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
    let siblings = Siblings::of([&step.steps[..]]).keeping();
    let mut progress = Progress { rows: Vec::new(), api_calls: Vec::new(), kept_at: Instant::now(), writing: None };
    let mut trace = ItemTrace::default();
    let mut results: Vec<BlockResult> = Vec::with_capacity(count);
    {
        // Each body's scope is its item over the container's scope, which is read in place.
        let mut bodies = futures_util::stream::iter(items.into_iter().enumerate())
            .map(|(index, item)| {
                let local = json!({"item": item, "index": index});
                run_block(run, &siblings, &step.steps, scope, local, format!("{label}[{index}]"))
            })
            .buffered(concurrency);
        while let Some(mut result) = bodies.next().await {
            if result.parked.is_none() {
                progress.take(&mut result);
                trace.count(results.len(), &mut result);
            }
            results.push(result);
            progress.keep_if_due(run);
        }
    }
    // What the last commit could not keep is committed below, with the park or the step.
    progress.written(run.execution).await;
    let mut api_calls = std::mem::take(&mut progress.api_calls);
    if let Some(mut parked) = park(stopping(engine, run.execution), &mut results, &mut api_calls) {
        // Items that finished since the last commit are kept with the park.
        parked.steps.append(&mut progress.rows);
        return StepOutcome::parked(parked, api_calls);
    }
    let failed: Vec<String> =
        results.iter().enumerate().filter_map(|(i, r)| r.error.as_ref().map(|e| format!("item {i}: {e}"))).collect();
    let partial = results.iter().any(|r| r.partial);
    let mut steps = Vec::new();
    let mut outputs = Vec::with_capacity(count);
    for result in results {
        steps.extend(result.steps);
        api_calls.extend(result.api_calls);
        outputs.push(result.last);
    }
    let detail = Some(TraceDetail {
        items: Some(count),
        concurrency: Some(concurrency),
        steps: Some(steps),
        outcomes: Some(trace.outcomes),
        items_left_out: Some(trace.left_out),
        ..TraceDetail::default()
    });
    let input = Some(json!({"items": count}));
    if failed.is_empty() {
        StepOutcome { input, detail, partial, api_calls, ..StepOutcome::success(Value::Array(outputs)) }
    } else {
        let named = failed.iter().take(NAMED_FAILURES).cloned().collect::<Vec<_>>().join("; ");
        let more = failed.len().saturating_sub(NAMED_FAILURES);
        let more = if more > 0 { format!("; and {more} more") } else { String::new() };
        let error = format!("{} of {count} items failed; {named}{more}", failed.len());
        StepOutcome { detail, partial, api_calls, ..StepOutcome::failed(None, input, error, 1) }
    }
}

/// The items that finished since the last commit: their body steps, to keep, and the API calls
/// they made.
struct Progress {
    rows: Vec<BodyStepRow>,
    api_calls: Vec<ApiCallRecord>,
    kept_at: Instant,
    /// The commit under way, on a task of its own, and what it holds. It is not awaited where
    /// the bodies are polled: a body suspended meanwhile may hold the database connection the
    /// commit waits for (SQLite has one writer).
    writing: Option<(JoinHandle<sqlx::Result<()>>, Arc<Unkept>)>,
}

/// Rows and API calls a commit takes.
struct Unkept {
    rows: Vec<BodyStepRow>,
    api_calls: Vec<ApiCallRecord>,
}

impl Progress {
    /// Takes what a finished item leaves to keep.
    fn take(&mut self, result: &mut BlockResult) {
        self.rows.extend(result.take_done());
        self.api_calls.append(&mut result.api_calls);
    }

    /// Starts a commit of what was taken when the last one began [`KEEP_EVERY`] ago and has
    /// ended. What a commit could not keep is taken back for the next one (or for the step's
    /// own commit).
    fn keep_if_due(&mut self, run: Run<'_>) {
        if let Some((task, _)) = &self.writing {
            if !task.is_finished() {
                return;
            }
            if let Some((task, unkept)) = self.writing.take() {
                self.settle(run.execution, task.now_or_never(), unkept);
            }
        }
        if self.rows.is_empty() || self.kept_at.elapsed() < KEEP_EVERY {
            return;
        }
        let unkept =
            Arc::new(Unkept { rows: std::mem::take(&mut self.rows), api_calls: std::mem::take(&mut self.api_calls) });
        let (store, lease, held) = (run.engine.store.clone(), run.lease.clone(), unkept.clone());
        let task = tokio::spawn(async move { store.keep_body_steps(&lease, &held.rows, &held.api_calls).await });
        self.writing = Some((task, unkept));
        self.kept_at = Instant::now();
    }

    /// Waits for the commit under way, if any.
    async fn written(&mut self, execution: &ExecutionRow) {
        if let Some((task, unkept)) = self.writing.take() {
            let ended = task.await;
            self.settle(execution, Some(ended), unkept);
        }
    }

    /// How a commit ended (`None`: unknown); what it did not keep is taken back, ahead of what
    /// came since.
    fn settle(
        &mut self,
        execution: &ExecutionRow,
        ended: Option<Result<sqlx::Result<()>, JoinError>>,
        unkept: Arc<Unkept>,
    ) {
        let error = match ended {
            Some(Ok(Ok(()))) => return,
            Some(Ok(Err(e))) => e.to_string(),
            Some(Err(e)) => format!("the commit's task ended: {e}"),
            None => "the commit's task did not answer".to_owned(),
        };
        tracing::warn!(execution = %execution.id, error = %error, "keeping finished for_each items");
        // The task is over, so this is the only holder left.
        let Ok(Unkept { mut rows, mut api_calls }) = Arc::try_unwrap(unkept) else { return };
        rows.append(&mut self.rows);
        api_calls.append(&mut self.api_calls);
        (self.rows, self.api_calls) = (rows, api_calls);
    }
}

/// How the items ended, and which keep their records in the trace.
#[derive(Default)]
struct ItemTrace {
    outcomes: BTreeMap<String, usize>,
    failures_traced: usize,
    left_out: usize,
}

impl ItemTrace {
    /// Counts item `index`, and drops its records unless it is among the first items or the
    /// first failed ones.
    fn count(&mut self, index: usize, result: &mut BlockResult) {
        let how = match (&result.error, result.partial) {
            (Some(_), _) => "failed",
            (None, true) => "partial",
            (None, false) => "success",
        };
        *self.outcomes.entry(how.to_owned()).or_default() += 1;
        let failed = result.error.is_some();
        let traced = index < TRACED_ITEMS || (failed && self.failures_traced < TRACED_ITEMS);
        if failed && index >= TRACED_ITEMS && traced {
            self.failures_traced += 1;
        }
        if !traced {
            result.steps = Vec::new();
            self.left_out += 1;
        }
    }
}
