//! Dead letters and replay: `POST /executions/replay` starts failed, partial or cancelled
//! executions again, each as a new execution from its first failed step (the results before it
//! are copied, those steps are not called again), on the version it ran, optionally with some
//! parameters changed. Each replay records what it replays and who asked. Like execute, it
//! refuses (409) executions whose orchestration is paused or archived.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::ExecutionSearch;
use super::extract::ApiJson;
use crate::audit::{self, Change};
use crate::auth::Principal;
use crate::engine::admission::{self, Refusal};
use crate::engine::definition::{self, Definition};
use crate::error::{AppError, AppResult, FieldError};
use crate::state::AppState;
use crate::store::ExecutionRow;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(replay_executions))
}

/// Most executions one request replays.
pub const MAX_REPLAYS: usize = 100;

/// Which executions to replay: `execution_ids`, or a `filter` like `GET /executions`'s.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// 1 to 100 executions, each failed, partial or cancelled; replayed even if replayed before.
    pub execution_ids: Option<Vec<String>>,
    /// The failed, partial or cancelled executions it matches (default status `failed`) that
    /// were not replayed yet, oldest first, at most 100 (`remaining` says how many are left).
    pub filter: Option<ReplayFilter>,
    /// Parameters to change, merged into each execution's own and checked against its
    /// orchestration version's declaration.
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    pub orchestration_id: Option<String>,
    /// failed (default), partial or cancelled.
    pub status: Option<String>,
    pub triggered_by: Option<String>,
    /// ISO 8601.
    pub from: Option<String>,
    /// ISO 8601.
    pub to: Option<String>,
    /// Text the error contains (case-insensitive).
    pub error: Option<String>,
}

/// One replay started.
#[derive(Serialize, ToSchema)]
pub struct Replay {
    /// The new execution.
    pub execution_id: String,
    /// The execution it replays.
    pub replay_of: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayResult {
    /// The new executions, in the order of `replays`.
    pub execution_ids: Vec<String>,
    pub replays: Vec<Replay>,
    /// Executions the filter matches that were not replayed by this request (past the 100, or
    /// refused by the enterprise's execution rate limit or its full queue).
    pub remaining: i64,
}

/// Replay failed executions from their failed step.
#[utoipa::path(post, path = "/executions/replay", tag = "executions", request_body = ReplayRequest,
    responses(
        (status = 202, description = "The replays were queued", body = ReplayResult),
        (status = 409, description = "An execution's orchestration is paused or archived; nothing was replayed", body = crate::error::ErrorResponse),
        (status = 422, description = "No executions, both or neither of execution_ids and filter, an execution that cannot replay, or parameters its orchestration does not take", body = crate::error::ErrorResponse),
        (status = 429, description = "The enterprise's execution rate limit, or its full queue (`max_queued_executions`), refused the first replay", body = crate::error::ErrorResponse),
    ))]
async fn replay_executions(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<ReplayRequest>,
) -> AppResult<(StatusCode, Json<ReplayResult>)> {
    let enterprise = principal.enterprise_id.clone();
    let (originals, matched) = match (request.execution_ids, request.filter) {
        (Some(ids), None) => (by_ids(&state, &enterprise, ids).await?, None),
        (None, Some(filter)) => {
            let (ids, total) = by_filter(&state, &enterprise, filter).await?;
            (rows(&state, &enterprise, ids).await?, Some(total))
        }
        _ => {
            return Err(AppError::Validation(vec![FieldError {
                path: "execution_ids".into(),
                message: "give either execution_ids or filter".into(),
            }]));
        }
    };
    // A paused or archived orchestration runs nothing, replays included (as execute).
    runnable(&state, &enterprise, &originals, "replayed").await?;
    // Every replay's parameters are checked before any starts.
    let mut planned = Vec::with_capacity(originals.len());
    for original in &originals {
        planned.push(parameters_for(&state, original, &request.parameters).await?);
    }
    let triggered_by = if principal.api_key_id.is_some() { "api" } else { "manual" };
    let actor = match (&principal.api_key_id, &principal.user_id) {
        (Some(key), _) => format!("api_key:{key}"),
        (None, Some(user)) => format!("user:{user}"),
        (None, None) => "unknown".into(),
    };
    let mut replays = Vec::new();
    for (original, parameters) in originals.iter().zip(planned) {
        let replay = match admission::count(&state.engine, &enterprise, Some(principal.executions_per_minute)).await {
            Ok(_) => {
                let replayed = state
                    .store
                    .replay_execution(&enterprise, &original.id, parameters.as_deref(), triggered_by, &actor)
                    .await;
                admission::settle(&state.engine, &enterprise, replayed).await
            }
            Err(refusal) => Err(refusal),
        };
        let replay = match replay {
            Ok(replay) => replay,
            // The limit or the queue's bound reached after some replays: those stand, and
            // `remaining` says how many are left.
            Err(Refusal::RateLimited { .. } | Refusal::QueueFull { .. }) if !replays.is_empty() => break,
            Err(refusal) => return Err(refusal.into()),
        };
        // Gone or replayed meanwhile into a state that does not replay: left out.
        if let Some(replay) = replay {
            let after = Some(serde_json::json!({"execution_id": replay.id, "parameters": parameters_shown(&replay)}));
            let change = Change {
                action: "replay",
                resource: "execution",
                resource_id: Some(&original.id),
                before: None,
                after,
            };
            audit::record(&state, &principal, change).await;
            replays.push(Replay { execution_id: replay.id, replay_of: original.id.clone() });
        }
    }
    state.engine.node.wake();
    tracing::info!(enterprise = %enterprise, actor = %actor, replays = replays.len(), "executions replayed");
    let done = i64::try_from(replays.len()).unwrap_or(i64::MAX);
    let remaining = matched.map_or(i64::try_from(originals.len()).unwrap_or(0) - done, |total| total - done).max(0);
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayResult {
            execution_ids: replays.iter().map(|r| r.execution_id.clone()).collect(),
            replays,
            remaining,
        }),
    ))
}

/// The parameters an execution runs with, as JSON.
pub(super) fn parameters_shown(row: &ExecutionRow) -> Value {
    serde_json::from_str(&row.parameters).unwrap_or(Value::Null)
}

/// The executions named, each of this enterprise and replayable, or 422 listing the others.
async fn by_ids(state: &AppState, enterprise: &str, ids: Vec<String>) -> AppResult<Vec<ExecutionRow>> {
    named(state, enterprise, ids, MAX_REPLAYS, |row| {
        (!["failed", "partial", "cancelled"].contains(&row.status.as_str()))
            .then(|| format!("execution {} is {}; only failed, partial or cancelled ones replay", row.id, row.status))
    })
    .await
}

/// The executions of `enterprise` that `ids` names (1 to `max`, each once), each one that
/// `refusal` has nothing against (it answers why an execution cannot be taken), or 422 listing
/// the others. Shared by replay and bulk resume.
pub(super) async fn named(
    state: &AppState,
    enterprise: &str,
    ids: Vec<String>,
    max: usize,
    refusal: impl Fn(&ExecutionRow) -> Option<String>,
) -> AppResult<Vec<ExecutionRow>> {
    if ids.is_empty() || ids.len() > max {
        return Err(AppError::Validation(vec![FieldError {
            path: "execution_ids".into(),
            message: format!("must name 1 to {max} executions"),
        }]));
    }
    let mut rows = Vec::with_capacity(ids.len());
    let mut errors = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let path = format!("execution_ids[{i}]");
        if ids[..i].contains(id) {
            errors.push(FieldError { path, message: "named twice".into() });
            continue;
        }
        match state.store.get_execution(enterprise, id).await? {
            None => errors.push(FieldError { path, message: format!("no execution {id}") }),
            Some(row) => match refusal(&row) {
                Some(message) => errors.push(FieldError { path, message }),
                None => rows.push(row),
            },
        }
    }
    if errors.is_empty() { Ok(rows) } else { Err(AppError::Validation(errors)) }
}

/// The executions `ids` (what a filter matched), as rows; one gone meanwhile is left out.
pub(super) async fn rows(state: &AppState, enterprise: &str, ids: Vec<String>) -> AppResult<Vec<ExecutionRow>> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        rows.extend(state.store.get_execution(enterprise, &id).await?);
    }
    Ok(rows)
}

/// 409 when the orchestration of one of `rows` is paused or archived: it runs nothing (as
/// execute), and the message says that execution was not `done` (`replayed`, `resumed`). Each
/// orchestration is read once.
pub(super) async fn runnable(state: &AppState, enterprise: &str, rows: &[ExecutionRow], done: &str) -> AppResult<()> {
    let mut checked: Vec<&str> = Vec::new();
    for row in rows {
        let id = row.orchestration_id.as_str();
        if checked.contains(&id) {
            continue;
        }
        checked.push(id);
        let status = state.store.get_orchestration(enterprise, id).await?.map(|o| o.status);
        if let Some(status) = status.filter(|s| matches!(s.as_str(), "paused" | "archived")) {
            return Err(AppError::Conflict(format!(
                "orchestration {id} is {status}; only active or draft orchestrations run (execution {} was not {done})",
                row.id
            )));
        }
    }
    Ok(())
}

/// Up to [`MAX_REPLAYS`] executions the filter matches, and how many it matches in all.
async fn by_filter(state: &AppState, enterprise: &str, filter: ReplayFilter) -> AppResult<(Vec<String>, i64)> {
    let status = filter.status.unwrap_or_else(|| "failed".into());
    if !["failed", "partial", "cancelled"].contains(&status.as_str()) {
        return Err(AppError::Validation(vec![FieldError {
            path: "filter.status".into(),
            message: "must be failed, partial or cancelled".into(),
        }]));
    }
    let search = ExecutionSearch {
        orchestration_id: filter.orchestration_id,
        status: Some(status),
        triggered_by: filter.triggered_by,
        from: filter.from,
        to: filter.to,
        error: filter.error,
    };
    let limit = i64::try_from(MAX_REPLAYS).unwrap_or(100);
    Ok(state.store.replay_candidates(enterprise, &search.filter()?, limit).await?)
}

/// The parameters a replay of `original` runs with: `None` (its own) without overrides, else
/// its own with `overrides` merged in, bound to its orchestration version's declaration.
pub(super) async fn parameters_for(
    state: &AppState,
    original: &ExecutionRow,
    overrides: &Map<String, Value>,
) -> AppResult<Option<String>> {
    if overrides.is_empty() {
        return Ok(None);
    }
    let text = state
        .store
        .orchestration_version(&original.orchestration_id, original.orchestration_version)
        .await?
        .ok_or_else(|| {
            AppError::Conflict(format!("the orchestration of execution {} no longer exists", original.id))
        })?;
    let def: Definition = serde_json::from_str(&text).map_err(anyhow::Error::from)?;
    let mut merged: Map<String, Value> = serde_json::from_str(&original.parameters).unwrap_or_default();
    merged.extend(overrides.clone());
    let bound = definition::bind_parameters(&def, &merged).map_err(|errors| {
        AppError::Validation(
            errors
                .into_iter()
                .map(|e| FieldError { path: e.path, message: format!("execution {}: {}", original.id, e.message) })
                .collect(),
        )
    })?;
    Ok(Some(bound.to_string()))
}
