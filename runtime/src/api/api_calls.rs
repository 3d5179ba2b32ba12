//! API-call logs: `GET /api-calls` and `GET /api-calls/systems`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use dibop_core::{Window, World};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiQuery, PageQuery, Paginated, Pagination, iso_instant};
use super::{datetime, opt_datetime};
use crate::auth::Principal;
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
    pub status: String,
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
            status: r.status.into(),
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

/// The outcomes an API-call row can have.
const STATUSES: [&str; 5] = ["success", "error", "timeout", "circuit_open", "rate_limited"];

/// List outbound requests, newest first.
#[utoipa::path(get, path = "/api-calls", tag = "api-calls", params(ApiCallQuery, PageQuery),
    responses((status = 200, description = "One page of API calls", body = Paginated<ApiCallView>)))]
async fn list_api_calls(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ApiCallQuery>,
    pagination: Pagination,
) -> AppResult<axum::response::Response> {
    if let Some(status) = query.status.as_ref().filter(|s| !STATUSES.contains(&s.as_str())) {
        return Err(AppError::BadRequest(format!(
            "status must be success, error, timeout, circuit_open or rate_limited, got {status:?}"
        )));
    }
    let filter = ApiCallFilter {
        from_ms: iso_instant("from", query.from.as_ref())?,
        to_ms: iso_instant("to", query.to.as_ref())?,
        system: query.system,
        status: query.status,
        orchestration_id: query.orchestration_id,
        execution_id: query.execution_id,
        connection_id: query.connection_id,
    };
    let (rows, total) = state.store.list_api_calls(&principal.enterprise_id, &filter, pagination.page()).await?;
    super::for_reader(&principal, &pagination.envelope(rows.into_iter().map(ApiCallView::from).collect(), total))
}

/// Per-system statistics over a window.
#[derive(Serialize, ToSchema)]
pub struct SystemStats {
    pub system: String,
    pub calls: u64,
    pub success: u64,
    pub error: u64,
    pub timeout: u64,
    /// Calls from steps refused by an open circuit or the outbound rate limit (not in `calls`).
    pub circuit_open: u64,
    pub rate_limited: u64,
    /// Percent of calls that succeeded.
    pub success_rate: f64,
    pub latency_p50_ms: i64,
    pub latency_p95_ms: i64,
    pub latency_p99_ms: i64,
    pub last_call: Option<DateTime<Utc>>,
    /// healthy (>= 95% success), degraded (>= 50%, or a connection's circuit is half-open, or
    /// failing calls are being counted towards opening it), offline (below, the last 3 calls
    /// failed, or a connection's circuit is open), unchecked (no calls in the window).
    pub health: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Window such as `24h`, `7d`, `30m` (default `24h`).
    pub window: Option<String>,
}

pub(super) fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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
    Ok(Json(stats(&state, &principal.enterprise_id, window).await?))
}

/// The statistics of every system the enterprise can call (those without calls included).
pub(super) async fn stats(state: &AppState, enterprise_id: &str, window: Window) -> AppResult<Vec<SystemStats>> {
    let since = dibop_core::now_ms() - window.as_millis();
    let samples = state.store.api_call_samples(enterprise_id, since).await?;
    let mut by_system: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for sample in samples {
        by_system.entry(sample.system.clone()).or_default().push(sample);
    }
    for system in state.registry.newest(enterprise_id, World::Connector).await? {
        by_system.entry(system.slug).or_default();
    }
    let circuits = state.store.circuits(enterprise_id).await?;
    let mut stats = Vec::new();
    for (system, all) in by_system {
        let count = |s: &str| all.iter().filter(|x| x.status == s).count() as u64;
        let (circuit_open, rate_limited) = (count("circuit_open"), count("rate_limited"));
        let samples: Vec<_> =
            all.iter().filter(|x| ["success", "error", "timeout"].contains(&x.status.as_str())).collect();
        let (success, error, timeout) = (count("success"), count("error"), count("timeout"));
        let calls = samples.len() as u64;
        let mut durations: Vec<i64> = samples.iter().map(|s| s.duration_ms).collect();
        durations.sort_unstable();
        let rate = if calls == 0 { 0.0 } else { (success as f64 * 10_000.0 / calls as f64).round() / 100.0 };
        let last_three_failed = samples.len() >= 3 && samples.iter().rev().take(3).all(|s| s.status != "success");
        let circuit = |state: &str| circuits.iter().any(|(s, c)| *s == system && c.state == state);
        let failing = circuits.iter().any(|(s, c)| *s == system && c.failures > 0);
        let health = match calls {
            _ if circuit("open") => "offline",
            0 if circuit("half_open") || failing => "degraded",
            0 => "unchecked",
            _ if last_three_failed || rate < 50.0 => "offline",
            _ if rate < 95.0 || circuit("half_open") || failing => "degraded",
            _ => "healthy",
        };
        stats.push(SystemStats {
            system,
            calls,
            success,
            error,
            timeout,
            circuit_open,
            rate_limited,
            success_rate: rate,
            latency_p50_ms: percentile(&durations, 50.0),
            latency_p95_ms: percentile(&durations, 95.0),
            latency_p99_ms: percentile(&durations, 99.0),
            last_call: opt_datetime(samples.last().map(|s| s.timestamp)),
            health: health.into(),
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(super::percentile(&sorted, 50.0), 50);
        assert_eq!(super::percentile(&sorted, 99.0), 99);
    }
}
