//! Executions: `POST /orchestrations/{id}/execute` (waiting or async), `GET
//! /orchestrations/{id}/executions` and `GET /executions` (across orchestrations: the dead
//! letters are its failed ones), `GET /executions/{id}`, cancel and retry (replay is
//! `replay.rs`, the resume of paused executions `resume.rs`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dibop_core::{ExecutionStatus, StepKind, StepStatus, TriggeredBy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authn::rate_limit_headers;
use super::extract::{ApiJson, ApiQuery, PageQuery, Paginated, Pagination, iso_instant};
use super::{datetime, opt_datetime};
use crate::audit::{self, Action, Change, Resource};
use crate::auth::Principal;
use crate::engine::executions;
use crate::error::{AppError, AppResult, OrNotFound};
use crate::state::AppState;
use crate::store::{ExecutionFilter, ExecutionRow, StepResultRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(execute))
        .routes(routes!(list_executions))
        .routes(routes!(list_all_executions))
        .routes(routes!(get_execution))
        .routes(routes!(cancel_execution))
        .routes(routes!(retry_execution))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    #[serde(default)]
    pub parameters: serde_json::Map<String, Value>,
    /// Answer 202 at once instead of waiting for the result.
    #[serde(default, rename = "async")]
    pub run_async: bool,
}

/// The answer of execute.
#[derive(Serialize, ToSchema)]
pub struct ExecutionSummary {
    pub execution_id: String,
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// Why a failed or cancelled execution ended: `STEP_FAILED`, `OUTPUT_FAILED`, `CANCELLED`
    /// or `INTERNAL` (a fault of the platform, logged with the execution id); `STEP_FAILED` for
    /// a paused one.
    pub error_code: Option<String>,
    pub duration_ms: Option<i64>,
    /// How many steps succeeded (failed and skipped steps are not counted).
    pub steps_completed: i64,
    pub steps_total: i64,
}

fn json_column(text: Option<&String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

fn duration(row: &ExecutionRow) -> Option<i64> {
    row.finished_at.zip(row.started_at).map(|(f, s)| f - s)
}

pub(super) fn summary(row: &ExecutionRow) -> AppResult<ExecutionSummary> {
    Ok(ExecutionSummary {
        execution_id: row.id.clone(),
        status: row.status,
        output: json_column(row.output.as_ref()),
        error: row.error.clone(),
        error_code: row.error_code.clone(),
        duration_ms: duration(row),
        steps_completed: row.steps_succeeded,
        steps_total: row.steps_total,
    })
}

/// Execute an orchestration with parameters. Waits for the result up to the server's bound
/// (200), or answers 202 with the execution id and its state (`"async": true`, when the bound
/// passes, or when the node starts shutting down meanwhile).
/// The same `Idempotency-Key` within 24 h answers the same execution.
#[utoipa::path(post, path = "/orchestrations/{id}/execute", tag = "orchestrations", params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Same key within 24 h: same execution")),
    request_body = ExecuteRequest,
    responses(
        (status = 200, description = "Finished", body = ExecutionSummary),
        (status = 202, description = "Queued or still running (async, the wait's bound passed, or the node is shutting down), or paused (a step ran out of attempts; see resume)", body = ExecutionSummary),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
        (status = 409, description = "The orchestration is paused or archived", body = crate::error::ErrorResponse),
        (status = 429, description = "Execution rate limit exceeded, or the enterprise's queue is at its `max_queued_executions`: nothing was started and the `Idempotency-Key` stays free; retry after `Retry-After` seconds", body = crate::error::ErrorResponse),
    ))]
async fn execute(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> AppResult<Response> {
    let start = executions::Start {
        enterprise_id: &principal.enterprise_id,
        orchestration: executions::Target::Id(&id),
        trigger: executions::Trigger::Execute { api_key: principal.api_key_id.is_some() },
        parameters: &request.parameters,
        idempotency_key: headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned),
        traceparent: traceparent(&headers),
        per_minute: Some(principal.executions_per_minute),
    };
    // A node that starts shutting down stops every wait: the caller gets the execution's id and
    // state (202) before the connection closes, and the execution finishes here within the
    // grace period or resumes elsewhere.
    let wait = (!request.run_async).then(|| Duration::from_millis(state.config.execute_wait_ms));
    let started = executions::execute(&state.engine, start, wait, &state.draining).await?;
    let execution = started.execution;
    let status = if execution.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut response = (status, Json(summary(&execution)?)).into_response();
    rate_limit_headers(response.headers_mut(), &started.decision);
    Ok(response)
}

/// A valid W3C `traceparent` header of the request (an invalid one is ignored, as W3C asks).
pub(super) fn traceparent(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    dibop_core::trace::TraceParent::parse(value).map(|p| p.header())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    /// queued, running, success, failed, partial, cancelled or paused.
    pub status: Option<String>,
    /// ISO 8601.
    pub from: Option<String>,
    /// ISO 8601.
    pub to: Option<String>,
}

/// The filters of `GET /executions` (and of a replay by filter).
#[derive(Deserialize, IntoParams, ToSchema, Default)]
#[into_params(parameter_in = Query)]
pub struct ExecutionSearch {
    pub orchestration_id: Option<String>,
    /// queued, running, success, failed, partial, cancelled or paused.
    pub status: Option<String>,
    /// manual, api, schedule, event or orchestration.
    pub triggered_by: Option<String>,
    /// Created at or after, ISO 8601.
    pub from: Option<String>,
    /// Created at or before, ISO 8601.
    pub to: Option<String>,
    /// Text the execution's error contains (case-insensitive; at most 200 characters).
    pub error: Option<String>,
}

/// Longest `error` text filter.
const MAX_ERROR_FILTER: usize = 200;

impl ExecutionSearch {
    /// The store's filter, or a 400 naming the bad value.
    pub(super) fn filter(self) -> AppResult<ExecutionFilter> {
        if let Some(status) = self.status.as_ref().filter(|s| s.parse::<ExecutionStatus>().is_err()) {
            return Err(AppError::BadRequest(format!("unknown status {status:?}")));
        }
        let unknown = |t: &&String| matches!(TriggeredBy::parse(t), TriggeredBy::Unknown(_));
        if let Some(trigger) = self.triggered_by.as_ref().filter(unknown) {
            return Err(AppError::BadRequest(format!(
                "triggered_by must be manual, api, schedule, event or orchestration, got {trigger:?}"
            )));
        }
        if self.error.as_ref().is_some_and(|e| e.chars().count() > MAX_ERROR_FILTER || e.contains('\0')) {
            return Err(AppError::BadRequest(format!("error must be at most {MAX_ERROR_FILTER} characters")));
        }
        Ok(ExecutionFilter {
            from_ms: iso_instant("from", self.from.as_ref())?,
            to_ms: iso_instant("to", self.to.as_ref())?,
            orchestration_id: self.orchestration_id,
            status: self.status,
            triggered_by: self.triggered_by,
            error: self.error.filter(|e| !e.is_empty()),
        })
    }
}

/// One step's result.
#[derive(Serialize, ToSchema)]
pub struct StepView {
    pub name: String,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: StepKind,
    pub status: StepStatus,
    pub system: Option<String>,
    pub operation: Option<String>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub attempts: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
}

impl TryFrom<StepResultRow> for StepView {
    type Error = AppError;

    fn try_from(s: StepResultRow) -> AppResult<Self> {
        Ok(Self {
            input: json_column(s.input.as_ref()),
            output: json_column(s.output.as_ref()),
            status: s.status,
            kind: s.kind.clone(),
            name: s.name,
            system: s.system,
            operation: s.operation,
            error: s.error,
            attempts: s.attempts,
            started_at: datetime(s.started_at),
            duration_ms: s.duration_ms,
        })
    }
}

/// An execution with its step results.
#[derive(Serialize, ToSchema)]
pub struct ExecutionView {
    pub id: String,
    pub orchestration_id: String,
    pub orchestration_version: i64,
    pub status: ExecutionStatus,
    /// manual, api, schedule, event, or orchestration (started by a sub_orchestration step).
    pub triggered_by: String,
    /// For executions a sub_orchestration step started: the execution that started them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_execution_id: Option<String>,
    /// For a replay: the execution it replays from its failed step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// For a replay: who asked, `user:<id>` or `api_key:<id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_by: Option<String>,
    pub parameters: Value,
    /// Lists leave out an output larger than 64 KiB (null here, its size in `output_bytes`);
    /// `GET /executions/{id}` answers it whole.
    pub output: Option<Value>,
    /// The size in bytes of an output larger than 64 KiB, kept by reference out of the
    /// execution's row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<i64>,
    pub error: Option<String>,
    /// Why a failed or cancelled execution ended: `STEP_FAILED`, `OUTPUT_FAILED`, `CANCELLED`
    /// or `INTERNAL` (a fault of the platform, logged with the execution id); `STEP_FAILED` for
    /// a paused one.
    pub error_code: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// How many steps succeeded (failed and skipped steps are not counted).
    pub steps_completed: i64,
    pub steps_total: i64,
    /// Only in `GET /executions/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
}

fn execution_view(row: ExecutionRow, steps: Option<Vec<StepResultRow>>) -> AppResult<ExecutionView> {
    Ok(ExecutionView {
        status: row.status,
        duration_ms: duration(&row),
        parameters: serde_json::from_str(&row.parameters).unwrap_or(Value::Null),
        output: json_column(row.output.as_ref()),
        output_bytes: row.output_bytes,
        id: row.id,
        orchestration_id: row.orchestration_id,
        orchestration_version: row.orchestration_version,
        triggered_by: row.triggered_by.to_string(),
        parent_execution_id: row.parent_execution_id,
        replay_of: row.replay_of,
        replayed_by: row.replayed_by,
        error: row.error,
        error_code: row.error_code,
        started_at: opt_datetime(row.started_at),
        finished_at: opt_datetime(row.finished_at),
        steps_completed: row.steps_succeeded,
        steps_total: row.steps_total,
        steps: steps.map(|s| s.into_iter().map(StepView::try_from).collect()).transpose()?,
    })
}

/// An orchestration's executions, newest first.
#[utoipa::path(get, path = "/orchestrations/{id}/executions", tag = "executions", params(("id" = String, Path), ExecutionQuery, PageQuery),
    responses(
        (status = 200, description = "One page of executions", body = Paginated<ExecutionView>),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
    ))]
async fn list_executions(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ExecutionQuery>,
    pagination: Pagination,
) -> AppResult<Response> {
    state
        .store()
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .or_not_found(format!("orchestration {id}"))?;
    let search = ExecutionSearch {
        orchestration_id: Some(id),
        status: query.status,
        from: query.from,
        to: query.to,
        ..ExecutionSearch::default()
    };
    let (rows, total) =
        state.store().list_executions(&principal.enterprise_id, &search.filter()?, pagination.page()).await?;
    super::for_reader(
        &principal,
        &pagination.envelope(rows.into_iter().map(|r| execution_view(r, None)).collect::<AppResult<_>>()?, total),
    )
}

/// The enterprise's executions across orchestrations, newest first; with `status=failed` the
/// dead letters, which `POST /executions/replay` runs again.
#[utoipa::path(get, path = "/executions", tag = "executions", params(ExecutionSearch, PageQuery),
    responses((status = 200, description = "One page of executions", body = Paginated<ExecutionView>)))]
async fn list_all_executions(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(search): ApiQuery<ExecutionSearch>,
    pagination: Pagination,
) -> AppResult<Response> {
    let (rows, total) =
        state.store().list_executions(&principal.enterprise_id, &search.filter()?, pagination.page()).await?;
    super::for_reader(
        &principal,
        &pagination.envelope(rows.into_iter().map(|r| execution_view(r, None)).collect::<AppResult<_>>()?, total),
    )
}

/// An execution with every step's result.
#[utoipa::path(get, path = "/executions/{id}", tag = "executions", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The execution", body = ExecutionView),
        (status = 404, description = "No such execution", body = crate::error::ErrorResponse),
    ))]
async fn get_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let row =
        state.store().get_execution(&principal.enterprise_id, &id).await?.or_not_found(format!("execution {id}"))?;
    let steps = state.store().step_results(&row.id).await?;
    super::for_reader(&principal, &execution_view(row, Some(steps))?)
}

/// Cancel an execution: a queued or paused one at once, a running one before its next step.
#[utoipa::path(post, path = "/executions/{id}/cancel", tag = "executions", params(("id" = String, Path)),
    responses(
        (status = 200, description = "Cancelled, or cancellation requested (status still running)", body = ExecutionSummary),
        (status = 404, description = "No such execution", body = crate::error::ErrorResponse),
        (status = 409, description = "The execution already finished", body = crate::error::ErrorResponse),
    ))]
async fn cancel_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<ExecutionSummary>> {
    let row = executions::cancel(&state.engine, &principal.enterprise_id, &id).await?;
    let change = Change {
        action: Action::Cancel,
        resource: Resource::Execution,
        resource_id: Some(&id),
        before: None,
        after: None,
    };
    audit::record(&state, &principal, change).await;
    Ok(Json(summary(&row)?))
}

/// Run a failed, partial or cancelled execution again from its first failed step; the results
/// of the steps before it are kept and those steps are not called again.
#[utoipa::path(post, path = "/executions/{id}/retry", tag = "executions", params(("id" = String, Path)),
    responses(
        (status = 202, description = "Queued again", body = ExecutionSummary),
        (status = 404, description = "No such execution", body = crate::error::ErrorResponse),
        (status = 409, description = "The execution did not fail", body = crate::error::ErrorResponse),
        (status = 429, description = "Execution rate limit exceeded, or the enterprise's queue is at its `max_queued_executions`: nothing changed", body = crate::error::ErrorResponse),
    ))]
async fn retry_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<ExecutionSummary>)> {
    let row =
        executions::retry(&state.engine, &principal.enterprise_id, &id, Some(principal.executions_per_minute)).await?;
    let change = Change {
        action: Action::Retry,
        resource: Resource::Execution,
        resource_id: Some(&id),
        before: None,
        after: None,
    };
    audit::record(&state, &principal, change).await;
    Ok((StatusCode::ACCEPTED, Json(summary(&row)?)))
}
