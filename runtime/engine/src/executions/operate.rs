//! What an operator does to executions that exist: cancel, retry, replay into new executions,
//! and resume paused ones, one or many (by ids or by a filter). Every action that queues work
//! passes admission and wakes the workers; none runs an execution whose orchestration is
//! paused or archived.

use serde_json::{Map, Value};

use super::ExecutionError;
use crate::admission::{self, Refusal};
use crate::definition::{self, Definition};
use crate::{Engine, MAX_STEP_OUTPUT, Stop};
use dibop_core::{ExecutionStatus, FieldError, TriggeredBy};
use dibop_store::{ExecutionFilter, ExecutionRow};

/// Most executions one replay or bulk resume takes.
pub const MAX_BULK: usize = 100;

/// Statuses a retry or replay starts again from.
const ENDED_UNWELL: [&str; 3] = ["failed", "partial", "cancelled"];

/// Which executions a bulk action takes.
pub enum Selection {
    /// 1 to [`MAX_BULK`] executions, each named once; every one must qualify.
    Ids(Vec<String>),
    /// The executions a filter matches that qualify, oldest first, at most [`MAX_BULK`].
    Filter(ExecutionFilter),
}

/// What a bulk action did.
pub struct Bulk<T> {
    pub done: Vec<T>,
    /// Executions asked for (named, or matched by the filter) that this request did not take:
    /// past the bound, refused by admission, or changed by someone else meanwhile.
    pub remaining: i64,
}

/// One replay: the execution replayed and the new one.
pub struct Replayed {
    pub original: String,
    pub replay: ExecutionRow,
}

/// One resumed execution, and whether its parameters changed.
pub struct Resumed {
    pub execution: ExecutionRow,
    pub parameters_changed: bool,
}

/// Cancels execution `id`: a queued or paused one at once, a running one before its next step
/// (here through its stop switch, on another node through the flag its heartbeat reads; a
/// parked one is due at once, so a worker ends it).
pub async fn cancel(engine: &Engine, enterprise_id: &str, id: &str) -> Result<ExecutionRow, ExecutionError> {
    let current = find(engine, enterprise_id, id).await?;
    if current.is_final() {
        return Err(ExecutionError::Conflict(format!("execution {id} already finished ({})", current.status)));
    }
    let row = engine
        .store
        .cancel_execution(enterprise_id, id)
        .await?
        .ok_or_else(|| ExecutionError::NotFound(format!("execution {id}")))?;
    engine.node.stop(id, Stop::Cancel);
    engine.node.wake();
    Ok(row)
}

/// Queues a failed, partial or cancelled execution again from its first failed step; the
/// results before it are kept and those steps are not called again.
pub async fn retry(
    engine: &Engine,
    enterprise_id: &str,
    id: &str,
    per_minute: Option<i64>,
) -> Result<ExecutionRow, ExecutionError> {
    find(engine, enterprise_id, id).await?;
    admission::count(engine, enterprise_id, per_minute).await.map_err(refused)?;
    let retried = engine.store.retry_execution(enterprise_id, id).await;
    let row = admission::settle(engine, enterprise_id, retried)
        .await
        .map_err(refused)?
        .ok_or_else(|| ExecutionError::Conflict(format!("execution {id} is not failed, partial or cancelled")))?;
    engine.node.wake();
    Ok(row)
}

/// Queues paused execution `id` again from the step that paused it, with `overrides` merged
/// into its parameters, or with that step counted as succeeded with output `skip`.
pub async fn resume(
    engine: &Engine,
    enterprise_id: &str,
    id: &str,
    overrides: &Map<String, Value>,
    skip: Option<&Value>,
    per_minute: Option<i64>,
) -> Result<Resumed, ExecutionError> {
    let row = find(engine, enterprise_id, id).await?;
    if row.status != ExecutionStatus::Paused {
        return Err(ExecutionError::Conflict(format!(
            "execution {id} is {}; only paused executions resume",
            row.status
        )));
    }
    runnable(engine, enterprise_id, std::slice::from_ref(&row), "resumed").await?;
    let parameters = parameters_for(engine, &row, overrides).await?;
    let skip = match skip {
        Some(output) => {
            let text = output.to_string();
            if text.len() > MAX_STEP_OUTPUT {
                return Err(ExecutionError::invalid(
                    "skip.output",
                    format!("must be at most {MAX_STEP_OUTPUT} bytes as JSON"),
                ));
            }
            Some(text)
        }
        None => None,
    };
    admission::count(engine, enterprise_id, per_minute).await.map_err(refused)?;
    let execution = engine
        .store
        .resume_execution(enterprise_id, id, parameters.as_deref(), skip.as_deref())
        .await?
        // Resumed or cancelled by someone else meanwhile.
        .ok_or_else(|| ExecutionError::Conflict(format!("execution {id} is no longer paused")))?;
    engine.node.wake();
    Ok(Resumed { execution, parameters_changed: parameters.is_some() })
}

/// Resumes the paused executions `selection` takes, each with `overrides` merged into its
/// parameters. Everything is checked before any resumes; admission refusing after some
/// resumed stops there (`remaining` counts the rest).
pub async fn resume_many(
    engine: &Engine,
    enterprise_id: &str,
    selection: Selection,
    overrides: &Map<String, Value>,
    per_minute: Option<i64>,
) -> Result<Bulk<Resumed>, ExecutionError> {
    // A filter takes paused executions only.
    let selection = match selection {
        Selection::Filter(filter) => {
            Selection::Filter(ExecutionFilter { status: Some(ExecutionStatus::Paused.as_str().into()), ..filter })
        }
        ids => ids,
    };
    let (rows, matched) = select(engine, enterprise_id, selection, |row| {
        (row.status != ExecutionStatus::Paused)
            .then(|| format!("execution {} is {}; only paused executions resume", row.id, row.status))
    })
    .await?;
    runnable(engine, enterprise_id, &rows, "resumed").await?;
    let planned = plan(engine, &rows, overrides).await?;
    let mut done = Vec::new();
    for (row, parameters) in rows.iter().zip(planned) {
        match admission::count(engine, enterprise_id, per_minute).await {
            Ok(_) => {}
            Err(Refusal::RateLimited { .. }) if !done.is_empty() => break,
            Err(refusal) => return Err(refused(refusal)),
        }
        // Resumed or cancelled by someone else meanwhile: left out.
        if let Some(execution) =
            engine.store.resume_execution(enterprise_id, &row.id, parameters.as_deref(), None).await?
        {
            done.push(Resumed { execution, parameters_changed: parameters.is_some() });
        }
    }
    engine.node.wake();
    let remaining = remaining(matched, rows.len(), done.len());
    Ok(Bulk { done, remaining })
}

/// Replays the failed, partial or cancelled executions `selection` takes, each into a new
/// execution from its first failed step (the results before it are copied, those steps are not
/// called again), on the version it ran, with `overrides` merged into its parameters. The new
/// executions are `triggered_by` the caller and record who asked (`replayed_by`). A filter
/// takes only executions not replayed yet. Everything is checked before any starts; admission
/// refusing after some started stops there (`remaining` counts the rest).
pub async fn replay(
    engine: &Engine,
    enterprise_id: &str,
    selection: Selection,
    overrides: &Map<String, Value>,
    per_minute: Option<i64>,
    (triggered_by, replayed_by): (TriggeredBy, &str),
) -> Result<Bulk<Replayed>, ExecutionError> {
    let (originals, matched) = select(engine, enterprise_id, selection, |row| {
        (!ENDED_UNWELL.contains(&row.status.as_str()))
            .then(|| format!("execution {} is {}; only failed, partial or cancelled ones replay", row.id, row.status))
    })
    .await?;
    runnable(engine, enterprise_id, &originals, "replayed").await?;
    let planned = plan(engine, &originals, overrides).await?;
    let mut done = Vec::new();
    for (original, parameters) in originals.iter().zip(planned) {
        let replay = match admission::count(engine, enterprise_id, per_minute).await {
            Ok(_) => {
                let replayed = engine
                    .store
                    .replay_execution(
                        enterprise_id,
                        &original.id,
                        parameters.as_deref(),
                        triggered_by.as_str(),
                        replayed_by,
                    )
                    .await;
                admission::settle(engine, enterprise_id, replayed).await
            }
            Err(refusal) => Err(refusal),
        };
        let replay = match replay {
            Ok(replay) => replay,
            // The limit or the queue's bound reached after some replays: those stand.
            Err(Refusal::RateLimited { .. } | Refusal::QueueFull { .. }) if !done.is_empty() => break,
            Err(refusal) => return Err(refused(refusal)),
        };
        // Gone or replayed meanwhile into a state that does not replay: left out.
        if let Some(replay) = replay {
            done.push(Replayed { original: original.id.clone(), replay });
        }
    }
    engine.node.wake();
    let remaining = remaining(matched, originals.len(), done.len());
    Ok(Bulk { done, remaining })
}

/// What is left of what was asked: `matched` by a filter, else the `asked` ids.
fn remaining(matched: Option<i64>, asked: usize, done: usize) -> i64 {
    let done = i64::try_from(done).unwrap_or(i64::MAX);
    matched.unwrap_or_else(|| i64::try_from(asked).unwrap_or(0)).saturating_sub(done).max(0)
}

/// Admission's refusal as this module's error (a failed write stays a fault).
fn refused(refusal: Refusal) -> ExecutionError {
    match refusal {
        Refusal::Failed(err) => ExecutionError::Failed(err),
        refusal => ExecutionError::Refused(refusal),
    }
}

/// Execution `id` of the enterprise, or not found.
async fn find(engine: &Engine, enterprise_id: &str, id: &str) -> Result<ExecutionRow, ExecutionError> {
    engine
        .store
        .get_execution(enterprise_id, id)
        .await?
        .ok_or_else(|| ExecutionError::NotFound(format!("execution {id}")))
}

/// The executions a selection takes, and how many a filter matched. Named ones must each exist
/// and qualify (`refusal` says why one does not), or every problem is listed.
async fn select(
    engine: &Engine,
    enterprise_id: &str,
    selection: Selection,
    refusal: impl Fn(&ExecutionRow) -> Option<String>,
) -> Result<(Vec<ExecutionRow>, Option<i64>), ExecutionError> {
    let filter = match selection {
        Selection::Ids(ids) => return named(engine, enterprise_id, ids, refusal).await.map(|rows| (rows, None)),
        Selection::Filter(filter) => filter,
    };
    let limit = i64::try_from(MAX_BULK).unwrap_or(100);
    // Paused executions resume; the others (not replayed yet) replay.
    let (ids, total) = if filter.status.as_deref() == Some(ExecutionStatus::Paused.as_str()) {
        engine.store.paused_executions(enterprise_id, &filter, limit).await?
    } else {
        engine.store.replay_candidates(enterprise_id, &filter, limit).await?
    };
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        // One gone meanwhile is left out.
        rows.extend(engine.store.get_execution(enterprise_id, &id).await?);
    }
    Ok((rows, Some(total)))
}

/// The executions `ids` names (1 to [`MAX_BULK`], each once), each one that `refusal` has
/// nothing against, or every problem listed.
async fn named(
    engine: &Engine,
    enterprise_id: &str,
    ids: Vec<String>,
    refusal: impl Fn(&ExecutionRow) -> Option<String>,
) -> Result<Vec<ExecutionRow>, ExecutionError> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(ExecutionError::invalid("execution_ids", format!("must name 1 to {MAX_BULK} executions")));
    }
    let mut rows = Vec::with_capacity(ids.len());
    let mut errors = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let path = format!("execution_ids[{i}]");
        if ids[..i].contains(id) {
            errors.push(FieldError::new(path, "named twice"));
            continue;
        }
        match engine.store.get_execution(enterprise_id, id).await? {
            None => errors.push(FieldError::new(path, format!("no execution {id}"))),
            Some(row) => match refusal(&row) {
                Some(message) => errors.push(FieldError::new(path, message)),
                None => rows.push(row),
            },
        }
    }
    if errors.is_empty() { Ok(rows) } else { Err(ExecutionError::Invalid(errors)) }
}

/// A conflict when the orchestration of one of `rows` is paused or archived: it runs nothing
/// (as execute), and the message says that execution was not `done` (`replayed`, `resumed`).
/// Each orchestration is read once.
async fn runnable(
    engine: &Engine,
    enterprise_id: &str,
    rows: &[ExecutionRow],
    done: &str,
) -> Result<(), ExecutionError> {
    let mut checked: Vec<&str> = Vec::new();
    for row in rows {
        let id = row.orchestration_id.as_str();
        if checked.contains(&id) {
            continue;
        }
        checked.push(id);
        let status = engine.store.get_orchestration(enterprise_id, id).await?.map(|o| o.status);
        if let Some(status) = status.filter(|s| !s.runs()) {
            return Err(ExecutionError::Conflict(format!(
                "orchestration {id} is {status}; only active or draft orchestrations run (execution {} was not {done})",
                row.id
            )));
        }
    }
    Ok(())
}

/// The parameters of each of `rows` with `overrides`, all checked before any is used.
async fn plan(
    engine: &Engine,
    rows: &[ExecutionRow],
    overrides: &Map<String, Value>,
) -> Result<Vec<Option<String>>, ExecutionError> {
    let mut planned = Vec::with_capacity(rows.len());
    for row in rows {
        planned.push(parameters_for(engine, row, overrides).await?);
    }
    Ok(planned)
}

/// The parameters `execution` runs with again: `None` (its own) without overrides, else its own
/// with `overrides` merged in, bound to its orchestration version's declaration.
async fn parameters_for(
    engine: &Engine,
    execution: &ExecutionRow,
    overrides: &Map<String, Value>,
) -> Result<Option<String>, ExecutionError> {
    if overrides.is_empty() {
        return Ok(None);
    }
    let text = engine
        .store
        .orchestration_version(&execution.orchestration_id, execution.orchestration_version)
        .await?
        .ok_or_else(|| {
            ExecutionError::Conflict(format!("the orchestration of execution {} no longer exists", execution.id))
        })?;
    let def: Definition = serde_json::from_str(&text).map_err(anyhow::Error::from)?;
    let mut merged: Map<String, Value> = serde_json::from_str(&execution.parameters).unwrap_or_default();
    merged.extend(overrides.clone());
    let bound = definition::bind_parameters(&def, &merged).map_err(|errors| {
        ExecutionError::Invalid(
            errors
                .into_iter()
                .map(|e| FieldError::new(e.path, format!("execution {}: {}", execution.id, e.message)))
                .collect(),
        )
    })?;
    Ok(Some(bound.to_string()))
}
