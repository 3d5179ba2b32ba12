//! The connection test runner: `POST /connections/{id}/test` on a stored connection, and the
//! test a save may ask for (`test` in the body) on the connection as it would be stored, which
//! refuses the save when it fails, or answers it on a dry run.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ConnectionView;
use crate::api::api_calls::ApiCallView;
use crate::api::extract::ApiJson;
use crate::audit::{self, Action, Change, Resource};
use crate::auth::Principal;
use crate::connections::{self, Caller};
use crate::error::{AppError, AppResult, FieldError, OrNotFound, Validator};
use crate::plugins::host::LogLine;
use crate::plugins::{CallError, Invocation};
use crate::state::AppState;
use crate::store::ConnectionRow;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    #[schema(example = "decode_vin")]
    pub operation: String,
    #[serde(default)]
    pub input: serde_json::Value,
}

/// What one test call did.
#[derive(Serialize, ToSchema)]
pub struct TestResult {
    /// `success` or `error`.
    pub status: String,
    pub output: Option<serde_json::Value>,
    pub error: Option<CallError>,
    pub duration_ms: u64,
    /// The outbound requests the call made.
    pub api_calls: Vec<ApiCallView>,
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<LogLine>,
    /// What the plugin wrote to stdout and stderr (credentials redacted).
    pub stdout: String,
    pub stderr: String,
}

/// Runs `test` (when asked) on the connection as it would be stored (`stored_id`: the one it
/// replaces): a failure refuses the change (422 at `test`) unless this is a dry run, which
/// answers it.
pub(super) async fn tested_first(
    state: &AppState,
    principal: &Principal,
    would_be: &ConnectionRow,
    stored_id: Option<&str>,
    test: Option<TestRequest>,
    dry_run: bool,
) -> AppResult<Option<TestResult>> {
    let Some(request) = test else { return Ok(None) };
    let operation = request.operation.clone();
    let result = run_test(state, principal, would_be, stored_id, request, true).await?;
    if let (false, Some(error)) = (dry_run, &result.error) {
        return Err(AppError::Validation(vec![FieldError {
            path: "test".into(),
            message: format!(
                "the connection test ({operation}) failed with the new settings, so nothing was stored: {error}"
            ),
        }]));
    }
    Ok(Some(result))
}

/// Run one operation through the connection's connector (the connection test runner) and see
/// its output or error, duration, logs and the API calls it made.
#[utoipa::path(post, path = "/connections/{id}/test", tag = "connections", params(("id" = String, Path)), request_body = TestRequest,
    responses(
        (status = 200, description = "The call ran (see `status`)", body = TestResult),
        (status = 404, description = "No such connection", body = crate::error::ErrorResponse),
        (status = 409, description = "No active connector serves the connection's system", body = crate::error::ErrorResponse),
    ))]
pub(super) async fn test_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<TestRequest>,
) -> AppResult<Json<TestResult>> {
    let row =
        state.store().get_connection(&principal.enterprise_id, &id).await?.or_not_found(format!("connection {id}"))?;
    Ok(Json(run_test(&state, &principal, &row, Some(&row.id), request, false).await?))
}

/// A dry run in the audit log: who tried which settings (as shown, secrets removed; the test's
/// answer is left out, it is the connector's, not the connection's).
pub(super) async fn record_dry_run(state: &AppState, principal: &Principal, id: Option<&str>, shown: &ConnectionView) {
    let after = Some(audit::scrubbed(shown));
    let change =
        Change { action: Action::DryRun, resource: Resource::Connection, resource_id: id, before: None, after };
    audit::record(state, principal, change).await;
}

/// One call of the connection `row` (the stored one, or one about to be stored: `unsaved`):
/// the connection test. It runs the connector with the connection's credentials, so the audit
/// log records who ran which operation and how it ended, under `stored_id`, the stored
/// connection it is (or replaces; `None` for a new one).
async fn run_test(
    state: &AppState,
    principal: &Principal,
    row: &ConnectionRow,
    stored_id: Option<&str>,
    request: TestRequest,
    unsaved: bool,
) -> AppResult<TestResult> {
    let mut v = Validator::new();
    v.check(!request.operation.trim().is_empty(), "operation", "must name an operation of the connector");
    v.finish()?;
    let operation = request.operation.clone();
    let prepared =
        connections::prepare(&state.engine, row, Caller { step: Some("test".into()), unsaved, ..Caller::default() })
            .await?;
    let invocation = Invocation { attempt: 1, idempotency_key: dibop_core::new_id(), ..Invocation::default() };
    let input = if request.input.is_null() { serde_json::json!({}) } else { request.input };
    let report = prepared.invoke(&state.engine, &request.operation, &input, invocation).await?;
    state.store().insert_api_calls(&report.api_calls).await?;
    let (status, output, error) = match report.result {
        Ok(output) => ("success", Some(output), None),
        Err(error) => ("error", None, Some(error)),
    };
    let after = serde_json::json!({
        "operation": operation,
        "status": status,
        "error_code": error.as_ref().map(|e| e.code.clone()),
        "unsaved": unsaved,
        "plugin_version": row.plugin_version,
    });
    let change = Change {
        action: Action::Test,
        resource: Resource::Connection,
        resource_id: stored_id,
        before: None,
        after: Some(after),
    };
    audit::record(state, principal, change).await;
    Ok(TestResult {
        status: status.into(),
        output,
        error,
        duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        api_calls: report.api_calls.into_iter().map(ApiCallView::from).collect(),
        logs: report.logs,
        stdout: report.stdout,
        stderr: report.stderr,
    })
}
