//! Logins and the tokens they give: a login answers a bearer token (in the oldest enterprise of
//! an address unless one is named), wrong passwords and unknown addresses look alike, tokens are
//! signed with a secret of at least 32 bytes for our issuer and audience, and end when they
//! expire, after a password change or a deactivation. How many logins may fail or run at once
//! is in `login_limits.rs`.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET, TestApp, assert_error};

#[tokio::test]
async fn login_returns_a_bearer_token_that_opens_the_api() {
    let app = TestApp::spawn().await;
    let response = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600, "default session is 60 minutes");
    let token = body["access_token"].as_str().expect("token");

    let me = app.get(token, "/users").await;
    assert_eq!(me.status(), StatusCode::OK);
    let users: Value = me.json().await.expect("json");
    assert_eq!(users["data"][0]["email"], ADMIN_EMAIL);
    assert!(users["data"][0]["last_login_at"].is_string(), "login is recorded: {users}");
    assert!(users["data"][0].get("password_hash").is_none());
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = TestApp::spawn().await;
    let wrong =
        assert_error(app.login(ADMIN_EMAIL, "not-the-password").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let unknown =
        assert_error(app.login("nobody@x.example", "whatever1").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);
}

#[tokio::test]
async fn one_password_in_two_enterprises_logs_into_the_oldest_unless_one_is_named() {
    let app = TestApp::spawn().await;
    let first = app.admin_token().await;
    app.create_user(&first, "twice@person.example", "viewer").await;
    let second = app.second_enterprise("southside").await;
    app.create_user(&second, "twice@person.example", "viewer").await;

    let slug = |token: String| {
        let app = &app;
        async move {
            let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
            settings["slug"].as_str().expect("slug").to_owned()
        }
    };
    assert_eq!(slug(app.token("twice@person.example", ADMIN_PASSWORD).await).await, "default");
    let named = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"email": "twice@person.example", "password": ADMIN_PASSWORD, "enterprise": "southside"}))
        .send()
        .await
        .expect("login");
    assert_eq!(named.status(), StatusCode::OK);
    let named: Value = named.json().await.expect("json");
    assert_eq!(slug(named["access_token"].as_str().expect("token").to_owned()).await, "southside");
}

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
}

/// The admin's user id and enterprise id, read through the API.
async fn admin_ids(app: &TestApp) -> (String, String) {
    let token = app.admin_token().await;
    let users: Value = app.get(&token, "/users").await.json().await.expect("json");
    let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
    (
        users["data"][0]["id"].as_str().expect("id").to_owned(),
        settings["enterprise_id"].as_str().expect("enterprise id").to_owned(),
    )
}

#[tokio::test]
async fn expired_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let (sub, ent) = admin_ids(&app).await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": sub, "ent": ent, "role": "enterprise_admin", "iat": now - 7200, "exp": now - 60,
                        "jti": "x", "iss": "dibop", "aud": "dibop-api"});
    let body =
        assert_error(app.get(&sign(&claims, JWT_SECRET), "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            .await;
    assert_eq!(body["error"]["message"], "token expired");
    // The same claims with a future expiry are accepted, so it was the expiry that failed.
    let fresh = json!({"sub": sub, "ent": ent, "role": "enterprise_admin", "iat": now, "exp": now + 600, "jti": "y",
                       "iss": "dibop", "aud": "dibop-api"});
    assert_eq!(app.get(&sign(&fresh, JWT_SECRET), "/users").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn tampered_or_foreign_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (head, signature) = token.rsplit_once('.').expect("jwt");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{head}.{flipped}{}", &signature[1..]);
    assert_error(app.get(&tampered, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    let (sub, ent) = admin_ids(&app).await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": sub, "ent": ent, "role": "enterprise_admin", "iat": now, "exp": now + 600, "jti": "z"});
    let foreign = sign(&claims, "some-other-secret-of-enough-length");
    assert_error(app.get(&foreign, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_error(app.get("garbage", "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let missing = app.client.get(app.url("/users")).send().await.expect("request");
    assert_error(missing, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn tokens_without_our_audience_or_issuer_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let sub = app.user_id(&admin, ADMIN_EMAIL).await;
    let settings: Value = app.get(&admin, "/settings").await.json().await.expect("json");
    let ent = settings["enterprise_id"].as_str().expect("enterprise id");
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: Value| {
        let mut claims =
            json!({"sub": sub, "ent": ent, "role": "enterprise_admin", "iat": now, "exp": now + 600, "jti": "j"});
        claims.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        sign(&claims, JWT_SECRET)
    };
    for extra in [
        json!({}),
        json!({"iss": "dibop"}),
        json!({"iss": "dibop", "aud": "some-other-api"}),
        json!({"iss": "someone-else", "aud": "dibop-api"}),
    ] {
        assert_error(app.get(&claims(extra), "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    let right = claims(json!({"iss": "dibop", "aud": "dibop-api"}));
    assert_eq!(app.get(&right, "/users").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_jwt_secret_shorter_than_32_bytes_stops_the_start() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = dibop::Config::new(data_dir.path().to_path_buf());
    config.jwt_secret = Some("x".repeat(31).into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let outcome = tokio::time::timeout(Duration::from_secs(30), dibop::serve(listener, config, std::future::pending()))
        .await
        .expect("serve returns instead of serving");
    let err = outcome.expect_err("a short secret is refused");
    assert!(format!("{err:#}").contains("at least 32"), "{err:#}");
}

#[tokio::test]
async fn token_lifetime_follows_the_session_duration_setting() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.put(&token, "/settings", json!({"session_duration_minutes": 120})).await.status(), StatusCode::OK);
    let body: Value = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.json().await.expect("json");
    assert_eq!(body["expires_in"], 7200);
}

#[tokio::test]
async fn a_password_change_ends_the_users_existing_tokens() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let user = app.create_user(&admin, "pat@test.example", "enterprise_admin").await;
    let path = format!("/users/{}", user["id"].as_str().expect("id"));

    // Changed by an admin.
    let before = app.token("pat@test.example", ADMIN_PASSWORD).await;
    assert_eq!(app.get(&before, "/users").await.status(), StatusCode::OK);
    assert_eq!(app.put(&admin, &path, json!({"password": "second-password"})).await.status(), StatusCode::OK);
    assert_error(app.get(&before, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_error(app.login("pat@test.example", ADMIN_PASSWORD).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Changed by the user: every earlier token ends, the one used included.
    let one = app.token("pat@test.example", "second-password").await;
    let two = app.token("pat@test.example", "second-password").await;
    assert_eq!(app.put(&one, &path, json!({"password": "third-password"})).await.status(), StatusCode::OK);
    assert_error(app.get(&one, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_error(app.get(&two, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let after = app.token("pat@test.example", "third-password").await;
    assert_eq!(app.get(&after, "/users").await.status(), StatusCode::OK);
    // Other changes leave tokens alone.
    assert_eq!(app.put(&admin, &path, json!({"name": "Pat"})).await.status(), StatusCode::OK);
    assert_eq!(app.get(&after, "/users").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_deactivation_ends_tokens_for_good_even_after_reactivation() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let user = app.create_user(&admin, "temp@test.example", "viewer").await;
    let path = format!("/users/{}", user["id"].as_str().expect("id"));
    let token = app.token("temp@test.example", ADMIN_PASSWORD).await;

    assert_eq!(app.put(&admin, &path, json!({"status": "deactivated"})).await.status(), StatusCode::OK);
    assert_error(app.get(&token, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(app.put(&admin, &path, json!({"status": "active"})).await.status(), StatusCode::OK);
    assert_error(app.get(&token, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let fresh = app.token("temp@test.example", ADMIN_PASSWORD).await;
    assert_eq!(app.get(&fresh, "/users").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_server_stops_gracefully_when_asked() {
    let app = TestApp::spawn().await;
    let address = app.address.clone();
    app.stop().await.expect("serve returns Ok after shutdown");
    assert!(reqwest::get(format!("{address}/healthz")).await.is_err(), "nothing listens any more");
}
