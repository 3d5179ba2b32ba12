//! Authentication in front of every protected route: the `authenticate` middleware resolves
//! the bearer credential to a [`Principal`], counts the request against the enterprise's API
//! rate limit, asks [`policy::authorize`] whether that principal may use the route and puts the
//! principal into the request for handlers to extract. Every answer to an authenticated
//! request, 403 and 429 included, carries the `X-RateLimit-*` headers.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dibop_core::Role;

use crate::auth::{Principal, api_keys, policy};
use crate::error::{AppError, AppResult};
use crate::ratelimit::Decision;
use crate::state::AppState;

/// Resolves the caller, enforces the policy and the enterprise's API rate limit.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let (principal, api_limit) = match resolve(&state, request.headers()).await {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    let bucket = format!("api:{}", principal.enterprise_id);
    let decision = match state.limiter().hit(&bucket, api_limit, 60).await {
        Ok(decision) => decision,
        Err(err) => return AppError::Internal(err).into_response(),
    };
    let path = request.uri().path().trim_start_matches("/api/v1");
    let mut response = if !decision.allowed {
        AppError::RateLimited {
            message: format!("API rate limit of {} requests per minute exceeded", decision.limit),
            retry_after_secs: decision.retry_after_secs(),
        }
        .into_response()
    } else if let Err(err) = policy::authorize(&principal, request.method(), path) {
        err.into_response()
    } else {
        request.extensions_mut().insert(principal);
        next.run(request).await
    };
    rate_limit_headers(response.headers_mut(), &decision);
    response
}

/// `X-RateLimit-*` headers describing `decision`.
pub fn rate_limit_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset_unix));
}

/// The principal behind the request's bearer credential, and its enterprise's API limit.
async fn resolve(state: &AppState, headers: &HeaderMap) -> AppResult<(Principal, u64)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::Unauthorized("missing bearer token".into()))?;

    if token.starts_with(api_keys::PREFIX) {
        let found = state
            .store()
            .find_active_api_key(&api_keys::hash(token))
            .await?
            .ok_or_else(|| AppError::Unauthorized("invalid, revoked or expired API key".into()))?;
        // Record the use at most once a minute, so most requests stay reads.
        if found.key.last_used_at.is_none_or(|at| at < dibop_core::now_ms() - 60_000) {
            state.store().touch_api_key(&found.key.id).await?;
        }
        let principal = Principal {
            enterprise_id: found.enterprise.id,
            user_id: None,
            api_key_id: Some(found.key.id),
            role: found.key.role,
            // Only a caller with platform rights can create such a key (`policy::require_grant`).
            platform: found.key.role == Role::PlatformAdmin,
            executions_per_minute: found.enterprise.executions_per_minute,
        };
        return Ok((principal, limit(found.enterprise.api_requests_per_minute)));
    }

    let claims = state.tokens.verify(token)?;
    let invalid = || AppError::Unauthorized("token no longer valid".into());
    let (user, enterprise) = state.store().user_with_enterprise(&claims.ent, &claims.sub).await?.ok_or_else(invalid)?;
    // A password change or a deactivation moved the generation on: earlier tokens are over.
    if !user.is_active() || claims.r#gen != user.token_generation {
        return Err(invalid());
    }
    // Role and platform rights come from the database, not the token, so a demotion takes
    // effect at once.
    let principal = Principal {
        platform: user.has_platform_rights(),
        enterprise_id: user.enterprise_id,
        user_id: Some(user.id),
        api_key_id: None,
        role: user.role,
        executions_per_minute: enterprise.executions_per_minute,
    };
    Ok((principal, limit(enterprise.api_requests_per_minute)))
}

fn limit(per_minute: i64) -> u64 {
    u64::try_from(per_minute).unwrap_or(0)
}
