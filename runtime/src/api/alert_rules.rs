//! Alert rules (`GET/POST /alert-rules`, `GET/PUT/DELETE /alert-rules/{id}`, `POST
//! /alert-rules/{id}/test`) and fired alerts (`GET /alerts`). Evaluation and delivery live in
//! `crate::alerts`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use dibop_core::Severity;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{ApiJson, ApiQuery, PageQuery, Paginated, Pagination, iso_instant};
use super::kept;
use crate::alerts::{self, RuleDefinition};
use crate::audit::{self, Action, Change, Resource};
use crate::auth::Principal;
use crate::error::{AppError, AppResult, OrNotFound};
use crate::state::AppState;
use crate::store::{AlertRow, AlertRuleRow, NewAlert};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, replace_rule, delete_rule))
        .routes(routes!(test_rule))
        .routes(routes!(list_alerts))
}

/// A rule as shown: the definition plus identity; `secret` only in the answer to its creation.
#[derive(Serialize, ToSchema)]
pub struct RuleView {
    pub id: String,
    #[serde(flatten)]
    pub rule: RuleDefinition,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Key of the `X-Dibop-Signature` HMAC of webhook notifications (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn view(row: &AlertRuleRow, secret: Option<String>) -> AppResult<RuleView> {
    let mut rule: RuleDefinition = serde_json::from_str(&row.definition).map_err(anyhow::Error::from)?;
    // Channel URLs that carry a secret are write-only, for every reader.
    for channel in &mut rule.notification.channels {
        channel.url = channel.shown_url();
    }
    Ok(RuleView {
        id: row.id.clone(),
        rule,
        last_fired_at: row.last_fired_at.map(datetime),
        created_at: datetime(row.created_at),
        updated_at: datetime(row.updated_at),
        secret,
    })
}

/// `rule` with the stored URL back in each channel that sends it masked (as shown) or leaves
/// it out where the stored channel at the same place, of the same type, has a secret one.
fn with_stored_urls(mut rule: RuleDefinition, stored: &AlertRuleRow) -> AppResult<RuleDefinition> {
    let stored: RuleDefinition = serde_json::from_str(&stored.definition).map_err(anyhow::Error::from)?;
    let stored = &stored.notification.channels;
    for (i, channel) in rule.notification.channels.iter_mut().enumerate() {
        let masked = |kept: &&alerts::Channel| kept.url_is_secret() && kept.shown_url() == channel.url;
        let kept = match &channel.url {
            Some(_) => stored.iter().find(masked),
            None => stored.get(i).filter(|kept| kept.kind == channel.kind && kept.url_is_secret()),
        };
        if let Some(kept) = kept {
            channel.url.clone_from(&kept.url);
        }
    }
    Ok(rule)
}

fn checked(rule: &RuleDefinition) -> AppResult<String> {
    let mut errors = alerts::validate(rule);
    for (i, channel) in rule.notification.channels.iter().enumerate() {
        if channel.url.as_deref().is_some_and(|u| u.contains("/****")) {
            errors.push(dibop_core::FieldError::new(
                format!("notification.channels[{i}].url"),
                "a masked URL matches no stored channel of this rule: send the full URL",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    Ok(serde_json::to_string(rule).map_err(anyhow::Error::from)?)
}

async fn rule_row(state: &AppState, principal: &Principal, id: &str) -> AppResult<AlertRuleRow> {
    state.store().get_alert_rule(&principal.enterprise_id, id).await?.or_not_found(format!("alert rule {id}"))
}

/// List alert rules.
#[utoipa::path(get, path = "/alert-rules", tag = "alerts", params(PageQuery),
    responses((status = 200, description = "One page of rules", body = Paginated<RuleView>)))]
async fn list_rules(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<RuleView>>> {
    let (rows, total) = state.store().list_alert_rules(&principal.enterprise_id, pagination.page()).await?;
    let views = rows.iter().map(|row| view(row, None)).collect::<AppResult<_>>()?;
    Ok(Json(pagination.envelope(views, total)))
}

/// Create an alert rule; the answer carries the webhook signing secret once.
#[utoipa::path(post, path = "/alert-rules", tag = "alerts", request_body = RuleDefinition,
    responses((status = 201, description = "Created", body = RuleView)))]
async fn create_rule(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(rule): ApiJson<RuleDefinition>,
) -> AppResult<(StatusCode, Json<RuleView>)> {
    let text = checked(&rule)?;
    let secret = crate::crypto::random_secret("alsec_", 32);
    let sealed = state.sealer().seal(secret.as_bytes())?;
    let row = state
        .store()
        .create_alert_rule(&principal.enterprise_id, rule.name.trim(), &text, &sealed, rule.enabled)
        .await?;
    let after = Some(audit::scrubbed(&view(&row, None)?));
    let change = Change {
        action: Action::Create,
        resource: Resource::AlertRule,
        resource_id: Some(&row.id),
        before: None,
        after,
    };
    audit::record(&state, &principal, change).await;
    Ok((StatusCode::CREATED, Json(view(&row, Some(secret))?)))
}

/// One alert rule.
#[utoipa::path(get, path = "/alert-rules/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, description = "The rule", body = RuleView)))]
async fn get_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<RuleView>> {
    Ok(Json(view(&rule_row(&state, &principal, &id).await?, None)?))
}

/// Replace an alert rule (its secret stays). Fields left out keep their stored values (`null`
/// resets one to its default).
#[utoipa::path(put, path = "/alert-rules/{id}", tag = "alerts", params(("id" = String, Path)), request_body = RuleDefinition,
    responses((status = 200, description = "Replaced", body = RuleView)))]
async fn replace_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Map<String, Value>>,
) -> AppResult<Json<RuleView>> {
    let before = rule_row(&state, &principal, &id).await?;
    let rule: RuleDefinition = kept::over_stored(kept::object(&before.definition), body)?;
    let rule = with_stored_urls(rule, &before)?;
    let text = checked(&rule)?;
    let row = state
        .store()
        .replace_alert_rule(&principal.enterprise_id, &id, rule.name.trim(), &text, rule.enabled)
        .await?
        .or_not_found(format!("alert rule {id}"))?;
    let shown = view(&row, None)?;
    let (before, after) = (Some(audit::scrubbed(&view(&before, None)?)), Some(audit::scrubbed(&shown)));
    audit::record(
        &state,
        &principal,
        Change { action: Action::Update, resource: Resource::AlertRule, resource_id: Some(&id), before, after },
    )
    .await;
    Ok(Json(shown))
}

/// Delete an alert rule (and its fired alerts).
#[utoipa::path(delete, path = "/alert-rules/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted")))]
async fn delete_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let current = rule_row(&state, &principal, &id).await.ok();
    if state.store().delete_alert_rule(&principal.enterprise_id, &id).await? {
        let before = current.map(|row| view(&row, None)).transpose()?.map(|v| audit::scrubbed(&v));
        let change = Change {
            action: Action::Delete,
            resource: Resource::AlertRule,
            resource_id: Some(&id),
            before,
            after: None,
        };
        audit::record(&state, &principal, change).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("alert rule {id}")))
    }
}

/// A fired alert, with how its notifications went.
#[derive(Serialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    pub rule_id: String,
    #[schema(value_type = String)]
    pub severity: Severity,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
    pub fired_at: DateTime<Utc>,
    /// Per channel: type, url, status (delivered, failed, dropped; pending in a test answer that
    /// stopped waiting), attempts, error (`http 500`, `redirect refused`, `address refused`,
    /// `tls failed`, `connection failed`, `timeout`, `delivery queue full`).
    #[schema(value_type = Vec<Object>)]
    pub deliveries: Value,
}

fn alert_view(row: AlertRow) -> AlertView {
    let mut deliveries: Value = serde_json::from_str(&row.deliveries).unwrap_or(Value::Null);
    // Deliveries stored before URLs were masked in them.
    for delivery in deliveries.as_array_mut().into_iter().flatten() {
        let kind = serde_json::from_value(delivery["type"].clone()).ok();
        let url = delivery["url"].as_str().map(str::to_owned);
        if let (Some(kind), Some(url)) = (kind, url) {
            let shown = alerts::Channel { kind, url: Some(url) }.shown_url();
            delivery["url"] = shown.map_or(Value::Null, Value::String);
        }
    }
    AlertView {
        deliveries,
        id: row.id,
        rule_id: row.rule_id,
        severity: row.severity,
        metric: row.metric,
        value: row.value,
        threshold: row.threshold,
        message: row.message,
        fired_at: datetime(row.fired_at),
    }
}

/// Sends a test notification through the rule's channels now (cooldown not involved; through
/// the delivery queue); answers the stored test alert with its delivery outcomes, waiting for
/// them a bounded time (`pending` past it, `dropped` when the queue is full).
#[utoipa::path(post, path = "/alert-rules/{id}/test", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, description = "The test alert and its deliveries", body = AlertView)))]
async fn test_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<AlertView>> {
    let row = rule_row(&state, &principal, &id).await?;
    let rule: RuleDefinition = serde_json::from_str(&row.definition).map_err(anyhow::Error::from)?;
    let alert = NewAlert {
        rule_id: row.id.clone(),
        severity: Severity::Info,
        metric: "test".into(),
        value: 0.0,
        threshold: 0.0,
        message: format!("test notification of alert rule {}", row.name),
    };
    let mut alert = state.store().insert_alert(&principal.enterprise_id, alert).await?;
    let outcomes = state.alerts.deliver_and_wait(&row, &rule, &alert, alerts::TEST_WAIT).await?;
    alert.deliveries = outcomes.to_string();
    Ok(Json(alert_view(alert)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    pub rule_id: Option<String>,
    /// ISO 8601 lower bound of `fired_at`.
    pub from: Option<String>,
    /// ISO 8601 upper bound of `fired_at`.
    pub to: Option<String>,
}

/// Fired alerts, newest first.
#[utoipa::path(get, path = "/alerts", tag = "alerts", params(AlertQuery, PageQuery),
    responses((status = 200, description = "One page of alerts", body = Paginated<AlertView>)))]
async fn list_alerts(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AlertQuery>,
    pagination: Pagination,
) -> AppResult<Json<Paginated<AlertView>>> {
    let from = iso_instant("from", query.from.as_ref())?;
    let to = iso_instant("to", query.to.as_ref())?;
    let (rows, total) = state
        .store()
        .list_alerts(&principal.enterprise_id, query.rule_id.as_deref(), from, to, pagination.page())
        .await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(alert_view).collect(), total)))
}
