//! `GET /audit-log`: who changed what and when. Enterprise admins see their enterprise's rows;
//! callers with platform rights see every enterprise's (and the platform-level ones), or one
//! enterprise's with `enterprise_id`. Viewers see none.
//!
//! Platform rights do not read tenant payloads (as they get 403 on another enterprise's
//! executions): in another enterprise's rows they see who did what to which resource and when,
//! with `before` and `after` withheld. Their own enterprise's rows, and the platform-level ones
//! (which belong to no enterprise), they read whole.

use axum::extract::State;
use chrono::{DateTime, Utc};
use dibop_core::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{ApiQuery, PageQuery, Paginated, Pagination, iso_instant};
use crate::audit::{Action, Resource};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::{AuditFilter, AuditRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_log))
}

/// One change.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: String,
    /// `null` for platform-level rows (a failed login of an unknown address).
    pub enterprise_id: Option<String>,
    pub at: DateTime<Utc>,
    /// `user:<id>`, `api_key:<id>`, or for a failed login `email:<address>` (escaped, at most
    /// 254 bytes) or `email:[not an address]` when the text given was none.
    pub actor: String,
    /// create, update, delete, upload, disable, revoke, deactivate, cancel, retry, replay,
    /// dry_run, test, login or login_failed.
    pub action: String,
    /// orchestration, connection, plugin, user, api_key, settings, webhook, alert_rule,
    /// enterprise, execution or session.
    pub resource: String,
    pub resource_id: Option<String>,
    /// The resource as the API showed it before and after, secrets removed.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    /// True when `before` and `after` are withheld: a row of another enterprise read with
    /// platform rights.
    pub payload_withheld: bool,
}

impl AuditEntry {
    /// `row` as `principal` may read it: another enterprise's payloads are withheld from
    /// platform rights.
    fn shown_to(row: AuditRow, principal: &Principal) -> Self {
        let foreign = row.enterprise_id.as_ref().is_some_and(|e| *e != principal.enterprise_id);
        if foreign {
            Self { payload_withheld: true, ..Self::from(AuditRow { before: None, after: None, ..row }) }
        } else {
            Self::from(row)
        }
    }
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        let json = |text: Option<String>| text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)));
        Self {
            id: row.id,
            enterprise_id: row.enterprise_id,
            at: datetime(row.at),
            actor: row.actor,
            action: row.action,
            resource: row.resource,
            resource_id: row.resource_id,
            before: json(row.before),
            after: json(row.after),
            payload_withheld: false,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `user:<id>`, `api_key:<id>` or `email:<address>`.
    pub actor: Option<String>,
    /// What it was done to (`orchestration`, `connection`, ...; an unknown name is a 400).
    pub resource: Option<String>,
    /// What was done (`create`, `update`, ...; an unknown name is a 400).
    pub action: Option<String>,
    /// ISO 8601.
    pub from: Option<String>,
    /// ISO 8601.
    pub to: Option<String>,
    /// Platform rights only: one enterprise's rows (default: every enterprise's).
    pub enterprise_id: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/audit-log", tag = "settings", params(AuditQuery, PageQuery),
    responses(
        (status = 200, description = "One page of changes", body = Paginated<AuditEntry>),
        (status = 403, description = "Viewers do not read the audit log", body = crate::error::ErrorResponse),
    ))]
async fn list_audit_log(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
    pagination: Pagination,
) -> AppResult<axum::Json<Paginated<AuditEntry>>> {
    if principal.role == Role::Viewer && !principal.platform {
        return Err(AppError::Forbidden("the audit log is for administrators".into()));
    }
    let enterprise_id = if principal.platform { query.enterprise_id } else { Some(principal.enterprise_id.clone()) };
    if let Some(action) = query.action.as_ref().filter(|a| matches!(Action::parse(a), Action::Unknown(_))) {
        return Err(AppError::BadRequest(format!("action must be one of {}, got {action:?}", Action::names())));
    }
    if let Some(resource) = query.resource.as_ref().filter(|r| matches!(Resource::parse(r), Resource::Unknown(_))) {
        return Err(AppError::BadRequest(format!("resource must be one of {}, got {resource:?}", Resource::names())));
    }
    let filter = AuditFilter {
        enterprise_id,
        actor: query.actor,
        resource: query.resource,
        action: query.action,
        from_ms: iso_instant("from", query.from.as_ref())?,
        to_ms: iso_instant("to", query.to.as_ref())?,
    };
    let (rows, total) = state.store().list_audit(&filter, pagination.page()).await?;
    Ok(axum::Json(
        pagination.envelope(rows.into_iter().map(|row| AuditEntry::shown_to(row, &principal)).collect(), total),
    ))
}
