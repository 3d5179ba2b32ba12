//! Steps that hold other steps or time: `for_each`, `parallel`, `sub_orchestration`, `wait`.
//! The bodies of `for_each` and `parallel` run in memory under the same rules as the top level
//! ([`Flow`]); their step records go into the container's trace detail.
//!
//! A long `wait` in a body parks the execution like a top-level one: the container stops
//! starting items, lets the bodies that run reach their end or a wait of their own, commits
//! the body steps that finished ([`Kept`]) and hands the execution back until the earliest wait
//! is due. When it resumes, the container runs again and replays the kept steps instead of
//! running them twice.

//! One file per container step: `for_each`, `parallel`, `sub_orchestration`, `wait`; this
//! module holds the dispatcher of every step kind and the body runner they share.

mod for_each;
mod parallel;
mod sub_orchestration;
mod wait;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dibop_core::{StepKind, StepStatus, now_ms};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::definition::{self, Step};
use super::flow::{self, Decision, Flow};
use super::mapping::{self, Scope};
use super::step::{self, Parked, StepOutcome};
use super::{INLINE_WAIT_MS, MAX_STEP_OUTPUT, MAX_STORED_DETAIL, MAX_STORED_ERROR};
use crate::Engine;
use crate::trace::TraceDetail;
use dibop_plugin_host::outbound::ApiCallRecord;
use dibop_store::{BodyStepRow, ExecutionRow, Lease};

/// The run a step belongs to: the execution, the lease its writes name, and what its bodies
/// kept before it last parked.
#[derive(Clone, Copy)]
pub(crate) struct Run<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) execution: &'a ExecutionRow,
    pub(crate) lease: &'a Lease,
    pub(crate) kept: &'a Kept,
}

/// The body steps an execution finished before a long wait in a body parked it, by label
/// (`each[2].decode`): replayed when it resumes.
#[derive(Default)]
pub(crate) struct Kept(HashMap<String, BodyStepRow>);

impl Kept {
    /// What `execution` kept, if a wait in a body parked it.
    pub(super) async fn load(engine: &Engine, execution: &ExecutionRow) -> sqlx::Result<Self> {
        if execution.body_parked == 0 {
            return Ok(Self::default());
        }
        let rows = engine.store.body_steps(&execution.id).await?;
        Ok(Self(rows.into_iter().map(|row| (row.label.clone(), row)).collect()))
    }

    /// What the `api_call` step `label` holds, if it parked waiting for a permit or between
    /// attempts.
    fn held(&self, label: &str) -> Option<step::Held> {
        self.0.get(label).and_then(step::Held::of)
    }

    /// The finished step `label`, to replay (a step holding a permit has not finished).
    fn finished(&self, label: &str) -> Option<&BodyStepRow> {
        self.0.get(label).filter(|row| row.status != step::PERMIT)
    }
}

/// A step of a body that finished in this run (not replayed).
struct Done {
    label: String,
    status: StepStatus,
    output: Option<Value>,
    error: Option<String>,
    partial: bool,
    /// Its record's index in [`BlockResult::steps`].
    record: usize,
}

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
    /// The steps that finished in this run.
    done: Vec<Done>,
    /// Set when a wait in it (or a body nested in it) parks the execution.
    parked: Option<Parked>,
}

impl BlockResult {
    /// Its finished steps as rows to keep, plus those of the bodies nested in it.
    fn into_kept(mut self) -> Vec<BodyStepRow> {
        let mut rows = self.take_done();
        if let Some(parked) = self.parked.take() {
            rows.extend(parked.steps);
        }
        rows
    }

    /// Its finished steps as rows to keep (taken: they are kept once).
    fn take_done(&mut self) -> Vec<BodyStepRow> {
        std::mem::take(&mut self.done)
            .into_iter()
            .map(|done| BodyStepRow {
                label: done.label,
                status: done.status.as_str().to_owned(),
                output: done.output.as_ref().map(Value::to_string),
                error: done.error.as_deref().map(|e| dibop_core::bounded::clip(e, MAX_STORED_ERROR).into_owned()),
                partial: i64::from(done.partial),
                record: super::stored(&self.steps[done.record], MAX_STORED_DETAIL, "trace detail"),
            })
            .collect()
    }
}

/// What the bodies of one container share.
struct Siblings {
    /// Set once one of them parked: bodies that have not begun wait for the execution to resume.
    parked: AtomicBool,
    /// Whether their finished steps are collected to be kept: when any of them holds a step
    /// that can park (nested bodies included), and in a `for_each`, which keeps its finished
    /// items as it goes.
    keeps: bool,
}

impl Siblings {
    fn of<'a>(bodies: impl IntoIterator<Item = &'a [Step]>) -> Self {
        fn may_park(steps: &[Step]) -> bool {
            steps.iter().any(|s| {
                s.kind.may_park()
                    || [&s.then_steps, &s.else_steps, &s.steps].into_iter().any(|nested| may_park(nested))
                    || s.branches.iter().any(|b| may_park(&b.steps))
            })
        }
        Self { parked: AtomicBool::new(false), keeps: bodies.into_iter().any(may_park) }
    }

    /// Bodies whose finished steps are kept whether or not they can park.
    fn keeping(self) -> Self {
        Self { keeps: true, ..self }
    }
}

/// A kept step, replayed.
enum Replay {
    /// It stands as it was (a kept `wait` that is due).
    Done(Box<StepOutcome>, Value),
    /// A kept `wait` not yet due: the execution parks again until `due_ms`.
    Park(i64),
}

/// A kept body step as it stood: its outcome, its trace record, and for a kept `wait` how many
/// milliseconds are left until it is due at `now_ms` (0 for other steps).
fn kept_step(row: &BodyStepRow, now_ms: i64) -> Result<(StepOutcome, Value, i64), String> {
    let record: Value = serde_json::from_str(&row.record).unwrap_or(Value::Null);
    let output = row.output.as_deref().map(serde_json::from_str::<Value>).transpose().map_err(|e| e.to_string())?;
    let remaining = if record["type"] == "wait" && row.status == "success" {
        (output.as_ref().and_then(wait_due).unwrap_or(0) - now_ms).max(0)
    } else {
        0
    };
    let status = row.status.parse().unwrap_or(StepStatus::Skipped);
    let outcome =
        StepOutcome { status, output, error: row.error.clone(), partial: row.partial != 0, ..StepOutcome::skipped() };
    Ok((outcome, record, remaining))
}

/// Replays a kept body step; a kept `wait` due within [`INLINE_WAIT_MS`] is waited for here.
async fn replay(engine: &Engine, execution: &ExecutionRow, row: &BodyStepRow) -> Result<Replay, String> {
    let now = now_ms();
    let (outcome, record, remaining) = kept_step(row, now)?;
    if remaining > INLINE_WAIT_MS {
        return Ok(Replay::Park(now + remaining));
    }
    pause(engine, execution, remaining).await?;
    Ok(Replay::Done(Box::new(outcome), record))
}

/// Runs one step against `scope`. `label` names it in API-call rows and idempotency keys
/// (`decode`, or `each[3].decode` inside a for_each); `top` is false inside for_each and parallel
/// bodies, whose steps kept from before the execution parked are in `run.kept`.
pub(crate) fn run_step<'a>(
    run: Run<'a>,
    step: &'a Step,
    scope: &'a Scope<'a>,
    label: &'a str,
    top: bool,
) -> BoxFuture<'a, StepOutcome> {
    let Run { engine, execution, kept, .. } = run;
    Box::pin(async move {
        let clock = Instant::now();
        let input_template = match step.kind {
            StepKind::ApiCall | StepKind::SubOrchestration => step.parameters.clone().unwrap_or_else(|| json!({})),
            _ => step.mapping.clone().unwrap_or_else(|| json!({})),
        };
        let input = match mapping::resolve(&input_template, scope) {
            Ok(input) => input,
            Err(e) => return StepOutcome::failed(None, None, format!("mapping: {e}"), 0),
        };
        let mapping_us = u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX);
        let container = step.kind.is_container();
        let work = async {
            match (&step.kind, step.transform.as_deref()) {
                (StepKind::Condition, _) => {
                    match mapping::condition(step.condition.as_deref().unwrap_or("false"), scope) {
                        Ok(holds) => StepOutcome::success(
                            json!({"result": holds, "branch": if holds { "then" } else { "else" }}),
                        ),
                        Err(e) => StepOutcome::failed(None, None, format!("condition: {e}"), 1),
                    }
                }
                (StepKind::Transform, Some("map")) => StepOutcome::success(input),
                (StepKind::Transform, Some(slug)) => {
                    let params = match step.parameters.as_ref().map(|p| mapping::resolve(p, scope)).transpose() {
                        Ok(p) => p.unwrap_or_else(|| json!({})),
                        Err(e) => return StepOutcome::failed(None, Some(input), format!("mapping: {e}"), 0),
                    };
                    step::run_transform(engine, execution, step, slug, input, params).await
                }
                (StepKind::ApiCall, _) => {
                    step::run_api_call(engine, execution, step, label, input, kept.held(label), top).await
                }
                (StepKind::ForEach, _) => for_each(run, step, scope, label).await,
                (StepKind::Parallel, _) => parallel(run, step, scope, label).await,
                (StepKind::SubOrchestration, _) => sub_orchestration(engine, execution, step, label, input).await,
                (StepKind::Wait, _) => wait(engine, execution, step, scope, top).await,
                (StepKind::CanonicalUpsert, _) => step::canonical_upsert(engine, execution, step, input).await,
                (kind, _) => StepOutcome::failed(None, Some(input), format!("step type {kind} is not supported"), 0),
            }
        };
        // Plugin steps apply their timeout to each attempt; the others to the whole step.
        let timed = async {
            match step.timeout_ms.filter(|_| container) {
                Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), work).await {
                    Ok(outcome) => outcome,
                    Err(_) => StepOutcome::failed(None, None, format!("timed out after {ms} ms"), 1),
                },
                None => work.await,
            }
        };
        // A bug of ours fails this step, not the worker that runs it.
        let mut outcome = match dibop_core::guard::catch(timed).await {
            Ok(outcome) => outcome,
            Err(panic) => {
                tracing::error!(execution = %execution.id, step = %label, panic = %panic, "a step panicked");
                let error =
                    format!("INTERNAL: the engine panicked in this step: {}", dibop_core::bounded::clip(&panic, 500));
                StepOutcome::failed(None, None, error, 1)
            }
        };
        // Measured first: serializing (and storing, and reading back) recurses once per level.
        if let Some(Err(error)) =
            outcome.output.as_ref().map(|o| dibop_core::nesting::check_value(o, "the step's output"))
        {
            outcome = StepOutcome {
                detail: outcome.detail.take(),
                ..StepOutcome::failed(outcome.system.take(), None, error, outcome.attempts)
            };
        }
        if let Some(size) = outcome.output.as_ref().map(dibop_core::bounded::json_len).filter(|n| *n > MAX_STEP_OUTPUT)
        {
            let error = format!("the step's output is {size} bytes; at most {MAX_STEP_OUTPUT} are kept");
            outcome = StepOutcome {
                detail: outcome.detail.take(),
                ..StepOutcome::failed(outcome.system.take(), None, error, outcome.attempts)
            };
        }
        outcome.detail.get_or_insert_with(TraceDetail::default).mapping_us = Some(mapping_us);
        outcome
    })
}

/// Runs a body to its end (or until a long wait parks it) against `local` (its own values,
/// such as `item`) over `scope`; `label` prefixes its steps' labels. `siblings` is shared by the
/// bodies of one container: once one parks, bodies that have not begun wait for the execution
/// to resume.
fn run_block<'a>(
    run: Run<'a>,
    siblings: &'a Siblings,
    steps: &'a [Step],
    scope: &'a Scope<'a>,
    local: Value,
    label: String,
) -> BoxFuture<'a, BlockResult> {
    let Run { engine, execution, kept, .. } = run;
    Box::pin(async move {
        let mut result = BlockResult {
            last: Value::Null,
            error: None,
            partial: false,
            steps: Vec::new(),
            api_calls: Vec::new(),
            done: Vec::new(),
            parked: None,
        };
        if siblings.parked.load(Ordering::Acquire) {
            // Not begun: it begins when the execution resumes.
            result.parked = Some(Parked { due_ms: i64::MAX, steps: Vec::new() });
            return result;
        }
        let flat = definition::flatten(steps);
        let ahead = flow::handlers_ahead(&flat);
        let mut flow = Flow::new(Scope::within(scope, local));
        for (i, f) in flat.iter().enumerate() {
            // Cancellation (and shutdown) reach inside bodies between their steps.
            if let Some(why) = engine.node.signal(&execution.id).get() {
                result.error = Some(why.message().to_owned());
                break;
            }
            let step_label = format!("{label}.{}", f.step.name);
            let started = now_ms();
            let clock = Instant::now();
            let decision = flow.decide(f, ahead[i]);
            let ran = matches!(decision, Decision::Run);
            let mut outcome = match decision {
                Decision::Fail(e) => {
                    result.error = Some(e);
                    break;
                }
                Decision::Skip => StepOutcome::skipped(),
                Decision::Handle(output) => StepOutcome::success(output),
                Decision::Run => match kept.finished(&step_label) {
                    // Finished before the execution parked: replayed, not run again.
                    Some(row) => match replay(engine, execution, row).await {
                        Ok(Replay::Done(outcome, record)) => {
                            result.steps.push(record);
                            flow.record(
                                f.step,
                                outcome.status,
                                outcome.output.as_ref(),
                                outcome.error.as_deref(),
                                outcome.partial,
                            );
                            continue;
                        }
                        Ok(Replay::Park(due_ms)) => {
                            result.parked = Some(Parked { due_ms, steps: Vec::new() });
                            siblings.parked.store(true, Ordering::Release);
                            break;
                        }
                        Err(e) => {
                            result.error = Some(e);
                            break;
                        }
                    },
                    None => run_step(run, f.step, &flow.scope, &step_label, false).await,
                },
            };
            let parked = outcome.parked.take();
            let row = outcome.row(f.step, i64::try_from(i).unwrap_or(0), started, clock.elapsed());
            result.api_calls.append(&mut outcome.api_calls);
            // A wait that parks is itself finished (its output is its due time) and kept; a
            // nested container (or a call waiting for its permit) that parks is not: it runs
            // again when the execution resumes.
            if parked.is_none() || f.step.kind == StepKind::Wait {
                result.steps.push(record_of(&step_label, &row, outcome.detail.take()));
                flow.record(f.step, outcome.status, outcome.output.as_ref(), outcome.error.as_deref(), outcome.partial);
                // Only steps that ran are kept (skips and handlers are decided again on replay),
                // and only when a body of this container can park at all.
                if ran && siblings.keeps {
                    result.done.push(Done {
                        label: step_label,
                        status: outcome.status,
                        output: outcome.output.take(),
                        error: outcome.error.take(),
                        partial: outcome.partial,
                        record: result.steps.len() - 1,
                    });
                }
            }
            if let Some(parked) = parked {
                result.parked = Some(parked);
                siblings.parked.store(true, Ordering::Release);
                break;
            }
        }
        if result.error.is_none() && result.parked.is_none() {
            result.error = flow.finish().err();
        }
        result.last = flow.last_output().clone();
        result.partial = flow.partial;
        result
    })
}

/// A body step's record in its container's trace detail.
fn record_of(label: &str, row: &dibop_store::StepResultRow, detail: Option<TraceDetail>) -> Value {
    let mut record = json!({
        "label": label, "name": row.name, "type": row.kind, "status": row.status,
        "system": row.system, "operation": row.operation, "error": row.error, "attempts": row.attempts,
        "started_at_ms": row.started_at, "duration_ms": row.duration_ms,
    });
    record["detail"] = detail.map_or(Value::Null, |d| d.to_value());
    record
}

/// Whether the execution is being cancelled or handed back (then bodies end, they do not park).
fn stopping(engine: &Engine, execution: &ExecutionRow) -> bool {
    engine.node.signal(&execution.id).get().is_some()
}

/// When one of a container's bodies parked: the container parks until the earliest wait is
/// due, keeping every body's finished steps. `None` when none parked, or when the execution
/// is being stopped (then the bodies' errors say so).
fn park(stopping: bool, results: &mut Vec<BlockResult>, api_calls: &mut Vec<ApiCallRecord>) -> Option<Parked> {
    if stopping || !results.iter().any(|r| r.parked.is_some()) {
        return None;
    }
    let due = results.iter().filter_map(|r| r.parked.as_ref().map(|p| p.due_ms)).min().filter(|due| *due != i64::MAX);
    let mut steps = Vec::new();
    for mut result in results.drain(..) {
        api_calls.append(&mut result.api_calls);
        steps.extend(result.into_kept());
    }
    Some(Parked { due_ms: due.unwrap_or_else(now_ms), steps })
}

use for_each::for_each;
use parallel::parallel;
use sub_orchestration::sub_orchestration;
use wait::pause;
pub(crate) use wait::{wait, wait_due};

#[cfg(test)]
mod tests {
    use dibop_core::StepStatus;
    use serde_json::{Value, json};

    use super::{BlockResult, Done, Parked, kept_step, park};
    use dibop_store::BodyStepRow;

    fn row(label: &str, kind: &str, status: &str, output: Option<Value>) -> BodyStepRow {
        BodyStepRow {
            label: label.into(),
            status: status.into(),
            output: output.map(|o| o.to_string()),
            error: (status == "failed").then(|| "boom".to_owned()),
            partial: 0,
            record: json!({"label": label, "type": kind, "status": status}).to_string(),
        }
    }

    /// A body that finished `done` (labels) and, when `parked` is given, parked until then with
    /// `nested` rows kept by a container inside it.
    fn body(done: &[&str], parked: Option<i64>, nested: &[&str]) -> BlockResult {
        let steps: Vec<Value> = done.iter().map(|label| json!({"label": label, "type": "transform"})).collect();
        BlockResult {
            last: Value::Null,
            error: None,
            partial: false,
            done: done
                .iter()
                .enumerate()
                .map(|(i, label)| Done {
                    label: (*label).to_owned(),
                    status: StepStatus::Success,
                    output: Some(json!({"n": i})),
                    error: None,
                    partial: false,
                    record: i,
                })
                .collect(),
            steps,
            api_calls: Vec::new(),
            parked: parked.map(|due_ms| Parked {
                due_ms,
                steps: nested.iter().map(|label| row(label, "transform", "success", Some(json!(1)))).collect(),
            }),
        }
    }

    fn labels(parked: &Parked) -> Vec<&str> {
        parked.steps.iter().map(|s| s.label.as_str()).collect()
    }

    #[test]
    fn a_kept_step_replays_with_its_status_output_error_and_record() {
        let (outcome, record, remaining) =
            kept_step(&row("each[0].check", "api_call", "success", Some(json!({"ok": true}))), 0).expect("kept");
        assert_eq!((outcome.status, outcome.output, remaining), (StepStatus::Success, Some(json!({"ok": true})), 0));
        assert_eq!(record["label"], "each[0].check");
        let (failed, _, _) = kept_step(&row("each[1].check", "api_call", "failed", None), 0).expect("kept");
        assert_eq!((failed.status, failed.error.as_deref(), failed.output), (StepStatus::Failed, Some("boom"), None));
        let mut broken = row("each[2].check", "api_call", "success", None);
        broken.output = Some("{not json".into());
        assert!(kept_step(&broken, 0).is_err(), "a kept output that does not read is an error, not a null");
    }

    #[test]
    fn a_kept_wait_says_how_long_until_it_is_due() {
        let until = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:10Z").expect("instant").timestamp_millis();
        let wait = row("each[0].pause", "wait", "success", Some(json!({"until": "2030-01-01T00:00:10.000Z"})));
        assert_eq!(kept_step(&wait, until - 7_000).expect("kept").2, 7_000);
        assert_eq!(kept_step(&wait, until + 1).expect("kept").2, 0, "a wait that is due has nothing left");
        // Only waits count: another step with an `until` in its output is not waited for.
        let other = row("each[0].map", "transform", "success", Some(json!({"until": "2030-01-01T00:00:10.000Z"})));
        assert_eq!(kept_step(&other, until - 7_000).expect("kept").2, 0);
    }

    #[test]
    fn a_container_parks_until_its_earliest_wait_and_keeps_every_bodys_finished_steps() {
        let mut results = vec![
            body(&["each[0].check"], Some(9_000), &[]),
            // Not begun (a sibling parked first): it does not decide the due time.
            body(&[], Some(i64::MAX), &[]),
            body(&["each[2].check", "each[2].decode"], Some(5_000), &["each[2].inner[0].x"]),
            body(&["each[3].check", "each[3].row"], None, &[]),
        ];
        let mut calls = Vec::new();
        let parked = park(false, &mut results, &mut calls).expect("parks");
        assert_eq!(parked.due_ms, 5_000);
        assert_eq!(
            labels(&parked),
            ["each[0].check", "each[2].check", "each[2].decode", "each[2].inner[0].x", "each[3].check", "each[3].row"]
        );
        assert_eq!(parked.steps[2].output.as_deref(), Some(r#"{"n":1}"#));
        assert_eq!(parked.steps[2].record, r#"{"label":"each[2].decode","type":"transform"}"#);
    }

    #[test]
    fn a_container_does_not_park_when_no_body_waits_or_the_execution_stops() {
        let mut calls = Vec::new();
        let mut finished = vec![body(&["a.x"], None, &[]), body(&["b.y"], None, &[])];
        assert!(park(false, &mut finished, &mut calls).is_none());
        assert_eq!(finished.len(), 2, "the results are left for the container's own output");
        let mut waiting = vec![body(&["a.x"], Some(1_000), &[])];
        assert!(park(true, &mut waiting, &mut calls).is_none(), "a stopping execution ends instead of parking");
    }
}
