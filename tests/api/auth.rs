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
async fn repeated_failed_logins_are_throttled_with_retry_after() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        assert_eq!(app.login(ADMIN_EMAIL, "guess-guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    let throttled = app.login(ADMIN_EMAIL, "guess-guess").await;
    let retry_after: u64 =
        throttled.headers().get("retry-after").expect("Retry-After").to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_error(throttled, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT").await;
    // Even the right password waits: the throttle is checked before the password.
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not affected.
    assert_eq!(app.login("someone@else.example", "x-x-x-x-x").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_successful_login_clears_earlier_failures() {
    let app = TestApp::spawn().await;
    for _ in 0..4 {
        assert_eq!(app.login(ADMIN_EMAIL, "guess-guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    app.admin_token().await;
    for _ in 0..4 {
        assert_eq!(app.login(ADMIN_EMAIL, "guess-guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::OK);
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
async fn token_lifetime_follows_the_session_duration_setting() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.put(&token, "/settings", json!({"session_duration_minutes": 120})).await.status(), StatusCode::OK);
    let body: Value = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.json().await.expect("json");
    assert_eq!(body["expires_in"], 7200);
}

#[tokio::test]
async fn the_server_stops_gracefully_when_asked() {
    let app = TestApp::spawn().await;
    let address = app.address.clone();
    app.stop().await.expect("serve returns Ok after shutdown");
    assert!(reqwest::get(format!("{address}/healthz")).await.is_err(), "nothing listens any more");
}
