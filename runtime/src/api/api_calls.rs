//! API-call logs: `GET /api-calls` and `GET /api-calls/systems`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use dibop_core::{ApiCallStatus, Window};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{ApiQuery, PageQuery, Paginated, Pagination, iso_instant};
use crate::auth::Principal;
use crate::engine::health::{self, SystemStats};
use crate::error::{AppError, AppResult};
use crate::plugins::outbound::ApiCallRecord;
use crate::state::AppState;
use crate::store::{ApiCallFilter, ApiCallRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_api_calls)).routes(routes!(system_stats))
}

/// One outbound request a plugin made.
#[derive(Serialize, ToSchema)]
pub struct ApiCallView {
    pub id: String,
    pub timestamp: DateTime<Utc>,
    pub system: String,
    /// Connection name.
    pub connection: Option<String>,
    pub connection_id: Option<String>,
    pub method: String,
    /// Without user info; sensitive query values and credentials replaced by `****`.
    pub url: String,
    pub status_code: Option<i64>,
    /// `success`, `error` or `timeout`; `circuit_open` and `rate_limited` for a step's call that
    /// the connection's circuit breaker or outbound rate limit refused before it left.
    pub status: ApiCallStatus,
    pub duration_ms: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub request_preview: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    pub orchestration_id: Option<String>,
    pub execution_id: Option<String>,
    pub step: Option<String>,
}

impl From<ApiCallRow> for ApiCallView {
    fn from(r: ApiCallRow) -> Self {
        Self {
            id: r.id,
            timestamp: datetime(r.timestamp),
            system: r.system,
            connection: r.connection,
            connection_id: r.connection_id,
            method: r.method,
            url: r.url,
            status_code: r.status_code,
            status: r.status,
            duration_ms: r.duration_ms,
            request_bytes: r.request_bytes,
            response_bytes: r.response_bytes,
            request_preview: r.request_preview,
            response_preview: r.response_preview,
            error: r.error,
            orchestration_id: r.orchestration_id,
            execution_id: r.execution_id,
            step: r.step,
        }
    }
}

impl From<ApiCallRecord> for ApiCallView {
    fn from(r: ApiCallRecord) -> Self {
        Self {
            id: r.id,
            timestamp: datetime(r.timestamp_ms),
            system: r.origin.system,
            connection: r.origin.connection,
            connection_id: r.origin.connection_id,
            method: r.method,
            url: r.url,
            status_code: r.status_code.map(i64::from),
            status: r.status,
            duration_ms: r.duration_ms,
            request_bytes: r.request_bytes,
            response_bytes: r.response_bytes,
            request_preview: r.request_preview,
            response_preview: r.response_preview,
            error: r.error,
            orchestration_id: r.origin.orchestration_id,
            execution_id: r.origin.execution_id,
            step: r.origin.step,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiCallQuery {
    /// System slug.
    pub system: Option<String>,
    /// success, error, timeout, circuit_open or rate_limited.
    pub status: Option<String>,
    /// Start of the range, ISO 8601.
    pub from: Option<String>,
    /// End of the range, ISO 8601.
    pub to: Option<String>,
    pub orchestration_id: Option<String>,
    pub execution_id: Option<String>,
    pub connection_id: Option<String>,
}

/// List outbound requests, newest first.
#[utoipa::path(get, path = "/api-calls", tag = "api-calls", params(ApiCallQuery, PageQuery),
    responses((status = 200, description = "One page of API calls", body = Paginated<ApiCallView>)))]
async fn list_api_calls(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ApiCallQuery>,
    pagination: Pagination,
) -> AppResult<axum::response::Response> {
    let status = query
        .status
        .map(|status| {
            status.parse::<ApiCallStatus>().map_err(|_| {
                AppError::BadRequest(format!(
                    "status must be success, error, timeout, circuit_open or rate_limited, got {status:?}"
                ))
            })
        })
        .transpose()?;
    let filter = ApiCallFilter {
        from_ms: iso_instant("from", query.from.as_ref())?,
        to_ms: iso_instant("to", query.to.as_ref())?,
        system: query.system,
        status,
        orchestration_id: query.orchestration_id,
        execution_id: query.execution_id,
        connection_id: query.connection_id,
    };
    let (rows, total) = state.store().list_api_calls(&principal.enterprise_id, &filter, pagination.page()).await?;
    super::for_reader(&principal, &pagination.envelope(rows.into_iter().map(ApiCallView::from).collect(), total))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Window such as `24h`, `7d`, `30m` (default `24h`).
    pub window: Option<String>,
}

/// Calls, outcomes, latency percentiles and health per system.
#[utoipa::path(get, path = "/api-calls/systems", tag = "api-calls", params(StatsQuery),
    responses((status = 200, description = "Statistics per system", body = Vec<SystemStats>)))]
async fn system_stats(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> AppResult<Json<Vec<SystemStats>>> {
    let window =
        Window::parse(query.window.as_deref().unwrap_or("24h")).map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(Json(health::systems(state.store(), state.registry(), &principal.enterprise_id, window).await?))
}
