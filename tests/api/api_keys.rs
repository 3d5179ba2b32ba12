//! API keys: shown once, used as a bearer credential with the rights of their role and never
//! more (a key mints no key or user above itself), revoked or expired keys refused.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, assert_error, detail_paths};

/// `POST /settings/api-keys` with `body`, which must answer 201; answers the new key's JSON.
async fn create_key(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post(token, "/settings/api-keys", body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("json")
}

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

#[tokio::test]
async fn a_key_cannot_mint_a_key_or_user_with_more_rights_than_its_own() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let key = create_key(&app, &admin, json!({"name": "ci", "role": "enterprise_admin"})).await;
    let key = key["key"].as_str().expect("key");

    let platform_key = app.post(key, "/settings/api-keys", json!({"name": "up", "role": "platform_admin"})).await;
    assert_error(platform_key, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let user = |role: &str, platform: bool| {
        json!({"email": "up@test.example", "name": "Up", "role": role, "password": ADMIN_PASSWORD,
               "platform_access": platform})
    };
    assert_error(app.post(key, "/users", user("platform_admin", false)).await, StatusCode::FORBIDDEN, "FORBIDDEN")
        .await;
    assert_error(app.post(key, "/users", user("enterprise_admin", true)).await, StatusCode::FORBIDDEN, "FORBIDDEN")
        .await;
    let staff = app.create_user(&admin, "staff@test.example", "enterprise_admin").await;
    let promote =
        app.put(key, &format!("/users/{}", staff["id"].as_str().expect("id")), json!({"platform_access": true})).await;
    assert_error(promote, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // Equal rights are fine, and the key's user cannot reach the enterprises.
    assert_eq!(app.post(key, "/users", user("enterprise_admin", false)).await.status(), StatusCode::CREATED);
    let minted = app.token("up@test.example", ADMIN_PASSWORD).await;
    assert_error(app.get(&minted, "/enterprises").await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let listed: Value = app.get(&admin, "/settings/api-keys").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 1, "no key was minted");

    // A platform principal may grant platform rights, visibly.
    let granted = app
        .post(
            &admin,
            "/users",
            json!({"email": "p@test.example", "name": "P", "role": "enterprise_admin",
                                                    "password": ADMIN_PASSWORD, "platform_access": true}),
        )
        .await;
    assert_eq!(granted.status(), StatusCode::CREATED);
    assert_eq!(granted.json::<Value>().await.expect("json")["platform_access"], true);
}

#[tokio::test]
async fn an_expired_api_key_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let past = app
        .post(
            &admin,
            "/settings/api-keys",
            json!({"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let body = assert_error(past, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&body), ["expires_at"]);

    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let created = create_key(&app, &admin, json!({"name": "short", "role": "viewer", "expires_at": in_an_hour})).await;
    assert!(created["expires_at"].is_string(), "{created}");
    let key = created["key"].as_str().expect("key");
    assert_eq!(app.get(key, "/settings").await.status(), StatusCode::OK);
    let listed: Value = app.get(&admin, "/settings/api-keys").await.json().await.expect("json");
    assert_eq!(listed["data"][0]["expires_at"], created["expires_at"]);
    let forever = create_key(&app, &admin, json!({"name": "forever", "role": "viewer"})).await;
    assert!(forever["expires_at"].is_null());

    // The hour passes.
    let id = created["id"].as_str().expect("id");
    app.sql(&format!(
        "UPDATE api_keys SET expires_at = {} WHERE id = '{id}'",
        chrono::Utc::now().timestamp_millis() - 1
    ))
    .await;
    assert_error(app.get(key, "/settings").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(app.get(forever["key"].as_str().expect("key"), "/settings").await.status(), StatusCode::OK);
}
