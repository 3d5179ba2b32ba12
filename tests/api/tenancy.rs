use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, assert_error, detail_paths};

#[tokio::test]
async fn a_second_enterprise_can_neither_see_nor_touch_the_first() {
    let app = TestApp::spawn().await;
    let first = app.admin_token().await;
    let user = app.create_user(&first, "staff@test.example", "viewer").await;
    let key: Value = app
        .post(&first, "/settings/api-keys", json!({"name": "k", "role": "viewer"}))
        .await
        .json()
        .await
        .expect("json");
    let user_id = user["id"].as_str().expect("id");
    let key_id = key["id"].as_str().expect("id");

    let second = app.second_enterprise("southside").await;
    let users: Value = app.get(&second, "/users").await.json().await.expect("json");
    assert_eq!(users["pagination"]["total"], 1, "only its own admin: {users}");
    assert_eq!(users["data"][0]["email"], "admin@southside.example");
    let keys: Value = app.get(&second, "/settings/api-keys").await.json().await.expect("json");
    assert_eq!(keys["pagination"]["total"], 0);

    assert_error(app.get(&second, &format!("/users/{user_id}")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let put = app.put(&second, &format!("/users/{user_id}"), json!({"name": "Taken"})).await;
    assert_error(put, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_error(app.delete(&second, &format!("/users/{user_id}")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let revoke = app.delete(&second, &format!("/settings/api-keys/{key_id}")).await;
    assert_error(revoke, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // The first enterprise's data is intact.
    let still: Value = app.get(&first, &format!("/users/{user_id}")).await.json().await.expect("json");
    assert_eq!(still["name"], "Test User");
    assert_eq!(still["status"], "active");
    let key_plain = key["key"].as_str().expect("key");
    assert_eq!(app.get(key_plain, "/users").await.status(), StatusCode::OK, "key still works");

    // Settings are per enterprise.
    let mine: Value = app.get(&second, "/settings").await.json().await.expect("json");
    assert_eq!(mine["slug"], "southside");
}

#[tokio::test]
async fn enterprises_need_platform_rights() {
    let app = TestApp::spawn().await;
    let other = app.second_enterprise("eastside").await;
    assert_error(app.get(&other, "/enterprises").await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let create = app
        .post(
            &other,
            "/enterprises",
            json!({"name": "X", "admin_email": "x@x.example", "admin_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_error(create, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    let admin = app.admin_token().await;
    let listed: Value = app.get(&admin, "/enterprises").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 2);
    let id = listed["data"][1]["id"].as_str().expect("id");
    let one: Value = app.get(&admin, &format!("/enterprises/{id}")).await.json().await.expect("json");
    assert_eq!(one["slug"], "eastside");
    assert_eq!(one["rate_limits"]["api_requests_per_minute"], 300);
    assert_eq!(one["rate_limits"]["executions_per_minute"], 60);
}

#[tokio::test]
async fn creating_an_enterprise_is_validated_and_conflicts_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let bad = app
        .post(&admin, "/enterprises", json!({"name": "B", "slug": "Bad Slug", "timezone": "Mars/Olympus", "admin_email": "nope", "admin_password": "x"}))
        .await;
    let body = assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let paths = detail_paths(&body);
    assert_eq!(paths, ["slug", "timezone", "admin_email", "admin_password"]);

    app.second_enterprise("westside").await;
    let same_slug = app
        .post(
            &admin,
            "/enterprises",
            json!({"name": "W2", "slug": "westside", "admin_email": "new@w.example", "admin_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_error(same_slug, StatusCode::CONFLICT, "CONFLICT").await;
    // The admin of the rejected enterprise was not created either (one transaction).
    assert_error(app.login("new@w.example", ADMIN_PASSWORD).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let listed: Value = app.get(&admin, "/enterprises").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 2);
    // Addresses are unique per enterprise: another enterprise's admin address is no conflict
    // (see identity_hardening.rs).
    let same_email = app
        .post(
            &admin,
            "/enterprises",
            json!({"name": "W3", "admin_email": "admin@westside.example", "admin_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(same_email.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_platform_only_account_manages_enterprises() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "ops@test.example", "platform_admin").await;
    let ops = app.token("ops@test.example", ADMIN_PASSWORD).await;
    assert_eq!(app.get(&ops, "/enterprises").await.status(), StatusCode::OK);
    let created = app
        .post(
            &ops,
            "/enterprises",
            json!({"name": "Fleet Co", "admin_email": "a@fleet.example", "admin_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["slug"], "fleet-co");
    assert_eq!(created["admin"]["role"], "enterprise_admin");
    assert_eq!(created["timezone"], "UTC");
}
