//! API keys of an enterprise: `GET/POST /settings/api-keys`, `DELETE /settings/api-keys/{id}`.
//!
//! A key's role is at most its creator's (`policy::require_grant`): in particular only a caller
//! with platform rights creates a `platform_admin` key, the one kind of key with platform rights.
//! A key may expire (`expires_at`); an expired key is refused like a revoked one (401).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use dibop_core::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, PageQuery, Paginated, Pagination};
use super::{datetime, opt_datetime};
use crate::audit::{self, Action, Change, Resource};
use crate::auth::{Principal, api_keys, policy};
use crate::error::{AppError, AppResult, Validator};
use crate::state::AppState;
use crate::store::{ApiKey, NewApiKey};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_keys, create_key)).routes(routes!(revoke_key))
}

/// An API key as listed: never the key itself.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The first characters of the key, to recognise it.
    #[schema(example = "dbp_AbCdEfGh")]
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Set once the key is revoked; a revoked key no longer authenticates.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the key stops authenticating; `null`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            role: key.role,
            prefix: key.prefix,
            created_at: datetime(key.created_at),
            last_used_at: opt_datetime(key.last_used_at),
            revoked_at: opt_datetime(key.revoked_at),
            expires_at: opt_datetime(key.expires_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(example = "ci-pipeline")]
    pub name: String,
    /// At most the creator's own rights; `platform_admin` needs platform rights.
    pub role: Role,
    /// When the key stops working (RFC 3339, in the future); absent: never.
    #[schema(example = "2027-01-31T00:00:00Z")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The one answer that carries the key in plaintext.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    /// The key. It is shown only here; store it now.
    pub key: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// List the enterprise's API keys (prefixes only).
#[utoipa::path(get, path = "/settings/api-keys", tag = "settings", params(PageQuery),
    responses((status = 200, description = "One page of keys", body = Paginated<ApiKeyView>)))]
async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<ApiKeyView>>> {
    let (rows, total) = state.store().list_api_keys(&principal.enterprise_id, pagination.page()).await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(ApiKeyView::from).collect(), total)))
}

/// Create an API key. The key is in this answer only.
#[utoipa::path(post, path = "/settings/api-keys", tag = "settings", request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; `key` is shown once", body = CreatedApiKey),
        (status = 403, description = "The role is more than the caller holds", body = crate::error::ErrorResponse),
    ))]
async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> AppResult<(StatusCode, Json<CreatedApiKey>)> {
    let mut v = Validator::new();
    v.check_name("name", &body.name);
    if let Some(at) = body.expires_at {
        v.check(at > Utc::now(), "expires_at", "must be in the future");
    }
    v.finish()?;
    policy::require_grant(&principal, body.role, false)?;
    let generated = api_keys::generate();
    let new = NewApiKey {
        name: body.name.trim().to_owned(),
        role: body.role,
        prefix: generated.prefix,
        key_hash: generated.hash,
        created_by: principal.user_id.clone(),
        expires_at: body.expires_at.map(|at| at.timestamp_millis()),
    };
    let key = state.store().create_api_key(&principal.enterprise_id, new).await?;
    let created = CreatedApiKey {
        id: key.id,
        name: key.name,
        role: key.role,
        prefix: key.prefix,
        key: generated.key,
        created_at: datetime(key.created_at),
        expires_at: opt_datetime(key.expires_at),
    };
    let after = Some(audit::scrubbed(&created));
    audit::record(
        &state,
        &principal,
        Change {
            action: Action::Create,
            resource: Resource::ApiKey,
            resource_id: Some(&created.id),
            before: None,
            after,
        },
    )
    .await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revoke an API key; it stops authenticating at once.
#[utoipa::path(delete, path = "/settings/api-keys/{id}", tag = "settings", params(("id" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key in this enterprise", body = crate::error::ErrorResponse),
    ))]
async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if state.store().revoke_api_key(&principal.enterprise_id, &id).await? {
        let change = Change {
            action: Action::Revoke,
            resource: Resource::ApiKey,
            resource_id: Some(&id),
            before: None,
            after: None,
        };
        audit::record(&state, &principal, change).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("API key {id}")))
    }
}
