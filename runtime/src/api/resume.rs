//! Paused executions (a step ran out of attempts and its `on_exhausted` is `pause`):
//! `POST /executions/{id}/resume` queues one again from the step that paused it, optionally
//! with some parameters changed or with that step skipped for a given output; `POST
//! /executions/resume` resumes several, by id or by a filter like `GET /executions`'s. The
//! steps that completed are not run again. Like execute and replay, it refuses (409)
//! executions whose orchestration is paused or archived, and counts against the enterprise's
//! executions-per-minute limit.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::{ExecutionSearch, ExecutionSummary, summary};
use super::extract::{ApiJson, parse_json};
use super::replay::parameters_shown;
use crate::audit::{self, Action, Change, Resource};
use crate::auth::Principal;
use crate::engine::executions::{self, Resumed, Selection};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(resume_execution)).routes(routes!(resume_executions))
}

/// How to resume one paused execution. An empty body (or `{}`) resumes it as it is.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Parameters to change, merged into the execution's own and checked against its
    /// orchestration version's declaration. Steps that completed keep what they made of the
    /// old ones.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Do not run the step that paused it again: it counts as succeeded with this output, and
    /// the execution goes on after it.
    pub skip: Option<Skip>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Skip {
    /// What later steps read as the skipped step's output (`${step.field}`); null when absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub output: Value,
}

/// Resume a paused execution from the step that paused it.
#[utoipa::path(post, path = "/executions/{id}/resume", tag = "executions", params(("id" = String, Path)),
    request_body(content = ResumeRequest, description = "Optional: changed parameters, or skip the step with an output"),
    responses(
        (status = 202, description = "Queued again", body = ExecutionSummary),
        (status = 404, description = "No such execution", body = crate::error::ErrorResponse),
        (status = 409, description = "The execution is not paused, or its orchestration is paused or archived", body = crate::error::ErrorResponse),
        (status = 422, description = "Parameters its orchestration does not take, or a skip output larger than a step's output may be", body = crate::error::ErrorResponse),
        (status = 429, description = "The enterprise's execution rate limit", body = crate::error::ErrorResponse),
    ))]
async fn resume_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<ExecutionSummary>)> {
    let request: ResumeRequest =
        if body.iter().all(u8::is_ascii_whitespace) { ResumeRequest::default() } else { parse_json(&body)? };
    let skip = request.skip.as_ref().map(|skip| &skip.output);
    let per_minute = Some(principal.executions_per_minute);
    let resumed =
        executions::resume(&state.engine, &principal.enterprise_id, &id, &request.parameters, skip, per_minute).await?;
    record(&state, &principal, &resumed, skip.is_some()).await;
    Ok((StatusCode::ACCEPTED, Json(summary(&resumed.execution)?)))
}

/// Which paused executions to resume: `execution_ids`, or a `filter` like `GET /executions`'s.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkResumeRequest {
    /// 1 to 100 executions, each paused.
    pub execution_ids: Option<Vec<String>>,
    /// The paused executions it matches, oldest first, at most 100 (`remaining` says how many
    /// are left).
    pub filter: Option<ResumeFilter>,
    /// Parameters to change, merged into each execution's own and checked against its
    /// orchestration version's declaration.
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// The filters of `GET /executions` but its status (always paused).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeFilter {
    pub orchestration_id: Option<String>,
    /// manual, api, schedule, event or orchestration.
    pub triggered_by: Option<String>,
    /// Created at or after, ISO 8601.
    pub from: Option<String>,
    /// Created at or before, ISO 8601.
    pub to: Option<String>,
    /// Text the error contains (case-insensitive), e.g. the paused step's name.
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkResumeResult {
    /// The executions queued again, oldest first.
    pub resumed: Vec<String>,
    /// Paused executions asked for that were not resumed by this request (past the 100,
    /// refused by the enterprise's execution rate limit, or resumed by someone else meanwhile).
    pub remaining: i64,
}

/// Resume paused executions by id or by filter.
#[utoipa::path(post, path = "/executions/resume", tag = "executions", request_body = BulkResumeRequest,
    responses(
        (status = 202, description = "The executions were queued again", body = BulkResumeResult),
        (status = 409, description = "An execution's orchestration is paused or archived; nothing was resumed", body = crate::error::ErrorResponse),
        (status = 422, description = "No executions, both or neither of execution_ids and filter, an execution that is not paused, or parameters its orchestration does not take", body = crate::error::ErrorResponse),
        (status = 429, description = "The enterprise's execution rate limit refused the first resume", body = crate::error::ErrorResponse),
    ))]
async fn resume_executions(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<BulkResumeRequest>,
) -> AppResult<(StatusCode, Json<BulkResumeResult>)> {
    let selection = match (request.execution_ids, request.filter) {
        (Some(ids), None) => Selection::Ids(ids),
        (None, Some(filter)) => {
            let search = ExecutionSearch {
                orchestration_id: filter.orchestration_id,
                status: None,
                triggered_by: filter.triggered_by,
                from: filter.from,
                to: filter.to,
                error: filter.error,
            };
            Selection::Filter(search.filter()?)
        }
        _ => return Err(AppError::invalid("execution_ids", "give either execution_ids or filter")),
    };
    let enterprise = principal.enterprise_id.as_str();
    let per_minute = Some(principal.executions_per_minute);
    let bulk = executions::resume_many(&state.engine, enterprise, selection, &request.parameters, per_minute).await?;
    for resumed in &bulk.done {
        record(&state, &principal, resumed, false).await;
    }
    tracing::info!(enterprise = %enterprise, resumed = bulk.done.len(), "paused executions resumed");
    let resumed = bulk.done.into_iter().map(|r| r.execution.id).collect();
    Ok((StatusCode::ACCEPTED, Json(BulkResumeResult { resumed, remaining: bulk.remaining })))
}

/// The audit record of one resume: the parameters when they changed, and whether the step that
/// paused it was skipped.
async fn record(state: &AppState, principal: &Principal, resumed: &Resumed, skipped: bool) {
    let execution = &resumed.execution;
    let parameters = resumed.parameters_changed.then(|| parameters_shown(execution));
    let after = serde_json::json!({"parameters": parameters, "skipped": skipped});
    let change = Change {
        action: Action::Resume,
        resource: Resource::Execution,
        resource_id: Some(&execution.id),
        before: None,
        after: Some(after),
    };
    audit::record(state, principal, change).await;
}
