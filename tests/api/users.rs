use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, assert_error, detail_paths};

#[tokio::test]
async fn a_viewer_reads_but_every_write_is_403_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let viewer_user = app.create_user(&admin, "viewer@test.example", "viewer").await;
    assert_eq!(viewer_user["role"], "viewer");
    let viewer = app.token("viewer@test.example", ADMIN_PASSWORD).await;

    assert_eq!(app.get(&viewer, "/users").await.status(), StatusCode::OK);
    assert_eq!(app.get(&viewer, "/settings").await.status(), StatusCode::OK);

    let id = viewer_user["id"].as_str().expect("id");
    let writes = [
        app.post(
            &viewer,
            "/users",
            json!({"email": "x@test.example", "name": "X", "role": "viewer", "password": ADMIN_PASSWORD}),
        )
        .await,
        app.put(&viewer, &format!("/users/{id}"), json!({"role": "enterprise_admin"})).await,
        app.delete(&viewer, &format!("/users/{id}")).await,
        app.put(&viewer, "/settings", json!({"name": "Hijacked"})).await,
        app.post(&viewer, "/settings/api-keys", json!({"name": "k", "role": "viewer"})).await,
    ];
    for response in writes {
        assert_error(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
    let users: Value = app.get(&admin, "/users").await.json().await.expect("json");
    assert_eq!(users["pagination"]["total"], 2);
    let settings: Value = app.get(&admin, "/settings").await.json().await.expect("json");
    assert_eq!(settings["name"], "Default");
}

#[tokio::test]
async fn creating_a_user_validates_every_field_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let response = app
        .post(&admin, "/users", json!({"email": "not-an-email", "name": "", "role": "viewer", "password": "short"}))
        .await;
    let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let paths = detail_paths(&body);
    assert_eq!(paths, ["email", "name", "password"]);

    let missing = app.post(&admin, "/users", json!({"email": "a@b.example", "name": "A", "role": "viewer"})).await;
    let body = assert_error(missing, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"][0]["path"], "password");

    let users: Value = app.get(&admin, "/users").await.json().await.expect("json");
    assert_eq!(users["pagination"]["total"], 1, "nothing was created");
}

#[tokio::test]
async fn emails_are_unique_ignoring_case() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "dup@test.example", "viewer").await;
    let again = app
        .post(
            &admin,
            "/users",
            json!({"email": "DUP@test.example", "name": "D", "role": "viewer", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_error(again, StatusCode::CONFLICT, "CONFLICT").await;
}

#[tokio::test]
async fn a_deactivated_user_can_neither_log_in_nor_use_an_old_token() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let user = app.create_user(&admin, "leaver@test.example", "enterprise_admin").await;
    let token = app.token("leaver@test.example", ADMIN_PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    assert_eq!(app.delete(&admin, &format!("/users/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert_error(app.get(&token, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_error(app.login("leaver@test.example", ADMIN_PASSWORD).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
        .await;
    let shown: Value = app.get(&admin, &format!("/users/{id}")).await.json().await.expect("json");
    assert_eq!(shown["status"], "deactivated");
}

#[tokio::test]
async fn a_role_change_takes_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let user = app.create_user(&admin, "demoted@test.example", "enterprise_admin").await;
    let token = app.token("demoted@test.example", ADMIN_PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    let updated = app.put(&admin, &format!("/users/{id}"), json!({"role": "viewer", "name": "Demoted"})).await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.expect("json");
    assert_eq!(updated["role"], "viewer");
    assert_eq!(updated["name"], "Demoted");
    let write = app.put(&token, "/settings", json!({"name": "Mine now"})).await;
    assert_error(write, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn admins_cannot_lock_themselves_out() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let users: Value = app.get(&admin, "/users").await.json().await.expect("json");
    let me = users["data"][0]["id"].as_str().expect("id");
    assert_error(app.delete(&admin, &format!("/users/{me}")).await, StatusCode::CONFLICT, "CONFLICT").await;
    let demote = app.put(&admin, &format!("/users/{me}"), json!({"role": "viewer"})).await;
    assert_error(demote, StatusCode::CONFLICT, "CONFLICT").await;
    assert_eq!(app.get(&admin, "/settings").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn only_platform_rights_grant_platform_admin() {
    let app = TestApp::spawn().await;
    let other = app.second_enterprise("northside").await;
    let grant = app
        .post(
            &other,
            "/users",
            json!({"email": "p@northside.example", "name": "P", "role": "platform_admin", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_error(grant, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // The bootstrap admin has platform rights and may.
    let admin = app.admin_token().await;
    let created = app.create_user(&admin, "platform@test.example", "platform_admin").await;
    assert_eq!(created["platform_access"], true);
}

#[tokio::test]
async fn unknown_users_are_404() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    assert_error(app.get(&admin, "/users/does-not-exist").await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let put = app.put(&admin, "/users/does-not-exist", json!({"name": "Nobody"})).await;
    assert_error(put, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}
