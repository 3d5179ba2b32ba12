//! Identity: who is calling (tokens, API keys, passwords) and what they may do (roles, policy).
//!
//! The HTTP API's `authenticate` middleware (`api::authn`) resolves each request's bearer
//! credential to a [`Principal`] with these parts and puts it into the request, where handlers
//! extract it.

pub mod api_keys;
pub mod password;
pub mod policy;
pub mod tokens;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use dibop_core::Role;

use crate::error::{AppError, AppResult};

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub enterprise_id: String,
    /// Set when the caller logged in as a user.
    pub user_id: Option<String>,
    /// Set when the caller used an API key.
    pub api_key_id: Option<String>,
    pub role: Role,
    /// Platform rights: the role `platform_admin`, or a user's explicit `platform_access` grant.
    pub platform: bool,
    /// The enterprise's execution rate limit, read with the credential.
    pub executions_per_minute: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> AppResult<Self> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| AppError::Unauthorized("authentication required".into()))
    }
}
