//! Trusted plugin signers: `GET/POST /plugin-signers`, `DELETE /plugin-signers/{id}`. Platform
//! admins add the Ed25519 public keys whose signatures an upload may carry (see
//! [`crate::signing`]); any admin reads them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::ApiJson;
use crate::audit::{self, Action, Change, Resource};
use crate::auth::{Principal, policy};
use crate::error::{AppError, AppResult, OrConflict, OrNotFound, Validator};
use crate::signing;
use crate::state::AppState;
use crate::store::{MAX_SIGNERS, SignerRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_signers, create_signer)).routes(routes!(delete_signer))
}

/// A trusted signer.
#[derive(Serialize, ToSchema)]
pub struct SignerView {
    pub id: String,
    pub name: String,
    /// The 32-byte Ed25519 public key, base64.
    pub public_key: String,
    /// The first 16 hex digits of the key's sha256, to compare keys by eye.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
}

impl From<SignerRow> for SignerView {
    fn from(row: SignerRow) -> Self {
        let key = signing::parse_public_key(&row.public_key).unwrap_or_default();
        Self {
            fingerprint: dibop_core::sha256_hex(&key)[..16].to_owned(),
            id: row.id,
            name: row.name,
            public_key: row.public_key,
            created_at: datetime(row.created_at),
        }
    }
}

/// A signer to trust.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignerInput {
    #[schema(example = "Acme connectors")]
    pub name: String,
    /// The 32-byte Ed25519 public key, base64 (`dibop plugin keygen` prints it).
    pub public_key: String,
}

/// The signers whose signatures uploads may carry.
#[utoipa::path(get, path = "/plugin-signers", tag = "plugins",
    responses((status = 200, description = "Every trusted signer", body = Vec<SignerView>)))]
async fn list_signers(State(state): State<AppState>, _principal: Principal) -> AppResult<Json<Vec<SignerView>>> {
    Ok(Json(state.store().signers().await?.into_iter().map(SignerView::from).collect()))
}

/// Trust a signer's key (platform rights).
#[utoipa::path(post, path = "/plugin-signers", tag = "plugins", request_body = SignerInput,
    responses(
        (status = 201, description = "Trusted", body = SignerView),
        (status = 409, description = "The name or key is trusted already, or there are as many signers as allowed", body = crate::error::ErrorResponse),
    ))]
async fn create_signer(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<SignerInput>,
) -> AppResult<(StatusCode, Json<SignerView>)> {
    policy::require_platform(&principal, "trusting a plugin signer")?;
    let mut v = Validator::new();
    v.check_name("name", &input.name);
    let key = v.parse(signing::parse_public_key(&input.public_key), "public_key");
    let key = v.finish_with(key)?;
    if i64::try_from(state.store().signers().await?.len()).unwrap_or(i64::MAX) >= MAX_SIGNERS {
        return Err(AppError::Conflict(format!("at most {MAX_SIGNERS} signers; remove one first")));
    }
    use base64::Engine;
    let canonical = base64::engine::general_purpose::STANDARD.encode(&key);
    let name = input.name.trim().to_owned();
    let row = state
        .store()
        .create_signer(&name, &canonical)
        .await
        .or_conflict(|| format!("a signer named {name:?} or with this key is trusted already"))?;
    let shown = SignerView::from(row);
    let after = Some(audit::scrubbed(&shown));
    let change = Change {
        action: Action::Create,
        resource: Resource::PluginSigner,
        resource_id: Some(&shown.id),
        before: None,
        after,
    };
    audit::record(&state, &principal, change).await;
    Ok((StatusCode::CREATED, Json(shown)))
}

/// Stop trusting a signer (platform rights); versions it signed stay as they are.
#[utoipa::path(delete, path = "/plugin-signers/{id}", tag = "plugins", params(("id" = String, Path)),
    responses(
        (status = 204, description = "No longer trusted"),
        (status = 404, description = "No such signer", body = crate::error::ErrorResponse),
    ))]
async fn delete_signer(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    policy::require_platform(&principal, "removing a plugin signer")?;
    let row = state.store().delete_signer(&id).await?.or_not_found(format!("signer {id}"))?;
    let before = Some(audit::scrubbed(&SignerView::from(row)));
    let change = Change {
        action: Action::Delete,
        resource: Resource::PluginSigner,
        resource_id: Some(&id),
        before,
        after: None,
    };
    audit::record(&state, &principal, change).await;
    Ok(StatusCode::NO_CONTENT)
}
