//! The web console: static files embedded in the binary, served under `/console/` with a strict
//! Content-Security-Policy (nothing but this server: no inline script, no CDN, no fonts from
//! elsewhere). The console talks only to the public REST API with the user's token, so roles
//! and tenancy are enforced in one place. `/` redirects to it.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// What every console file is served with.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../console/index.html");

/// The console's files by name: one ES module per page group, the shared library and the style.
const ASSETS: &[(&str, &str)] = &[
    ("app.js", include_str!("../console/app.js")),
    ("lib.js", include_str!("../console/lib.js")),
    ("yaml.js", include_str!("../console/yaml.js")),
    ("dashboard.js", include_str!("../console/dashboard.js")),
    ("orchestrations.js", include_str!("../console/orchestrations.js")),
    ("executions.js", include_str!("../console/executions.js")),
    ("api-calls.js", include_str!("../console/api-calls.js")),
    ("systems.js", include_str!("../console/systems.js")),
    ("connections.js", include_str!("../console/connections.js")),
    ("canonical.js", include_str!("../console/canonical.js")),
    ("alerts.js", include_str!("../console/alerts.js")),
    ("settings.js", include_str!("../console/settings.js")),
    ("style.css", include_str!("../console/style.css")),
];

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|| async { file(INDEX, "text/html; charset=utf-8") }))
        .route("/console/{name}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(known, _)| *known == name) {
        Some((_, body)) if name.ends_with(".css") => file(body, "text/css; charset=utf-8"),
        Some((_, body)) => file(body, "text/javascript; charset=utf-8"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The files change with the binary: revalidate, never serve a stale console.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
