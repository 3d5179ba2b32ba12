//! `POST /auth/login`: email and password for an access token, with throttling of failures.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiJson;
use crate::auth::password;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Failed logins allowed per email address and window before further attempts get 429.
const MAX_FAILURES: u64 = 5;
const FAILURE_WINDOW_SECS: i64 = 15 * 60;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "admin@example.com")]
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// A JWT to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires (the enterprise's session duration).
    #[schema(example = 3600)]
    pub expires_in: i64,
}

/// Exchange email and password for an access token.
#[utoipa::path(post, path = "/auth/login", tag = "auth", security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Wrong email or password", body = crate::error::ErrorResponse),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = crate::error::ErrorResponse),
    ))]
async fn login(State(state): State<AppState>, ApiJson(body): ApiJson<LoginRequest>) -> AppResult<Json<LoginResponse>> {
    let email = body.email.trim().to_lowercase();
    let bucket = format!("login:{email}");
    let standing = state.limiter.peek(&bucket, MAX_FAILURES, FAILURE_WINDOW_SECS).await?;
    if !standing.allowed {
        return Err(AppError::RateLimited {
            message: "too many failed logins for this account; try again later".into(),
            retry_after_secs: standing.retry_after_secs(),
        });
    }
    let user = state.store.find_user_by_email(&email).await?;
    let valid = password::verify(body.password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let user = match user {
        Some(user) if valid && user.is_active() => user,
        _ => {
            state.limiter.hit(&bucket, MAX_FAILURES, FAILURE_WINDOW_SECS).await?;
            return Err(AppError::Unauthorized("invalid email or password".into()));
        }
    };
    state.limiter.clear(&bucket).await?;
    let enterprise = state
        .store
        .get_enterprise(&user.enterprise_id)
        .await?
        .ok_or_else(|| AppError::Unauthorized("invalid email or password".into()))?;
    let (access_token, expires_in) = state.tokens.issue(&user, enterprise.session_duration_minutes)?;
    state.store.record_login(&user.id).await?;
    Ok(Json(LoginResponse { access_token, token_type: "bearer", expires_in }))
}
