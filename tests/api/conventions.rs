//! The API's conventions on every route: the error shape (malformed JSON, unknown routes, bodies
//! and URIs too long), request ids, pagination, rate-limit headers, probes, the OpenAPI document,
//! and text (NUL characters refused, non-ASCII text handled wherever it is read).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn malformed_json_is_400_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let response = app
        .client
        .post(app.url("/users"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("request");
    let body = assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(body["error"]["message"].as_str().expect("message").contains("malformed JSON"));

    let not_json = app.client.post(app.url("/auth/login")).body("email=a").send().await.expect("request");
    assert_error(not_json, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    assert_error(app.get(&admin, "/no-such-thing").await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let outside = app.client.get(format!("{}/nowhere", app.address)).send().await.expect("request");
    assert_error(outside, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let wrong_method = app.client.delete(app.url("/auth/login")).send().await.expect("request");
    assert_error(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").await;
    let wrong_method = app.request(reqwest::Method::PATCH, &admin, "/settings", None).await;
    assert_error(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 1024).await;
    let admin = app.admin_token().await;
    let big = "x".repeat(4096);
    let response = app.put(&admin, "/settings", json!({"name": big})).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    let settings: Value = app.get(&admin, "/settings").await.json().await.expect("json");
    assert_eq!(settings["name"], "Default");
}

#[tokio::test]
async fn a_long_uri_is_refused_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let path = format!("/users?filter={}", "a".repeat(9_000));
    let body = assert_error(app.get(&token, &path).await, StatusCode::URI_TOO_LONG, "URI_TOO_LONG").await;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("8192"), "{body}");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = TestApp::spawn().await;
    let health = app.client.get(format!("{}/healthz", app.address)).send().await.expect("request");
    assert!(health.headers().contains_key("x-request-id"));
    let mine = app.client.get(app.url("/users")).header("x-request-id", "trace-me-123").send().await.expect("request");
    assert_eq!(mine.headers()["x-request-id"], "trace-me-123");
    let body = assert_error(mine, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(body["error"]["request_id"], "trace-me-123");
}

#[tokio::test]
async fn pagination_bounds_are_enforced_and_the_envelope_adds_up() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for n in 0..4 {
        app.create_user(&admin, &format!("u{n}@test.example"), "viewer").await;
    }
    for query in ["page=0", "page_size=0", "page_size=201", "page=abc", "page_size=-1"] {
        let response = app.get(&admin, &format!("/users?{query}")).await;
        assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    }
    let first: Value = app.get(&admin, "/users?page_size=2").await.json().await.expect("json");
    assert_eq!(first["pagination"], json!({"page": 1, "page_size": 2, "total": 5, "total_pages": 3}));
    assert_eq!(first["data"].as_array().expect("data").len(), 2);
    let last: Value = app.get(&admin, "/users?page=3&page_size=2").await.json().await.expect("json");
    assert_eq!(last["data"].as_array().expect("data").len(), 1);
    let beyond: Value = app.get(&admin, "/users?page=9&page_size=2").await.json().await.expect("json");
    assert_eq!(beyond["data"], json!([]));
    let defaults: Value = app.get(&admin, "/users?page_size=200").await.json().await.expect("json");
    assert_eq!(defaults["pagination"]["page_size"], 200);
    let defaults: Value = app.get(&admin, "/users").await.json().await.expect("json");
    assert_eq!(defaults["pagination"]["page_size"], 50);
}

#[tokio::test]
async fn authenticated_responses_carry_rate_limit_headers_and_excess_gets_429() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let limits = json!({"rate_limits": {"api_requests_per_minute": 5, "executions_per_minute": 60}});
    let response = app.put(&admin, "/settings", limits).await;
    assert_eq!(response.status(), StatusCode::OK);
    for name in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
        assert!(response.headers().contains_key(name), "{name}");
    }
    let reset: i64 = response.headers()["x-ratelimit-reset"].to_str().expect("ascii").parse().expect("unix seconds");
    let now = chrono::Utc::now().timestamp();
    assert!(reset > now - 1 && reset <= now + 60, "reset {reset} now {now}");

    // Enough requests to exceed 5 per minute even if a window boundary passes in between.
    let mut rejected = None;
    let mut last_remaining = None;
    for _ in 0..12 {
        let response = app.get(&admin, "/users").await;
        let remaining: u64 = response.headers()["x-ratelimit-remaining"].to_str().expect("ascii").parse().expect("n");
        assert_eq!(response.headers()["x-ratelimit-limit"], "5");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            rejected = Some(response);
            break;
        }
        if let Some(previous) = last_remaining {
            assert!(remaining < previous || remaining == 4, "remaining counts down: {previous} -> {remaining}");
        }
        last_remaining = Some(remaining);
    }
    let rejected = rejected.expect("a request beyond the limit is rejected");
    assert_eq!(rejected.headers()["x-ratelimit-remaining"], "0");
    let retry_after: u64 = rejected.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after));
    assert_error(rejected, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT").await;

    // Another enterprise has its own budget.
    let other_ok = app.login("admin@test.example", "correct-horse-battery").await;
    assert_eq!(other_ok.status(), StatusCode::OK, "login is not counted against the API budget");
}

#[tokio::test]
async fn health_and_readiness_probes_answer() {
    let app = TestApp::spawn().await;
    let health: Value =
        app.client.get(format!("{}/healthz", app.address)).send().await.expect("r").json().await.expect("j");
    assert_eq!(health["status"], "ok");
    let ready: Value =
        app.client.get(format!("{}/readyz", app.address)).send().await.expect("r").json().await.expect("j");
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint_with_bearer_auth_and_errors() {
    let app = TestApp::spawn().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.expect("r").json().await.expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    let expected = [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/users", "get"),
        ("/api/v1/users", "post"),
        ("/api/v1/users/{id}", "get"),
        ("/api/v1/users/{id}", "put"),
        ("/api/v1/users/{id}", "delete"),
        ("/api/v1/settings", "get"),
        ("/api/v1/settings", "put"),
        ("/api/v1/settings/api-keys", "get"),
        ("/api/v1/settings/api-keys", "post"),
        ("/api/v1/settings/api-keys/{id}", "delete"),
        ("/api/v1/audit-log", "get"),
        ("/api/v1/enterprises", "get"),
        ("/api/v1/enterprises", "post"),
        ("/api/v1/enterprises/{id}", "get"),
        ("/api/v1/plugins", "get"),
        ("/api/v1/plugins", "post"),
        ("/api/v1/plugins/{id}", "get"),
        ("/api/v1/plugins/{id}", "delete"),
        ("/api/v1/plugins/{id}", "patch"),
        ("/api/v1/plugin-signers", "get"),
        ("/api/v1/plugin-signers", "post"),
        ("/api/v1/plugin-signers/{id}", "delete"),
        ("/api/v1/systems", "get"),
        ("/api/v1/systems/{slug}/apis", "get"),
        ("/api/v1/systems/{slug}/ping", "post"),
        ("/api/v1/connections", "get"),
        ("/api/v1/connections", "post"),
        ("/api/v1/connections/{id}", "get"),
        ("/api/v1/connections/{id}", "put"),
        ("/api/v1/connections/{id}", "delete"),
        ("/api/v1/connections/{id}/test", "post"),
        ("/api/v1/api-calls", "get"),
        ("/api/v1/api-calls/systems", "get"),
        ("/api/v1/orchestrations", "get"),
        ("/api/v1/orchestrations", "post"),
        ("/api/v1/orchestrations/{id}", "get"),
        ("/api/v1/orchestrations/{id}", "put"),
        ("/api/v1/orchestrations/{id}", "delete"),
        ("/api/v1/orchestrations/{id}/execute", "post"),
        ("/api/v1/orchestrations/{id}/executions", "get"),
        ("/api/v1/orchestrations/{id}/versions", "get"),
        ("/api/v1/orchestrations/{id}/versions/{version}", "get"),
        ("/api/v1/executions", "get"),
        ("/api/v1/executions/replay", "post"),
        ("/api/v1/executions/resume", "post"),
        ("/api/v1/executions/{id}", "get"),
        ("/api/v1/executions/{id}/trace", "get"),
        ("/api/v1/executions/{id}/cancel", "post"),
        ("/api/v1/executions/{id}/retry", "post"),
        ("/api/v1/executions/{id}/resume", "post"),
        ("/api/v1/webhooks", "get"),
        ("/api/v1/webhooks", "post"),
        ("/api/v1/webhooks/{id}", "post"),
        ("/api/v1/webhooks/{id}", "delete"),
        ("/api/v1/observability/metrics", "get"),
        ("/api/v1/observability/sla", "get"),
        ("/api/v1/observability/timeline", "get"),
        ("/api/v1/alert-rules", "get"),
        ("/api/v1/alert-rules", "post"),
        ("/api/v1/alert-rules/{id}", "get"),
        ("/api/v1/alert-rules/{id}", "put"),
        ("/api/v1/alert-rules/{id}", "delete"),
        ("/api/v1/alert-rules/{id}/test", "post"),
        ("/api/v1/alerts", "get"),
        ("/api/v1/canonical", "get"),
        ("/api/v1/canonical/{domain}", "get"),
        ("/api/v1/canonical/{domain}", "post"),
        ("/api/v1/canonical/{domain}/{id}", "get"),
        ("/api/v1/canonical/{domain}/{id}", "put"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    let documented: usize = paths.values().map(|item| item.as_object().expect("item").len()).sum();
    assert_eq!(documented, expected.len(), "no undocumented extras or gaps: {:?}", paths.keys().collect::<Vec<_>>());
    for (path, method) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} missing");
        assert!(operation["responses"]["500"].is_object(), "{method} {path} documents 500");
        if path != "/api/v1/auth/login" && !(path == "/api/v1/webhooks/{id}" && method == "post") {
            assert_eq!(operation["security"][0]["bearer"], json!([]), "{method} {path} needs bearer");
            assert!(operation["responses"]["401"].is_object(), "{method} {path} documents 401");
            assert!(operation["responses"]["429"].is_object(), "{method} {path} documents 429");
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["ErrorResponse"].is_object());

    let docs = app.client.get(format!("{}/api/v1/docs/", app.address)).send().await.expect("r");
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "Swagger UI page");
    assert!(!html.contains("https://"), "no external assets");
    let bundle = app.client.get(format!("{}/api/v1/docs/swagger-ui-bundle.js", app.address)).send().await.expect("r");
    assert_eq!(bundle.status(), StatusCode::OK, "assets served by the binary");
}

/// Found by `scripts/fuzz.sh` on PostgreSQL, whose text and JSONB cannot hold U+0000: such a
/// string in a body, a path or a query answered 500. It is refused on both databases.
#[tokio::test]
async fn nul_characters_are_refused_in_bodies_paths_and_queries() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let user = json!({"email": "nul@test.example", "name": "a\u{0}b", "role": "viewer", "password": "long-enough-pw"});
    let body =
        assert_error(app.post(&admin, "/users", user).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
            .await;
    assert_eq!(crate::helpers::detail_paths(&body), ["name"]);
    let steps = json!({"name": "o", "steps": [{"name": "e", "type": "transform", "transform": "map",
        "mapping": {"v": "x\u{0}"}}]});
    let body = assert_error(
        app.post(&admin, "/orchestrations", steps).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(crate::helpers::detail_paths(&body), ["steps[0].mapping.v"]);
    let yaml = app
        .client
        .post(app.url("/orchestrations"))
        .bearer_auth(&admin)
        .header("content-type", "application/yaml")
        .body("name: \"o\\0\"\nsteps: []\n")
        .send()
        .await
        .expect("request");
    assert_error(yaml, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    // An escaped backslash before `u0000` is text, not a NUL.
    let text =
        json!({"email": "text@test.example", "name": "a\\u0000b", "role": "viewer", "password": "long-enough-pw"});
    assert_eq!(app.post(&admin, "/users", text).await.status(), StatusCode::CREATED);

    assert_error(app.get(&admin, "/users/a%00b").await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_error(app.get(&admin, "/api-calls?system=a%00b").await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert_error(app.get(&admin, "/canonical/vehicle?make=a%00").await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
}

#[tokio::test]
async fn non_ascii_text_in_conditions_and_windows_is_handled_not_panicked() {
    let app = TestApp::spawn_with(|config| config.max_in_flight = 2).await;
    let token = app.admin_token().await;
    let id = app.create_orchestration(&token, json!({"name": "Umlauts", "parameters": [{"name": "city", "type": "string", "required": true}],
               "steps": [{"name": "where", "type": "condition", "condition": "${parameters.city} == Zürich",
                          "then": [{"name": "swiss", "type": "transform", "transform": "map", "mapping": {"desk": "CH – Zürich"}}]}],
               "output": {"branch": "${where.branch}"}}),
    )
    .await;
    // More executions than workers: a panicking parser used to end a worker per execution.
    for city in ["Zürich", "Köln", "東京", "Zürich", "🚗"] {
        let run = app.execute(&token, &id, json!({"parameters": {"city": city}})).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["output"]["branch"] == "then", city == "Zürich", "{city}: {run}");
    }
    for path in ["/observability/sla?window=7é", "/api-calls/systems?window=é", "/observability/sla?window=1ß"] {
        assert_error(app.get(&token, path).await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    }
    let rule = json!({"name": "rate", "type": "error_rate_spike", "condition": {"threshold_percent": 10, "window": "5é"},
                      "channels": [{"type": "log"}]});
    assert_error(app.post(&token, "/alert-rules", rule).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
        .await;
}
