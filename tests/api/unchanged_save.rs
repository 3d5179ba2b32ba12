//! An unchanged save changes nothing: a `PUT` keeps every field it leaves out (a console form
//! that shows some fields, a script that knows a few), `null` resets a field to its default, and
//! saving what `GET` showed leaves the resource as it was apart from `updated_at`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};

/// `resource` without `updated_at`: what an unchanged save must leave byte-identical.
fn without_updated_at(mut resource: Value) -> Value {
    resource.as_object_mut().expect("object").remove("updated_at");
    resource
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.get(token, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.expect("json")
}

async fn put_ok(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let response = app.put(token, path, body.clone()).await;
    let status = response.status();
    let answer: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "PUT {path} {body}: {answer}");
    answer
}

/// The connection of the console's report: api-key auth, a static header and its own resilience.
async fn dealer_connection(app: &TestApp, token: &str) -> String {
    let connection = app
        .create_connection(
            token,
            json!({"name": "dealer", "system": "rest", "allowed_hosts": ["127.0.0.1:9"],
                   "config": {"base_url": "http://127.0.0.1:9/api",
                              "operations": {"vehicle": {"method": "GET", "path": "/vehicles/{vin}"}}},
                   "auth": {"type": "api_key", "header": "X-Dealer-Key", "key": "key-7781-abcd"},
                   "headers": {"X-Dealer": "42"},
                   "resilience": {"circuit_breaker": {"failure_threshold": 3, "open_ms": 5000},
                                  "rate_limit": {"requests_per_minute": 30}},
                   "timeout_ms": 5000, "memory_limit_mb": 32, "validate_output": true}),
        )
        .await;
    connection["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_connection_put_keeps_the_headers_resilience_and_limits_it_leaves_out() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let id = dealer_connection(&app, &token).await;
    let path = format!("/connections/{id}");
    let before = get(&app, &token, &path).await;

    // What the console's edit form sends when saved without a change: only what it shows.
    let form = json!({"name": "dealer", "system": "rest", "config": before["config"], "credentials": {},
                      "allowed_hosts": before["allowed_hosts"], "timeout_ms": 5000, "memory_limit_mb": 32});
    put_ok(&app, &token, &path, form).await;
    let after = get(&app, &token, &path).await;
    assert_eq!(without_updated_at(after.clone()), without_updated_at(before.clone()));
    assert_eq!(after["headers"], json!({"X-Dealer": "42"}));
    assert_eq!(
        after["resilience"],
        json!({"circuit_breaker": {"failure_threshold": 3, "open_ms": 5000}, "rate_limit": {"requests_per_minute": 30}})
    );

    // A body that names one field changes that field only.
    let renamed = put_ok(&app, &token, &path, json!({"name": "dealer-42"})).await;
    let mut expected = without_updated_at(before.clone());
    expected["name"] = json!("dealer-42");
    assert_eq!(without_updated_at(renamed), expected);

    // null resets a field to its default.
    let reset = put_ok(&app, &token, &path, json!({"headers": null, "resilience": null, "timeout_ms": null})).await;
    assert_eq!(reset["headers"], json!({}));
    assert_eq!(
        reset["resilience"],
        json!({"circuit_breaker": {"failure_threshold": 5, "open_ms": 30000}, "rate_limit": null})
    );
    assert_eq!(reset["timeout_ms"], 30000);
    assert_eq!(reset["auth"], before["auth"], "auth keeps its own rule: omitted is kept");
}

#[tokio::test]
async fn a_connection_put_with_a_bad_field_is_refused_at_its_path_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let id = dealer_connection(&app, &token).await;
    let path = format!("/connections/{id}");
    let before = get(&app, &token, &path).await;
    for (body, at) in [
        (
            json!({"resilience": {"circuit_breaker": {"failure_threshold": 0}}}),
            "resilience.circuit_breaker.failure_threshold",
        ),
        (json!({"name": null}), "name"),
        (json!({"headers": ["X-Dealer"]}), "headers"),
    ] {
        let refused =
            assert_error(app.put(&token, &path, body).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
                .await;
        assert_eq!(detail_paths(&refused), [at], "{refused}");
    }
    assert_eq!(get(&app, &token, &path).await, before);
}

#[tokio::test]
async fn an_orchestration_put_keeps_what_it_leaves_out_and_an_unchanged_one_is_no_new_version() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let step = |x: i64| json!([{"name": "shape", "type": "transform", "transform": "map", "mapping": {"x": x}}]);
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Lead routing", "description": "Routes leads", "status": "paused",
                   "trigger": {"type": "event"}, "parameters": [{"name": "lead", "type": "object"}],
                   "steps": step(1), "output": {"x": "${shape.x}"}, "sla_target": 95.0}),
        )
        .await;
    let path = format!("/orchestrations/{id}");
    let before = get(&app, &token, &path).await;

    // Only the steps: everything else stays, and the version moves.
    let replaced = put_ok(&app, &token, &path, json!({"steps": step(2)})).await;
    let mut expected = without_updated_at(before.clone());
    expected["steps"] = step(2);
    expected["version"] = json!(2);
    assert_eq!(without_updated_at(replaced), expected);

    // The definition as GET shows it, saved again: nothing changes, not even the version.
    let shown = get(&app, &token, &path).await;
    let mut definition = shown.clone();
    for key in ["id", "enterprise_id", "version", "created_at", "updated_at"] {
        definition.as_object_mut().expect("object").remove(key);
    }
    let saved = put_ok(&app, &token, &path, definition).await;
    assert_eq!(saved, shown);
    assert_eq!(get(&app, &token, &path).await, shown);
    let versions = get(&app, &token, &format!("{path}/versions")).await;
    assert_eq!(versions["pagination"]["total"], 2);

    // null resets a field to its default.
    let reset = put_ok(&app, &token, &path, json!({"sla_target": null, "status": null})).await;
    assert_eq!(reset["status"], "active");
    assert!(reset.get("sla_target").is_none_or(Value::is_null), "{reset}");
    assert_eq!(reset["description"], "Routes leads");
}

#[tokio::test]
async fn an_alert_rule_put_keeps_what_it_leaves_out() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let created = app
        .post(
            &token,
            "/alert-rules",
            json!({"name": "Three in a row", "description": "Pages the on-call", "type": "consecutive_failures",
                   "condition": {"threshold": 3}, "severity": "critical", "cooldown_minutes": 60, "enabled": false,
                   "notification": {"channels": [{"type": "log"}]}}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let path = format!("/alert-rules/{}", created["id"].as_str().expect("id"));
    let before = get(&app, &token, &path).await;

    let renamed = put_ok(&app, &token, &path, json!({"name": "Four in a row", "condition": {"threshold": 4}})).await;
    let mut expected = without_updated_at(before.clone());
    expected["name"] = json!("Four in a row");
    expected["condition"] = json!({"threshold": 4});
    assert_eq!(without_updated_at(renamed), expected);

    // The rule as GET shows it, saved again: the same rule.
    let shown = get(&app, &token, &path).await;
    let mut definition = shown.clone();
    for key in ["id", "last_fired_at", "created_at", "updated_at"] {
        definition.as_object_mut().expect("object").remove(key);
    }
    put_ok(&app, &token, &path, definition).await;
    assert_eq!(without_updated_at(get(&app, &token, &path).await), without_updated_at(shown));

    // A bad field is refused at its path and changes nothing.
    let refused = assert_error(
        app.put(&token, &path, json!({"severity": "loud"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&refused), ["severity"]);
    assert_eq!(get(&app, &token, &path).await["severity"], "critical");
}

#[tokio::test]
async fn settings_and_user_puts_keep_what_they_leave_out() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let before = get(&app, &token, "/settings").await;
    let after = put_ok(&app, &token, "/settings", json!({"retention_days": 45})).await;
    let mut expected = before.clone();
    expected["retention_days"] = json!(45);
    assert_eq!(after, expected);

    let user = app.create_user(&token, "vera@test.example", "viewer").await;
    let path = format!("/users/{}", user["id"].as_str().expect("id"));
    let before = get(&app, &token, &path).await;
    let after = put_ok(&app, &token, &path, json!({"name": "Vera Viewer"})).await;
    let mut expected = without_updated_at(before);
    expected["name"] = json!("Vera Viewer");
    assert_eq!(without_updated_at(after), expected);
}
