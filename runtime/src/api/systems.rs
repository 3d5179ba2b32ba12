//! The systems catalogue: `GET /systems`, `GET /systems/{slug}/apis`, `POST /systems/{slug}/ping`.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use dibop_core::{Window, World};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiQuery, PageInfo, PageQuery, Paginated, Pagination};
use crate::auth::Principal;
use crate::connections::{self, Caller};
use crate::error::{AppError, AppResult, OrNotFound};
use crate::plugins::registry::VersionPin;
use crate::plugins::{OperationInfo, PluginInfo};
use crate::state::AppState;
use crate::store::PluginRow;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_systems)).routes(routes!(list_apis)).routes(routes!(ping_system))
}

/// A system in the catalogue: the newest active connector of a slug.
#[derive(Serialize, ToSchema)]
pub struct SystemView {
    pub slug: String,
    pub name: String,
    /// general, oem, dms, crm, finance, telematics or logistics.
    #[serde(rename = "type")]
    pub system_type: String,
    pub description: String,
    pub version: String,
    /// Number of operations (APIs).
    pub operations: usize,
    /// From your calls of the last 24 hours and your connections' circuits, as in
    /// `GET /api-calls/systems`: healthy, degraded, offline or unchecked.
    pub health: String,
    /// How the connector authenticates: none, api_key, basic, bearer or
    /// oauth2_client_credentials.
    pub auth: String,
    /// What a connection to it needs: its config keys (secret ones go in `credentials`).
    pub config: Vec<crate::plugins::ConfigKeyInfo>,
    /// The trusted signer whose key verified this version (null: unsigned).
    pub signed_by: Option<String>,
}

/// One API (operation) of a system.
#[derive(Serialize, ToSchema)]
pub struct ApiView {
    pub name: String,
    pub method: String,
    pub path: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub output_schema: serde_json::Value,
}

impl From<OperationInfo> for ApiView {
    fn from(o: OperationInfo) -> Self {
        Self {
            name: o.name,
            method: o.method,
            path: o.path,
            description: o.description,
            input_schema: o.input_schema,
            output_schema: o.output_schema,
        }
    }
}

/// A page of a system's APIs, with the connector version they belong to and what a connection
/// to it needs.
#[derive(Serialize, ToSchema)]
pub struct ApisPage {
    pub data: Vec<ApiView>,
    pub pagination: PageInfo,
    pub system: SystemNeeds,
}

/// The connector version a page of APIs describes, and what a connection to it needs.
#[derive(Serialize, ToSchema)]
pub struct SystemNeeds {
    pub slug: String,
    pub version: String,
    /// `active` or `deprecated`.
    pub status: dibop_core::PluginStatus,
    /// How the connector authenticates: none, api_key, basic, bearer or
    /// oauth2_client_credentials.
    pub auth: String,
    /// Its config keys (secret ones go in a connection's `credentials`).
    pub config: Vec<crate::plugins::ConfigKeyInfo>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApisQuery {
    /// Which version to describe: an exact version or a semver range, as a connection's
    /// `plugin_version` (default: the newest active one).
    pub version: Option<String>,
}

/// The answer of a ping.
#[derive(Serialize, ToSchema)]
pub struct PingResult {
    pub system: String,
    /// online, offline, timeout or auth_error.
    pub status: String,
    pub latency_ms: u64,
    pub checked_at: DateTime<Utc>,
    pub message: Option<String>,
}

fn info(row: &PluginRow) -> AppResult<PluginInfo> {
    Ok(serde_json::from_str(&row.info).map_err(anyhow::Error::from)?)
}

fn paginate<T>(pagination: Pagination, all: Vec<T>) -> Paginated<T> {
    let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
    let page = pagination.page();
    let rows = all
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(pagination.page_size as usize)
        .collect();
    pagination.envelope(rows, total)
}

/// The catalogue: every system your enterprise can connect.
#[utoipa::path(get, path = "/systems", tag = "systems", params(PageQuery),
    responses((status = 200, description = "One page of systems", body = Paginated<SystemView>)))]
async fn list_systems(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<SystemView>>> {
    let day = Window::parse("24h").expect("a window");
    let stats = crate::engine::health::systems(state.store(), state.registry(), &principal.enterprise_id, day).await?;
    let mut systems = Vec::new();
    for row in state.registry().newest(&principal.enterprise_id, World::Connector).await? {
        let info = info(&row)?;
        let health = stats.iter().find(|s| s.system == row.slug).map_or("unchecked", |s| s.health.as_str()).to_owned();
        systems.push(SystemView {
            slug: row.slug,
            name: row.name,
            system_type: info.system_type.unwrap_or_else(|| "general".into()),
            description: row.description,
            version: row.version,
            operations: info.operations.len(),
            health,
            auth: info.auth.unwrap_or_else(|| "none".into()),
            config: info.config,
            signed_by: row.signed_by,
        });
    }
    Ok(Json(paginate(pagination, systems)))
}

/// The APIs (operations) of a system.
#[utoipa::path(get, path = "/systems/{slug}/apis", tag = "systems", params(("slug" = String, Path), ApisQuery, PageQuery),
    responses(
        (status = 200, description = "One page of the system's APIs", body = ApisPage),
        (status = 404, description = "No such system, or no usable version matches `version`", body = crate::error::ErrorResponse),
    ))]
async fn list_apis(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<ApisQuery>,
    pagination: Pagination,
) -> AppResult<Json<ApisPage>> {
    let pin = VersionPin::parse(query.version.as_deref().unwrap_or_default())
        .map_err(|message| AppError::BadRequest(format!("version: {message}")))?;
    let row =
        state.registry().resolve_pinned(&principal.enterprise_id, World::Connector, &slug, &pin).await?.or_not_found(
            format!("system {slug}{}", query.version.map(|v| format!(" version {v}")).unwrap_or_default()),
        )?;
    let info = info(&row)?;
    let page = paginate(pagination, info.operations.into_iter().map(ApiView::from).collect());
    let system = SystemNeeds {
        slug: row.slug,
        version: row.version,
        status: row.status,
        auth: info.auth.unwrap_or_else(|| "none".into()),
        config: info.config,
    };
    Ok(Json(ApisPage { data: page.data, pagination: page.pagination, system }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PingQuery {
    /// Which connection to use (id or name); default: the enterprise's first for the system.
    pub connection: Option<String>,
}

/// Check a system's health through the connector with your connection for it.
#[utoipa::path(post, path = "/systems/{slug}/ping", tag = "systems", params(("slug" = String, Path), PingQuery),
    responses(
        (status = 200, description = "The health check result", body = PingResult),
        (status = 404, description = "No such system, or no connection for it", body = crate::error::ErrorResponse),
        (status = 409, description = "The system's connector is not a connector", body = crate::error::ErrorResponse),
    ))]
async fn ping_system(
    State(state): State<AppState>,
    principal: Principal,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<PingQuery>,
) -> AppResult<Json<PingResult>> {
    state
        .registry()
        .resolve(&principal.enterprise_id, World::Connector, &slug)
        .await?
        .or_not_found(format!("system {slug}"))?;
    let connection = match &query.connection {
        Some(c) => state.store().find_connection(&principal.enterprise_id, c).await?.filter(|row| row.system == slug),
        None => state.store().connection_for_system(&principal.enterprise_id, &slug).await?,
    }
    .ok_or_else(|| {
        AppError::NotFound(format!("no connection for system {slug}; create one with POST /api/v1/connections"))
    })?;
    let prepared =
        connections::prepare(&state.engine, &connection, Caller { step: Some("ping".into()), ..Caller::default() })
            .await?;
    let report = prepared.ping(&state.engine).await?;
    let (status, message) = match report.result {
        Ok(health) => (health.status.to_owned(), health.message),
        Err(e) if e.code == "timeout" => ("timeout".to_owned(), Some(e.message)),
        Err(e) => ("offline".to_owned(), Some(e.to_string())),
    };
    Ok(Json(PingResult {
        system: slug,
        status,
        latency_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        checked_at: Utc::now(),
        message,
    }))
}
