//! Plugin versions: `POST /plugins` (component upload), `GET /plugins`, `GET/PATCH/DELETE
//! /plugins/{id}` (a version's status: active, deprecated, disabled).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use dibop_core::PluginStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{ApiJson, ApiQuery, PageQuery, Paginated, Pagination};
use crate::audit::{self, Action, Change, Resource};
use crate::auth::{Principal, policy};
use crate::error::{AppError, AppResult, OrNotFound};
use crate::plugins::PluginInfo;
use crate::plugins::registry::Upload;
use crate::state::AppState;
use crate::store::PluginRow;

/// Largest component accepted by `POST /plugins`.
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plugins, upload_plugin))
        .routes(routes!(get_plugin, set_plugin_status, disable_plugin))
        .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES))
}

/// A plugin version.
#[derive(Serialize, ToSchema)]
pub struct PluginView {
    pub id: String,
    pub slug: String,
    pub version: String,
    pub sha256: String,
    /// `connector` or `transform`.
    pub world: String,
    pub name: String,
    pub description: String,
    /// `global` (catalogue) or `enterprise` (private to the uploading enterprise).
    pub scope: String,
    /// `active`; `deprecated` (connections that pin it keep using it, no connection may newly
    /// pin it); `disabled` (calls of connections whose pin admits no other version fail
    /// `plugin_disabled`); or `pending` (it declares more hosts or memory than the version
    /// before it: it serves nothing until an admin approves it with `PATCH` `active`).
    pub status: PluginStatus,
    /// What the connector declares it needs (null: nothing declared).
    pub capabilities: Option<crate::plugins::capabilities::Capabilities>,
    /// Shipped with DIBOP.
    pub bundled: bool,
    /// The trusted signer whose key verified the upload's signature (null: unsigned).
    pub signed_by: Option<String>,
    pub size_bytes: i64,
    pub system_type: Option<String>,
    pub auth: Option<String>,
    pub config: Vec<crate::plugins::ConfigKeyInfo>,
    pub operations: Vec<crate::plugins::OperationInfo>,
    pub created_at: DateTime<Utc>,
}

impl From<PluginRow> for PluginView {
    fn from(row: PluginRow) -> Self {
        let info: Option<PluginInfo> = serde_json::from_str(&row.info).ok();
        let (system_type, auth, config, operations, capabilities) = match info {
            Some(i) => (i.system_type, i.auth, i.config, i.operations, i.capabilities),
            None => (None, None, Vec::new(), Vec::new(), None),
        };
        Self {
            scope: if row.enterprise_id.is_some() { "enterprise" } else { "global" }.into(),
            id: row.id,
            slug: row.slug,
            version: row.version,
            sha256: row.sha256,
            world: row.world,
            name: row.name,
            description: row.description,
            status: row.status,
            capabilities,
            bundled: row.bundled != 0,
            signed_by: row.signed_by,
            size_bytes: row.size_bytes,
            system_type,
            auth,
            config,
            operations,
            created_at: datetime(row.created_at),
        }
    }
}

/// The bytes of a WebAssembly component (for OpenAPI: a binary body, not an array of numbers).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ComponentBytes(#[allow(dead_code, reason = "documentation only")] Vec<u8>);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `enterprise` (default): private to your enterprise; `global`: the catalogue (platform rights).
    pub scope: Option<String>,
}

/// List the plugin versions you can use: the global catalogue and your enterprise's own.
#[utoipa::path(get, path = "/plugins", tag = "plugins", params(PageQuery),
    responses((status = 200, description = "One page of plugin versions", body = Paginated<PluginView>)))]
async fn list_plugins(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<PluginView>>> {
    let (rows, total) = state.store().list_plugins(&principal.enterprise_id, pagination.page()).await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(PluginView::from).collect(), total)))
}

/// Upload a WebAssembly component (`Content-Type: application/wasm`). The server checks it is a
/// component of the connector or transform world, runs `describe()` under limits, stores it by
/// sha256 and compiles it. Identical bytes again answer 200 with the same record. An
/// `X-Dibop-Signature` header (base64 Ed25519 signature of `dibop-plugin-sha256:<hex sha256>`)
/// must verify with a trusted signer's key (`/plugin-signers`); the version then shows
/// `signed_by`. An enterprise with `require_signed_plugins` accepts signed uploads only.
#[utoipa::path(post, path = "/plugins", tag = "plugins", params(UploadQuery),
    request_body(content = ComponentBytes, content_type = "application/wasm", description = "The component bytes"),
    responses(
        (status = 201, description = "Registered", body = PluginView),
        (status = 200, description = "These bytes were registered before", body = PluginView),
        (status = 409, description = "Another component has this slug and version", body = crate::error::ErrorResponse),
        (status = 422, description = "Not a component of a supported world, or describe() failed", body = crate::error::ErrorResponse),
    ))]
async fn upload_plugin(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<(StatusCode, Json<PluginView>)> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/wasm") && !content_type.starts_with("application/octet-stream") {
        return Err(AppError::BadRequest("upload the component with Content-Type: application/wasm".into()));
    }
    let enterprise = match query.scope.as_deref().unwrap_or("enterprise") {
        "enterprise" => Some(principal.enterprise_id.as_str()),
        "global" => {
            policy::require_platform(&principal, "publishing to the global catalogue")?;
            None
        }
        other => return Err(AppError::BadRequest(format!("scope must be global or enterprise, got {other:?}"))),
    };
    if body.is_empty() {
        return Err(AppError::invalid("body", "the request body is empty; send the component bytes"));
    }
    let signed_by = signer(&state, &principal, &headers, &body).await?;
    match state.registry().upload(enterprise, body.to_vec(), false, signed_by).await? {
        Upload::Created(row) => {
            let shown = PluginView::from(row);
            let after = Some(audit::scrubbed(&shown));
            let change = Change {
                action: Action::Upload,
                resource: Resource::Plugin,
                resource_id: Some(&shown.id),
                before: None,
                after,
            };
            audit::record(&state, &principal, change).await;
            Ok((StatusCode::CREATED, Json(shown)))
        }
        Upload::Existing(row) => Ok((StatusCode::OK, Json(row.into()))),
    }
}

/// The name of the trusted signer whose key verifies the upload's signature, if it carries one;
/// refuses a signature no trusted key verifies, and an unsigned upload where the enterprise
/// requires signatures.
async fn signer(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: &[u8],
) -> AppResult<Option<String>> {
    let header = crate::signing::HEADER;
    let Some(given) = headers.get(header) else {
        let enterprise = state.store().get_enterprise(&principal.enterprise_id).await?.or_not_found("enterprise")?;
        if enterprise.require_signed_plugins != 0 {
            return Err(AppError::invalid(
                header,
                "this enterprise accepts signed plugins only: send the X-Dibop-Signature header (dibop plugin sign)",
            ));
        }
        return Ok(None);
    };
    let signature = given
        .to_str()
        .map_err(|_| "not text".to_owned())
        .and_then(crate::signing::parse_signature)
        .map_err(|message| AppError::invalid(header, message))?;
    let sha256 = dibop_core::sha256_hex(body);
    for trusted in state.store().signers().await? {
        let key = crate::signing::parse_public_key(&trusted.public_key).unwrap_or_default();
        if crate::signing::verifies(&key, &sha256, &signature) {
            return Ok(Some(trusted.name));
        }
    }
    Err(AppError::invalid(header, "the signature does not verify with any trusted signer's key (GET /plugin-signers)"))
}

/// Get one plugin version.
#[utoipa::path(get, path = "/plugins/{id}", tag = "plugins", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The plugin version", body = PluginView),
        (status = 404, description = "No such plugin visible to you", body = crate::error::ErrorResponse),
    ))]
async fn get_plugin(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<PluginView>> {
    let row = state.store().get_plugin(&principal.enterprise_id, &id).await?.or_not_found(format!("plugin {id}"))?;
    Ok(Json(row.into()))
}

/// A version's new status.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusInput {
    /// `active`, `deprecated` or `disabled` (`pending` is set by an upload only).
    #[schema(example = "deprecated", value_type = String)]
    pub status: String,
}

/// Set a plugin version's status: `deprecated` keeps it serving the connections that pin it and
/// refuses it to new pins; `disabled` stops it (their calls fail `plugin_disabled`); `active`
/// restores it, or approves a `pending` version (one that declares more than the version before
/// it; someone other than its uploader, or with platform rights, approves it). Global versions
/// need platform rights.
#[utoipa::path(patch, path = "/plugins/{id}", tag = "plugins", params(("id" = String, Path)), request_body = StatusInput,
    responses(
        (status = 200, description = "The plugin version with its new status", body = PluginView),
        (status = 403, description = "A pending version's uploader may not approve it", body = crate::error::ErrorResponse),
        (status = 404, description = "No such plugin you may change", body = crate::error::ErrorResponse),
    ))]
async fn set_plugin_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<StatusInput>,
) -> AppResult<Json<PluginView>> {
    let status = match input.status.parse() {
        Ok(status @ (PluginStatus::Active | PluginStatus::Deprecated | PluginStatus::Disabled)) => status,
        _ => {
            return Err(AppError::invalid(
                "status",
                format!("must be active, deprecated or disabled, got {:?}", input.status),
            ));
        }
    };
    let current =
        state.store().get_plugin(&principal.enterprise_id, &id).await?.or_not_found(format!("plugin {id}"))?;
    if current.status == PluginStatus::Pending && status == PluginStatus::Active && !principal.platform {
        approver_is_not_uploader(&state, &principal, &current).await?;
    }
    let row = state
        .store()
        .set_plugin_status(&principal.enterprise_id, &id, status, principal.platform)
        .await?
        .or_not_found(format!("plugin {id}"))?;
    let shown = PluginView::from(row);
    let before = Some(audit::scrubbed(&PluginView::from(current)));
    let after = Some(audit::scrubbed(&shown));
    let change = Change { action: Action::Update, resource: Resource::Plugin, resource_id: Some(&id), before, after };
    audit::record(&state, &principal, change).await;
    Ok(Json(shown))
}

/// Four eyes on a capability widening: a `pending` version is approved by someone other than
/// the person who uploaded it (an API key counts as the user who made it), unless with platform
/// rights. When the log no longer names the uploader, only platform rights approve it.
async fn approver_is_not_uploader(state: &AppState, principal: &Principal, plugin: &PluginRow) -> AppResult<()> {
    let person = async |actor: String| -> AppResult<String> {
        Ok(match actor.strip_prefix("api_key:") {
            Some(key) => match state.store().api_key_creator(&principal.enterprise_id, key).await? {
                Some(user) => format!("user:{user}"),
                None => actor,
            },
            None => actor,
        })
    };
    let approver = person(audit::actor(principal)).await?;
    let uploader = match state.store().plugin_uploader(&plugin.id).await? {
        Some(actor) => Some(person(actor).await?),
        None => None,
    };
    if uploader.is_some_and(|uploader| uploader != approver) {
        return Ok(());
    }
    Err(AppError::Forbidden(format!(
        "{} {} declares more hosts or memory than the version before it: someone other than its uploader (or \
         with platform rights) approves it",
        plugin.slug, plugin.version
    )))
}

/// Disable a plugin version (as `PATCH` with `disabled`); global ones need platform rights.
#[utoipa::path(delete, path = "/plugins/{id}", tag = "plugins", params(("id" = String, Path)),
    responses(
        (status = 204, description = "Disabled"),
        (status = 404, description = "No such plugin you may disable", body = crate::error::ErrorResponse),
    ))]
async fn disable_plugin(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let current = state.store().get_plugin(&principal.enterprise_id, &id).await?;
    let disabled = PluginStatus::Disabled;
    if state.store().set_plugin_status(&principal.enterprise_id, &id, disabled, principal.platform).await?.is_some() {
        let before = current.map(|row| audit::scrubbed(&PluginView::from(row)));
        let change =
            Change { action: Action::Disable, resource: Resource::Plugin, resource_id: Some(&id), before, after: None };
        audit::record(&state, &principal, change).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("plugin {id}")))
    }
}
