//! The enterprise's settings: `GET/PUT /settings`.

use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiJson;
use crate::audit::{self, Action, Change, Resource};
use crate::auth::{Principal, policy};
use crate::error::{AppResult, OrNotFound, Validator};
use crate::state::AppState;
use crate::store::{Enterprise, SettingsPatch};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings))
}

/// Per-enterprise rate limits.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[schema(example = 300)]
    pub api_requests_per_minute: i64,
    #[schema(example = 60)]
    pub executions_per_minute: i64,
    /// Calls a minute of each connection that sets no `resilience.rate_limit` of its own
    /// (default 60). Omitted on `PUT`: unchanged.
    #[schema(example = 60)]
    #[serde(default)]
    pub outbound_requests_per_minute: Option<i64>,
    /// Queued executions (status `queued`) past which execute and webhook triggers answer 429
    /// `RATE_LIMIT` with `Retry-After` and schedule slots are recorded as missed (1 to
    /// 1,000,000; default 10,000). Omitted on `PUT`: unchanged.
    #[schema(example = 10_000)]
    #[serde(default)]
    pub max_queued_executions: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Settings {
    pub enterprise_id: String,
    pub name: String,
    pub slug: String,
    /// IANA time zone, e.g. `America/Toronto`.
    pub timezone: String,
    /// Lifetime of access tokens, 60 to 240.
    pub session_duration_minutes: i64,
    /// Days executions, traces and API-call logs are kept, at least 30.
    pub retention_days: i64,
    pub rate_limits: RateLimits,
    /// Plugin uploads must carry a trusted signer's signature (`X-Dibop-Signature`).
    pub require_signed_plugins: bool,
}

impl From<Enterprise> for Settings {
    fn from(e: Enterprise) -> Self {
        Self {
            enterprise_id: e.id,
            name: e.name,
            slug: e.slug,
            timezone: e.timezone,
            session_duration_minutes: e.session_duration_minutes,
            retention_days: e.retention_days,
            rate_limits: RateLimits {
                api_requests_per_minute: e.api_requests_per_minute,
                executions_per_minute: e.executions_per_minute,
                outbound_requests_per_minute: Some(e.outbound_requests_per_minute),
                max_queued_executions: Some(e.max_queued_executions),
            },
            require_signed_plugins: e.require_signed_plugins != 0,
        }
    }
}

/// Any subset of the settings; absent fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub session_duration_minutes: Option<i64>,
    pub retention_days: Option<i64>,
    /// Changing rate limits needs platform rights.
    pub rate_limits: Option<RateLimits>,
    /// Accept plugin uploads only with a trusted signer's signature.
    pub require_signed_plugins: Option<bool>,
}

pub fn valid_timezone(tz: &str) -> bool {
    chrono_tz::Tz::from_str(tz).is_ok()
}

/// The caller's enterprise settings.
#[utoipa::path(get, path = "/settings", tag = "settings",
    responses((status = 200, description = "Settings", body = Settings)))]
async fn get_settings(State(state): State<AppState>, principal: Principal) -> AppResult<Json<Settings>> {
    let enterprise = state.store().get_enterprise(&principal.enterprise_id).await?.or_not_found("enterprise")?;
    Ok(Json(enterprise.into()))
}

/// Change the caller's enterprise settings.
#[utoipa::path(put, path = "/settings", tag = "settings", request_body = UpdateSettings,
    responses((status = 200, description = "Updated settings", body = Settings)))]
async fn put_settings(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<UpdateSettings>,
) -> AppResult<Json<Settings>> {
    let mut v = Validator::new();
    if let Some(name) = &body.name {
        v.check_name("name", name);
    }
    if let Some(tz) = &body.timezone {
        v.check(valid_timezone(tz), "timezone", "must be an IANA time zone such as Europe/Berlin");
    }
    if let Some(minutes) = body.session_duration_minutes {
        v.check((60..=240).contains(&minutes), "session_duration_minutes", "must be from 60 to 240");
    }
    if let Some(days) = body.retention_days {
        v.check((30..=3650).contains(&days), "retention_days", "must be from 30 to 3650");
    }
    if let Some(limits) = &body.rate_limits {
        let path = "rate_limits.api_requests_per_minute";
        v.check((1..=1_000_000).contains(&limits.api_requests_per_minute), path, "must be from 1 to 1000000");
        let path = "rate_limits.executions_per_minute";
        v.check((1..=1_000_000).contains(&limits.executions_per_minute), path, "must be from 1 to 1000000");
        let path = "rate_limits.outbound_requests_per_minute";
        let outbound = limits.outbound_requests_per_minute.unwrap_or(60);
        v.check((1..=1_000_000).contains(&outbound), path, "must be from 1 to 1000000");
        if let Some(queued) = limits.max_queued_executions {
            let path = "rate_limits.max_queued_executions";
            v.check((1..=1_000_000).contains(&queued), path, "must be from 1 to 1000000");
        }
    }
    v.finish()?;
    if body.rate_limits.is_some() {
        policy::require_platform(&principal, "changing rate limits")?;
    }
    let patch = SettingsPatch {
        name: body.name.map(|n| n.trim().to_owned()),
        timezone: body.timezone,
        session_duration_minutes: body.session_duration_minutes,
        retention_days: body.retention_days,
        api_requests_per_minute: body.rate_limits.as_ref().map(|l| l.api_requests_per_minute),
        executions_per_minute: body.rate_limits.as_ref().map(|l| l.executions_per_minute),
        outbound_requests_per_minute: body.rate_limits.as_ref().and_then(|l| l.outbound_requests_per_minute),
        max_queued_executions: body.rate_limits.as_ref().and_then(|l| l.max_queued_executions),
        require_signed_plugins: body.require_signed_plugins,
    };
    let before =
        state.store().get_enterprise(&principal.enterprise_id).await?.map(|e| audit::scrubbed(&Settings::from(e)));
    let enterprise =
        state.store().update_settings(&principal.enterprise_id, patch).await?.or_not_found("enterprise")?;
    let shown = Settings::from(enterprise);
    let after = Some(audit::scrubbed(&shown));
    let id = principal.enterprise_id.clone();
    audit::record(
        &state,
        &principal,
        Change { action: Action::Update, resource: Resource::Settings, resource_id: Some(&id), before, after },
    )
    .await;
    Ok(Json(shown))
}
