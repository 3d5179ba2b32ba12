//! Connections: `GET/POST /connections`, `GET/PUT/DELETE /connections/{id}`; the connection
//! test runner `POST /connections/{id}/test` is in `trial.rs`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{ApiJson, ApiQuery, PageQuery, Paginated, Pagination};
use super::kept;
use crate::audit::{self, Action, Change, Resource};
use crate::auth::Principal;
use crate::connections::{self, Proposed, Stored};
use crate::engine::host_auth::{self, HostAuth};
use crate::engine::resilience::{self, Resilience};
use crate::error::{AppError, AppResult, FieldError, OrConflict, OrNotFound};
use crate::plugins::redact::is_sensitive_name;
use crate::plugins::registry::VersionPin;
use crate::state::AppState;
use crate::store::ConnectionRow;
use dibop_core::CircuitState;

mod trial;

use trial::{__path_test_connection, TestRequest, TestResult, record_dry_run, test_connection, tested_first};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_connections, create_connection))
        .routes(routes!(get_connection, replace_connection, delete_connection))
        .routes(routes!(test_connection))
}

/// A connection as shown: credentials masked.
#[derive(Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub name: String,
    /// The system (connector slug), e.g. `vpic`.
    pub system: String,
    pub config: serde_json::Value,
    /// Each credential masked, e.g. `"****cret"`; the values are write-only.
    pub credentials: BTreeMap<String, String>,
    /// `host` or `host:port` the connector may reach besides its `base_url` host.
    pub allowed_hosts: Vec<String>,
    pub memory_limit_mb: i64,
    pub timeout_ms: i64,
    pub resilience: Resilience,
    /// Host-managed authentication, secrets masked (`{"type": "none"}` without).
    #[schema(value_type = Object)]
    pub auth: serde_json::Value,
    /// Headers added to every request to the connection's origins; the values of those named
    /// like credentials (`Authorization`, `X-Api-Key`, `Cookie`, ...) are masked.
    pub headers: BTreeMap<String, String>,
    /// The circuit breaker: `closed` (calls go through), `open` (calls fail at once with
    /// `circuit_open`) or `half_open` (one trial call is running).
    pub circuit: CircuitState,
    /// The plugin versions the connection uses: an exact version (a new connection pins the
    /// newest) or a semver range; the newest active version it admits serves each call, so an
    /// upload moves no connection unless its range admits the new version.
    pub plugin_version: String,
    /// Each call's output is checked against the operation's declared `output_schema`; one
    /// that does not match fails the call `invalid_output`.
    pub validate_output: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The connection test the request asked for (`test`), run with these settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<TestResult>,
}

/// A connection to create or replace. On `PUT`, a field left out keeps its stored value and
/// `null` resets it to its default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInput {
    #[schema(example = "vpic")]
    pub name: String,
    #[schema(example = "vpic")]
    pub system: String,
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Write-only. On `PUT`, omitted keys keep their stored value and `null` removes one.
    #[serde(default)]
    pub credentials: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Memory limit of each call, MiB (default: what the connector declares it wants, else 64).
    pub memory_limit_mb: Option<i64>,
    /// Deadline of each call, ms (default 30000).
    pub timeout_ms: Option<i64>,
    /// Circuit breaker and outbound rate limit of the connection's calls from steps; omitted
    /// fields take their defaults.
    #[serde(default)]
    pub resilience: Resilience,
    /// Host-managed authentication: the host adds the credentials to every request to the
    /// connection's hosts and the plugin never sees them. `{"type": "api_key", "header", "key"}`,
    /// `{"type": "basic", "username", "password"}`, `{"type": "bearer", "token"}` or
    /// `{"type": "oauth2_client_credentials", "token_url", "client_id", "client_secret",
    /// "scopes", "token_params", "client_auth": "basic|body"}`. On `PUT`: omitted keeps the
    /// stored one, `null` removes it, and omitted secrets of the same type (and token URL) keep
    /// theirs.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub auth: Option<serde_json::Value>,
    /// Headers added to every request to the connection's origins, e.g.
    /// `{"Subscription-Id": "dealer-42"}` (at most 32). Those named like credentials
    /// (`Authorization`, `X-Api-Key`, `Cookie`, ...) are write-only: on `PUT`, the masked value
    /// as shown keeps the stored one (unless the system, `base_url` or hosts change).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The plugin versions to use: an exact version (`1.2.0`) or a semver range (`^1.2`). A new
    /// connection without one pins the newest version; on `PUT`, omitted keeps the stored pin
    /// (changing it is how a connection upgrades).
    #[schema(example = "1.0.0")]
    pub plugin_version: Option<String>,
    /// Check each call's output against the operation's declared `output_schema` (an output
    /// that does not match fails the call `invalid_output`). Default false; on `PUT`, omitted
    /// keeps the stored setting.
    pub validate_output: Option<bool>,
    /// A connection test to run with the new settings before they are stored, e.g. after
    /// changing `plugin_version`: when it does not succeed nothing is stored and the answer is
    /// 422 at `test`. With `?dry_run=true` it runs and nothing is stored either way.
    pub test: Option<TestRequest>,
}

/// `?dry_run=true`: check the settings (and run `test`) without storing anything.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SaveQuery {
    /// Answer what would be stored (with the `test` result) and store nothing.
    pub dry_run: Option<bool>,
}

/// Tells `null` from an absent field: `Some(Value::Null)`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// `****` plus the last four characters (all masked when shorter than five).
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 4 {
        "****".into()
    } else {
        format!("****{}", chars[chars.len() - 4..].iter().collect::<String>())
    }
}

fn view(state: &AppState, row: ConnectionRow, circuit: CircuitState) -> AppResult<ConnectionView> {
    // Auth that does not open (another key) shows as none, like credentials.
    let auth = host_auth::stored(&state.engine, &row).unwrap_or(HostAuth::None).masked(mask);
    // Credentials that do not open (another key, or sealed for another row) show as none.
    let credentials = connections::credentials(&state.engine, &row)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.clone(), mask(v)))
        .collect();
    Ok(ConnectionView {
        auth,
        headers: shown_headers(&row.headers),
        resilience: Resilience::of(&row),
        config: serde_json::from_str(&row.config).unwrap_or_default(),
        allowed_hosts: serde_json::from_str(&row.allowed_hosts).unwrap_or_default(),
        credentials,
        id: row.id,
        name: row.name,
        system: row.system,
        memory_limit_mb: row.memory_limit_mb,
        timeout_ms: row.timeout_ms,
        circuit,
        plugin_version: row.plugin_version,
        validate_output: row.validate_output != 0,
        created_at: datetime(row.created_at),
        updated_at: datetime(row.updated_at),
        test: None,
    })
}

/// Static headers as shown: the values of those named like credentials (`Authorization`,
/// `X-Api-Key`, `Cookie`, ...) masked like `auth` secrets; they are write-only.
fn shown_headers(stored: &str) -> BTreeMap<String, String> {
    let headers: BTreeMap<String, String> = serde_json::from_str(stored).unwrap_or_default();
    headers
        .into_iter()
        .map(|(name, value)| {
            let value = if is_sensitive_name(&name) { mask(&value) } else { value };
            (name, value)
        })
        .collect()
}

/// Puts the stored values back into credential-named headers that `input` sends masked (as
/// shown); `moved`, a masked one is refused: the value must be sent again with the change.
fn kept_headers(input: &mut BTreeMap<String, String>, stored: &str, moved: bool) -> AppResult<()> {
    let stored: BTreeMap<String, String> = serde_json::from_str(stored).unwrap_or_default();
    for (name, value) in input.iter_mut().filter(|(name, _)| is_sensitive_name(name)) {
        let Some(kept) = stored.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v) else {
            continue;
        };
        if *value != mask(kept) {
            continue;
        }
        if moved {
            return Err(AppError::Validation(vec![FieldError {
                path: format!("headers.{name}"),
                message: "system, base_url or allowed_hosts changed: send this header's value again with the change"
                    .into(),
            }]));
        }
        value.clone_from(kept);
    }
    Ok(())
}

/// What `input` asks to store (its `test` already taken out).
fn proposed(input: ConnectionInput) -> Proposed {
    Proposed {
        name: input.name,
        system: input.system,
        config: input.config,
        credentials: input.credentials,
        allowed_hosts: input.allowed_hosts,
        memory_limit_mb: input.memory_limit_mb,
        timeout_ms: input.timeout_ms,
        resilience: input.resilience,
        auth: input.auth,
        headers: input.headers,
        plugin_version: input.plugin_version,
        validate_output: input.validate_output,
    }
}

/// Whether moving a connection from the pin `stored` to `given` keeps its credentials with the
/// code they were given to: the same pin, or one exact version the stored pin admits.
fn trusted_pin(stored: &str, given: &str) -> bool {
    let given = given.trim();
    if given == stored.trim() {
        return true;
    }
    match (VersionPin::parse(stored), VersionPin::parse(given)) {
        (Ok(stored), Ok(VersionPin::Exact(exact))) => stored != VersionPin::Newest && stored.admits(&exact.to_string()),
        _ => false,
    }
}

fn taken(name: &str) -> String {
    format!("a connection named {name:?} already exists")
}

/// List the enterprise's connections.
#[utoipa::path(get, path = "/connections", tag = "connections", params(PageQuery),
    responses((status = 200, description = "One page of connections", body = Paginated<ConnectionView>)))]
async fn list_connections(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<ConnectionView>>> {
    let (rows, total) = state.store().list_connections(&principal.enterprise_id, pagination.page()).await?;
    let circuits = state.store().circuits(&principal.enterprise_id).await?;
    let views = rows
        .into_iter()
        .map(|r| {
            let circuit = circuits.iter().find(|(_, c)| c.connection_id == r.id).map(|(_, c)| c);
            view(&state, r, resilience::circuit_state(circuit))
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(Json(pagination.envelope(views, total)))
}

/// Create a connection; config and credentials are checked against the connector's declaration.
#[utoipa::path(post, path = "/connections", tag = "connections", request_body = ConnectionInput, params(SaveQuery),
    responses(
        (status = 201, description = "Created", body = ConnectionView),
        (status = 200, description = "`dry_run`: what would be created; nothing was", body = ConnectionView),
        (status = 409, description = "Name already in use", body = crate::error::ErrorResponse),
    ))]
async fn create_connection(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<SaveQuery>,
    ApiJson(mut input): ApiJson<ConnectionInput>,
) -> AppResult<(StatusCode, Json<ConnectionView>)> {
    let name = input.name.clone();
    let id = dibop_core::new_id();
    let test = input.test.take();
    let fields =
        connections::validate(&state.engine, &principal.enterprise_id, &id, proposed(input), Stored::nothing()).await?;
    let would_be = fields.clone().into_row(&principal.enterprise_id, &id, dibop_core::now_ms());
    let dry_run = query.dry_run.unwrap_or(false);
    let tested = tested_first(&state, &principal, &would_be, None, test, dry_run).await?;
    if dry_run {
        let shown = view(&state, would_be, CircuitState::Closed)?;
        record_dry_run(&state, &principal, None, &shown).await;
        return Ok((StatusCode::OK, Json(ConnectionView { test: tested, ..shown })));
    }
    let row =
        state.store().create_connection(&principal.enterprise_id, &id, fields).await.or_conflict(|| taken(&name))?;
    let shown = view(&state, row, CircuitState::Closed)?;
    let after = Some(audit::scrubbed(&shown));
    audit::record(
        &state,
        &principal,
        Change { action: Action::Create, resource: Resource::Connection, resource_id: Some(&id), before: None, after },
    )
    .await;
    Ok((StatusCode::CREATED, Json(ConnectionView { test: tested, ..shown })))
}

/// Get one connection (credentials masked).
#[utoipa::path(get, path = "/connections/{id}", tag = "connections", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 404, description = "No such connection", body = crate::error::ErrorResponse),
    ))]
async fn get_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<ConnectionView>> {
    let row =
        state.store().get_connection(&principal.enterprise_id, &id).await?.or_not_found(format!("connection {id}"))?;
    let circuit = state.store().circuit(&row.id).await?;
    Ok(Json(view(&state, row, resilience::circuit_state(circuit.as_ref()))?))
}

/// Replace a connection. Omitted fields and credentials keep their stored values.
#[utoipa::path(put, path = "/connections/{id}", tag = "connections", params(("id" = String, Path), SaveQuery), request_body = ConnectionInput,
    responses(
        (status = 200, description = "Replaced (with `dry_run`: what would be stored; nothing was)", body = ConnectionView),
        (status = 404, description = "No such connection", body = crate::error::ErrorResponse),
        (status = 409, description = "Name already in use", body = crate::error::ErrorResponse),
    ))]
async fn replace_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<SaveQuery>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> AppResult<Json<ConnectionView>> {
    let current =
        state.store().get_connection(&principal.enterprise_id, &id).await?.or_not_found(format!("connection {id}"))?;
    let mut input: ConnectionInput = kept::over_stored(as_input(&current), body)?;
    let mut stored = connections::credentials(&state.engine, &current).unwrap_or_default();
    // Stored credentials go only where they went before: a new system, base URL or host list
    // needs them sent again with the change (omitted ones are dropped, so a required one that
    // is missing answers 422 at its path).
    let old_config: serde_json::Value = serde_json::from_str(&current.config).unwrap_or_default();
    let old_hosts: Vec<String> = serde_json::from_str(&current.allowed_hosts).unwrap_or_default();
    let moved = current.system != input.system
        || old_config.get("base_url") != input.config.get("base_url")
        || old_hosts != input.allowed_hosts;
    // Credentials reach the plugin's code: another version gets them only when the stored pin
    // already gave them to it (an exact version the pin admits); any other pin needs them sent
    // again.
    let repinned = current.system == input.system
        && input.plugin_version.as_deref().is_some_and(|given| !trusted_pin(&current.plugin_version, given));
    if (moved || repinned) && !stored.is_empty() {
        if input.credentials.is_empty() {
            let message = if moved {
                "system, base_url or allowed_hosts changed: send the credentials again with the change"
            } else {
                "plugin_version changed to versions the credentials were not given to: send the credentials again \
                 with the change"
            };
            return Err(AppError::Validation(vec![FieldError { path: "credentials".into(), message: message.into() }]));
        }
        stored.clear();
    }
    // Host-managed secrets follow the same rule: moved, they are not kept.
    let mut stored_auth = host_auth::stored(&state.engine, &current).unwrap_or(HostAuth::None);
    if moved && stored_auth != HostAuth::None {
        if input.auth.is_none() {
            return Err(AppError::Validation(vec![FieldError {
                path: "auth".into(),
                message: "system, base_url or allowed_hosts changed: send the auth again with the change".into(),
            }]));
        }
        stored_auth = HostAuth::None;
    }
    kept_headers(&mut input.headers, &current.headers, moved)?;
    let name = input.name.clone();
    let test = input.test.take();
    // A connection moved to another system pins that system's newest version unless told.
    let stored_pin = if current.system == input.system { current.plugin_version.as_str() } else { "" };
    let keep_checks = current.validate_output != 0;
    // A new system starts without credentials of the old one's.
    let credentials_for = if current.system == input.system { current.credentials_for.as_str() } else { "" };
    let kept = Stored {
        credentials: stored,
        auth: stored_auth,
        pin: stored_pin,
        validate_output: keep_checks,
        credentials_for,
        rate_limit: Resilience::of(&current).rate_limit.and_then(|r| r.per_minute()),
    };
    let fields =
        connections::validate(&state.engine, &principal.enterprise_id, &current.id, proposed(input), kept).await?;
    let dry_run = query.dry_run.unwrap_or(false);
    let would_be = fields.clone().into_row(&principal.enterprise_id, &current.id, current.created_at);
    let tested = tested_first(&state, &principal, &would_be, Some(&current.id), test, dry_run).await?;
    if dry_run {
        let circuit = state.store().circuit(&current.id).await?;
        let shown = view(&state, would_be, resilience::circuit_state(circuit.as_ref()))?;
        record_dry_run(&state, &principal, Some(&id), &shown).await;
        return Ok(Json(ConnectionView { test: tested, ..shown }));
    }
    let row = state
        .store()
        .replace_connection(&principal.enterprise_id, &id, fields)
        .await
        .or_conflict(|| taken(&name))?
        .or_not_found(format!("connection {id}"))?;
    // A token obtained with the old settings is not used with the new ones.
    if row.auth != current.auth {
        state.store().forget_connection_token(&row.id).await?;
    }
    let circuit = state.store().circuit(&row.id).await?;
    let state_now = resilience::circuit_state(circuit.as_ref());
    let before = Some(audit::scrubbed(&view(&state, current, state_now)?));
    let shown = view(&state, row, state_now)?;
    let after = Some(audit::scrubbed(&shown));
    audit::record(
        &state,
        &principal,
        Change { action: Action::Update, resource: Resource::Connection, resource_id: Some(&id), before, after },
    )
    .await;
    Ok(Json(ConnectionView { test: tested, ..shown }))
}

/// The stored settings a `PUT` keeps when it leaves them out (credentials, auth, the pin and
/// output checks keep theirs by their own rules).
fn as_input(row: &ConnectionRow) -> serde_json::Map<String, serde_json::Value> {
    let stored = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or_default();
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), row.name.clone().into());
    fields.insert("system".into(), row.system.clone().into());
    fields.insert("config".into(), stored(&row.config));
    fields.insert("allowed_hosts".into(), stored(&row.allowed_hosts));
    fields.insert("memory_limit_mb".into(), row.memory_limit_mb.into());
    fields.insert("timeout_ms".into(), row.timeout_ms.into());
    fields.insert("resilience".into(), serde_json::to_value(Resilience::of(row)).unwrap_or_default());
    // As shown (credential-named ones masked): `kept_headers` puts their values back, or
    // refuses them when the connection moves to other hosts.
    fields.insert("headers".into(), serde_json::to_value(shown_headers(&row.headers)).unwrap_or_default());
    fields.retain(|_, value| !value.is_null());
    fields
}

/// Delete a connection.
#[utoipa::path(delete, path = "/connections/{id}", tag = "connections", params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such connection", body = crate::error::ErrorResponse),
    ))]
async fn delete_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let current = state.store().get_connection(&principal.enterprise_id, &id).await?;
    if state.store().delete_connection(&principal.enterprise_id, &id).await? {
        let before =
            current.map(|row| view(&state, row, CircuitState::Closed)).transpose()?.map(|v| audit::scrubbed(&v));
        let change = Change {
            action: Action::Delete,
            resource: Resource::Connection,
            resource_id: Some(&id),
            before,
            after: None,
        };
        audit::record(&state, &principal, change).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("connection {id}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_show_only_the_last_four() {
        assert_eq!(super::mask("s3cret"), "****cret");
        assert_eq!(super::mask("abcd"), "****");
    }
}
