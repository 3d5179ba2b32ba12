//! Incoming webhooks: management (`GET/POST /webhooks`, `DELETE /webhooks/{id}`) and the
//! trigger `POST /webhooks/{id}`, which authenticates with the webhook's secret instead of a
//! token.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::datetime;
use super::extract::{ApiJson, PageQuery, Paginated, Pagination, parse_json, parse_xml};
use crate::audit::{self, Action, Change, Resource};
use crate::auth::Principal;
use crate::engine::definition::Definition;
use crate::engine::executions;
use crate::engine::mapping;
use crate::error::{AppError, AppResult, FieldError, OrNotFound, Validator};
use crate::state::AppState;
use crate::store::{NewWebhook, WebhookRow};

/// Largest payload a webhook accepts.
pub const MAX_WEBHOOK_BYTES: usize = 256 << 10;

/// Management routes (behind authentication).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_webhooks, create_webhook)).routes(routes!(delete_webhook))
}

/// The trigger route (authenticated by the webhook's secret).
pub fn trigger_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(trigger)).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub name: String,
    pub orchestration_id: String,
    /// Parameter mappings over `${body...}` and `${headers...}`.
    pub parameters: Value,
    /// none or hmac-sha256.
    pub signature: String,
    pub enabled: bool,
    /// Where senders POST.
    pub url: String,
    pub created_at: DateTime<Utc>,
    /// Only in the answer to `POST /webhooks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn view(row: WebhookRow, secret: Option<String>) -> WebhookView {
    WebhookView {
        url: format!("/api/v1/webhooks/{}", row.id),
        parameters: serde_json::from_str(&row.parameters).unwrap_or(Value::Null),
        id: row.id,
        name: row.name,
        orchestration_id: row.orchestration_id,
        signature: row.signature,
        enabled: row.enabled != 0,
        created_at: datetime(row.created_at),
        secret,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub name: String,
    pub orchestration_id: String,
    /// Parameter name -> mapping, e.g. `{"vin": "${body.vin}"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, Value>,
    /// none (default) or hmac-sha256: then `X-Webhook-Signature: sha256=<hex HMAC of the body>`
    /// keyed with the secret is required too.
    #[serde(default = "none")]
    pub signature: String,
}

fn none() -> String {
    "none".into()
}

/// List webhooks (secrets are never shown again).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(PageQuery),
    responses((status = 200, description = "One page of webhooks", body = Paginated<WebhookView>)))]
async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
    pagination: Pagination,
) -> AppResult<Json<Paginated<WebhookView>>> {
    let (rows, total) = state.store().list_webhooks(&principal.enterprise_id, pagination.page()).await?;
    Ok(Json(pagination.envelope(rows.into_iter().map(|r| view(r, None)).collect(), total)))
}

/// Create a webhook; the answer carries its secret, shown only this once.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, description = "Created; `secret` is shown once", body = WebhookView)))]
async fn create_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> AppResult<(StatusCode, Json<WebhookView>)> {
    let mut v = Validator::new();
    v.check_name("name", &body.name);
    v.check(["none", "hmac-sha256"].contains(&body.signature.as_str()), "signature", "must be none or hmac-sha256");
    let orchestration = state.store().get_orchestration(&principal.enterprise_id, &body.orchestration_id).await?;
    v.check(orchestration.is_some(), "orchestration_id", "no such orchestration");
    let mapping = Value::Object(body.parameters.clone());
    match mapping::references(&mapping) {
        Ok(refs) => {
            for r in refs {
                v.check(
                    ["body", "headers"].contains(&r.root.as_str()),
                    "parameters",
                    format!("${{{}}}: webhooks map from body or headers", r.expression),
                );
            }
        }
        Err(e) => {
            v.check(false, "parameters", e.to_string());
        }
    }
    if let Some(row) = &orchestration {
        let def: Definition = serde_json::from_str(&row.definition).map_err(anyhow::Error::from)?;
        for name in body.parameters.keys() {
            v.check(
                def.parameters.iter().any(|p| &p.name == name),
                &format!("parameters.{name}"),
                "not a parameter of the orchestration",
            );
        }
    }
    v.finish()?;
    let secret = crate::crypto::random_secret("whsec_", 24);
    let new = NewWebhook {
        name: body.name.trim().to_owned(),
        orchestration_id: body.orchestration_id,
        parameters: mapping.to_string(),
        signature: body.signature,
        sealed_secret: state.sealer().seal(secret.as_bytes())?,
    };
    let row = state.store().create_webhook(&principal.enterprise_id, new).await?;
    let after = Some(audit::scrubbed(&view(row.clone(), None)));
    let shown = view(row, Some(secret));
    audit::record(
        &state,
        &principal,
        Change {
            action: Action::Create,
            resource: Resource::Webhook,
            resource_id: Some(&shown.id),
            before: None,
            after,
        },
    )
    .await;
    Ok((StatusCode::CREATED, Json(shown)))
}

/// Delete a webhook.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook", body = crate::error::ErrorResponse),
    ))]
async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let current = state.store().find_webhook(&id).await?.filter(|w| w.enterprise_id == principal.enterprise_id);
    if state.store().delete_webhook(&principal.enterprise_id, &id).await? {
        let before = current.map(|row| audit::scrubbed(&view(row, None)));
        let change =
            Change { action: Action::Delete, resource: Resource::Webhook, resource_id: Some(&id), before, after: None };
        audit::record(&state, &principal, change).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("webhook {id}")))
    }
}

#[derive(Serialize, ToSchema)]
pub struct Triggered {
    pub execution_id: String,
}

fn unauthorized() -> AppError {
    AppError::Unauthorized("missing or wrong webhook secret or signature".into())
}

/// XML bodies larger than this are read on a blocking thread.
const INLINE_XML_BYTES: usize = 16 * 1024;

/// How far `X-Webhook-Timestamp` may be from the server's clock, in seconds.
pub const WEBHOOK_TOLERANCE_SECS: i64 = 300;

/// Trigger a webhook's orchestration. Send `X-Webhook-Secret` (compared in constant time) and,
/// for hmac-sha256 webhooks, `X-Webhook-Signature: sha256=<hex>` of the body, or, with
/// `X-Webhook-Timestamp: <unix seconds>` (within 300 s of the server's clock), of
/// `<timestamp>.<body>` (replay protection). Answers 202 with the execution id; the execution
/// runs with `triggered_by` = event.
#[utoipa::path(post, path = "/webhooks/{id}", tag = "webhooks", security(()),
    params(("id" = String, Path), ("X-Webhook-Secret" = String, Header), ("X-Webhook-Signature" = Option<String>, Header),
        ("X-Webhook-Timestamp" = Option<String>, Header, description = "Unix seconds; signed with the body")),
    request_body(content = Object, description = "The event: JSON, or XML (`application/xml`, `text/xml`, `*+xml`) read as JSON by the documented rule; at most 256 KiB"),
    responses(
        (status = 202, description = "Execution stored and queued", body = Triggered),
        (status = 401, description = "Missing or wrong secret or signature", body = crate::error::ErrorResponse),
        (status = 404, description = "No such webhook", body = crate::error::ErrorResponse),
        (status = 429, description = "Execution rate limit exceeded, or the enterprise's queue is at its `max_queued_executions`: nothing was queued; send again after `Retry-After` seconds", body = crate::error::ErrorResponse),
    ))]
async fn trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Triggered>)> {
    let webhook =
        state.store().find_webhook(&id).await?.filter(|w| w.enabled != 0).or_not_found(format!("webhook {id}"))?;
    let secret = state.sealer().open(&webhook.secret)?;
    let given = headers.get("x-webhook-secret").map(|v| v.as_bytes()).unwrap_or_default();
    if !bool::from(given.ct_eq(&secret)) {
        return Err(unauthorized());
    }
    if webhook.signature == "hmac-sha256" {
        let signature = headers
            .get("x-webhook-signature")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha256="))
            .and_then(|hex| {
                (0..hex.len())
                    .step_by(2)
                    .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                    .collect::<Option<Vec<u8>>>()
            })
            .ok_or_else(unauthorized)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).map_err(|e| anyhow::anyhow!("{e}"))?;
        // With `X-Webhook-Timestamp` (unix seconds) the signature covers `<timestamp>.<body>`
        // and the timestamp must be within the tolerance: a captured request cannot be
        // replayed later.
        if let Some(timestamp) = headers.get("x-webhook-timestamp") {
            let text = timestamp.to_str().map_err(|_| unauthorized())?;
            let at: i64 = text.trim().parse().map_err(|_| unauthorized())?;
            if (chrono::Utc::now().timestamp() - at).abs() > WEBHOOK_TOLERANCE_SECS {
                return Err(AppError::Unauthorized(format!(
                    "X-Webhook-Timestamp is more than {WEBHOOK_TOLERANCE_SECS} s away from the server's clock"
                )));
            }
            mac.update(text.trim().as_bytes());
            mac.update(b".");
        }
        mac.update(&body);
        mac.verify_slice(&signature).map_err(|_| unauthorized())?;
    }
    let xml = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(dibop_xml::is_xml);
    let payload: Value = match (body.is_empty(), xml) {
        (true, _) => Value::Null,
        // Linear, but a large document still takes milliseconds: off the runtime's threads.
        (false, true) if body.len() > INLINE_XML_BYTES => {
            let body = body.clone();
            tokio::task::spawn_blocking(move || parse_xml(&body)).await.map_err(anyhow::Error::from)??
        }
        (false, true) => parse_xml(&body)?,
        (false, false) => parse_json(&body)?,
    };
    let header_map: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| {
            !["x-webhook-secret", "x-webhook-signature", "x-webhook-timestamp", "authorization", "cookie"]
                .contains(&name.as_str())
        })
        .filter_map(|(name, value)| {
            value.to_str().ok().map(|v| (name.as_str().to_owned(), Value::String(v.to_owned())))
        })
        .collect();
    let scope = serde_json::json!({"body": payload, "headers": header_map});
    let mapping: Value = serde_json::from_str(&webhook.parameters).map_err(anyhow::Error::from)?;
    let parameters = mapping::resolve(&mapping, &scope)
        .map_err(|e| AppError::Validation(vec![FieldError { path: "body".into(), message: e.to_string() }]))?;
    let given = parameters.as_object().cloned().unwrap_or_default();
    let start = executions::Start {
        enterprise_id: &webhook.enterprise_id,
        orchestration: executions::Target::Id(&webhook.orchestration_id),
        trigger: executions::Trigger::Webhook,
        parameters: &given,
        idempotency_key: headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned),
        traceparent: super::executions::traceparent(&headers),
        per_minute: None,
    };
    // Answered only once the execution is committed `queued`; a full queue answers 429 with
    // `Retry-After` and nothing written, so a relay that retransmits on non-2xx comes back.
    let admitted = executions::start(&state.engine, start).await.map_err(|err| match err {
        executions::ExecutionError::NotFound(_) => AppError::Conflict("the webhook's orchestration was deleted".into()),
        err => err.into(),
    })?;
    Ok((StatusCode::ACCEPTED, Json(Triggered { execution_id: admitted.execution.id })))
}
