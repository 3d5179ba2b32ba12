//! Canonical data: `GET /canonical`, `GET/POST /canonical/{domain}`,
//! `GET/PUT /canonical/{domain}/{id}`. Records are validated against the domain's JSON Schema,
//! unique per natural key, carry their lineage, and viewers see PII masked.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use dibop_core::Role;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{ApiJson, ApiQuery, PageQuery, Paginated, Pagination};
use crate::auth::Principal;
use crate::canonical::{self, Domain, Field};
use crate::error::{AppError, AppResult, OrConflict, OrNotFound};
use crate::state::AppState;
use crate::store::{CanonicalRow, Lineage};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_domains))
        .routes(routes!(list_records, create_record))
        .routes(routes!(get_record, replace_record))
}

/// A domain with its fields and how many records the enterprise has.
#[derive(Serialize, ToSchema)]
pub struct DomainView {
    pub domain: String,
    /// Core, Operational, Financial or End-of-life.
    pub group: String,
    pub description: String,
    pub natural_key: String,
    pub fields: Vec<Field>,
    pub records: i64,
}

/// Where a record came from.
#[derive(Serialize, ToSchema)]
pub struct LineageView {
    /// api or execution.
    pub source: String,
    pub connection: Option<String>,
    pub system: Option<String>,
    pub execution_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct RecordView {
    pub id: String,
    pub domain: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub lineage: LineageView,
    pub updated_at: DateTime<Utc>,
}

fn record_view(row: CanonicalRow, domain: &Domain, principal: &Principal) -> RecordView {
    let mut data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
    if principal.role == Role::Viewer {
        domain.mask(&mut data);
    }
    RecordView {
        id: row.id,
        domain: row.domain,
        data,
        lineage: LineageView {
            source: row.source_kind,
            connection: row.source_connection,
            system: row.source_system,
            execution_id: row.execution_id,
            created_by: row.created_by,
            created_at: datetime(row.created_at),
        },
        updated_at: datetime(row.updated_at),
    }
}

fn find(name: &str) -> AppResult<&'static Domain> {
    canonical::domain(name).or_not_found(format!("canonical domain {name}"))
}

/// Validates a record; answers its natural key.
fn checked(domain: &Domain, record: &Value) -> AppResult<String> {
    let errors = domain.validate(record);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    domain.key_of(record).ok_or_else(|| AppError::BadRequest(format!("{} is required", domain.natural_key)))
}

fn conflict(domain: &Domain, key: &str) -> String {
    format!("a {} record with {} {key:?} exists", domain.name, domain.natural_key)
}

/// The 22 domains with their fields and record counts.
#[utoipa::path(get, path = "/canonical", tag = "canonical",
    responses((status = 200, description = "Every domain", body = Vec<DomainView>)))]
async fn list_domains(State(state): State<AppState>, principal: Principal) -> AppResult<Json<Vec<DomainView>>> {
    let counts: HashMap<String, i64> =
        state.store().canonical_counts(&principal.enterprise_id).await?.into_iter().collect();
    Ok(Json(
        canonical::domains()
            .iter()
            .map(|d| DomainView {
                domain: d.name.clone(),
                group: d.group.clone(),
                description: d.description.clone(),
                natural_key: d.natural_key.clone(),
                fields: d.fields.clone(),
                records: counts.get(&d.name).copied().unwrap_or(0),
            })
            .collect(),
    ))
}

/// A domain's records; any query parameter other than `page`/`page_size` filters on the field
/// of that name (`?make=HONDA`).
#[utoipa::path(get, path = "/canonical/{domain}", tag = "canonical", params(("domain" = String, Path), PageQuery),
    responses(
        (status = 200, description = "One page of records", body = Paginated<RecordView>),
        (status = 404, description = "No such domain", body = crate::error::ErrorResponse),
    ))]
async fn list_records(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
    pagination: Pagination,
) -> AppResult<Json<Paginated<RecordView>>> {
    let domain = find(&name)?;
    let mut filters: Vec<(String, String)> =
        query.into_iter().filter(|(k, _)| k != "page" && k != "page_size").collect();
    filters.sort();
    if let Some((field, _)) = filters.iter().find(|(k, _)| !domain.fields.iter().any(|f| &f.name == k)) {
        return Err(AppError::BadRequest(format!("{field:?} is not a field of {name}")));
    }
    if principal.role == Role::Viewer
        && let Some((field, _)) =
            filters.iter().find(|(k, _)| domain.fields.iter().any(|f| &f.name == k && f.pii != "none"))
    {
        return Err(AppError::Forbidden(format!("viewers cannot filter on the personal field {field}")));
    }
    let (rows, total) =
        state.store().list_canonical(&principal.enterprise_id, &name, &filters, pagination.page()).await?;
    let views = rows.into_iter().map(|row| record_view(row, domain, &principal)).collect();
    Ok(Json(pagination.envelope(views, total)))
}

/// Create a record: validated against the domain's schema (422 lists every bad field), unique
/// by natural key (409).
#[utoipa::path(post, path = "/canonical/{domain}", tag = "canonical", params(("domain" = String, Path)),
    request_body = Object,
    responses(
        (status = 201, description = "Created", body = RecordView),
        (status = 404, description = "No such domain", body = crate::error::ErrorResponse),
        (status = 409, description = "The natural key exists", body = crate::error::ErrorResponse),
    ))]
async fn create_record(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    ApiJson(record): ApiJson<Value>,
) -> AppResult<(StatusCode, Json<RecordView>)> {
    let domain = find(&name)?;
    let key = checked(domain, &record)?;
    let lineage = Lineage {
        kind: "api",
        created_by: principal.user_id.clone().or_else(|| principal.api_key_id.clone()),
        ..Lineage::default()
    };
    let row = state
        .store()
        .insert_canonical(&principal.enterprise_id, &name, &key, &record.to_string(), lineage)
        .await
        .or_conflict(|| conflict(domain, &key))?;
    Ok((StatusCode::CREATED, Json(record_view(row, domain, &principal))))
}

/// One record.
#[utoipa::path(get, path = "/canonical/{domain}/{id}", tag = "canonical",
    params(("domain" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "The record", body = RecordView)))]
async fn get_record(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
) -> AppResult<Json<RecordView>> {
    let domain = find(&name)?;
    let row = state
        .store()
        .get_canonical(&principal.enterprise_id, &name, &id)
        .await?
        .or_not_found(format!("{name} record {id}"))?;
    Ok(Json(record_view(row, domain, &principal)))
}

/// Replace a record's data (same validation; 409 when the new natural key is taken).
#[utoipa::path(put, path = "/canonical/{domain}/{id}", tag = "canonical",
    params(("domain" = String, Path), ("id" = String, Path)), request_body = Object,
    responses((status = 200, description = "Replaced", body = RecordView)))]
async fn replace_record(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
    ApiJson(record): ApiJson<Value>,
) -> AppResult<Json<RecordView>> {
    let domain = find(&name)?;
    let key = checked(domain, &record)?;
    let row = state
        .store()
        .replace_canonical(&principal.enterprise_id, &name, &id, &key, &record.to_string())
        .await
        .or_conflict(|| conflict(domain, &key))?
        .or_not_found(format!("{name} record {id}"))?;
    Ok(Json(record_view(row, domain, &principal)))
}
