//! Observability: `GET /observability/metrics` (the enterprise's figures with this node's),
//! `GET /observability/sla`, `GET /observability/timeline` (finished executions per hour) and
//! the Prometheus endpoint `/metrics` (outside `/api/v1`; see `crate::metrics`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dibop_core::{ApiCallStatus, ExecutionStatus, Window};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiQuery;
use crate::auth::Principal;
use crate::engine::health::{self, SlaFigures};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(platform_metrics)).routes(routes!(sla)).routes(routes!(timeline))
}

/// Outbound requests of one system, by outcome.
#[derive(Serialize, ToSchema, Default)]
pub struct SystemCalls {
    pub system: String,
    pub success: i64,
    pub error: i64,
    pub timeout: i64,
}

/// Platform figures (SPEC 8).
#[derive(Serialize, ToSchema)]
pub struct PlatformMetrics {
    /// The enterprise's executions by status (queued, running, success, failed, partial, cancelled).
    pub executions: BTreeMap<String, i64>,
    /// The enterprise's API calls by system and outcome.
    pub api_calls: Vec<SystemCalls>,
    /// The enterprise's executions waiting for a worker.
    pub queue_depth: i64,
    /// Execution slots of this node in use, and its pool size.
    pub workers_busy: usize,
    pub workers: usize,
    /// Plugin instantiations on this node since it started, and their mean time.
    pub plugin_instantiations: u64,
    pub plugin_instantiation_mean_ms: f64,
    /// Requests this node answered 429 RATE_LIMIT since it started.
    pub rate_limit_rejections: u64,
    pub uptime_seconds: u64,
}

/// Platform metrics: the enterprise's executions and API calls, with this node's queue, worker,
/// plugin and rate-limit figures.
#[utoipa::path(get, path = "/observability/metrics", tag = "observability",
    responses((status = 200, description = "The figures", body = PlatformMetrics)))]
async fn platform_metrics(State(state): State<AppState>, principal: Principal) -> AppResult<Json<PlatformMetrics>> {
    let enterprise = principal.enterprise_id.as_str();
    let mut executions: BTreeMap<String, i64> =
        ExecutionStatus::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
    executions.extend(state.store().executions_by_status(enterprise).await?);
    let mut api_calls: Vec<SystemCalls> = Vec::new();
    for (system, outcome, count) in state.store().api_calls_by_outcome(enterprise).await? {
        if api_calls.last().is_none_or(|s| s.system != system) {
            api_calls.push(SystemCalls { system, ..SystemCalls::default() });
        }
        if let Some(entry) = api_calls.last_mut() {
            match outcome {
                ApiCallStatus::Success => entry.success += count,
                ApiCallStatus::Timeout => entry.timeout += count,
                // Failures of every other kind, refusals before the call left included.
                _ => entry.error += count,
            }
        }
    }
    let metrics = crate::metrics::get();
    let (plugin_instantiations, plugin_instantiation_mean_ms) = metrics.instantiation_summary();
    Ok(Json(PlatformMetrics {
        executions,
        api_calls,
        queue_depth: state.store().queued_executions(Some(enterprise)).await?,
        workers_busy: state.engine.busy(),
        workers: state.config.max_in_flight,
        plugin_instantiations,
        plugin_instantiation_mean_ms,
        rate_limit_rejections: metrics.rate_limited.get(),
        uptime_seconds: metrics.started.elapsed().as_secs(),
    }))
}

/// `/metrics` in the Prometheus text format. With `metrics_token` configured it wants
/// `Authorization: Bearer <token>` (compared in constant time).
pub async fn prometheus(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    if let Some(expected) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
            return Err(AppError::Unauthorized("/metrics needs the metrics token as a bearer token".into()));
        }
    }
    let metrics = crate::metrics::get();
    metrics.queue_depth.set(state.store().queued_executions(None).await?);
    metrics.workers_busy.set(i64::try_from(state.engine.busy()).unwrap_or(i64::MAX));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.render(state.config.metrics_token.is_some()),
    )
        .into_response())
}

/// The SLA window.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlaQuery {
    /// How far back, e.g. `24h` or `7d` (default `7d`).
    pub window: Option<String>,
}

/// SLA per orchestration and per system.
#[derive(Serialize, ToSchema)]
pub struct SlaReport {
    pub window: String,
    pub orchestrations: Vec<SlaFigures>,
    pub systems: Vec<SlaFigures>,
}

/// SLA figures per orchestration (its executions; `partial` and `cancelled` count as failures)
/// and per system (its API calls) over a window.
#[utoipa::path(get, path = "/observability/sla", tag = "observability", params(SlaQuery),
    responses(
        (status = 200, description = "The figures", body = SlaReport),
        (status = 400, description = "Malformed window", body = crate::error::ErrorResponse),
    ))]
async fn sla(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<SlaQuery>,
) -> AppResult<Json<SlaReport>> {
    // The report names the window as it was asked for.
    let window = query.window.unwrap_or_else(|| "7d".into());
    let span = Window::parse(&window).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let since = dibop_core::now_ms() - span.as_millis();
    let (orchestrations, systems) = health::sla(state.store(), &principal.enterprise_id, since).await?;
    Ok(Json(SlaReport { window, orchestrations, systems }))
}

/// Longest window of `GET /observability/timeline`: 7 days of hourly buckets.
pub const MAX_TIMELINE_HOURS: i64 = 7 * 24;

/// Finished executions of one hour.
#[derive(Serialize, ToSchema)]
pub struct HourBucket {
    /// The start of the hour.
    pub start: DateTime<Utc>,
    pub successes: i64,
    /// Failed, partial or cancelled (as the SLA counts them).
    pub failures: i64,
}

/// Finished executions per hour over a window, oldest hour first; hours without any are listed
/// with zeros.
#[derive(Serialize, ToSchema)]
pub struct Timeline {
    pub window: String,
    pub buckets: Vec<HourBucket>,
}

/// The enterprise's finished executions per hour (successes and failures) over a window of at
/// most 7 days (default 24h): the console's chart.
#[utoipa::path(get, path = "/observability/timeline", tag = "observability", params(SlaQuery),
    responses(
        (status = 200, description = "One bucket per hour", body = Timeline),
        (status = 400, description = "Malformed window, or longer than 7 days", body = crate::error::ErrorResponse),
    ))]
async fn timeline(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<SlaQuery>,
) -> AppResult<Json<Timeline>> {
    const HOUR_MS: i64 = 3_600_000;
    let window = query.window.unwrap_or_else(|| "24h".into());
    let span = Window::parse(&window).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let hours = (span.as_millis() + HOUR_MS - 1) / HOUR_MS;
    if hours > MAX_TIMELINE_HOURS {
        return Err(AppError::BadRequest(format!("window {window} is longer than the 7 days the timeline covers")));
    }
    let this_hour = dibop_core::now_ms() / HOUR_MS;
    let first = this_hour - hours + 1;
    let mut buckets: Vec<HourBucket> = (first..=this_hour)
        .map(|hour| HourBucket { start: super::datetime(hour * HOUR_MS), successes: 0, failures: 0 })
        .collect();
    for (hour, status, count) in state.store().executions_per_hour(&principal.enterprise_id, first * HOUR_MS).await? {
        let Some(bucket) = usize::try_from(hour - first).ok().and_then(|i| buckets.get_mut(i)) else { continue };
        if health::succeeded(&status) {
            bucket.successes += count;
        } else {
            bucket.failures += count;
        }
    }
    Ok(Json(Timeline { window, buckets }))
}
