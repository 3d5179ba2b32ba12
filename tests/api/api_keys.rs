use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn an_api_key_is_shown_once_works_as_bearer_and_stops_working_when_revoked() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let created = app.post(&admin, "/settings/api-keys", json!({"name": "ci", "role": "enterprise_admin"})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let key = created["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("dbp_") && key.len() >= 40, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().expect("prefix")));

    // The key authenticates.
    let with_key = app.get(&key, "/users").await;
    assert_eq!(with_key.status(), StatusCode::OK);
    assert!(with_key.headers().contains_key("x-ratelimit-limit"));

    // Listing shows the prefix and last use, never the key.
    let listed = app.get(&admin, "/settings/api-keys").await;
    assert_eq!(listed.status(), StatusCode::OK);
    let text = listed.text().await.expect("body");
    assert!(!text.contains(&key), "plaintext key leaked in list");
    let listed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(listed["pagination"]["total"], 1);
    assert_eq!(listed["data"][0]["prefix"], created["prefix"]);
    assert!(listed["data"][0]["last_used_at"].is_string(), "{listed}");
    assert!(listed["data"][0].get("key").is_none());

    // Revoked keys fail.
    let id = created["id"].as_str().expect("id");
    assert_eq!(app.delete(&admin, &format!("/settings/api-keys/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert_error(app.get(&key, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let listed: Value = app.get(&admin, "/settings/api-keys").await.json().await.expect("json");
    assert!(listed["data"][0]["revoked_at"].is_string());
}

#[tokio::test]
async fn a_viewer_key_reads_but_cannot_write() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let created: Value = app
        .post(&admin, "/settings/api-keys", json!({"name": "dash", "role": "viewer"}))
        .await
        .json()
        .await
        .expect("json");
    let key = created["key"].as_str().expect("key");
    assert_eq!(app.get(key, "/settings").await.status(), StatusCode::OK);
    let denied = app.post(key, "/settings/api-keys", json!({"name": "escalate", "role": "enterprise_admin"})).await;
    assert_error(denied, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn api_key_input_is_validated_and_unknown_keys_are_404() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let body = assert_error(
        app.post(&admin, "/settings/api-keys", json!({"name": "x", "role": "superuser"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"][0]["path"], "role");
    let body = assert_error(
        app.post(&admin, "/settings/api-keys", json!({"name": " ", "role": "viewer"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"][0]["path"], "name");
    assert_error(app.delete(&admin, "/settings/api-keys/nope").await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let listed: Value = app.get(&admin, "/settings/api-keys").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 0, "failed requests created nothing");
}
