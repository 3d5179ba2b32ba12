//! Tenants, for platform administrators: `GET/POST /enterprises`, `GET /enterprises/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use dibop_core::{Email, Role, Slug};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{ApiJson, PageQuery, Paginated, Pagination};
use super::settings::{Settings, valid_timezone};
use super::users::{UserView, check_password, hash_for};
use crate::audit::{self, Action, Change, Resource};
use crate::error::{AppResult, OrConflict, OrNotFound, Validator};
use crate::state::AppState;
use crate::store::{Enterprise, NewEnterprise, NewUser};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_enterprises, create_enterprise)).routes(routes!(get_enterprise))
}

#[derive(Serialize, ToSchema)]
pub struct EnterpriseView {
    pub id: String,
    #[serde(flatten)]
    pub settings: Settings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Enterprise> for EnterpriseView {
    fn from(e: Enterprise) -> Self {
        Self {
            id: e.id.clone(),
            created_at: datetime(e.created_at),
            updated_at: datetime(e.updated_at),
            settings: e.into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnterprise {
    #[schema(example = "Northside Motors")]
    pub name: String,
    /// Lowercase letters, digits and dashes; derived from the name when absent.
    pub slug: Option<String>,
    /// IANA time zone (default `UTC`).
    pub timezone: Option<String>,
    pub admin_email: String,
    pub admin_password: String,
    /// The first admin's display name (default: the email).
    pub admin_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedEnterprise {
    #[serde(flatten)]
    pub enterprise: EnterpriseView,
    /// The enterprise's first admin.
    pub admin: UserView,
}

fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

/// List enterprises.
#[utoipa::path(get, path = "/enterprises", tag = "enterprises", params(PageQuery),
    responses((status = 200, description = "One page of enterprises", body = Paginated<EnterpriseView>)))]
async fn list_enterprises(
    State(state): State<AppState>,
    pagination: Pagination,
) -> AppResult<Json<Paginated<EnterpriseView>>> {
    let (rows, total) = state.store().list_enterprises(pagination.page()).await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(EnterpriseView::from).collect(), total)))
}

/// Get one enterprise.
#[utoipa::path(get, path = "/enterprises/{id}", tag = "enterprises", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The enterprise", body = EnterpriseView),
        (status = 404, description = "No such enterprise", body = crate::error::ErrorResponse),
    ))]
async fn get_enterprise(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Json<EnterpriseView>> {
    let enterprise = state.store().get_enterprise(&id).await?.or_not_found(format!("enterprise {id}"))?;
    Ok(Json(enterprise.into()))
}

/// Create an enterprise and its first admin, in one transaction.
#[utoipa::path(post, path = "/enterprises", tag = "enterprises", request_body = CreateEnterprise,
    responses(
        (status = 201, description = "Created", body = CreatedEnterprise),
        (status = 409, description = "Slug already in use", body = crate::error::ErrorResponse),
    ))]
async fn create_enterprise(
    State(state): State<AppState>,
    principal: crate::auth::Principal,
    ApiJson(body): ApiJson<CreateEnterprise>,
) -> AppResult<(StatusCode, Json<CreatedEnterprise>)> {
    let slug = body.slug.clone().unwrap_or_else(|| slugify(&body.name));
    let timezone = body.timezone.clone().unwrap_or_else(|| "UTC".into());
    let mut v = Validator::new();
    v.check_name("name", &body.name);
    v.check(Slug::parse_enterprise(&slug).is_ok(), "slug", "must be 1-63 lowercase letters, digits or dashes");
    v.check(valid_timezone(&timezone), "timezone", "must be an IANA time zone such as Europe/Berlin");
    let email = v.parse(Email::parse(&body.admin_email), "admin_email");
    check_password(&mut v, "admin_password", &body.admin_password);
    if let Some(name) = &body.admin_name {
        v.check_name("admin_name", name);
    }
    let email = v.finish_with(email)?.into_string();
    // The admin's address may have accounts in other enterprises (addresses are unique per
    // enterprise; see `api::users`).
    let admin = NewUser {
        name: body.admin_name.map_or_else(|| email.clone(), |n| n.trim().to_owned()),
        password_hash: hash_for(&state, &email, body.admin_password).await?,
        email,
        role: Role::EnterpriseAdmin,
        platform_access: false,
    };
    let new = NewEnterprise { name: body.name.trim().to_owned(), slug, timezone };
    let (enterprise, admin) = state
        .store()
        .create_enterprise_with_admin(new, admin)
        .await
        .or_conflict(|| "an enterprise with this slug already exists".into())?;
    let created = CreatedEnterprise { enterprise: enterprise.into(), admin: admin.into() };
    // In the new enterprise's log, so that its admins see who created it.
    let id = created.enterprise.id.clone();
    let after = Some(audit::scrubbed(&created));
    let change =
        Change { action: Action::Create, resource: Resource::Enterprise, resource_id: Some(&id), before: None, after };
    audit::write(&state, Some(id.clone()), audit::actor(&principal), change).await;
    Ok((StatusCode::CREATED, Json(created)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_come_from_names() {
        assert_eq!(super::slugify("  Northside Motors GmbH & Co. "), "northside-motors-gmbh-co");
        assert!(dibop_core::Slug::parse_enterprise(&super::slugify("-- A-1 --")).is_ok());
    }
}
