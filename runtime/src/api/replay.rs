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
use crate::audit::{self, Action, Change, Resource};
use crate::auth::Principal;
use crate::engine::executions::{self, Selection};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::{ExecutionFilter, ExecutionRow};
use dibop_core::TriggeredBy;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(replay_executions))
}

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
    let selection = match (request.execution_ids, request.filter) {
        (Some(ids), None) => Selection::Ids(ids),
        (None, Some(filter)) => Selection::Filter(filter_of(filter)?),
        _ => return Err(AppError::invalid("execution_ids", "give either execution_ids or filter")),
    };
    let triggered_by = if principal.api_key_id.is_some() { TriggeredBy::Api } else { TriggeredBy::Manual };
    let actor = match (&principal.api_key_id, &principal.user_id) {
        (Some(key), _) => format!("api_key:{key}"),
        (None, Some(user)) => format!("user:{user}"),
        (None, None) => "unknown".into(),
    };
    let per_minute = Some(principal.executions_per_minute);
    let enterprise = principal.enterprise_id.as_str();
    let bulk = executions::replay(
        &state.engine,
        enterprise,
        selection,
        &request.parameters,
        per_minute,
        (triggered_by, &actor),
    )
    .await?;
    for replayed in &bulk.done {
        let (original, replay) = (&replayed.original, &replayed.replay);
        let after = Some(serde_json::json!({"execution_id": replay.id, "parameters": parameters_shown(replay)}));
        let change = Change {
            action: Action::Replay,
            resource: Resource::Execution,
            resource_id: Some(original),
            before: None,
            after,
        };
        audit::record(&state, &principal, change).await;
    }
    tracing::info!(enterprise = %enterprise, actor = %actor, replays = bulk.done.len(), "executions replayed");
    let replays: Vec<Replay> =
        bulk.done.into_iter().map(|r| Replay { execution_id: r.replay.id, replay_of: r.original }).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayResult {
            execution_ids: replays.iter().map(|r| r.execution_id.clone()).collect(),
            replays,
            remaining: bulk.remaining,
        }),
    ))
}

/// The parameters an execution runs with, as JSON.
pub(super) fn parameters_shown(row: &ExecutionRow) -> Value {
    serde_json::from_str(&row.parameters).unwrap_or(Value::Null)
}

/// The store's filter of a replay's `filter` (status `failed` unless given).
fn filter_of(filter: ReplayFilter) -> AppResult<ExecutionFilter> {
    let status = filter.status.unwrap_or_else(|| "failed".into());
    if !["failed", "partial", "cancelled"].contains(&status.as_str()) {
        return Err(AppError::invalid("filter.status", "must be failed, partial or cancelled"));
    }
    let search = ExecutionSearch {
        orchestration_id: filter.orchestration_id,
        status: Some(status),
        triggered_by: filter.triggered_by,
        from: filter.from,
        to: filter.to,
        error: filter.error,
    };
    search.filter()
}
