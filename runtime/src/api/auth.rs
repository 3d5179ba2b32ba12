//! `POST /auth/login`: email and password for an access token.
//!
//! A login is bounded before it costs anything: the route takes at most [`LOGIN_BODY_LIMIT`]
//! bytes (413), an address over 254 bytes or a password over 1 KiB is 422. Then one attempt is
//! reserved on the client address's and on the account's failure counters at once (atomic
//! hits, see `ratelimit`), so N parallel guesses get at most the limit's worth of password
//! checks and the rest 429; then a permit of the password gate is taken or the answer is 503 at
//! once (see `auth::password`). A successful login gives the reservations back (the account's
//! failures are cleared); a failed one keeps them. Every login, whether the address is known or
//! not, costs exactly one Argon2 run.
//!
//! The client address is the TCP peer of the connection. Behind a reverse proxy that is the
//! proxy, so all clients share its budget (`login_failures_per_address`); `X-Forwarded-For` is
//! not trusted because any client can send it. IPv6 peers count per /64, the block a single
//! subscriber usually holds.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiJson;
use crate::audit::{self, Action, Change, Resource};
use crate::error::{AppError, AppResult, Validator};
use crate::ratelimit::Decision;
use crate::state::AppState;

/// Failed logins allowed per email address and window before further attempts get 429.
const MAX_FAILURES: u64 = 5;
const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// Largest body the login route reads: the longest address and password fit several times.
pub const LOGIN_BODY_LIMIT: usize = 8 * 1024;
/// The longest address RFC 5321 allows.
pub const MAX_EMAIL_BYTES: usize = 254;
/// The longest password accepted anywhere.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The login route, reading at most [`LOGIN_BODY_LIMIT`] bytes (less when `max_body` is less).
pub fn router(max_body: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login)).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT.min(max_body)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// At most 254 bytes.
    #[schema(example = "admin@example.com")]
    pub email: String,
    /// At most 1024 bytes.
    pub password: String,
    /// The enterprise's slug. Needed only by someone whose address has accounts in several
    /// enterprises with the same password: without it the oldest such account logs in.
    pub enterprise: Option<String>,
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
        (status = 413, description = "Body over 8 KiB", body = crate::error::ErrorResponse),
        (status = 422, description = "Email over 254 bytes or password over 1024 bytes", body = crate::error::ErrorResponse),
        (status = 429, description = "Too many failed attempts for this account or from this address; see Retry-After", body = crate::error::ErrorResponse),
        (status = 503, description = "All password checks of this node are busy; retry after Retry-After", body = crate::error::ErrorResponse),
    ))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> AppResult<Json<LoginResponse>> {
    let email = body.email.trim();
    let mut v = Validator::new();
    v.check(email.len() <= MAX_EMAIL_BYTES, "email", "must be at most 254 bytes");
    v.check(body.password.len() <= MAX_PASSWORD_BYTES, "password", "must be at most 1024 bytes");
    if let Some(slug) = &body.enterprise {
        v.check(slug.len() <= 63, "enterprise", "must be at most 63 characters");
    }
    v.finish()?;
    let email = email.to_lowercase();

    let address_bucket = format!("login-address:{}", client_key(peer.ip()));
    let account_bucket = format!("login:{email}");
    let limit = state.config.login_failures_per_address;
    let address = state.limiter().hit(&address_bucket, limit, FAILURE_WINDOW_SECS).await?;
    if !address.allowed {
        return Err(throttled("too many failed logins from this address; try again later", &address));
    }
    let account = state.limiter().hit(&account_bucket, MAX_FAILURES, FAILURE_WINDOW_SECS).await?;
    if !account.allowed {
        return Err(throttled("too many failed logins for this account; try again later", &account));
    }
    let Some(permit) = state.passwords.try_enter() else {
        state.limiter().release(&address_bucket, FAILURE_WINDOW_SECS).await?;
        state.limiter().release(&account_bucket, FAILURE_WINDOW_SECS).await?;
        return Err(AppError::Overloaded {
            message: "too many logins in progress; try again in a moment".into(),
            retry_after_secs: 1,
        });
    };

    let accounts = state.store().find_users_by_email(&email, body.enterprise.as_deref()).await?;
    let hashes = accounts.iter().map(|u| u.password_hash.clone()).collect();
    let check = state.passwords.check(permit, body.password, hashes).await?;
    for (position, rehashed) in &check.rehash {
        let account = &accounts[*position];
        state.store().rehash_password(&account.id, &account.password_hash, rehashed).await?;
    }
    // The oldest active account the password opens (several only when someone uses one password
    // for accounts in several enterprises; `enterprise` picks another).
    let Some(user) = check.matches.iter().map(|&i| &accounts[i]).find(|u| u.is_active()) else {
        // In the enterprise of the address's (oldest) account; platform-wide for an unknown one.
        let enterprise = accounts.first().map(|a| a.enterprise_id.clone());
        let change = Change {
            action: Action::LoginFailed,
            resource: Resource::Session,
            resource_id: None,
            before: None,
            after: None,
        };
        audit::write(&state, enterprise, audit::failed_login_actor(&email), change).await;
        return Err(AppError::Unauthorized("invalid email or password".into()));
    };
    state.limiter().clear(&account_bucket).await?;
    state.limiter().release(&address_bucket, FAILURE_WINDOW_SECS).await?;
    let enterprise = state
        .store()
        .get_enterprise(&user.enterprise_id)
        .await?
        .ok_or_else(|| AppError::Unauthorized("invalid email or password".into()))?;
    let (access_token, expires_in) = state.tokens.issue(user, enterprise.session_duration_minutes)?;
    state.store().record_login(&user.id).await?;
    let change = Change {
        action: Action::Login,
        resource: Resource::Session,
        resource_id: Some(&user.id),
        before: None,
        after: None,
    };
    audit::write(&state, Some(user.enterprise_id.clone()), format!("user:{}", user.id), change).await;
    Ok(Json(LoginResponse { access_token, token_type: "bearer", expires_in }))
}

fn throttled(message: &str, decision: &Decision) -> AppError {
    AppError::RateLimited { message: message.into(), retry_after_secs: decision.retry_after_secs() }
}

/// The key a client address counts under: the IPv4 address, or the /64 of an IPv6 one.
fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let key = |s: &str| super::client_key(s.parse().expect("ip"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
    }
}
