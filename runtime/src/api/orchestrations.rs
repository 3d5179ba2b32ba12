//! Orchestrations and their executions: `GET/POST /orchestrations`,
//! `GET/PUT/DELETE /orchestrations/{id}`, `POST /orchestrations/{id}/execute`,
//! `GET /orchestrations/{id}/executions`, `GET /executions/{id}`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dibop_core::ExecutionStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiQuery, JsonOrYaml, PageQuery, Paginated, Pagination, iso_instant};
use super::{datetime, opt_datetime};
use crate::auth::{Principal, rate_limit_headers};
use crate::engine::admission;
use crate::engine::definition::{self, Catalogue, Definition};
use crate::error::{AppError, AppResult};
use crate::plugins::PluginInfo;
use crate::state::AppState;
use crate::store::{ExecutionRow, NewExecution, OrchestrationRow, StepResultRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orchestrations, create_orchestration))
        .routes(routes!(get_orchestration, replace_orchestration, delete_orchestration))
        .routes(routes!(execute))
        .routes(routes!(list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(get_trace))
        .routes(routes!(cancel_execution))
        .routes(routes!(retry_execution))
}

/// An orchestration as stored: the definition plus identity and version.
#[derive(Serialize, ToSchema)]
pub struct OrchestrationView {
    pub id: String,
    pub enterprise_id: String,
    /// Incremented on every update; executions record the version they ran.
    pub version: i64,
    #[serde(flatten)]
    pub definition: Definition,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Schedules only: why the last slot did not fire (for example the execution limit or a
    /// parameter problem); cleared when a slot fires again. The slot is recorded as missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_error_at: Option<DateTime<Utc>>,
}

fn view(row: OrchestrationRow) -> AppResult<OrchestrationView> {
    Ok(OrchestrationView {
        schedule_error: row.schedule_error.clone(),
        schedule_error_at: row.schedule_error_at.map(datetime),
        definition: serde_json::from_str(&row.definition).map_err(anyhow::Error::from)?,
        id: row.id,
        enterprise_id: row.enterprise_id,
        version: row.version,
        created_at: datetime(row.created_at),
        updated_at: datetime(row.updated_at),
    })
}

/// The enterprise's connections and plugins, as validation sees them.
struct EnterpriseCatalogue {
    connections: HashMap<String, Option<Vec<String>>>,
    transforms: Vec<String>,
    /// Names and ids of the enterprise's orchestrations.
    orchestrations: Vec<String>,
    /// By name and by id: the orchestrations each one starts, and its (name, id).
    calls: HashMap<String, (Vec<String>, Vec<String>)>,
    /// The orchestration being replaced.
    saved_id: Option<String>,
    min_cron_interval_secs: u64,
}

impl Catalogue for EnterpriseCatalogue {
    fn operations(&self, connection: &str) -> Option<Option<Vec<String>>> {
        self.connections.get(connection).cloned()
    }

    fn transform_exists(&self, slug: &str) -> bool {
        self.transforms.iter().any(|t| t == slug)
    }

    fn orchestration_exists(&self, name_or_id: &str) -> bool {
        self.orchestrations.iter().any(|o| o == name_or_id)
    }

    fn calls(&self, name_or_id: &str) -> (Vec<String>, Vec<String>) {
        self.calls.get(name_or_id).cloned().unwrap_or_default()
    }

    fn saved_id(&self) -> Option<&str> {
        self.saved_id.as_deref()
    }

    fn min_cron_interval_secs(&self) -> u64 {
        self.min_cron_interval_secs
    }
}

async fn catalogue(state: &AppState, enterprise_id: &str) -> AppResult<EnterpriseCatalogue> {
    let connectors = state.registry.newest(enterprise_id, "connector").await?;
    let (rows, _) =
        state.store.list_connections(enterprise_id, crate::store::Page { limit: 10_000, offset: 0 }).await?;
    let mut connections = HashMap::new();
    for row in rows {
        let mut ops = connectors
            .iter()
            .find(|p| p.slug == row.system)
            .and_then(|p| serde_json::from_str::<PluginInfo>(&p.info).ok())
            .map(|info| info.operations.into_iter().map(|o| o.name).collect::<Vec<_>>());
        // Connectors configured per connection (the generic REST connector) add its operations.
        if let Some(configured) =
            serde_json::from_str::<Value>(&row.config).ok().and_then(|c| c.get("operations").cloned())
            && let (Some(list), Some(map)) = (ops.as_mut(), configured.as_object())
        {
            list.extend(map.keys().cloned());
        }
        connections.insert(row.id.clone(), ops.clone());
        connections.insert(row.name.clone(), ops);
    }
    let transforms = state.registry.newest(enterprise_id, "transform").await?.into_iter().map(|p| p.slug).collect();
    let (rows, _) =
        state.store.list_orchestrations(enterprise_id, crate::store::Page { limit: 10_000, offset: 0 }).await?;
    let mut calls = HashMap::new();
    for row in &rows {
        let targets = serde_json::from_str::<Definition>(&row.definition)
            .map(|d| definition::sub_orchestrations(&d.steps))
            .unwrap_or_default();
        let entry = (targets, vec![row.id.clone(), row.name.clone()]);
        calls.insert(row.name.clone(), entry.clone());
        calls.insert(row.id.clone(), entry);
    }
    let orchestrations = rows.into_iter().flat_map(|row| [row.id, row.name]).collect();
    Ok(EnterpriseCatalogue {
        connections,
        transforms,
        orchestrations,
        calls,
        saved_id: None,
        min_cron_interval_secs: state.config.min_cron_interval_secs,
    })
}

async fn validated(
    state: &AppState,
    principal: &Principal,
    def: &Definition,
    saved_id: Option<&str>,
) -> AppResult<String> {
    let mut catalogue = catalogue(state, &principal.enterprise_id).await?;
    catalogue.saved_id = saved_id.map(str::to_owned);
    let errors = definition::validate(def, &catalogue);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    Ok(serde_json::to_string(def).map_err(anyhow::Error::from)?)
}

/// List orchestrations.
#[utoipa::path(get, path = "/orchestrations", tag = "orchestrations", params(PageQuery),
    responses((status = 200, description = "One page of orchestrations", body = Paginated<OrchestrationView>)))]
async fn list_orchestrations(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<OrchestrationView>>> {
    let (rows, total) = state.store.list_orchestrations(&principal.enterprise_id, pagination.page()).await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(view).collect::<AppResult<_>>()?, total)))
}

/// Create an orchestration. Every problem (unknown step or parameter reference, unknown
/// connection or operation, duplicate step names, invalid JSONPath, wrong types) is listed in one 422.
#[utoipa::path(post, path = "/orchestrations", tag = "orchestrations", request_body(content((Definition = "application/json"), (Definition = "application/yaml"))),
    responses((status = 201, description = "Created (version 1)", body = OrchestrationView)))]
async fn create_orchestration(
    State(state): State<AppState>,
    principal: Principal,
    JsonOrYaml(def): JsonOrYaml<Definition>,
) -> AppResult<(StatusCode, Json<OrchestrationView>)> {
    let text = validated(&state, &principal, &def, None).await?;
    let row = state
        .store
        .create_orchestration(&principal.enterprise_id, &def.name, &def.status, &text, definition::schedule_of(&def))
        .await?;
    Ok((StatusCode::CREATED, Json(view(row)?)))
}

/// Get an orchestration.
#[utoipa::path(get, path = "/orchestrations/{id}", tag = "orchestrations", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The orchestration", body = OrchestrationView),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
    ))]
async fn get_orchestration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<OrchestrationView>> {
    let row = state
        .store
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("orchestration {id}")))?;
    Ok(Json(view(row)?))
}

/// Replace an orchestration; its version increments and the old definition is kept.
#[utoipa::path(put, path = "/orchestrations/{id}", tag = "orchestrations", params(("id" = String, Path)), request_body(content((Definition = "application/json"), (Definition = "application/yaml"))),
    responses(
        (status = 200, description = "Replaced", body = OrchestrationView),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
    ))]
async fn replace_orchestration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonOrYaml(def): JsonOrYaml<Definition>,
) -> AppResult<Json<OrchestrationView>> {
    state
        .store
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("orchestration {id}")))?;
    let text = validated(&state, &principal, &def, Some(&id)).await?;
    let row = state
        .store
        .update_orchestration(
            &principal.enterprise_id,
            &id,
            &def.name,
            &def.status,
            &text,
            definition::schedule_of(&def),
        )
        .await?
        .ok_or_else(|| AppError::not_found(format!("orchestration {id}")))?;
    Ok(Json(view(row)?))
}

/// Delete an orchestration; its executions stay readable.
#[utoipa::path(delete, path = "/orchestrations/{id}", tag = "orchestrations", params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
    ))]
async fn delete_orchestration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if state.store.delete_orchestration(&principal.enterprise_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("orchestration {id}")))
    }
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
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// Why a failed or cancelled execution ended: `STEP_FAILED`, `OUTPUT_FAILED`, `CANCELLED`
    /// or `INTERNAL` (a fault of the platform, logged with the execution id).
    pub error_code: Option<String>,
    pub duration_ms: Option<i64>,
    pub steps_completed: i64,
    pub steps_total: i64,
}

fn json_column(text: Option<&String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

fn duration(row: &ExecutionRow) -> Option<i64> {
    row.finished_at.zip(row.started_at).map(|(f, s)| f - s)
}

fn summary(row: &ExecutionRow) -> ExecutionSummary {
    ExecutionSummary {
        execution_id: row.id.clone(),
        status: row.status.clone(),
        output: json_column(row.output.as_ref()),
        error: row.error.clone(),
        error_code: row.error_code.clone(),
        duration_ms: duration(row),
        steps_completed: row.steps_completed,
        steps_total: row.steps_total,
    }
}

/// Execute an orchestration with parameters. Waits for the result up to the server's bound
/// (200), or answers 202 with the execution id (`"async": true`, or when the bound passes).
/// The same `Idempotency-Key` within 24 h answers the same execution.
#[utoipa::path(post, path = "/orchestrations/{id}/execute", tag = "orchestrations", params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Same key within 24 h: same execution")),
    request_body = ExecuteRequest,
    responses(
        (status = 200, description = "Finished", body = ExecutionSummary),
        (status = 202, description = "Queued or still running", body = ExecutionSummary),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
        (status = 409, description = "The orchestration is paused or archived", body = crate::error::ErrorResponse),
    ))]
async fn execute(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> AppResult<Response> {
    let row = state
        .store
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("orchestration {id}")))?;
    if matches!(row.status.as_str(), "paused" | "archived") {
        return Err(AppError::Conflict(format!(
            "orchestration {id} is {}; only active or draft orchestrations run",
            row.status
        )));
    }
    let def: Definition = serde_json::from_str(&row.definition).map_err(anyhow::Error::from)?;
    let parameters = definition::bind_parameters(&def, &request.parameters).map_err(AppError::Validation)?;
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 200) {
        return Err(AppError::BadRequest("Idempotency-Key must be 1 to 200 characters".into()));
    }
    let new = NewExecution {
        orchestration_id: row.id.clone(),
        orchestration_version: row.version,
        triggered_by: if principal.api_key_id.is_some() { "api" } else { "manual" }.into(),
        parameters: parameters.to_string(),
        idempotency_key: key,
        steps_total: def.step_count(),
        parent: None,
    };
    // A waiting caller with a free slot on this node runs its execution at once; otherwise (or
    // `async`) it is queued for the workers.
    let slot = if request.run_async || !state.engine.has_share(&principal.enterprise_id) {
        None
    } else {
        state.engine.free_slot()
    };
    let admitted =
        admission::submit(&state, &principal.enterprise_id, Some(principal.executions_per_minute), new, slot.is_some())
            .await?;
    let (mut execution, created, decision) = (admitted.execution, admitted.created, admitted.decision);
    let deadline = Instant::now() + Duration::from_millis(state.config.execute_wait_ms);
    if let Some(slot) = slot
        && created
    {
        let done = crate::engine::run_now(&state, execution.clone(), slot);
        let _ = tokio::time::timeout(Duration::from_millis(state.config.execute_wait_ms), done).await;
    }
    if !request.run_async {
        execution = state
            .store
            .get_execution(&principal.enterprise_id, &execution.id)
            .await?
            .ok_or_else(|| AppError::not_found("execution"))?;
        // Queued (or run by another node, or a duplicate request): wait for it, bounded.
        while !crate::engine::is_final(&execution.status) && Instant::now() < deadline {
            let done = state.engine.watch(&execution.id);
            execution = state
                .store
                .get_execution(&principal.enterprise_id, &execution.id)
                .await?
                .ok_or_else(|| AppError::not_found("execution"))?;
            if crate::engine::is_final(&execution.status) {
                break;
            }
            // Woken by the local worker; the bound covers executions run by another node.
            let _ = tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(500)),
                done,
            )
            .await;
            execution = state
                .store
                .get_execution(&principal.enterprise_id, &execution.id)
                .await?
                .ok_or_else(|| AppError::not_found("execution"))?;
        }
    }
    let status = if crate::engine::is_final(&execution.status) { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut response = (status, Json(summary(&execution))).into_response();
    rate_limit_headers(response.headers_mut(), &decision);
    Ok(response)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    /// queued, running, success, failed, partial or cancelled.
    pub status: Option<String>,
    /// ISO 8601.
    pub from: Option<String>,
    /// ISO 8601.
    pub to: Option<String>,
}

/// One step's result.
#[derive(Serialize, ToSchema)]
pub struct StepView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// success, failed or skipped.
    pub status: String,
    pub system: Option<String>,
    pub operation: Option<String>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub attempts: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
}

impl From<StepResultRow> for StepView {
    fn from(s: StepResultRow) -> Self {
        Self {
            input: json_column(s.input.as_ref()),
            output: json_column(s.output.as_ref()),
            name: s.name,
            kind: s.kind,
            status: s.status,
            system: s.system,
            operation: s.operation,
            error: s.error,
            attempts: s.attempts,
            started_at: datetime(s.started_at),
            duration_ms: s.duration_ms,
        }
    }
}

/// An execution with its step results.
#[derive(Serialize, ToSchema)]
pub struct ExecutionView {
    pub id: String,
    pub orchestration_id: String,
    pub orchestration_version: i64,
    pub status: String,
    /// manual, api, schedule, event, or orchestration (started by a sub_orchestration step).
    pub triggered_by: String,
    /// For executions a sub_orchestration step started: the execution that started them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_execution_id: Option<String>,
    pub parameters: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// Why a failed or cancelled execution ended: `STEP_FAILED`, `OUTPUT_FAILED`, `CANCELLED`
    /// or `INTERNAL` (a fault of the platform, logged with the execution id).
    pub error_code: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub steps_completed: i64,
    pub steps_total: i64,
    /// Only in `GET /executions/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
}

fn execution_view(row: ExecutionRow, steps: Option<Vec<StepResultRow>>) -> ExecutionView {
    ExecutionView {
        duration_ms: duration(&row),
        parameters: serde_json::from_str(&row.parameters).unwrap_or(Value::Null),
        output: json_column(row.output.as_ref()),
        id: row.id,
        orchestration_id: row.orchestration_id,
        orchestration_version: row.orchestration_version,
        status: row.status,
        triggered_by: row.triggered_by,
        parent_execution_id: row.parent_execution_id,
        error: row.error,
        error_code: row.error_code,
        started_at: opt_datetime(row.started_at),
        finished_at: opt_datetime(row.finished_at),
        steps_completed: row.steps_completed,
        steps_total: row.steps_total,
        steps: steps.map(|s| s.into_iter().map(StepView::from).collect()),
    }
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
        .store
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("orchestration {id}")))?;
    if let Some(status) = query.status.as_ref().filter(|s| s.parse::<ExecutionStatus>().is_err()) {
        return Err(AppError::BadRequest(format!("unknown status {status:?}")));
    }
    let (from, to) = (iso_instant("from", query.from.as_ref())?, iso_instant("to", query.to.as_ref())?);
    let (rows, total) = state
        .store
        .list_executions(&principal.enterprise_id, &id, query.status.as_deref(), from, to, pagination.page())
        .await?;
    super::for_reader(
        &principal,
        &pagination.envelope(rows.into_iter().map(|r| execution_view(r, None)).collect(), total),
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
    let row = state
        .store
        .get_execution(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("execution {id}")))?;
    let steps = state.store.step_results(&row.id).await?;
    super::for_reader(&principal, &execution_view(row, Some(steps)))
}

/// Cancel an execution: a queued one at once, a running one before its next step.
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
    let current = state
        .store
        .get_execution(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("execution {id}")))?;
    if crate::engine::is_final(&current.status) {
        return Err(AppError::Conflict(format!("execution {id} already finished ({})", current.status)));
    }
    let row = state
        .store
        .cancel_execution(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("execution {id}")))?;
    // Running here: stop before the next step (inside bodies too). Running on another node:
    // its heartbeat reads the flag. Parked: it is due now, so a worker ends it.
    state.engine.stop(&id, crate::engine::Stop::Cancel);
    state.engine.wake();
    Ok(Json(summary(&row)))
}

/// Run a failed, partial or cancelled execution again from its first failed step; the results
/// of the steps before it are kept and those steps are not called again.
#[utoipa::path(post, path = "/executions/{id}/retry", tag = "executions", params(("id" = String, Path)),
    responses(
        (status = 202, description = "Queued again", body = ExecutionSummary),
        (status = 404, description = "No such execution", body = crate::error::ErrorResponse),
        (status = 409, description = "The execution did not fail", body = crate::error::ErrorResponse),
    ))]
async fn retry_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<ExecutionSummary>)> {
    state
        .store
        .get_execution(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("execution {id}")))?;
    admission::count(&state, &principal.enterprise_id, Some(principal.executions_per_minute)).await?;
    let row = state
        .store
        .retry_execution(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::Conflict(format!("execution {id} is not failed, partial or cancelled")))?;
    state.engine.wake();
    Ok((StatusCode::ACCEPTED, Json(summary(&row))))
}

/// Largest JSON value (as text) a trace shows in a span before truncating it with a marker.
const TRACE_VALUE_CAP: usize = 4096;

/// One span of a trace.
#[derive(Serialize, ToSchema)]
pub struct Span {
    /// 16 hex digits, OpenTelemetry-compatible.
    pub span_id: String,
    pub parent_id: Option<String>,
    /// execution, step, mapping, attempt, plugin.setup, plugin.instantiate, plugin.invoke,
    /// plugin.teardown, http.
    pub kind: String,
    pub name: String,
    pub start: DateTime<Utc>,
    pub duration_ms: f64,
    pub status: String,
    #[schema(value_type = Object)]
    pub attributes: Value,
}

/// The timeline of one execution.
#[derive(Serialize, ToSchema)]
pub struct TraceView {
    pub execution_id: String,
    /// 32 hex digits, OpenTelemetry-compatible.
    pub trace_id: String,
    pub spans: Vec<Span>,
    /// Every line the plugins logged, with the span it belongs to.
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<Value>,
}

fn hex_id(seed: &str, digits: usize) -> String {
    crate::crypto::sha256_hex(seed.as_bytes())[..digits].to_owned()
}

/// `value` as JSON, or its text cut at the cap with a marker saying how much was left out.
fn capped(value: Option<Value>) -> Value {
    let Some(value) = value else { return Value::Null };
    let text = value.to_string();
    if text.len() <= TRACE_VALUE_CAP {
        return value;
    }
    Value::String(crate::bounded::clip(&text, TRACE_VALUE_CAP).into_owned())
}

/// What the trace needs of one step, committed or nested in a container's detail.
struct StepRecord {
    /// What its span ids derive from.
    seed: String,
    /// Its name, or its path inside containers (`each[2].decode`): what its API-call rows carry.
    label: String,
    status: String,
    started_at: i64,
    duration_ms: i64,
    attributes: Value,
    detail: Value,
}

/// Collects the spans and log lines of a trace.
struct TraceBuilder<'a> {
    calls: &'a [crate::store::ApiCallRow],
    spans: Vec<Span>,
    logs: Vec<Value>,
}

impl TraceBuilder<'_> {
    /// The spans of one step: itself, its mapping, its attempts with their plugin phases, its
    /// HTTP calls, its log lines, and the steps inside it.
    fn step(&mut self, execution_id: &str, step: &StepRecord, parent: &str) {
        let step_id = hex_id(&step.seed, 16);
        let detail = &step.detail;
        self.spans.push(Span {
            span_id: step_id.clone(),
            parent_id: Some(parent.to_owned()),
            kind: "step".into(),
            name: step.label.clone(),
            start: datetime(step.started_at),
            duration_ms: step.duration_ms as f64,
            status: step.status.clone(),
            attributes: step.attributes.clone(),
        });
        if let Some(us) = detail["mapping_us"].as_u64() {
            self.spans.push(Span {
                span_id: hex_id(&format!("{}:mapping", step.seed), 16),
                parent_id: Some(step_id.clone()),
                kind: "mapping".into(),
                name: format!("{} mapping", step.label),
                start: datetime(step.started_at),
                duration_ms: us as f64 / 1000.0,
                status: "success".into(),
                attributes: Value::Object(serde_json::Map::new()),
            });
        }
        let mut windows = Vec::new();
        for attempt in detail["attempts"].as_array().into_iter().flatten() {
            let n = attempt["attempt"].as_u64().unwrap_or(1);
            let attempt_id = hex_id(&format!("{}:{n}", step.seed), 16);
            let begin = attempt["started_at_ms"].as_i64().unwrap_or(step.started_at);
            let us = |key: &str| attempt[key].as_u64().unwrap_or(0);
            self.spans.push(Span {
                span_id: attempt_id.clone(),
                parent_id: Some(step_id.clone()),
                kind: "attempt".into(),
                name: format!("{} attempt {n}", step.label),
                start: datetime(begin),
                duration_ms: us("duration_us") as f64 / 1000.0,
                status: if attempt["error"].is_null() { "success" } else { "failed" }.into(),
                attributes: serde_json::json!({"error": attempt["error"]}),
            });
            let mut offset_us = 0;
            for (kind, key) in [
                ("plugin.setup", "setup_us"),
                ("plugin.instantiate", "instantiate_us"),
                ("plugin.invoke", "invoke_us"),
                ("plugin.teardown", "teardown_us"),
            ] {
                self.spans.push(Span {
                    span_id: hex_id(&format!("{attempt_id}:{kind}"), 16),
                    parent_id: Some(attempt_id.clone()),
                    kind: kind.into(),
                    name: kind.into(),
                    start: datetime(begin + i64::try_from(offset_us / 1000).unwrap_or(0)),
                    duration_ms: us(key) as f64 / 1000.0,
                    status: "success".into(),
                    attributes: Value::Object(serde_json::Map::new()),
                });
                offset_us += us(key);
            }
            windows.push((begin, begin + i64::try_from(us("duration_us") / 1000).unwrap_or(0) + 1, attempt_id));
        }
        for call in self.calls.iter().filter(|c| c.step.as_deref() == Some(step.label.as_str())) {
            let parent = windows
                .iter()
                .find(|(from, to, _)| (*from..=*to).contains(&call.timestamp))
                .map_or(step_id.clone(), |w| w.2.clone());
            self.spans.push(Span {
                span_id: hex_id(&call.id, 16),
                parent_id: Some(parent),
                kind: "http".into(),
                name: format!("{} {}", call.method, call.url),
                start: datetime(call.timestamp),
                duration_ms: call.duration_ms as f64,
                status: call.status.clone(),
                attributes: serde_json::json!({"api_call_id": call.id, "status_code": call.status_code, "error": call.error,
                                               "request_bytes": call.request_bytes, "response_bytes": call.response_bytes}),
            });
        }
        for mut line in detail["logs"].as_array().cloned().unwrap_or_default() {
            let n = line["attempt"].as_u64().unwrap_or(1);
            line["step"] = Value::String(step.label.clone());
            line["span_id"] = Value::String(hex_id(&format!("{}:{n}", step.seed), 16));
            self.logs.push(line);
        }
        // for_each iterations and parallel branches: their steps, under this one.
        for nested in detail["steps"].as_array().into_iter().flatten() {
            let label = nested["label"].as_str().unwrap_or_default().to_owned();
            let record = StepRecord {
                seed: format!("{execution_id}:{label}"),
                status: nested["status"].as_str().unwrap_or_default().to_owned(),
                started_at: nested["started_at_ms"].as_i64().unwrap_or(step.started_at),
                duration_ms: nested["duration_ms"].as_i64().unwrap_or(0),
                attributes: serde_json::json!({"type": nested["type"], "system": nested["system"],
                    "operation": nested["operation"], "attempts": nested["attempts"], "error": nested["error"],
                    "stderr": nested["detail"]["stderr"]}),
                detail: nested["detail"].clone(),
                label,
            };
            self.step(execution_id, &record, &step_id);
        }
    }
}

/// The full trace of an execution: the execution, each step and attempt, the plugin's setup,
/// instantiation, invocation and teardown, every outbound HTTP call (linked to its API-call
/// row) and every log line the plugin wrote.
#[utoipa::path(get, path = "/executions/{id}/trace", tag = "executions", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The trace", body = TraceView),
        (status = 404, description = "No such execution", body = crate::error::ErrorResponse),
    ))]
async fn get_trace(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> AppResult<Response> {
    let execution = state
        .store
        .get_execution(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("execution {id}")))?;
    let steps = state.store.step_results(&execution.id).await?;
    let filter = crate::store::ApiCallFilter { execution_id: Some(execution.id.clone()), ..Default::default() };
    let (mut calls, _) = state
        .store
        .list_api_calls(&principal.enterprise_id, &filter, crate::store::Page { limit: 10_000, offset: 0 })
        .await?;
    calls.reverse();
    let root = hex_id(&execution.id, 16);
    let start = execution.started_at.unwrap_or(execution.created_at);
    let spans = vec![Span {
        span_id: root.clone(),
        parent_id: None,
        kind: "execution".into(),
        name: format!("execution {}", execution.id),
        start: datetime(start),
        duration_ms: duration(&execution).unwrap_or(0) as f64,
        status: execution.status.clone(),
        attributes: serde_json::json!({"orchestration_id": execution.orchestration_id, "orchestration_version": execution.orchestration_version,
                                       "triggered_by": execution.triggered_by, "error": execution.error}),
    }];
    let mut trace = TraceBuilder { calls: &calls, spans, logs: Vec::new() };
    for step in steps {
        let detail: Value = step.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
        let attributes = serde_json::json!({"type": step.kind, "system": step.system, "operation": step.operation,
            "attempts": step.attempts, "error": step.error,
            "input": capped(step.input.as_deref().and_then(|t| serde_json::from_str(t).ok())),
            "output": capped(step.output.as_deref().and_then(|t| serde_json::from_str(t).ok())),
            "stderr": detail["stderr"]});
        let record = StepRecord {
            seed: format!("{}:{}", execution.id, step.position),
            label: step.name.clone(),
            status: step.status,
            started_at: step.started_at,
            duration_ms: step.duration_ms,
            attributes,
            detail,
        };
        trace.step(&execution.id, &record, &root);
    }
    let TraceBuilder { spans, logs, .. } = trace;
    super::for_reader(
        &principal,
        &TraceView { trace_id: hex_id(&execution.id, 32), execution_id: execution.id, spans, logs },
    )
}
