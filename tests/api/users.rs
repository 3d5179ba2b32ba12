//! Users and their rights: what a viewer may do and see (personal data masked), validation and
//! unique addresses without telling anything about other enterprises' accounts, deactivation,
//! role changes, and platform rights that nobody inside an enterprise grants, takes or touches.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, assert_error, detail_paths};

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
async fn viewers_read_executions_and_traces_with_personal_data_masked() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let id = app.create_orchestration(&token, json!({"name": "Lead intake", "parameters": [{"name": "email", "type": "string", "required": true}],
               "steps": [{"name": "lead", "type": "transform", "transform": "map",
                          "mapping": {"customer": {"first_name": "Ann", "email": "${parameters.email}"}, "source": "web"}}]}),
    )
    .await;
    let run = app.execute(&token, &id, json!({"parameters": {"email": "ann@example.com"}})).await;
    let execution = run["execution_id"].as_str().expect("id");
    app.create_user(&token, "viewer@example.com", "viewer").await;
    let viewer = app.token("viewer@example.com", ADMIN_PASSWORD).await;

    let seen: Value = app.get(&viewer, &format!("/executions/{execution}")).await.json().await.expect("json");
    assert_eq!(seen["parameters"]["email"], "****", "{seen}");
    assert_eq!(seen["steps"][0]["output"]["customer"], json!({"first_name": "****", "email": "****"}), "{seen}");
    assert_eq!(seen["steps"][0]["output"]["source"], "web");
    for path in [format!("/executions/{execution}/trace"), format!("/orchestrations/{id}/executions")] {
        let text = app.get(&viewer, &path).await.text().await.expect("text");
        assert!(!text.contains("ann@example.com"), "{path}: {text}");
    }
    let admin_view: Value = app.get(&token, &format!("/executions/{execution}")).await.json().await.expect("json");
    assert_eq!(admin_view["parameters"]["email"], "ann@example.com");
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
async fn creating_a_user_tells_nothing_about_other_enterprises_accounts() {
    let app = TestApp::spawn().await;
    let first = app.admin_token().await;
    app.create_user(&first, "shared@person.example", "viewer").await;
    let second = app.second_enterprise("northside").await;

    // The second enterprise creates the same address, and a fresh one: the same answer.
    let body = |email: &str| json!({"email": email, "name": "N", "role": "viewer", "password": "northside-password"});
    let taken = app.post(&second, "/users", body("shared@person.example")).await;
    let fresh = app.post(&second, "/users", body("fresh@person.example")).await;
    assert_eq!(taken.status(), StatusCode::CREATED);
    assert_eq!(fresh.status(), StatusCode::CREATED);
    let taken: Value = taken.json().await.expect("json");
    let fresh: Value = fresh.json().await.expect("json");
    let keys = |v: &Value| v.as_object().expect("object").keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&taken), keys(&fresh));
    assert_eq!(taken["status"], fresh["status"]);

    // Its account works like any other: logging in by address alone reaches it...
    let token = app.token("shared@person.example", "northside-password").await;
    let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
    assert_eq!(settings["slug"], "northside");
    // ...and the first enterprise's account with its own password.
    let token = app.token("shared@person.example", ADMIN_PASSWORD).await;
    let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
    assert_eq!(settings["slug"], "default");
    // A wrong password is the same 401 as for an address nobody has.
    let wrong =
        assert_error(app.login("shared@person.example", "nope-nope").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            .await;
    let unknown =
        assert_error(app.login("nobody@person.example", "nope-nope").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            .await;
    assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);
    // Only its own enterprise's users collide.
    let again = app.post(&second, "/users", body("shared@person.example")).await;
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

#[tokio::test]
async fn an_enterprise_admin_key_cannot_touch_the_platform_admin() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let key = &app.api_key(&admin, "ci").await;
    let admin_id = app.user_id(&admin, ADMIN_EMAIL).await;
    let path = format!("/users/{admin_id}");

    for body in [
        json!({"password": "taken-over-password"}),
        json!({"role": "viewer"}),
        json!({"status": "deactivated"}),
        json!({"platform_access": false}),
        json!({"name": "Not the admin any more"}),
    ] {
        assert_error(app.put(key, &path, body.clone()).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
    assert_error(app.delete(key, &path).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // An enterprise admin without platform rights is refused the same way.
    app.create_user(&admin, "local-admin@test.example", "enterprise_admin").await;
    let local = app.token("local-admin@test.example", ADMIN_PASSWORD).await;
    let takeover = app.put(&local, &path, json!({"password": "taken-over-password"})).await;
    assert_error(takeover, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // Nothing changed: the old password works, the account keeps its role, status and rights.
    assert_error(app.login(ADMIN_EMAIL, "taken-over-password").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let fresh = app.admin_token().await;
    let shown: Value = app.get(&fresh, &path).await.json().await.expect("json");
    assert_eq!(shown["role"], "enterprise_admin");
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["name"], "Administrator");
    assert_eq!(shown["platform_access"], true);
    assert_eq!(app.get(&admin, "/enterprises").await.status(), StatusCode::OK, "its token still works");
}

#[tokio::test]
async fn demoting_a_platform_user_removes_its_platform_rights() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    // A second platform principal, so the bootstrap admin can be demoted (nobody demotes themself).
    app.create_user(&admin, "ops@test.example", "platform_admin").await;
    let ops = app.token("ops@test.example", ADMIN_PASSWORD).await;
    let admin_id = app.user_id(&admin, ADMIN_EMAIL).await;

    let demoted = app.put(&ops, &format!("/users/{admin_id}"), json!({"role": "viewer"})).await;
    assert_eq!(demoted.status(), StatusCode::OK);
    let demoted: Value = demoted.json().await.expect("json");
    assert_eq!(demoted["role"], "viewer");
    assert_eq!(demoted["platform_access"], false, "the grant is visible and gone: {demoted}");

    let create = app
        .post(
            &admin,
            "/enterprises",
            json!({"name": "Mine", "admin_email": "m@m.example", "admin_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_error(create, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_error(app.get(&admin, "/enterprises").await, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // Back to enterprise_admin: the role change does not bring the grant back by itself.
    let restored: Value = app
        .put(&ops, &format!("/users/{admin_id}"), json!({"role": "enterprise_admin"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(restored["platform_access"], false);
    assert_error(app.get(&admin, "/enterprises").await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // Granting it back is explicit, and needs platform rights.
    let regrant = app.put(&ops, &format!("/users/{admin_id}"), json!({"platform_access": true})).await;
    assert_eq!(regrant.status(), StatusCode::OK);
    assert_eq!(app.get(&admin, "/enterprises").await.status(), StatusCode::OK);
}
