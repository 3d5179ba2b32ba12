//! The orchestration engine: executions are queued in the database and run by workers that
//! claim them under a lease (renewed by a heartbeat), resume from the last committed step, and
//! commit each step's result before the next starts.
//!
//! Invariant: a step's result is committed before the next step starts, and a step's
//! idempotency key (`<execution id>:<step name>`) is the same on every attempt and after a
//! restart, so a step that was in flight when a node died runs again with the same key.

pub mod admission;
mod blocks;
pub mod definition;
mod flow;
pub mod mapping;
pub mod schedule;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dibop_core::now_ms;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::connections::{self, Caller};
use crate::plugins::outbound::ApiCallRecord;
use crate::plugins::{CallError, CallReport, CallSpec, Invocation, Loaded};
use crate::state::AppState;
use crate::store::{ExecutionRow, Finish, StepResultRow};
use definition::{Definition, Step};
use flow::{Decision, Flow};

/// How often idle workers look for work they were not woken for (other nodes, expired leases).
const POLL: Duration = Duration::from_millis(500);

/// Why a running execution must stop before its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Someone cancelled it: it ends `cancelled`.
    Cancel,
    /// This node shuts down: it goes back to the queue and resumes elsewhere (or after a restart).
    Shutdown,
}

impl Stop {
    fn message(self) -> &'static str {
        match self {
            Self::Cancel => "cancelled",
            Self::Shutdown => "interrupted by the node shutting down",
        }
    }
}

/// Resolves when the execution it was taken for is told to stop.
#[derive(Clone)]
pub struct StopSignal(Option<watch::Receiver<Option<Stop>>>);

impl StopSignal {
    /// A signal that never fires.
    pub fn never() -> Self {
        Self(None)
    }

    /// Why the execution must stop, if it must.
    pub fn get(&self) -> Option<Stop> {
        self.0.as_ref().and_then(|rx| *rx.borrow())
    }

    /// Waits until the execution is told to stop (forever for [`StopSignal::never`]).
    pub async fn stopped(&mut self) -> Stop {
        self.wait(|why| why.is_some()).await.unwrap_or(Stop::Cancel)
    }

    /// Waits until the node shuts down.
    pub async fn shutdown(&mut self) {
        self.wait(|why| *why == Some(Stop::Shutdown)).await;
    }

    async fn wait(&mut self, until: impl FnMut(&Option<Stop>) -> bool) -> Option<Stop> {
        let Some(rx) = self.0.as_mut() else { return std::future::pending().await };
        let seen = rx.wait_for(until).await.map(|why| *why);
        match seen {
            Ok(why) => why,
            // The execution ended and its sender is gone: nothing will fire any more.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Shared by the API (to wake workers and wait for results) and the workers.
pub struct EngineHandle {
    /// This node's lease owner name.
    pub node_id: String,
    /// One permit per execution this node may run at once (the worker pool size), shared by
    /// the workers and by execute requests that run their execution at once.
    slots: Arc<tokio::sync::Semaphore>,
    workers: usize,
    /// Most executions of one enterprise this node runs at once (fair share).
    per_enterprise: usize,
    wake: Notify,
    /// Callers waiting for one execution to finish on this node, by execution id.
    waiters: std::sync::Mutex<std::collections::HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>>>,
    /// The stop switch of each execution running on this node.
    running: std::sync::Mutex<std::collections::HashMap<String, watch::Sender<Option<Stop>>>>,
    /// Executions of each enterprise in this node's slots.
    in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl EngineHandle {
    /// A handle for a node running at most `workers` executions at once, at most
    /// `per_enterprise` of them for one enterprise.
    pub fn new(workers: usize, per_enterprise: usize) -> Self {
        let workers = workers.max(1);
        Self {
            node_id: format!("node-{}", uuid::Uuid::new_v4().simple()),
            slots: Arc::new(tokio::sync::Semaphore::new(workers)),
            workers,
            per_enterprise: per_enterprise.clamp(1, workers),
            wake: Notify::new(),
            waiters: std::sync::Mutex::default(),
            running: std::sync::Mutex::default(),
            in_flight: std::sync::Mutex::default(),
        }
    }

    /// Whether `enterprise_id` may start another execution on this node now.
    pub fn has_share(&self, enterprise_id: &str) -> bool {
        self.in_flight.lock().map_or(true, |m| m.get(enterprise_id).copied().unwrap_or(0) < self.per_enterprise)
    }

    /// Counts an execution of `enterprise_id` in one of this node's slots until the guard drops.
    fn occupy(self: &Arc<Self>, enterprise_id: &str) -> Occupied {
        if let Ok(mut m) = self.in_flight.lock() {
            *m.entry(enterprise_id.to_owned()).or_default() += 1;
        }
        Occupied { engine: self.clone(), enterprise_id: enterprise_id.to_owned() }
    }

    /// Enterprises this node runs executions of: at their share (not to be claimed for), and
    /// all of them (claimed for after the enterprises with nothing running here).
    fn shares(&self) -> (Vec<String>, Vec<String>) {
        let Ok(m) = self.in_flight.lock() else { return (Vec::new(), Vec::new()) };
        let full = m.iter().filter(|(_, n)| **n >= self.per_enterprise).map(|(e, _)| e.clone()).collect();
        let busy = m.iter().filter(|(_, n)| **n > 0).map(|(e, _)| e.clone()).collect();
        (full, busy)
    }

    /// The stop signal of an execution running on this node (one that never fires otherwise).
    pub fn signal(&self, execution_id: &str) -> StopSignal {
        StopSignal(self.running.lock().ok().and_then(|m| m.get(execution_id).map(watch::Sender::subscribe)))
    }

    /// Tells an execution running on this node to stop; false when it does not run here.
    pub fn stop(&self, execution_id: &str, why: Stop) -> bool {
        let Ok(m) = self.running.lock() else { return false };
        m.get(execution_id).is_some_and(|tx| {
            // A shutdown overrides a cancellation (the flag in the database still ends the
            // execution `cancelled` wherever it resumes).
            tx.send_if_modified(|current| {
                let change = current.is_none() || (why == Stop::Shutdown && *current != Some(why));
                if change {
                    *current = Some(why);
                }
                change
            });
            true
        })
    }

    /// Tells every execution running on this node to stop.
    pub fn stop_all(&self, why: Stop) {
        let ids: Vec<String> = self.running.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for id in ids {
            self.stop(&id, why);
        }
    }

    /// Whether all slots are free (nothing runs on this node).
    pub fn idle(&self) -> bool {
        self.slots.available_permits() == self.workers
    }

    /// Execution slots in use on this node.
    pub fn busy(&self) -> usize {
        self.workers.saturating_sub(self.slots.available_permits())
    }

    /// A free slot, if any: the caller may claim an execution and run it with [`run_now`].
    pub fn free_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Tells an idle worker there is work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A receiver that resolves when `execution_id` finishes on this node. Register before
    /// reading the execution's status, so a completion in between is not missed.
    pub fn watch(&self, execution_id: &str) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            // Drop the senders of callers that gave up (or whose execution ended elsewhere).
            waiters.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
            waiters.entry(execution_id.to_owned()).or_default().push(tx);
        }
        rx
    }

    /// Wakes the callers waiting for `execution_id`.
    fn finished(&self, execution_id: &str) {
        let senders = self.waiters.lock().ok().and_then(|mut w| w.remove(execution_id)).unwrap_or_default();
        for sender in senders {
            let _ = sender.send(());
        }
    }
}

impl Default for EngineHandle {
    fn default() -> Self {
        Self::new(4, 3)
    }
}

/// One execution of an enterprise in one of this node's slots.
struct Occupied {
    engine: Arc<EngineHandle>,
    enterprise_id: String,
}

impl Drop for Occupied {
    fn drop(&mut self) {
        if let Ok(mut m) = self.engine.in_flight.lock()
            && let Some(n) = m.get_mut(&self.enterprise_id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.enterprise_id);
            }
        }
    }
}

/// Registers an execution's stop switch while it runs on this node.
struct Running {
    engine: Arc<EngineHandle>,
    id: String,
}

impl Running {
    fn new(engine: &Arc<EngineHandle>, id: &str) -> Self {
        if let Ok(mut m) = engine.running.lock() {
            m.entry(id.to_owned()).or_insert_with(|| watch::channel(None).0);
        }
        Self { engine: engine.clone(), id: id.to_owned() }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut m) = self.engine.running.lock() {
            m.remove(&self.id);
        }
    }
}

/// Runs an execution this node claimed in a slot it holds, on its own task (a caller that goes
/// away does not stop it); the receiver resolves when it ended or was handed back.
pub fn run_now(
    state: &AppState,
    execution: ExecutionRow,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, receiver) = tokio::sync::oneshot::channel();
    let state = state.clone();
    let occupied = state.engine.occupy(&execution.enterprise_id);
    tokio::spawn(async move {
        run_claimed(state, execution).await;
        drop(occupied);
        drop(slot);
        let _ = done.send(());
    });
    receiver
}

/// Starts `count` workers and the lease heartbeat; they stop when `stop` flips.
pub fn start(state: &AppState, count: usize, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = (0..count.max(1)).map(|_| tokio::spawn(worker(state.clone(), stop.clone()))).collect();
    tasks.push(tokio::spawn(heartbeat(state.clone(), stop.clone())));
    tasks.push(tokio::spawn(schedule::run(state.clone(), stop.clone())));
    tasks
}

fn lease_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.lease_ms).unwrap_or(30_000)
}

/// Renews this node's leases six times per lease period, and passes on cancellations that
/// reached another node (they are flags in the database) to the executions running here.
async fn heartbeat(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(state.config.lease_ms / 6);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let beat = async {
            state.store.renew_leases(&state.engine.node_id, lease_ms(&state)).await?;
            for id in state.store.cancel_requested_on(&state.engine.node_id).await? {
                state.engine.stop(&id, Stop::Cancel);
            }
            Ok::<(), sqlx::Error>(())
        };
        match crate::guard::catch(beat).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "renewing execution leases failed"),
            Err(panic) => tracing::error!(panic = %panic, "the lease heartbeat panicked; it goes on"),
        }
    }
}

async fn worker(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let slot = tokio::select! {
            slot = state.engine.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (full, busy) = state.engine.shares();
        match state.store.claim_execution(&state.engine.node_id, lease_ms(&state), &full, &busy).await {
            Ok(Some(execution)) => {
                let occupied = state.engine.occupy(&execution.enterprise_id);
                run_claimed(state.clone(), execution).await;
                drop(occupied);
                drop(slot);
                // More work may be queued: let another worker look too.
                state.engine.wake();
            }
            Ok(None) => {
                drop(slot);
                tokio::select! {
                    _ = state.engine.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
            Err(err) => {
                drop(slot);
                tracing::warn!(error = %err, "claiming an execution failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Runs one claimed execution and handles what can go wrong around it: a database error hands
/// it back to the queue (it resumes from the last committed step), anything else fails it.
/// Wakes the callers waiting for it. Boxed: a `sub_orchestration` step runs its child with it.
fn run_claimed(state: AppState, execution: ExecutionRow) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let id = execution.id.clone();
        let enterprise_id = execution.enterprise_id.clone();
        let running = Running::new(&state.engine, &id);
        let outcome = crate::guard::catch(run(&state, execution)).await;
        drop(running);
        let internal =
            |error: String| Finish { status: "failed", output: None, error: Some(error), code: Some("INTERNAL") };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) if err.downcast_ref::<sqlx::Error>().is_some() => {
                // Transient (the database): resume later from the last committed step.
                tracing::warn!(execution = %id, error = %format!("{err:#}"), "execution interrupted; it will resume");
                let _ = state.store.release_execution(&id, 5_000).await;
            }
            Ok(Err(err)) => {
                tracing::error!(execution = %id, error = %format!("{err:#}"), "execution failed in the engine");
                let _ = state.store.finish_execution(&id, internal("internal engine error".into())).await;
            }
            Err(panic) => {
                // Never left `running` without an owner: the panic ends it, with its message.
                tracing::error!(execution = %id, enterprise = %enterprise_id, panic = %panic, "the engine panicked");
                let error = format!("the engine panicked: {}", crate::bounded::clip(&panic, 500));
                let _ = state.store.finish_execution(&id, internal(error)).await;
            }
        }
        state.engine.finished(&id);
        tokio::spawn(crate::alerts::execution_ended(state.clone(), enterprise_id, id));
    })
}

/// Waits shorter than this run in the worker; longer ones hand the execution back to the queue
/// until they are due.
const INLINE_WAIT_MS: i64 = 2_000;

/// Runs (or resumes) one claimed execution to its end, or until a long `wait` parks it.
async fn run(state: &AppState, execution: ExecutionRow) -> anyhow::Result<()> {
    let text = state
        .store
        .orchestration_version(&execution.orchestration_id, execution.orchestration_version)
        .await?
        .ok_or_else(|| anyhow::anyhow!("orchestration version is gone"))?;
    let def: Definition = serde_json::from_str(&text)?;
    // Results are committed with the progress count: a fresh execution has none to read.
    let done =
        if execution.steps_completed == 0 { Vec::new() } else { state.store.step_results(&execution.id).await? };
    let flat = definition::flatten(&def.steps);
    let ahead = flow::handlers_ahead(&flat);
    let mut flow = Flow::new(json!({
        "parameters": serde_json::from_str::<Value>(&execution.parameters)?,
        "_context": {
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "execution_id": execution.id,
            "orchestration_id": execution.orchestration_id,
            "enterprise_id": execution.enterprise_id,
        },
    }));
    // Replay what is committed.
    for (result, f) in done.iter().zip(&flat) {
        let output = result.output.as_deref().map(serde_json::from_str::<Value>).transpose()?;
        let _ = flow.decide(f, true);
        flow.record(f.step, &result.status, output.as_ref(), result.error.as_deref(), false);
    }
    let failed = |code: &'static str, error: String| Finish {
        status: "failed",
        output: None,
        error: Some(error),
        code: Some(code),
    };
    let cancelled_with =
        |error: String| Finish { status: "cancelled", output: None, error: Some(error), code: Some("CANCELLED") };
    // Steps finished inside the body of the container it resumes at, if a long wait there parked it.
    let kept = blocks::Kept::load(state, &execution).await?;
    let mut clear_body = execution.body_parked != 0;
    let mut signal = state.engine.signal(&execution.id);
    let mut cancelled = execution.cancel_requested != 0;
    if !cancelled && let Some(delay) = done.last().and_then(wait_remaining).filter(|ms| *ms > 0) {
        // Resumed before a parked wait is due (a lease expired): park it again.
        state.store.release_execution(&execution.id, delay).await?;
        return Ok(());
    }
    for (position, f) in flat.iter().enumerate().skip(done.len()) {
        let step = f.step;
        match signal.get() {
            Some(Stop::Shutdown) => {
                // Back to the queue: another node (or this one after a restart) resumes here.
                state.store.release_execution(&execution.id, 0).await?;
                return Ok(());
            }
            Some(Stop::Cancel) => cancelled = true,
            None => {}
        }
        if cancelled {
            let error = format!("cancelled before step {}", step.name);
            state.store.finish_execution(&execution.id, cancelled_with(error)).await?;
            // Children it was waiting for (parked with it) are cancelled too.
            state.store.cancel_children(&execution.enterprise_id, &execution.id).await?;
            return Ok(());
        }
        let started = now_ms();
        let clock = Instant::now();
        let mut outcome = match flow.decide(f, ahead[position]) {
            Decision::Fail(error) => {
                state.store.finish_execution(&execution.id, failed("STEP_FAILED", error)).await?;
                return Ok(());
            }
            Decision::Skip => StepOutcome::skipped(),
            Decision::Handle(output) => StepOutcome::success(output),
            Decision::Run => tokio::select! {
                outcome = run_step(state, &execution, &kept, step, &flow.scope, &step.name, true) => outcome,
                // The grace period is over: the step in flight is abandoned, not recorded, and
                // runs again (same idempotency key) where the execution resumes.
                () = signal.shutdown() => {
                    state.store.release_execution(&execution.id, 0).await?;
                    return Ok(());
                }
            },
        };
        if signal.get() == Some(Stop::Shutdown) {
            // Whatever the step made of being interrupted is not its result.
            state.store.release_execution(&execution.id, 0).await?;
            return Ok(());
        }
        if let Some(parked) = outcome.parked.take() {
            // A long wait in the container's body (or a parked child): what finished inside is
            // kept, the step has no result yet, and the execution waits for the earliest due time.
            let delay = parked.due_ms.saturating_sub(now_ms()).max(0);
            state.store.park_in_body(&execution.id, &parked.steps, &outcome.api_calls, delay).await?;
            return Ok(());
        }
        let result = outcome.row(step, i64::try_from(position)?, started, clock.elapsed());
        flow.record(step, outcome.status, outcome.output.as_ref(), outcome.error.as_deref(), outcome.partial);
        let park = wait_remaining(&result).filter(|ms| *ms > 0);
        // The last step commits together with the end of the execution.
        let last = position + 1 == flat.len() && park.is_none();
        let end = match (last, signal.get()) {
            (false, _) => None,
            // Cancelled while this step ran: the execution ends `cancelled`, not by the step.
            (true, Some(Stop::Cancel)) => Some(cancelled_with(format!("cancelled during step {}", step.name))),
            (true, _) => Some(conclude(&mut flow, &def)),
        };
        let completed = i64::try_from(position + 1)?;
        let clear = std::mem::take(&mut clear_body);
        cancelled = state.store.record_step(&execution.id, &result, &outcome.api_calls, completed, end, clear).await?
            || signal.get() == Some(Stop::Cancel);
        if last {
            return Ok(());
        }
        if let Some(delay) = park
            && !cancelled
        {
            state.store.release_execution(&execution.id, delay).await?;
            return Ok(());
        }
    }
    // Every step was committed before (a resumed execution whose last step was a wait): one
    // cancelled while it waited ends cancelled, not by its steps.
    let end = if cancelled || signal.get() == Some(Stop::Cancel) {
        cancelled_with("cancelled while waiting".into())
    } else {
        conclude(&mut flow, &def)
    };
    state.store.finish_execution(&execution.id, end).await?;
    Ok(())
}

/// How an execution whose steps all ran ends: its status and output (or the error).
fn conclude(flow: &mut Flow<'_>, def: &Definition) -> Finish {
    let (status, output, error) = match flow.finish() {
        Err(error) => return Finish { status: "failed", output: None, error: Some(error), code: Some("STEP_FAILED") },
        Ok(()) => {
            let status = if flow.partial { "partial" } else { "success" };
            // Serialized once: the stored text is also what the bound is measured on.
            match def.output.as_ref().map(|o| mapping::resolve(o, &flow.scope)) {
                None => (status, Some(flow.last_output.to_string()), None),
                Some(Ok(output)) => match output.to_string() {
                    text if text.len() > MAX_STEP_OUTPUT => {
                        ("failed", None, Some(format!("output mapping: larger than {MAX_STEP_OUTPUT} bytes")))
                    }
                    text => (status, Some(text), None),
                },
                Some(Err(e)) => ("failed", None, Some(format!("output mapping: {e}"))),
            }
        }
    };
    let code = (status == "failed").then_some("OUTPUT_FAILED");
    Finish { status, output, error, code }
}

/// For a committed `wait` step: milliseconds until it is due.
fn wait_remaining(result: &StepResultRow) -> Option<i64> {
    if result.kind != "wait" || result.status != "success" {
        return None;
    }
    let output: Value = serde_json::from_str(result.output.as_deref()?).ok()?;
    let until = chrono::DateTime::parse_from_rfc3339(output["until"].as_str()?).ok()?;
    Some(until.timestamp_millis() - now_ms())
}

/// Largest output of a step (and of an execution), as JSON text: later steps read it, so a
/// larger one fails the step instead of being cut.
pub const MAX_STEP_OUTPUT: usize = 4 * 1024 * 1024;
/// Largest stored input and trace detail of a step; larger ones are replaced by a note.
const MAX_STORED_DETAIL: usize = 1024 * 1024;
/// Longest stored error of a step.
const MAX_STORED_ERROR: usize = 8 * 1024;

/// `value` as stored JSON text, or a note of its size when it is larger than `max`.
fn stored(value: &Value, max: usize, what: &str) -> String {
    let text = value.to_string();
    if text.len() <= max {
        return text;
    }
    json!({"_truncated": format!("{} bytes of {what} left out (at most {max})", text.len())}).to_string()
}

struct StepOutcome {
    status: &'static str,
    system: Option<String>,
    input: Option<Value>,
    output: Option<Value>,
    error: Option<String>,
    attempts: u32,
    /// Trace material: attempts with plugin timings, log lines, stderr, nested steps.
    detail: Option<Value>,
    /// Something inside the step failed and was let through (the execution ends `partial`).
    partial: bool,
    /// The outbound requests it made, committed with its result.
    api_calls: Vec<ApiCallRecord>,
    /// A long wait inside it parks the execution: it has no result yet and runs again (replaying
    /// what finished) when the execution resumes.
    parked: Option<blocks::Parked>,
}

impl StepOutcome {
    fn skipped() -> Self {
        Self {
            status: "skipped",
            system: None,
            input: None,
            output: None,
            error: None,
            attempts: 0,
            detail: None,
            partial: false,
            api_calls: Vec::new(),
            parked: None,
        }
    }

    /// A container that parks the execution; `api_calls` were made by its kept body steps.
    fn parked(parked: blocks::Parked, api_calls: Vec<ApiCallRecord>) -> Self {
        Self { parked: Some(parked), api_calls, ..Self::skipped() }
    }

    fn success(output: Value) -> Self {
        Self { status: "success", output: Some(output), attempts: 1, ..Self::skipped() }
    }

    fn failed(system: Option<String>, input: Option<Value>, error: String, attempts: u32) -> Self {
        Self { status: "failed", system, input, error: Some(error), attempts, ..Self::skipped() }
    }

    /// The committed form.
    fn row(&self, step: &Step, position: i64, started_at: i64, took: Duration) -> StepResultRow {
        StepResultRow {
            position,
            name: step.name.clone(),
            kind: step.kind.clone(),
            status: self.status.into(),
            system: self.system.clone(),
            operation: step.operation.clone(),
            input: self.input.as_ref().map(|v| stored(v, MAX_STORED_DETAIL, "input")),
            output: self.output.as_ref().map(Value::to_string),
            error: self.error.as_deref().map(|e| crate::bounded::clip(e, MAX_STORED_ERROR).into_owned()),
            attempts: i64::from(self.attempts),
            started_at,
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            detail: self.detail.as_ref().map(|v| stored(v, MAX_STORED_DETAIL, "trace detail")),
        }
    }

    fn finish(result: Result<Value, CallError>, system: Option<String>, input: Value, trace: Trace) -> Self {
        let attempts = u32::try_from(trace.attempts.len()).unwrap_or(u32::MAX);
        let detail = Some(json!({
            "attempts": Value::Array(trace.attempts),
            "logs": Value::Array(trace.logs),
            "stderr": Value::String(trace.stderr),
        }));
        match result {
            Ok(output) => Self { system, input: Some(input), attempts, detail, ..Self::success(output) },
            Err(e) => Self { detail, ..Self::failed(system, Some(input), e.to_string(), attempts) },
        }
    }
}

/// What the attempts of one step left for its trace.
#[derive(Default)]
struct Trace {
    attempts: Vec<Value>,
    logs: Vec<Value>,
    stderr: String,
}

impl Trace {
    fn record<T>(&mut self, attempt: u32, started_ms: i64, report: &CallReport<T>) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let invoke = report.duration.saturating_sub(report.setup + report.instantiate + report.teardown);
        self.attempts.push(json!({
            "attempt": attempt,
            "started_at_ms": started_ms,
            "duration_us": micros(report.duration),
            "setup_us": micros(report.setup),
            "instantiate_us": micros(report.instantiate),
            "invoke_us": micros(invoke),
            "teardown_us": micros(report.teardown),
            "error": report.result.as_ref().err().map(ToString::to_string),
        }));
        for line in &report.logs {
            let mut line = serde_json::to_value(line).unwrap_or(Value::Null);
            line["attempt"] = json!(attempt);
            self.logs.push(line);
        }
        self.stderr = crate::plugins::last_chars(&report.stderr, 4096).to_owned();
    }
}

/// Runs one step against `scope`. `label` names it in API-call rows and idempotency keys
/// (`decode`, or `each[3].decode` inside a for_each); `top` is false inside for_each and parallel
/// bodies, whose steps kept from before the execution parked are in `kept`.
fn run_step<'a>(
    state: &'a AppState,
    execution: &'a ExecutionRow,
    kept: &'a blocks::Kept,
    step: &'a Step,
    scope: &'a Value,
    label: &'a str,
    top: bool,
) -> BoxFuture<'a, StepOutcome> {
    Box::pin(async move {
        let clock = Instant::now();
        let input_template = match step.kind.as_str() {
            "api_call" | "sub_orchestration" => step.parameters.clone().unwrap_or_else(|| json!({})),
            _ => step.mapping.clone().unwrap_or_else(|| json!({})),
        };
        let input = match mapping::resolve(&input_template, scope) {
            Ok(input) => input,
            Err(e) => return StepOutcome::failed(None, None, format!("mapping: {e}"), 0),
        };
        let mapping_us = u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX);
        let container = ["for_each", "parallel", "sub_orchestration", "wait"].contains(&step.kind.as_str());
        let work = async {
            match (step.kind.as_str(), step.transform.as_deref()) {
                ("condition", _) => match mapping::condition(step.condition.as_deref().unwrap_or("false"), scope) {
                    Ok(holds) => {
                        StepOutcome::success(json!({"result": holds, "branch": if holds { "then" } else { "else" }}))
                    }
                    Err(e) => StepOutcome::failed(None, None, format!("condition: {e}"), 1),
                },
                ("transform", Some("map")) => StepOutcome::success(input),
                ("transform", Some(slug)) => {
                    let params = match step.parameters.as_ref().map(|p| mapping::resolve(p, scope)).transpose() {
                        Ok(p) => p.unwrap_or_else(|| json!({})),
                        Err(e) => return StepOutcome::failed(None, Some(input), format!("mapping: {e}"), 0),
                    };
                    run_transform(state, execution, step, slug, input, params).await
                }
                ("api_call", _) => run_api_call(state, execution, step, label, input).await,
                ("for_each", _) => blocks::for_each(state, execution, kept, step, scope, label).await,
                ("parallel", _) => blocks::parallel(state, execution, kept, step, scope, label).await,
                ("sub_orchestration", _) => blocks::sub_orchestration(state, execution, step, label, input).await,
                ("wait", _) => blocks::wait(state, execution, step, scope, top).await,
                ("canonical_upsert", _) => canonical_upsert(state, execution, step, input).await,
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
        let mut outcome = match crate::guard::catch(timed).await {
            Ok(outcome) => outcome,
            Err(panic) => {
                tracing::error!(execution = %execution.id, step = %label, panic = %panic, "a step panicked");
                let error =
                    format!("INTERNAL: the engine panicked in this step: {}", crate::bounded::clip(&panic, 500));
                StepOutcome::failed(None, None, error, 1)
            }
        };
        if let Some(size) = outcome.output.as_ref().map(|o| o.to_string().len()).filter(|n| *n > MAX_STEP_OUTPUT) {
            let error = format!("the step's output is {size} bytes; at most {MAX_STEP_OUTPUT} are kept");
            outcome = StepOutcome {
                detail: outcome.detail.take(),
                ..StepOutcome::failed(outcome.system.take(), None, error, outcome.attempts)
            };
        }
        let detail = outcome.detail.get_or_insert_with(|| json!({}));
        detail["mapping_us"] = json!(mapping_us);
        outcome
    })
}

/// Writes the mapped record to its canonical domain by natural key, with the execution as lineage.
async fn canonical_upsert(state: &AppState, execution: &ExecutionRow, step: &Step, record: Value) -> StepOutcome {
    let name = step.domain.clone().unwrap_or_default();
    let Some(domain) = crate::canonical::domain(&name) else {
        return StepOutcome::failed(None, Some(record), format!("{name:?} is not a canonical domain"), 1);
    };
    let errors = domain.validate(&record);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        return StepOutcome::failed(None, Some(record), format!("invalid {name} record: {}", list.join("; ")), 1);
    }
    let Some(key) = domain.key_of(&record) else {
        return StepOutcome::failed(None, Some(record), format!("the record has no {}", domain.natural_key), 1);
    };
    let (connection, system) = match &step.source {
        Some(source) => source_connection(state, execution, source).await.unzip(),
        None => (None, None),
    };
    let lineage = crate::store::Lineage {
        kind: "execution",
        execution_id: Some(execution.id.clone()),
        connection,
        system,
        created_by: None,
    };
    match state.store.upsert_canonical(&execution.enterprise_id, &name, &key, &record.to_string(), lineage).await {
        Ok(row) => StepOutcome {
            input: Some(record),
            ..StepOutcome::success(json!({"id": row.id, "domain": name, "natural_key": key}))
        },
        Err(e) => StepOutcome::failed(None, Some(record), format!("storing the {name} record: {e}"), 1),
    }
}

/// The (connection name, system) of the `api_call` step named `source` in the execution's
/// orchestration version.
async fn source_connection(state: &AppState, execution: &ExecutionRow, source: &str) -> Option<(String, String)> {
    let text = state
        .store
        .orchestration_version(&execution.orchestration_id, execution.orchestration_version)
        .await
        .ok()
        .flatten()?;
    let def: Definition = serde_json::from_str(&text).ok()?;
    let connection = definition::find_step(&def.steps, source)?.connection.clone()?;
    let row = state.store.find_connection(&execution.enterprise_id, &connection).await.ok().flatten()?;
    Some((row.name, row.system))
}

/// A step's retry policy in motion: which attempt this is and how long to wait before the next.
struct Retrier {
    policy: Option<definition::Retry>,
    attempt: u32,
    delay_ms: f64,
    /// A stopped execution makes no further attempt.
    signal: StopSignal,
}

impl Retrier {
    fn new(step: &Step, signal: StopSignal) -> Self {
        let delay_ms = step.retry.as_ref().map_or(0, |r| r.initial_interval_ms) as f64;
        Self { policy: step.retry.clone(), attempt: 1, delay_ms, signal }
    }

    /// After a failed attempt: waits and answers true when another attempt is due.
    async fn again(&mut self, error: &CallError) -> bool {
        let Some(policy) = &self.policy else { return false };
        let retryable =
            if policy.retry_on.is_empty() { error.retryable } else { policy.retry_on.contains(&error.code) };
        if !retryable || self.attempt >= policy.max_attempts {
            return false;
        }
        let cap = policy.max_interval_ms.unwrap_or(60_000) as f64;
        let pause = Duration::from_millis(self.delay_ms.min(cap) as u64);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = self.signal.stopped() => return false,
        }
        self.delay_ms *= policy.backoff_coefficient;
        self.attempt += 1;
        true
    }
}

async fn run_api_call(
    state: &AppState,
    execution: &ExecutionRow,
    step: &Step,
    label: &str,
    input: Value,
) -> StepOutcome {
    let name = step.connection.clone().unwrap_or_default();
    let connection = match state.store.find_connection(&execution.enterprise_id, &name).await {
        Ok(Some(row)) => row,
        Ok(None) => return StepOutcome::failed(None, Some(input), format!("connection {name:?} no longer exists"), 0),
        Err(e) => return StepOutcome::failed(None, Some(input), format!("loading connection: {e}"), 0),
    };
    let caller = Caller {
        orchestration_id: Some(execution.orchestration_id.clone()),
        execution_id: Some(execution.id.clone()),
        step: Some(label.to_owned()),
    };
    let mut prepared = match connections::prepare(state, &connection, caller).await {
        Ok(p) => p,
        Err(e) => return StepOutcome::failed(Some(connection.system), Some(input), e.to_string(), 0),
    };
    if let Some(ms) = step.timeout_ms {
        prepared.spec.limits.timeout = Duration::from_millis(ms);
    }
    let operation = step.operation.clone().unwrap_or_default();
    let idempotency_key = format!("{}:{label}", execution.id);
    let mut retrier = Retrier::new(step, state.engine.signal(&execution.id));
    let mut trace = Trace::default();
    let mut api_calls = Vec::new();
    let result = loop {
        let started_ms = now_ms();
        let invocation = Invocation {
            execution_id: Some(execution.id.clone()),
            step: Some(label.to_owned()),
            attempt: retrier.attempt,
            idempotency_key: idempotency_key.clone(),
        };
        let result = match prepared.invoke(state, &operation, &input, invocation).await {
            Ok(mut report) => {
                trace.record(retrier.attempt, started_ms, &report);
                let last = report.api_calls.last();
                let status = last.and_then(|c| c.status_code).unwrap_or(200);
                let headers: serde_json::Map<String, Value> = last
                    .map(|c| c.response_headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
                    .unwrap_or_default();
                let duration = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
                api_calls.append(&mut report.api_calls);
                report.result.map(|response| json!({"status_code": status, "headers": headers, "response": response, "duration_ms": duration}))
            }
            Err(e) => {
                Err(CallError { code: "internal".into(), message: e.to_string(), retryable: false, http_status: None })
            }
        };
        match result {
            Err(e) if retrier.again(&e).await => continue,
            result => break result,
        }
    };
    StepOutcome { api_calls, ..StepOutcome::finish(result, Some(connection.system), input, trace) }
}

async fn run_transform(
    state: &AppState,
    execution: &ExecutionRow,
    step: &Step,
    slug: &str,
    input: Value,
    params: Value,
) -> StepOutcome {
    let loaded = match state.registry.resolve(&execution.enterprise_id, "transform", slug).await {
        Ok(Some(row)) => state.registry.loaded(&row).await,
        Ok(None) => Err(anyhow::anyhow!("no transform plugin {slug:?}")),
        Err(e) => Err(e.into()),
    };
    let pre = match loaded {
        Ok(Loaded::Transform(pre)) => pre,
        Ok(Loaded::Connector(_)) => {
            return StepOutcome::failed(None, Some(input), format!("{slug} is not a transform"), 0);
        }
        Err(e) => return StepOutcome::failed(None, Some(input), format!("{e:#}"), 0),
    };
    let mut spec = CallSpec { plugin: slug.to_owned(), ..CallSpec::default() };
    spec.origin.enterprise_id = execution.enterprise_id.clone();
    if let Some(ms) = step.timeout_ms {
        spec.limits.timeout = Duration::from_millis(ms);
    }
    let mut retrier = Retrier::new(step, state.engine.signal(&execution.id));
    let mut trace = Trace::default();
    let result = loop {
        let started_ms = now_ms();
        let report = state.plugins().run_transform(&pre, &spec, &input, &params).await;
        trace.record(retrier.attempt, started_ms, &report);
        match report.result {
            Err(e) if retrier.again(&e).await => continue,
            result => break result,
        }
    };
    StepOutcome::finish(result, None, input, trace)
}

/// Whether an execution status is an end state.
pub fn is_final(status: &str) -> bool {
    matches!(status, "success" | "failed" | "partial" | "cancelled")
}

/// Shared so the API can hold one.
pub type Engine = Arc<EngineHandle>;
