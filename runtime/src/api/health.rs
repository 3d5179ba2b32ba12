//! Liveness and readiness probes (outside `/api/v1`, unauthenticated).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers and every migration is applied.
pub async fn readyz(State(state): State<AppState>) -> AppResult<Json<Value>> {
    match state.store.ready().await {
        Ok(true) => Ok(Json(json!({"status": "ready"}))),
        Ok(false) => Err(AppError::Unavailable("migrations are not all applied".into())),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "readiness check failed");
            Err(AppError::Unavailable("database unreachable".into()))
        }
    }
}
