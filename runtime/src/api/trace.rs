//! `GET /executions/{id}/trace`: an execution's steps, nested body steps, plugin attempts,
//! HTTP calls and mappings as spans (assembled by `dibop_engine::trace`).

use axum::extract::{Path, State};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::engine::trace::TraceView;
use crate::error::{AppResult, OrNotFound};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_trace))
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
    let execution =
        state.store().get_execution(&principal.enterprise_id, &id).await?.or_not_found(format!("execution {id}"))?;
    super::for_reader(&principal, &crate::engine::trace::build(state.store(), execution).await?)
}
