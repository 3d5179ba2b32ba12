//! Starting an execution: one status check, one parameter binding and one admission for every
//! trigger, and `execute`'s run on this node with a bounded wait for the end.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::{Draining, ExecutionError, wait_for_end};
use crate::Engine;
use crate::admission::{self, Refusal};
use crate::definition;
use dibop_core::TriggeredBy;
use dibop_core::trace::{TraceParent, span_id};
use dibop_store::limiter::Decision;
use dibop_store::{ExecutionRow, NewExecution, OrchestrationRow, QueueBound};

/// How deeply orchestrations may start one another.
pub const MAX_DEPTH: i64 = 8;

/// Longest idempotency key a caller may give, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What started an execution; it decides `triggered_by`, the idempotency key of the
/// triggers that have their own, and whether the queue bound applies.
#[derive(Clone, Copy)]
pub enum Trigger<'a> {
    /// `POST /orchestrations/{id}/execute` by a user (`manual`) or an API key (`api`).
    Execute { api_key: bool },
    /// A webhook's call (`event`).
    Webhook,
    /// A schedule's slot at `slot_ms`: one execution per slot (its idempotency key).
    Schedule { slot_ms: i64 },
    /// The `sub_orchestration` step `label` of `parent`: one child per step (its idempotency
    /// key), in the parent's trace; never refused for a full queue, since its parent was
    /// admitted and admitted work completes.
    Child { parent: &'a ExecutionRow, label: &'a str },
}

impl Trigger<'_> {
    fn triggered_by(self) -> TriggeredBy {
        match self {
            Self::Execute { api_key: true } => TriggeredBy::Api,
            Self::Execute { api_key: false } => TriggeredBy::Manual,
            Self::Webhook => TriggeredBy::Event,
            Self::Schedule { .. } => TriggeredBy::Schedule,
            Self::Child { .. } => TriggeredBy::Orchestration,
        }
    }

    fn bound(self) -> QueueBound {
        match self {
            Self::Child { .. } => QueueBound::Exempt,
            _ => QueueBound::Enforced,
        }
    }
}

/// Which orchestration runs.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// By id (execute, webhook).
    Id(&'a str),
    /// By name or id (a `sub_orchestration` step).
    Name(&'a str),
    /// Already read (the scheduler lists them).
    Row(&'a OrchestrationRow),
}

/// One execution to start.
pub struct Start<'a> {
    pub enterprise_id: &'a str,
    pub orchestration: Target<'a>,
    pub trigger: Trigger<'a>,
    /// As given: bound to the orchestration's declaration (defaults, types, required ones).
    pub parameters: &'a Map<String, Value>,
    /// The caller's key (execute, webhook): the same key within 24 h answers the same
    /// execution. Schedules and children have their own.
    pub idempotency_key: Option<String>,
    /// The caller's W3C `traceparent`, already checked (a child continues its parent's).
    pub traceparent: Option<String>,
    /// The enterprise's executions-per-minute limit when the caller knows it (an
    /// authenticated principal); otherwise it is read.
    pub per_minute: Option<i64>,
}

/// An execution started (or found by its idempotency key).
pub struct Started {
    pub execution: ExecutionRow,
    /// False when an idempotency key answered an existing execution.
    pub created: bool,
    /// The enterprise's execution limit after this one (for `X-RateLimit-*` headers).
    pub decision: Decision,
    /// The parameters it runs with, bound.
    pub parameters: Value,
}

/// Starts an execution for the workers (queued; they are woken).
pub async fn start(engine: &Engine, start: Start<'_>) -> Result<Started, ExecutionError> {
    pace(engine, &start).await;
    admit(engine, start, false).await
}

/// Holds an execute or webhook admission of an orchestration whose throttled calls are booked
/// far ahead ([`admission::pace`]). A schedule fires once a slot (and one node's scheduler
/// serves every tenant: a hold would delay the others' slots); a sub-orchestration's child
/// is not held (its parent was admitted).
async fn pace(engine: &Engine, start: &Start<'_>) {
    if let (Trigger::Execute { .. } | Trigger::Webhook, Target::Id(id)) = (start.trigger, start.orchestration) {
        admission::pace(engine, start.enterprise_id, id).await;
    }
}

/// Starts an execution for a caller that may wait (`wait`: how long; `None` for an async
/// call). With a wait and a free slot of this node the execution runs here at once; then, or
/// when it was queued, the caller waits for its end until `wait` passes or the node starts
/// shutting down (`draining`). The answer is the execution as it stands then.
pub async fn execute(
    engine: &Engine,
    start: Start<'_>,
    wait: Option<Duration>,
    draining: &Draining,
) -> Result<Started, ExecutionError> {
    // Before a slot is taken: a held caller holds nothing.
    pace(engine, &start).await;
    let Some(wait) = wait else { return admit(engine, start, false).await };
    let deadline = Instant::now() + wait;
    let enterprise_id = start.enterprise_id;
    let slot = if engine.node.has_share(enterprise_id) { engine.node.free_slot() } else { None };
    let mut started = admit(engine, start, slot.is_some()).await?;
    if let Some(slot) = slot
        && started.created
    {
        let done = run_here(engine, started.execution.clone(), slot);
        tokio::select! {
            _ = tokio::time::timeout(wait, done) => {}
            () = draining.started() => {}
        }
    }
    started.execution = wait_for_end(engine, enterprise_id, &started.execution.id, deadline, draining).await?;
    Ok(started)
}

/// Runs an execution this node inserted running in a slot it holds, on its own task (a caller
/// that goes away does not stop it) through the worker's path; the receiver resolves when it
/// ended or was handed back.
fn run_here(engine: &Engine, execution: ExecutionRow, slot: OwnedSemaphorePermit) -> oneshot::Receiver<()> {
    let (done, receiver) = oneshot::channel();
    let engine = engine.clone();
    let occupied = engine.node.occupy(&execution.enterprise_id);
    tokio::spawn(async move {
        (engine.run_child)(engine.clone(), execution).await;
        drop(occupied);
        drop(slot);
        let _ = done.send(());
    });
    receiver
}

/// The one recipe of every trigger: the orchestration, its status, the parameters bound to its
/// declaration, then admission (queued, or with `run_here` inserted running under this node's
/// lease).
async fn admit(engine: &Engine, start: Start<'_>, run_here: bool) -> Result<Started, ExecutionError> {
    let Start { enterprise_id, orchestration, trigger, parameters, idempotency_key, traceparent, per_minute } = start;
    if let Trigger::Child { parent, .. } = trigger
        && parent.depth >= MAX_DEPTH
    {
        return Err(ExecutionError::Conflict(format!("orchestrations nested deeper than {MAX_DEPTH} levels")));
    }
    if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY) {
        return Err(ExecutionError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    let read;
    let row = match orchestration {
        Target::Row(row) => row,
        Target::Id(id) => {
            read = engine.store.get_orchestration(enterprise_id, id).await?;
            read.as_ref().ok_or_else(|| ExecutionError::NotFound(format!("orchestration {id}")))?
        }
        Target::Name(name) => {
            read = engine.store.find_orchestration(enterprise_id, name).await?;
            read.as_ref().ok_or_else(|| ExecutionError::NotFound(format!("orchestration {name:?}")))?
        }
    };
    if !row.status.runs() {
        return Err(ExecutionError::Conflict(format!(
            "orchestration {} is {}; only active or draft orchestrations run",
            row.id, row.status
        )));
    }
    let def = engine
        .definitions
        .of(&row.id, row.version, &row.definition)
        .map_err(|e| anyhow::anyhow!("orchestration {}: {e}", row.id))?;
    let bound = definition::bind_parameters(&def, parameters).map_err(ExecutionError::Invalid)?;
    let (idempotency_key, traceparent, parent) = match trigger {
        Trigger::Execute { .. } | Trigger::Webhook => (idempotency_key, traceparent, None),
        Trigger::Schedule { slot_ms } => (Some(format!("schedule:{slot_ms}")), None, None),
        // The child's trace continues its parent's, under the parent's execution span.
        Trigger::Child { parent, label } => (
            Some(format!("{}:{label}", parent.id)),
            Some(
                TraceParent { trace_id: parent.trace_id(), span_id: span_id(&parent.id), flags: "01".into() }.header(),
            ),
            Some((parent.id.clone(), parent.depth)),
        ),
    };
    let new = NewExecution {
        orchestration_id: row.id.clone(),
        orchestration_version: row.version,
        triggered_by: trigger.triggered_by().as_str().into(),
        parameters: bound.to_string(),
        idempotency_key,
        steps_total: def.step_count(),
        parent,
        traceparent,
    };
    let admitted = admission::submit(engine, enterprise_id, per_minute, new, run_here, trigger.bound()).await.map_err(
        |refusal| match refusal {
            Refusal::Failed(err) => ExecutionError::Failed(err),
            refusal => ExecutionError::Refused(refusal),
        },
    )?;
    Ok(Started {
        execution: admitted.execution,
        created: admitted.created,
        decision: admitted.decision,
        parameters: bound,
    })
}
