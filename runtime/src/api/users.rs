//! Users of an enterprise: `GET/POST /users`, `GET/PUT/DELETE /users/{id}`.
//!
//! Who may do what to a user is decided in `auth::policy`: a caller grants no more than it holds
//! (`require_grant`), and a user with platform rights is changed, given a password or
//! deactivated only by a caller with platform rights (`require_may_change`, also checked inside
//! the `UPDATE` so a racing grant cannot slip through). Platform rights are visible as
//! `platform_access`; a role change drops the explicit grant unless the same request sets it.
//!
//! E-mail addresses are unique per enterprise. Creating a user whose address already has an
//! account in another enterprise succeeds like any other creation, so no enterprise learns about
//! another's accounts (a platform-wide uniqueness check would answer "taken" for them: an
//! existence oracle across tenants). Login by address alone keeps working because the accounts
//! of one address share a salt and are all checked with one Argon2 run: see `auth::password`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use dibop_core::{Email, Role, UserStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, PageQuery, Paginated, Pagination};
use super::{datetime, opt_datetime};
use crate::audit::{self, Action, Change, Resource};
use crate::auth::{Principal, policy};
use crate::error::{AppError, AppResult, OrConflict, OrNotFound, Validator};
use crate::state::AppState;
use crate::store::{NewUser, PlatformUsers, User, UserPatch};

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
    /// Whether the user has platform rights (enterprises, global catalogue, quotas): by the role
    /// `platform_admin`, or by an explicit grant on an `enterprise_admin`.
    pub platform_access: bool,
    /// `active` or `deactivated`.
    pub status: UserStatus,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            platform_access: user.has_platform_rights(),
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
    /// At least 8 characters, at most 1024 bytes.
    pub password: String,
    /// Grants platform rights on top of the role `enterprise_admin` (needs platform rights).
    #[serde(default)]
    pub platform_access: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub name: Option<String>,
    /// A new role. The explicit platform grant ends with a role change unless
    /// `platform_access: true` comes with it.
    pub role: Option<Role>,
    /// A new password; ends the user's existing access tokens.
    pub password: Option<String>,
    /// `active` or `deactivated` (which ends the user's existing access tokens).
    pub status: Option<String>,
    /// Grants or revokes platform rights on an `enterprise_admin` (needs platform rights).
    pub platform_access: Option<bool>,
}

pub fn check_password(v: &mut Validator, path: &str, password: &str) {
    v.check(password.chars().count() >= 8, path, "must be at least 8 characters");
    v.check(password.len() <= 1024, path, "must be at most 1024 bytes");
}

/// Platform rights go with the role `enterprise_admin` (or come with `platform_admin`), never
/// with `viewer`.
fn check_grant(v: &mut Validator, role: Role, platform_access: bool) {
    v.check(!platform_access || role != Role::Viewer, "platform_access", "a viewer cannot have platform rights");
}

/// List the enterprise's users.
#[utoipa::path(get, path = "/users", tag = "users", params(PageQuery),
    responses((status = 200, description = "One page of users", body = Paginated<UserView>)))]
async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<UserView>>> {
    let (rows, total) = state.store().list_users(&principal.enterprise_id, pagination.page()).await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(UserView::from).collect(), total)))
}

/// Create a user in the caller's enterprise.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 403, description = "The role or grant is more than the caller holds", body = crate::error::ErrorResponse),
        (status = 409, description = "This enterprise already has a user with this email", body = crate::error::ErrorResponse),
    ))]
async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateUser>,
) -> AppResult<(StatusCode, Json<UserView>)> {
    let mut v = Validator::new();
    let email = v.parse(Email::parse(&body.email), "email");
    v.check_name("name", &body.name);
    check_password(&mut v, "password", &body.password);
    check_grant(&mut v, body.role, body.platform_access);
    let email = v.finish_with(email)?;
    policy::require_grant(&principal, body.role, body.platform_access)?;
    let new = NewUser {
        name: body.name.trim().to_owned(),
        role: body.role,
        platform_access: body.platform_access,
        password_hash: hash_for(&state, email.as_str(), body.password).await?,
        email: email.into_string(),
    };
    // Only this enterprise's own users can collide (see the module documentation).
    let user = state
        .store()
        .create_user(&principal.enterprise_id, &new)
        .await
        .or_conflict(|| format!("this enterprise already has a user with email {}", new.email))?;
    let shown = UserView::from(user);
    let after = Some(audit::scrubbed(&shown));
    audit::record(
        &state,
        &principal,
        Change { action: Action::Create, resource: Resource::User, resource_id: Some(&shown.id), before: None, after },
    )
    .await;
    Ok((StatusCode::CREATED, Json(shown)))
}

/// `password` hashed for an account of `email`, with the salt of the address's other accounts.
pub async fn hash_for(state: &AppState, email: &str, password: String) -> AppResult<String> {
    let address_hash = state.store().address_password_hash(email).await?;
    Ok(state.passwords.hash(password, address_hash).await?)
}

/// The store's guard for the caller: whether it may touch users with platform rights.
fn platform_users(principal: &Principal) -> PlatformUsers {
    if principal.platform { PlatformUsers::MayChange } else { PlatformUsers::Untouchable }
}

/// After an update found nothing: 403 when the user exists but gained platform rights meanwhile.
async fn update_refused(state: &AppState, principal: &Principal, id: &str) -> AppError {
    match state.store().get_user(&principal.enterprise_id, id).await {
        Ok(Some(user)) => match policy::require_may_change(principal, &user) {
            Err(err) => err,
            Ok(()) => AppError::Conflict(format!("user {id} changed meanwhile; try again")),
        },
        Ok(None) => AppError::not_found(format!("user {id}")),
        Err(err) => err.into(),
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
    let user = state.store().get_user(&principal.enterprise_id, &id).await?.or_not_found(format!("user {id}"))?;
    Ok(Json(user.into()))
}

/// Change a user's name, role, platform grant, password or status. A new password or a
/// deactivation ends the user's existing access tokens.
#[utoipa::path(put, path = "/users/{id}", tag = "users", params(("id" = String, Path)), request_body = UpdateUser,
    responses(
        (status = 200, description = "Updated", body = UserView),
        (status = 403, description = "The user has platform rights, or the change grants more than the caller holds", body = crate::error::ErrorResponse),
        (status = 404, description = "No such user in this enterprise", body = crate::error::ErrorResponse),
        (status = 409, description = "You cannot change your own role or grant, or deactivate yourself", body = crate::error::ErrorResponse),
    ))]
async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> AppResult<Json<UserView>> {
    let mut v = Validator::new();
    if let Some(name) = &body.name {
        v.check_name("name", name);
    }
    if let Some(password) = &body.password {
        check_password(&mut v, "password", password);
    }
    let status = body.status.as_deref().map(str::parse::<UserStatus>);
    v.check(status.as_ref().is_none_or(Result::is_ok), "status", "must be active or deactivated");
    v.finish()?;
    let status = status.and_then(Result::ok);
    let current = state.store().get_user(&principal.enterprise_id, &id).await?.or_not_found(format!("user {id}"))?;
    let role = body.role.unwrap_or(current.role);
    let role_changes = role != current.role;
    // A role change never silently keeps an explicit platform grant.
    let platform_access = body.platform_access.or(role_changes.then_some(false));
    let grant_changes = platform_access.is_some_and(|p| p != (current.platform_access != 0));
    let is_self = principal.user_id.as_deref() == Some(current.id.as_str());
    if is_self && (role_changes || grant_changes || status == Some(UserStatus::Deactivated)) {
        return Err(AppError::Conflict(
            "you cannot change your own role or platform grant, or deactivate yourself".into(),
        ));
    }
    policy::require_may_change(&principal, &current)?;
    let mut v = Validator::new();
    check_grant(&mut v, role, platform_access.unwrap_or(current.platform_access != 0));
    v.finish()?;
    if role_changes || grant_changes {
        policy::require_grant(&principal, role, platform_access.unwrap_or(false))?;
    }
    let password_changed = body.password.is_some();
    let password_hash = match body.password {
        Some(p) => Some(hash_for(&state, &current.email, p).await?),
        None => None,
    };
    let patch = UserPatch {
        name: body.name.map(|n| n.trim().to_owned()),
        role: body.role,
        platform_access,
        status,
        password_hash,
    };
    match state.store().update_user(&principal.enterprise_id, &id, patch, platform_users(&principal)).await? {
        Some(user) => {
            let shown = UserView::from(user);
            let before = Some(audit::scrubbed(&UserView::from(current)));
            let mut after = audit::scrubbed(&shown);
            after["password_changed"] = serde_json::Value::Bool(password_changed);
            let change = Change {
                action: Action::Update,
                resource: Resource::User,
                resource_id: Some(&id),
                before,
                after: Some(after),
            };
            audit::record(&state, &principal, change).await;
            Ok(Json(shown))
        }
        None => Err(update_refused(&state, &principal, &id).await),
    }
}

/// Deactivate a user: they can no longer log in and their tokens stop working (also after a
/// later reactivation). The row stays for audit.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deactivated"),
        (status = 403, description = "The user has platform rights and the caller has not", body = crate::error::ErrorResponse),
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
    let current = state.store().get_user(&principal.enterprise_id, &id).await?.or_not_found(format!("user {id}"))?;
    policy::require_may_change(&principal, &current)?;
    let patch = UserPatch { status: Some(UserStatus::Deactivated), ..UserPatch::default() };
    match state.store().update_user(&principal.enterprise_id, &id, patch, platform_users(&principal)).await? {
        Some(user) => {
            let (before, after) =
                (Some(audit::scrubbed(&UserView::from(current))), Some(audit::scrubbed(&UserView::from(user))));
            audit::record(
                &state,
                &principal,
                Change { action: Action::Deactivate, resource: Resource::User, resource_id: Some(&id), before, after },
            )
            .await;
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(update_refused(&state, &principal, &id).await),
    }
}
