//! One execution from its claim to its end (or until a long wait parks it): replay what is
//! committed, decide and run each step, commit its result.

use std::time::Instant;

use serde_json::{Value, json};

use dibop_core::{ExecutionStatus, StepKind, StepStatus, now_ms};

use super::blocks::run_step;
use super::definition::{self, Definition};
use super::flow::{Decision, Flow};
use super::mapping::{self, Scope};
use super::node::StopSignal;
use super::step::StepOutcome;
use super::{MAX_STEP_OUTPUT, Stop, blocks, flow};
use crate::Engine;
use dibop_store::{ExecutionRow, Finish, Lease, StepResultRow};

/// The run stopped because its lease is no longer held (see [`Stop::LeaseLost`]).
#[derive(Debug)]
pub(super) struct LeaseLost;

impl std::fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the execution's lease is no longer held by this node")
    }
}

impl std::error::Error for LeaseLost {}

/// Whether a run ended because its lease was lost: told so by the heartbeat, or a write of it
/// was refused by the store's fence.
pub(super) fn lease_lost(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<LeaseLost>() || e.downcast_ref::<sqlx::Error>().is_some_and(dibop_store::is_lease_lost))
}

/// How long a run keeps trying to commit what it has (a step's result, a park, its end) while
/// the database or the disk fails, before it gives the execution up: the step already ran, and
/// committing its result late is better than running it again elsewhere.
const COMMIT_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the write `op` of a claimed execution, trying again with growing pauses (0.1 s up to
/// 2 s) while the database or the disk cannot serve ([`dibop_store::is_unavailable`]), for up
/// to [`COMMIT_RETRY`], unless the run must be abandoned meanwhile. A lost lease, or a write
/// the database refuses for what it is, is never retried.
async fn commit<T, F, Fut>(signal: &mut StopSignal, what: &str, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>>,
{
    let started = Instant::now();
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) if dibop_store::is_unavailable(&err) && started.elapsed() + pause < COMMIT_RETRY => {
                tracing::warn!(error = %err, "committing {what} failed; trying again in {pause:?}");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = signal.abandoned() => return Err(anyhow::Error::new(err).context(format!("committing {what}"))),
                }
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            Err(err) => return Err(anyhow::Error::new(err).context(format!("committing {what}"))),
        }
    }
}

/// Leaves a run that must be abandoned: a shutdown hands the execution back to the queue (it
/// resumes from its last committed step), a lost lease leaves it to the node that holds it.
async fn abandon(engine: &Engine, lease: &Lease, why: Stop) -> anyhow::Result<()> {
    match why {
        Stop::LeaseLost => Err(LeaseLost.into()),
        _ => Ok(engine.store.release_execution(lease, 0).await?),
    }
}

/// Runs (or resumes) one claimed execution to its end, or until a long `wait` parks it. Every
/// write names `lease`: once another claim took the execution, nothing more of this run is
/// stored.
pub(super) async fn run(engine: &Engine, execution: ExecutionRow, lease: &Lease) -> anyhow::Result<()> {
    let (id, version) = (&execution.orchestration_id, execution.orchestration_version);
    let def = match engine.definitions.get(id, version) {
        Some(def) => def,
        None => {
            let text = engine
                .store
                .orchestration_version(id, version)
                .await?
                .ok_or_else(|| anyhow::anyhow!("orchestration version is gone"))?;
            engine.definitions.of(id, version, &text)?
        }
    };
    // Results are committed with the progress count: a fresh execution has none to read.
    let done =
        if execution.steps_completed == 0 { Vec::new() } else { engine.store.step_results(&execution.id).await? };
    let flat = definition::flatten(&def.steps);
    let ahead = flow::handlers_ahead(&flat);
    let mut flow = Flow::new(Scope::new(json!({
        "parameters": serde_json::from_str::<Value>(&execution.parameters)?,
        "_context": {
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "execution_id": execution.id,
            "orchestration_id": execution.orchestration_id,
            "enterprise_id": execution.enterprise_id,
        },
    })));
    // Replay what is committed.
    for (result, f) in done.iter().zip(&flat) {
        let output = result.output.as_deref().map(serde_json::from_str::<Value>).transpose()?;
        let _ = flow.decide(f, true);
        flow.record(f.step, result.status, output.as_ref(), result.error.as_deref(), false);
    }
    // Steps finished inside the body of the container it resumes at, if a long wait there parked it.
    let kept = blocks::Kept::load(engine, &execution).await?;
    let run = blocks::Run { engine, execution: &execution, lease, kept: &kept };
    let mut clear_body = execution.body_parked != 0;
    let mut signal = engine.node.signal(&execution.id);
    let mut cancelled = execution.cancel_requested != 0;
    if !cancelled && let Some(delay) = done.last().and_then(wait_remaining).filter(|ms| *ms > 0) {
        // Resumed before a parked wait is due (a lease expired): park it again.
        engine.store.release_execution(lease, delay).await?;
        return Ok(());
    }
    for (position, f) in flat.iter().enumerate().skip(done.len()) {
        let step = f.step;
        match signal.get() {
            // Back to the queue: another node (or this one after a restart) resumes here.
            Some(why) if why.abandons() => return abandon(engine, lease, why).await,
            Some(_) => cancelled = true,
            None => {}
        }
        if cancelled {
            let error = format!("cancelled before step {}", step.name);
            end(engine, &mut signal, lease, Finish::cancelled(error)).await?;
            // Children it was waiting for (parked with it) are cancelled too.
            engine.store.cancel_children(&execution.enterprise_id, &execution.id).await?;
            return Ok(());
        }
        let started = now_ms();
        let clock = Instant::now();
        let mut outcome = match flow.decide(f, ahead[position]) {
            Decision::Fail(error) => {
                return end(engine, &mut signal, lease, Finish::failed("STEP_FAILED", error)).await;
            }
            Decision::Skip => StepOutcome::skipped(),
            Decision::Handle(output) => StepOutcome::success(output),
            Decision::Run => tokio::select! {
                outcome = run_step(run, step, &flow.scope, &step.name, true) => outcome,
                // The grace period is over (or the lease is lost): the step in flight is
                // abandoned, not recorded, and runs again (same idempotency key) where the
                // execution resumes.
                why = signal.abandoned() => return abandon(engine, lease, why).await,
            },
        };
        if let Some(why) = signal.get().filter(|why| why.abandons()) {
            // Whatever the step made of being interrupted is not its result.
            return abandon(engine, lease, why).await;
        }
        if let Some(parked) = outcome.parked.take() {
            // A long wait in the container's body (or a parked child): what finished inside is
            // kept, the step has no result yet, and the execution waits for the earliest due time.
            let delay = parked.due_ms.saturating_sub(now_ms()).max(0);
            commit(&mut signal, "a park", || {
                engine.store.park_in_body(lease, &parked.steps, &outcome.api_calls, delay)
            })
            .await?;
            wake_when_due(engine, delay);
            return Ok(());
        }
        let result = outcome.row(step, i64::try_from(position)?, started, clock.elapsed());
        // A step that failed after its attempts pauses the execution when it says so (never a
        // child's: its parent waits for it to end).
        let pause = (outcome.status == StepStatus::Failed
            && execution.parent_execution_id.is_none()
            && def.pauses(step))
        .then(|| {
            Finish::paused(format!("step {} failed: {}", step.name, outcome.error.as_deref().unwrap_or_default()))
        });
        flow.record(step, outcome.status, outcome.output.as_ref(), outcome.error.as_deref(), outcome.partial);
        let park = wait_remaining(&result).filter(|ms| *ms > 0);
        // The last step (or one that pauses) commits together with the end of the execution.
        let last = (position + 1 == flat.len() && park.is_none()) || pause.is_some();
        let ending = match (last, signal.get()) {
            (false, _) => None,
            // Cancelled while this step ran: the execution ends `cancelled`, not by the step.
            (true, Some(Stop::Cancel)) => Some(Finish::cancelled(format!("cancelled during step {}", step.name))),
            (true, _) => Some(pause.unwrap_or_else(|| conclude(&mut flow, &def))),
        };
        let completed = i64::try_from(position + 1)?;
        // A for_each (also one inside a parallel branch) may have kept finished items.
        let clear = std::mem::take(&mut clear_body) || matches!(step.kind, StepKind::ForEach | StepKind::Parallel);
        let recorded = commit(&mut signal, "a step's result", || {
            engine.store.record_step(lease, &result, &outcome.api_calls, completed, ending.clone(), clear)
        })
        .await?;
        engine.report_ended(recorded.ended);
        cancelled = recorded.cancel_requested || signal.get() == Some(Stop::Cancel);
        if last {
            return Ok(());
        }
        if let Some(delay) = park
            && !cancelled
        {
            commit(&mut signal, "a wait", || engine.store.release_execution(lease, delay)).await?;
            return Ok(());
        }
    }
    // Every step was committed before (a resumed execution whose last step was a wait): one
    // cancelled while it waited ends cancelled, not by its steps.
    let finish = if cancelled || signal.get() == Some(Stop::Cancel) {
        Finish::cancelled("cancelled while waiting".into())
    } else {
        conclude(&mut flow, &def)
    };
    end(engine, &mut signal, lease, finish).await
}

/// Wakes this node's claim loops when an execution parked for `delay_ms` is due, so that a
/// short park (a call waiting for its permit) resumes on time rather than at the next poll;
/// other nodes find it by polling. Longer parks are left to polling.
fn wake_when_due(engine: &Engine, delay_ms: i64) {
    if delay_ms > 60_000 {
        return;
    }
    let node = engine.node.clone();
    let delay = std::time::Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0) + 5);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        node.wake();
    });
}

/// Ends the execution as `finish` says (committed like a step's result, see [`commit`]) and
/// reports it.
async fn end(engine: &Engine, signal: &mut StopSignal, lease: &Lease, finish: Finish) -> anyhow::Result<()> {
    let ended = commit(signal, "the end", || engine.store.finish_execution(lease, finish.clone())).await?;
    engine.report_ended(ended);
    Ok(())
}

/// How an execution whose steps all ran ends: its status and output (or the error).
fn conclude(flow: &mut Flow<'_>, def: &Definition) -> Finish {
    let (status, output, error) = match flow.finish() {
        Err(error) => return Finish::failed("STEP_FAILED", error),
        Ok(()) => {
            let status = if flow.partial { ExecutionStatus::Partial } else { ExecutionStatus::Success };
            // Serialized once: the stored text is also what the bound is measured on.
            match def.output.as_ref().map(|o| mapping::resolve(o, &flow.scope)) {
                None => (status, Some(flow.last_output().to_string()), None),
                Some(Ok(output)) => match output.to_string() {
                    text if text.len() > MAX_STEP_OUTPUT => (
                        ExecutionStatus::Failed,
                        None,
                        Some(format!("output mapping: larger than {MAX_STEP_OUTPUT} bytes")),
                    ),
                    text => (status, Some(text), None),
                },
                Some(Err(e)) => (ExecutionStatus::Failed, None, Some(format!("output mapping: {e}"))),
            }
        }
    };
    let code = (status == ExecutionStatus::Failed).then_some("OUTPUT_FAILED");
    Finish { status, output, error, code }
}

/// For a committed `wait` step: milliseconds until it is due.
fn wait_remaining(result: &StepResultRow) -> Option<i64> {
    if result.kind != StepKind::Wait || result.status != StepStatus::Success {
        return None;
    }
    let output: Value = serde_json::from_str(result.output.as_deref()?).ok()?;
    Some(blocks::wait_due(&output)? - now_ms())
}
