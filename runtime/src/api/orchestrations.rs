//! Orchestrations: `GET/POST /orchestrations`, `GET/PUT/DELETE /orchestrations/{id}` and the
//! kept versions (`GET /orchestrations/{id}/versions[/{version}]`). Their executions are in [`super::executions`], traces in [`super::trace`].

use dibop_core::World;
use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{JsonOrYaml, PageQuery, Paginated, Pagination};
use super::kept;
use crate::audit::{self, Action, Change, Resource};
use crate::auth::Principal;
use crate::engine::definition::{self, Catalogue, Definition};
use crate::error::{AppError, AppResult, OrNotFound};
use crate::plugins::PluginInfo;
use crate::plugins::registry::{self, VersionPin};
use crate::state::AppState;
use crate::store::OrchestrationRow;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orchestrations, create_orchestration))
        .routes(routes!(get_orchestration, replace_orchestration, delete_orchestration))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
}

/// An orchestration as stored: the definition plus identity and version.
#[derive(Serialize, ToSchema)]
pub struct OrchestrationView {
    pub id: String,
    pub enterprise_id: String,
    /// Incremented on every update; executions record the version they ran.
    pub version: i64,
    #[serde(flatten)]
    pub definition: Definition,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Schedules only: why the last slot did not fire (for example the execution limit or a
    /// parameter problem); cleared when a slot fires again. The slot is recorded as missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_error_at: Option<DateTime<Utc>>,
}

fn view(row: OrchestrationRow) -> AppResult<OrchestrationView> {
    Ok(OrchestrationView {
        schedule_error: row.schedule_error.clone(),
        schedule_error_at: row.schedule_error_at.map(datetime),
        definition: serde_json::from_str(&row.definition).map_err(anyhow::Error::from)?,
        id: row.id,
        enterprise_id: row.enterprise_id,
        version: row.version,
        created_at: datetime(row.created_at),
        updated_at: datetime(row.updated_at),
    })
}

/// The enterprise's connections and plugins, as validation sees them.
struct EnterpriseCatalogue {
    connections: HashMap<String, Option<Vec<String>>>,
    transforms: Vec<String>,
    /// Names and ids of the enterprise's orchestrations.
    orchestrations: Vec<String>,
    /// By name and by id: the orchestrations each one starts, and its (name, id).
    calls: HashMap<String, (Vec<String>, Vec<String>)>,
    /// The orchestration being replaced.
    saved_id: Option<String>,
    min_cron_interval_secs: u64,
}

impl Catalogue for EnterpriseCatalogue {
    fn operations(&self, connection: &str) -> Option<Option<Vec<String>>> {
        self.connections.get(connection).cloned()
    }

    fn transform_exists(&self, slug: &str) -> bool {
        self.transforms.iter().any(|t| t == slug)
    }

    fn orchestration_exists(&self, name_or_id: &str) -> bool {
        self.orchestrations.iter().any(|o| o == name_or_id)
    }

    fn calls(&self, name_or_id: &str) -> (Vec<String>, Vec<String>) {
        self.calls.get(name_or_id).cloned().unwrap_or_default()
    }

    fn saved_id(&self) -> Option<&str> {
        self.saved_id.as_deref()
    }

    fn min_cron_interval_secs(&self) -> u64 {
        self.min_cron_interval_secs
    }
}

async fn catalogue(state: &AppState, enterprise_id: &str) -> AppResult<EnterpriseCatalogue> {
    let (rows, _) =
        state.store().list_connections(enterprise_id, crate::store::Page { limit: 10_000, offset: 0 }).await?;
    let plugins = state.store().usable_plugins(enterprise_id).await?;
    let mut connections = HashMap::new();
    for row in rows {
        // The operations of the version the connection is pinned to.
        let pin = VersionPin::parse(&row.plugin_version).unwrap_or(VersionPin::Newest);
        let mut ops = registry::pick(&plugins, World::Connector, &row.system, &pin)
            .and_then(|p| serde_json::from_str::<PluginInfo>(&p.info).ok())
            .map(|info| info.operations.into_iter().map(|o| o.name).collect::<Vec<_>>());
        // Connectors configured per connection (the generic REST connector) add its operations.
        if let Some(configured) =
            serde_json::from_str::<Value>(&row.config).ok().and_then(|c| c.get("operations").cloned())
            && let (Some(list), Some(map)) = (ops.as_mut(), configured.as_object())
        {
            list.extend(map.keys().cloned());
        }
        connections.insert(row.id.clone(), ops.clone());
        connections.insert(row.name.clone(), ops);
    }
    let transforms =
        state.registry().newest(enterprise_id, World::Transform).await?.into_iter().map(|p| p.slug).collect();
    let (rows, _) =
        state.store().list_orchestrations(enterprise_id, crate::store::Page { limit: 10_000, offset: 0 }).await?;
    let mut calls = HashMap::new();
    for row in &rows {
        let targets = serde_json::from_str::<Definition>(&row.definition)
            .map(|d| definition::sub_orchestrations(&d.steps))
            .unwrap_or_default();
        let entry = (targets, vec![row.id.clone(), row.name.clone()]);
        calls.insert(row.name.clone(), entry.clone());
        calls.insert(row.id.clone(), entry);
    }
    let orchestrations = rows.into_iter().flat_map(|row| [row.id, row.name]).collect();
    Ok(EnterpriseCatalogue {
        connections,
        transforms,
        orchestrations,
        calls,
        saved_id: None,
        min_cron_interval_secs: state.config.min_cron_interval_secs,
    })
}

async fn validated(
    state: &AppState,
    principal: &Principal,
    def: &Definition,
    saved_id: Option<&str>,
) -> AppResult<String> {
    let mut catalogue = catalogue(state, &principal.enterprise_id).await?;
    catalogue.saved_id = saved_id.map(str::to_owned);
    let errors = definition::validate(def, &catalogue);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    Ok(serde_json::to_string(def).map_err(anyhow::Error::from)?)
}

/// List orchestrations.
#[utoipa::path(get, path = "/orchestrations", tag = "orchestrations", params(PageQuery),
    responses((status = 200, description = "One page of orchestrations", body = Paginated<OrchestrationView>)))]
async fn list_orchestrations(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<OrchestrationView>>> {
    let (rows, total) = state.store().list_orchestrations(&principal.enterprise_id, pagination.page()).await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(view).collect::<AppResult<_>>()?, total)))
}

/// Create an orchestration. Every problem (unknown step or parameter reference, unknown
/// connection or operation, duplicate step names, invalid JSONPath, wrong types) is listed in one 422.
#[utoipa::path(post, path = "/orchestrations", tag = "orchestrations", request_body(content((Definition = "application/json"), (Definition = "application/yaml"))),
    responses((status = 201, description = "Created (version 1)", body = OrchestrationView)))]
async fn create_orchestration(
    State(state): State<AppState>,
    principal: Principal,
    JsonOrYaml(def): JsonOrYaml<Definition>,
) -> AppResult<(StatusCode, Json<OrchestrationView>)> {
    let text = validated(&state, &principal, &def, None).await?;
    let row = state
        .store()
        .create_orchestration(&principal.enterprise_id, &def.name, &def.status, &text, definition::schedule_of(&def))
        .await?;
    let shown = view(row)?;
    let after = Some(audit::scrubbed(&shown));
    let change = Change {
        action: Action::Create,
        resource: Resource::Orchestration,
        resource_id: Some(&shown.id),
        before: None,
        after,
    };
    audit::record(&state, &principal, change).await;
    Ok((StatusCode::CREATED, Json(shown)))
}

/// Get an orchestration.
#[utoipa::path(get, path = "/orchestrations/{id}", tag = "orchestrations", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The orchestration", body = OrchestrationView),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
    ))]
async fn get_orchestration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<OrchestrationView>> {
    let row = state
        .store()
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .or_not_found(format!("orchestration {id}"))?;
    Ok(Json(view(row)?))
}

/// Replace an orchestration; its version increments and the old definition is kept. Fields
/// left out keep their stored values (`null` resets one to its default); a definition equal to
/// the stored one changes nothing.
#[utoipa::path(put, path = "/orchestrations/{id}", tag = "orchestrations", params(("id" = String, Path)), request_body(content((Definition = "application/json"), (Definition = "application/yaml"))),
    responses(
        (status = 200, description = "Replaced", body = OrchestrationView),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
    ))]
async fn replace_orchestration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    JsonOrYaml(body): JsonOrYaml<serde_json::Map<String, Value>>,
) -> AppResult<Json<OrchestrationView>> {
    let current = state
        .store()
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .or_not_found(format!("orchestration {id}"))?;
    let def: Definition = kept::over_stored(kept::object(&current.definition), body)?;
    let text = validated(&state, &principal, &def, Some(&id)).await?;
    if text == current.definition {
        return Ok(Json(view(current)?));
    }
    let row = state
        .store()
        .update_orchestration(
            &principal.enterprise_id,
            &id,
            &def.name,
            &def.status,
            &text,
            definition::schedule_of(&def),
        )
        .await?
        .or_not_found(format!("orchestration {id}"))?;
    let shown = view(row)?;
    let (before, after) = (Some(audit::scrubbed(&view(current)?)), Some(audit::scrubbed(&shown)));
    audit::record(
        &state,
        &principal,
        Change { action: Action::Update, resource: Resource::Orchestration, resource_id: Some(&id), before, after },
    )
    .await;
    Ok(Json(shown))
}

/// Delete an orchestration; its executions stay readable.
#[utoipa::path(delete, path = "/orchestrations/{id}", tag = "orchestrations", params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
    ))]
async fn delete_orchestration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let current = state.store().get_orchestration(&principal.enterprise_id, &id).await?;
    if state.store().delete_orchestration(&principal.enterprise_id, &id).await? {
        let before = current.map(view).transpose()?.map(|v| audit::scrubbed(&v));
        let change = Change {
            action: Action::Delete,
            resource: Resource::Orchestration,
            resource_id: Some(&id),
            before,
            after: None,
        };
        audit::record(&state, &principal, change).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("orchestration {id}")))
    }
}

/// One kept version of an orchestration.
#[derive(Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: i64,
    /// When this version was saved.
    pub created_at: DateTime<Utc>,
}

/// One kept version with its definition, as it was saved.
#[derive(Serialize, ToSchema)]
pub struct VersionView {
    pub orchestration_id: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub definition: Definition,
}

/// The versions of an orchestration, newest first (every `PUT` keeps the one it replaced).
#[utoipa::path(get, path = "/orchestrations/{id}/versions", tag = "orchestrations", params(("id" = String, Path), PageQuery),
    responses(
        (status = 200, description = "Versions, newest first", body = Paginated<VersionSummary>),
        (status = 404, description = "No such orchestration", body = crate::error::ErrorResponse),
    ))]
async fn list_versions(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    pagination: Pagination,
) -> AppResult<Json<Paginated<VersionSummary>>> {
    state
        .store()
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .or_not_found(format!("orchestration {id}"))?;
    let (rows, total) = state.store().list_orchestration_versions(&id, pagination.page()).await?;
    let versions =
        rows.into_iter().map(|row| VersionSummary { version: row.version, created_at: datetime(row.created_at) });
    Ok(Json(pagination.envelope(versions.collect(), total)))
}

/// One version of an orchestration with the definition it had.
#[utoipa::path(get, path = "/orchestrations/{id}/versions/{version}", tag = "orchestrations",
    params(("id" = String, Path), ("version" = i64, Path)),
    responses(
        (status = 200, description = "The version", body = VersionView),
        (status = 400, description = "The version is not a whole number", body = crate::error::ErrorResponse),
        (status = 404, description = "No such orchestration or version", body = crate::error::ErrorResponse),
    ))]
async fn get_version(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, version)): Path<(String, String)>,
) -> AppResult<Json<VersionView>> {
    let version: i64 = version
        .parse()
        .map_err(|_| AppError::BadRequest(format!("version {version:?} is not a whole number such as 1")))?;
    state
        .store()
        .get_orchestration(&principal.enterprise_id, &id)
        .await?
        .or_not_found(format!("orchestration {id}"))?;
    let (text, created_at) = state
        .store()
        .orchestration_version_saved(&id, version)
        .await?
        .or_not_found(format!("version {version} of orchestration {id}"))?;
    Ok(Json(VersionView {
        orchestration_id: id,
        version,
        created_at: datetime(created_at),
        definition: serde_json::from_str(&text).map_err(anyhow::Error::from)?,
    }))
}
