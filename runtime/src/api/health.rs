//! Liveness and readiness probes (outside `/api/v1`, unauthenticated).
//!
//! `/healthz` says the process answers, nothing more: a database outage must not get the
//! process restarted. `/readyz` says whether this node can serve requests now: the database
//! answers, every migration is applied and a write commits with room to spare
//! (`Store::ready`), within [`READY_WITHIN`]; otherwise 503 with `Retry-After`, and 200 again
//! at the first probe after the fault clears.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::NotReady;

/// The longest `/readyz` waits for the database before answering 503: a database slower than
/// this (or one that hangs, or a pool held by slow statements) is not ready.
pub const READY_WITHIN: Duration = Duration::from_millis(700);

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers, every migration is applied and a write commits.
pub async fn readyz(State(state): State<AppState>) -> AppResult<Json<Value>> {
    let message = match tokio::time::timeout(READY_WITHIN, state.store().ready()).await {
        Ok(Ok(())) => return Ok(Json(json!({"status": "ready"}))),
        Ok(Err(NotReady::Migrations)) => "migrations are not all applied",
        Ok(Err(err @ NotReady::Unreadable(_))) => {
            tracing::warn!(error = %err, "readiness check failed");
            "the database is unreachable"
        }
        Ok(Err(err @ NotReady::Unwritable(_))) => {
            tracing::warn!(error = %err, "readiness check failed");
            "the database cannot commit a write (out of space, read-only or failing)"
        }
        Err(_) => {
            tracing::warn!(
                within_ms = READY_WITHIN.as_millis(),
                "readiness check: the database did not answer in time"
            );
            "the database did not answer in time"
        }
    };
    Err(AppError::Unavailable(message.into()))
}
