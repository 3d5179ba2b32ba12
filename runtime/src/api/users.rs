//! Users of an enterprise: `GET/POST /users`, `GET/PUT/DELETE /users/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, PageQuery, Paginated, Pagination};
use super::{datetime, opt_datetime};
use crate::auth::{Principal, Role, password, policy};
use crate::error::{AppError, AppResult, Validator};
use crate::state::AppState;
use crate::store::{NewUser, User, UserPatch, is_unique_violation};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_users, create_user)).routes(routes!(get_user, update_user, delete_user))
}

/// A user as the API shows it (never the password hash).
#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Whether the user also has platform rights.
    pub platform_access: bool,
    /// `active` or `deactivated`.
    pub status: String,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            platform_access: user.platform_access != 0 || user.role == Role::PlatformAdmin,
            id: user.id,
            email: user.email,
            name: user.name,
            role: user.role,
            status: user.status,
            last_login_at: opt_datetime(user.last_login_at),
            created_at: datetime(user.created_at),
            updated_at: datetime(user.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(example = "jane@dealer.example")]
    pub email: String,
    pub name: String,
    pub role: Role,
    /// At least 8 characters.
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub password: Option<String>,
    /// `active` or `deactivated`.
    pub status: Option<String>,
}

/// Checks an email address the way a sign-up form would: one `@`, a dotted domain, no spaces.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace)
}

pub fn check_password(v: &mut Validator, path: &str, password: &str) {
    v.check(password.chars().count() >= 8, path, "must be at least 8 characters");
    v.check(password.len() <= 1024, path, "must be at most 1024 bytes");
}

pub fn check_name(v: &mut Validator, path: &str, name: &str) {
    v.check(!name.trim().is_empty(), path, "must not be empty");
    v.check(name.chars().count() <= 200, path, "must be at most 200 characters");
}

/// List the enterprise's users.
#[utoipa::path(get, path = "/users", tag = "users", params(PageQuery),
    responses((status = 200, description = "One page of users", body = Paginated<UserView>)))]
async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<UserView>>> {
    let (rows, total) = state.store.list_users(&principal.enterprise_id, pagination.page()).await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(UserView::from).collect(), total)))
}

/// Create a user in the caller's enterprise.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 409, description = "Email already in use", body = crate::error::ErrorResponse),
    ))]
async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateUser>,
) -> AppResult<(StatusCode, Json<UserView>)> {
    let email = body.email.trim().to_lowercase();
    let mut v = Validator::new();
    v.check(valid_email(&email), "email", "must be a valid email address");
    check_name(&mut v, "name", &body.name);
    check_password(&mut v, "password", &body.password);
    v.finish()?;
    if body.role == Role::PlatformAdmin {
        policy::require_platform(&principal, "granting platform_admin")?;
    }
    let new = NewUser {
        email,
        name: body.name.trim().to_owned(),
        role: body.role,
        platform_access: false,
        password_hash: password::hash(body.password).await?,
    };
    match state.store.create_user(&principal.enterprise_id, &new).await {
        Ok(user) => Ok((StatusCode::CREATED, Json(user.into()))),
        Err(err) if is_unique_violation(&err) => {
            Err(AppError::Conflict(format!("email {} is already in use", new.email)))
        }
        Err(err) => Err(err.into()),
    }
}

/// Get one user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user in this enterprise", body = crate::error::ErrorResponse),
    ))]
async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<UserView>> {
    let user = state
        .store
        .get_user(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    Ok(Json(user.into()))
}

/// Change a user's name, role, password or status.
#[utoipa::path(put, path = "/users/{id}", tag = "users", params(("id" = String, Path)), request_body = UpdateUser,
    responses(
        (status = 200, description = "Updated", body = UserView),
        (status = 404, description = "No such user in this enterprise", body = crate::error::ErrorResponse),
        (status = 409, description = "You cannot demote or deactivate yourself", body = crate::error::ErrorResponse),
    ))]
async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> AppResult<Json<UserView>> {
    let mut v = Validator::new();
    if let Some(name) = &body.name {
        check_name(&mut v, "name", name);
    }
    if let Some(password) = &body.password {
        check_password(&mut v, "password", password);
    }
    if let Some(status) = &body.status {
        v.check(status == "active" || status == "deactivated", "status", "must be active or deactivated");
    }
    v.finish()?;
    let current = state
        .store
        .get_user(&principal.enterprise_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    let is_self = principal.user_id.as_deref() == Some(current.id.as_str());
    let demotes = body.role.is_some_and(|r| r != current.role);
    if is_self && (demotes || body.status.as_deref() == Some("deactivated")) {
        return Err(AppError::Conflict("you cannot change your own role or deactivate yourself".into()));
    }
    if body.role == Some(Role::PlatformAdmin) && current.role != Role::PlatformAdmin {
        policy::require_platform(&principal, "granting platform_admin")?;
    }
    let password_hash = match body.password {
        Some(p) => Some(password::hash(p).await?),
        None => None,
    };
    let patch =
        UserPatch { name: body.name.map(|n| n.trim().to_owned()), role: body.role, status: body.status, password_hash };
    let user = state
        .store
        .update_user(&principal.enterprise_id, &id, patch)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    Ok(Json(user.into()))
}

/// Deactivate a user: they can no longer log in and their tokens stop working. The row stays
/// for audit.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deactivated"),
        (status = 404, description = "No such user in this enterprise", body = crate::error::ErrorResponse),
        (status = 409, description = "You cannot deactivate yourself", body = crate::error::ErrorResponse),
    ))]
async fn delete_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if principal.user_id.as_deref() == Some(id.as_str()) {
        return Err(AppError::Conflict("you cannot deactivate yourself".into()));
    }
    let patch = UserPatch { status: Some("deactivated".into()), ..UserPatch::default() };
    state
        .store
        .update_user(&principal.enterprise_id, &id, patch)
        .await?
        .ok_or_else(|| AppError::not_found(format!("user {id}")))?;
    Ok(StatusCode::NO_CONTENT)
}
