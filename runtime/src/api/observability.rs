//! Observability: `GET /observability/metrics` (the enterprise's figures with this node's) and
//! the Prometheus endpoint `/metrics` (outside `/api/v1`; see `crate::metrics`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(platform_metrics))
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
    let mut executions: BTreeMap<String, i64> = ["queued", "running", "success", "failed", "partial", "cancelled"]
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    executions.extend(state.store.executions_by_status(enterprise).await?);
    let mut api_calls: Vec<SystemCalls> = Vec::new();
    for (system, outcome, count) in state.store.api_calls_by_outcome(enterprise).await? {
        if api_calls.last().is_none_or(|s| s.system != system) {
            api_calls.push(SystemCalls { system, ..SystemCalls::default() });
        }
        if let Some(entry) = api_calls.last_mut() {
            match outcome.as_str() {
                "success" => entry.success += count,
                "timeout" => entry.timeout += count,
                _ => entry.error += count,
            }
        }
    }
    let metrics = crate::metrics::get();
    let (plugin_instantiations, plugin_instantiation_mean_ms) = metrics.instantiation_summary();
    Ok(Json(PlatformMetrics {
        executions,
        api_calls,
        queue_depth: state.store.queued_executions(Some(enterprise)).await?,
        workers_busy: state.engine.busy(),
        workers: state.config.workers.max(1),
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
    metrics.queue_depth.set(state.store.queued_executions(None).await?);
    metrics.workers_busy.set(i64::try_from(state.engine.busy()).unwrap_or(i64::MAX));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.render(),
    )
        .into_response())
}
