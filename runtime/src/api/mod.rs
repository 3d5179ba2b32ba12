//! The HTTP API: one router per resource, merged here, where the middleware stack and the
//! OpenAPI document are also assembled.
//!
//! Invariant: only this module knows HTTP. Handlers parse the request, call the store or a
//! domain module, and shape the answer.

mod alert_rules;
pub(crate) mod api_calls;
mod api_keys;
mod audit_log;
mod auth;
mod authn;
mod canonical;
mod connections;
mod enterprises;
mod executions;
pub mod extract;
mod health;
mod kept;
mod observability;
mod orchestrations;
mod plugin_signers;
mod plugins;
mod replay;
mod resume;
mod settings;
mod systems;
pub(crate) mod trace;
mod users;
mod webhooks;

use std::any::Any;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{AppError, ErrorBody, ErrorResponse, FieldError};
use crate::state::AppState;

/// Base path of the REST API.
pub const BASE: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(title = "DIBOP API", description = "Integration and orchestration for dealer groups. \
        Authenticate with `POST /api/v1/auth/login` or an API key, then send `Authorization: Bearer <token>`."),
    // Branch is reached only through `#[schema(no_recursion)]` fields, which do not collect it.
    components(schemas(ErrorResponse, FieldError, crate::engine::definition::Branch)),
    tags(
        (name = "auth", description = "Log in"),
        (name = "users", description = "Users of the enterprise"),
        (name = "settings", description = "Enterprise settings and API keys"),
        (name = "enterprises", description = "Tenants (platform rights)"),
        (name = "plugins", description = "WebAssembly connector and transform components"),
        (name = "systems", description = "The catalogue of systems and their APIs"),
        (name = "connections", description = "Configured systems with their credentials"),
        (name = "api-calls", description = "Every outbound request a plugin made"),
        (name = "orchestrations", description = "Orchestration definitions and execute"),
        (name = "executions", description = "Executions and their step results"),
        (name = "webhooks", description = "Incoming webhooks that trigger orchestrations"),
        (name = "observability", description = "Platform metrics (Prometheus at /metrics)"),
        (name = "alerts", description = "Alert rules and fired alerts"),
        (name = "canonical", description = "The canonical data model: 22 automotive domains"),
    )
)]
struct ApiDoc;

/// The whole application: API, docs, probes and the middleware every response passes through.
pub fn router(state: AppState) -> Router {
    let protected = OpenApiRouter::new()
        .merge(users::router())
        .merge(api_keys::router())
        .merge(audit_log::router())
        .merge(settings::router())
        .merge(enterprises::router())
        .merge(plugins::router())
        .merge(plugin_signers::router())
        .merge(systems::router())
        .merge(connections::router())
        .merge(api_calls::router())
        .merge(orchestrations::router())
        .merge(executions::router())
        .merge(replay::router())
        .merge(resume::router())
        .merge(trace::router())
        .merge(webhooks::router())
        .merge(observability::router())
        .merge(alert_rules::router())
        .merge(canonical::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), authn::authenticate));
    let api = OpenApiRouter::new()
        .merge(auth::router(state.config.max_body_bytes))
        .merge(webhooks::trigger_router())
        .merge(protected);
    let (api, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(BASE, api).split_for_parts();
    document_common_responses(&mut openapi);
    merge_closed_all_ofs(&mut openapi);

    let max_body = state.config.max_body_bytes;
    let docs = Router::from(SwaggerUi::new(format!("{BASE}/docs")).url(format!("{BASE}/openapi.json"), openapi))
        .layer(middleware::map_response(swagger_policy));
    let app = Router::new()
        .merge(api)
        .merge(docs)
        .merge(crate::console::router())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(observability::prometheus))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state);
    with_common_layers(app, max_body)
}

/// Longest request URI (path and query) accepted, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The middleware every response passes through, outermost last: request id, tracing, error
/// shape, panic catching and the body limit; the security headers go on every answer.
fn with_common_layers(router: Router, max_body: usize) -> Router {
    router
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(error_shape))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_response(security_headers))
}

/// What every answer carries unless it set its own (the console and the Swagger UI set fuller
/// policies): no content-type sniffing, no referrer, and no framing by any page, so a JSON answer
/// or an error cannot be rendered as a document or framed for clickjacking.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, API_CSP),
    ] {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

/// The policy of API answers (JSON, nothing to run or show).
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The Swagger UI's policy: its own scripts, styles and the API, nothing from elsewhere. Its
/// styles are partly inline (set by its scripts), and its icons are `data:` images.
pub const SWAGGER_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

async fn swagger_policy(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(SWAGGER_CSP));
    response
}

/// Renders every error answer in the API's shape with the request id, whoever produced it: a
/// handler's [`AppError`], an axum rejection (404, 405, 413) or a caught panic.
async fn error_shape(request: Request, next: Next) -> Response {
    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let method = request.method().clone();
    // Longer URIs are refused here, in the error shape (hyper itself answers a bare 414 only
    // past 64 KiB).
    let refuse = |status: StatusCode, message: String| {
        let body = ErrorBody::new(status, message);
        let mut response = Response::new(Body::from(body.render(&request_id).to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return refuse(StatusCode::URI_TOO_LONG, format!("the URI is longer than {MAX_URI_BYTES} bytes"));
    }
    let path = request.uri().path().to_owned();
    // No stored name or id holds U+0000 (PostgreSQL's text cannot), so a path with one names
    // nothing; refused here before it reaches a query.
    if path.contains("%00") {
        return refuse(StatusCode::NOT_FOUND, format!("nothing at {method} {path}: the path contains %00"));
    }
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let body = response.extensions_mut().remove::<ErrorBody>().unwrap_or_else(|| {
        let message = match status {
            StatusCode::NOT_FOUND => format!("no route for {method} {path}"),
            StatusCode::METHOD_NOT_ALLOWED => format!("method {method} is not allowed on {path}"),
            StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_owned(),
            _ => status.canonical_reason().unwrap_or("request failed").to_owned(),
        };
        ErrorBody::new(status, message)
    });
    match &body.internal {
        Some(internal) if body.transient => {
            tracing::warn!(request_id, %method, path, error = %internal, "request refused: the database is unavailable");
        }
        Some(internal) => tracing::error!(request_id, %method, path, error = %internal, "request failed"),
        None => {}
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.render(&request_id).to_string()))
}

#[allow(clippy::needless_pass_by_value, reason = "the signature CatchPanicLayer expects")]
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = crate::guard::panic_message(panic.as_ref());
    AppError::Internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}

/// Adds what every operation shares to the document: Bearer auth and the error answers the
/// middleware and the extractors can give (400 for a bad query parameter, 404 for an unknown id
/// in the path), so each handler documents only its own.
fn document_common_responses(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT or dbp_ API key").build(),
        ),
    );
    let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorResponse"))).build(),
            )
            .build()
            .into()
    };
    let requirement = utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>("bearer", []);
    for item in openapi.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            // Operations that declare `security(())` (login, webhook triggers) are public.
            let public = operation.security.as_ref().is_some_and(|s| s.iter().any(|r| *r == Default::default()));
            let located = |place: ParameterIn| operation.parameters.iter().flatten().any(|p| p.parameter_in == place);
            let (in_query, in_path) = (located(ParameterIn::Query), located(ParameterIn::Path));
            let responses = &mut operation.responses.responses;
            let mut add = |code: &str, description: &str| {
                responses.entry(code.to_owned()).or_insert_with(|| error(description));
            };
            match (operation.request_body.is_some(), in_query) {
                (true, false) => add("400", "Malformed JSON or wrong Content-Type"),
                (true, true) => add("400", "Malformed body, wrong Content-Type or a bad query parameter"),
                (false, true) => add("400", "A query parameter is malformed or out of range"),
                (false, false) => {}
            }
            if in_path {
                add("404", "Nothing matches the path in the caller's enterprise");
            }
            if operation.request_body.is_some() {
                add("413", "Request body too large");
                add("422", "Validation failed; `details` lists each field");
            }
            if !public {
                add("401", "Missing, invalid or expired token");
                add("403", "The caller's role does not allow this");
                add("429", "Rate limit exceeded; see Retry-After and X-RateLimit-Reset");
                operation.security = Some(vec![requirement.clone()]);
            }
            add("500", "Internal error; nothing leaked, logged with the request id");
            add("503", "The database is unavailable (down, refusing connections, out of space); see Retry-After");
        }
    }
}

/// A view that `#[serde(flatten)]`s a `deny_unknown_fields` struct (an orchestration's or an
/// alert rule's definition plus its id and timestamps) is documented as `allOf` of a part with
/// `additionalProperties: false` and a part with the other fields, which no answer can match.
/// Each such `allOf`, as a component or inlined in a list envelope, becomes one object with every
/// part's properties, closed like the part.
fn merge_closed_all_ofs(openapi: &mut utoipa::openapi::OpenApi) {
    let Some(components) = openapi.components.as_mut() else { return };
    let snapshot = components.schemas.clone();
    for schema in components.schemas.values_mut() {
        merge_closed_all_of(schema, &snapshot);
    }
}

fn merge_closed_all_of(
    schema: &mut RefOr<utoipa::openapi::schema::Schema>,
    components: &std::collections::BTreeMap<String, RefOr<utoipa::openapi::schema::Schema>>,
) {
    use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Object, Schema};
    let RefOr::T(inner) = schema else { return };
    let all_of = match inner {
        Schema::Object(object) => {
            object.properties.values_mut().for_each(|property| merge_closed_all_of(property, components));
            return;
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                merge_closed_all_of(items, components);
            }
            return;
        }
        Schema::AllOf(all_of) => all_of,
        _ => return,
    };
    let object_of = |part: &RefOr<Schema>| -> Option<Object> {
        let part = match part {
            RefOr::T(part) => part,
            RefOr::Ref(reference) => {
                match components.get(reference.ref_location.strip_prefix("#/components/schemas/")?)? {
                    RefOr::T(part) => part,
                    RefOr::Ref(_) => return None,
                }
            }
        };
        if let Schema::Object(object) = part { Some(object.clone()) } else { None }
    };
    let Some(parts) = all_of.items.iter().map(object_of).collect::<Option<Vec<_>>>() else { return };
    let closed = |o: &Object| matches!(o.additional_properties.as_deref(), Some(AdditionalProperties::FreeForm(false)));
    if !parts.iter().any(closed) {
        return;
    }
    let description = all_of.description.clone();
    let mut parts = parts.into_iter();
    let Some(mut merged) = parts.next() else { return };
    for part in parts {
        merged.properties.extend(part.properties);
        let required: Vec<String> = part.required.into_iter().filter(|name| !merged.required.contains(name)).collect();
        merged.required.extend(required);
    }
    merged.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    merged.description = description;
    merged.title = None;
    *schema = RefOr::T(Schema::Object(merged));
}

/// A stored unix-millisecond timestamp as the API shows it.
pub fn datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub fn opt_datetime(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(datetime)
}

/// An answer as JSON, with personal and credential values masked when the caller is a viewer
/// (`canonical::mask_for_viewer`): executions, traces and API-call logs go through it.
pub fn for_reader<T: serde::Serialize>(
    principal: &crate::auth::Principal,
    body: &T,
) -> crate::error::AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    if principal.role != dibop_core::Role::Viewer {
        return Ok(axum::Json(body).into_response());
    }
    let mut value = serde_json::to_value(body).map_err(anyhow::Error::from)?;
    crate::canonical::mask_for_viewer(&mut value);
    Ok(axum::Json(value).into_response())
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> StatusCode {
        panic!("database password is hunter2")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_without_internals() {
        let app = with_common_layers(Router::new().route("/boom", get(boom)), 1024);
        let request = Request::builder().uri("/boom").body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let request_id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
        let body = to_bytes(response.into_body(), 4096).await.expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
        assert_eq!(body["error"]["request_id"], request_id.as_str());
        assert!(!body.to_string().contains("hunter2"), "{body}");
    }
}
