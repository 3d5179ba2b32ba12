use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{ADMIN_PASSWORD, TestApp, assert_error};

/// An orchestration that echoes its parameters, and a webhook for it.
async fn setup(app: &TestApp, token: &str, signature: &str) -> (String, String) {
    let orchestration: Value = app
        .post(
            token,
            "/orchestrations",
            json!({"name": "On vehicle update", "parameters": [{"name": "vin", "type": "string", "required": true},
                                                               {"name": "source", "type": "string"}],
                   "steps": [{"name": "echo", "type": "transform", "transform": "map",
                              "mapping": {"vin": "${parameters.vin}", "source": "${parameters.source}"}}]}),
        )
        .await
        .json()
        .await
        .expect("json");
    let created = app
        .post(
            token,
            "/webhooks",
            json!({"name": "dms events", "orchestration_id": orchestration["id"], "signature": signature,
                   "parameters": {"vin": "${body.vin}", "source": "${headers.x-source}"}}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let secret = created["secret"].as_str().expect("secret shown once").to_owned();
    (created["id"].as_str().expect("id").to_owned(), secret)
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

async fn fire(
    app: &TestApp,
    id: &str,
    secret: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/webhooks/{id}")))
        .header("content-type", "application/json")
        .header("x-source", "dms");
    if let Some(secret) = secret {
        request = request.header("x-webhook-secret", secret);
    }
    if let Some(signature) = signature {
        request = request.header("x-webhook-signature", signature);
    }
    request.body(body.to_vec()).send().await.expect("webhook request")
}

#[tokio::test]
async fn a_webhook_with_the_right_secret_triggers_its_orchestration() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (id, secret) = setup(&app, &token, "none").await;
    let listed: Value = app.get(&token, "/webhooks").await.json().await.expect("json");
    assert!(listed["data"][0].get("secret").is_none(), "the secret is shown once only");
    assert_eq!(listed["data"][0]["url"], format!("/api/v1/webhooks/{id}"));

    let body = br#"{"event":"vehicle_updated","vin":"WDB1234567890","timestamp":"2026-04-08T10:30:00Z"}"#;
    let fired = fire(&app, &id, Some(&secret), None, body).await;
    assert_eq!(fired.status(), StatusCode::ACCEPTED);
    let fired: Value = fired.json().await.expect("json");
    let execution = fired["execution_id"].as_str().expect("execution id");
    let detail = app.wait_finished(&token, execution).await;
    assert_eq!(detail["status"], "success", "{detail}");
    assert_eq!(detail["triggered_by"], "event");
    assert_eq!(detail["output"], json!({"vin": "WDB1234567890", "source": "dms"}));
}

#[tokio::test]
async fn wrong_missing_or_unsigned_requests_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (plain, plain_secret) = setup(&app, &token, "none").await;
    let body = br#"{"vin":"WDB1234567890"}"#;
    assert_error(fire(&app, &plain, Some("whsec_wrong"), None, body).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
        .await;
    assert_error(fire(&app, &plain, None, None, body).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_error(fire(&app, "nope", Some(&plain_secret), None, body).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_error(
        fire(&app, &plain, Some(&plain_secret), None, b"{not json").await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    let missing_vin = fire(&app, &plain, Some(&plain_secret), None, br#"{"other":1}"#).await;
    assert_error(missing_vin, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let huge = format!(r#"{{"vin":"{}"}}"#, "x".repeat(300 << 10));
    assert_error(
        fire(&app, &plain, Some(&plain_secret), None, huge.as_bytes()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;

    let (signed, secret) = setup(&app, &token, "hmac-sha256").await;
    assert_error(fire(&app, &signed, Some(&secret), None, body).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let forged = sign("another-secret", body);
    assert_error(
        fire(&app, &signed, Some(&secret), Some(&forged), body).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let tampered = sign(&secret, br#"{"vin":"SOMETHING-ELSE"}"#);
    assert_error(
        fire(&app, &signed, Some(&secret), Some(&tampered), body).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let good = sign(&secret, body);
    assert_eq!(fire(&app, &signed, Some(&secret), Some(&good), body).await.status(), StatusCode::ACCEPTED);

    // Only the accepted triggers created executions.
    let orchestration =
        app.get(&token, "/orchestrations").await.json::<Value>().await.expect("json")["data"][1]["id"].clone();
    let runs: Value = app
        .get(&token, &format!("/orchestrations/{}/executions", orchestration.as_str().expect("id")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(runs["pagination"]["total"], 1);
}

#[tokio::test]
async fn managing_webhooks_is_validated_and_for_admins() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (id, _) = setup(&app, &token, "none").await;
    let bad = app
        .post(&token, "/webhooks", json!({"name": "x", "orchestration_id": "nope", "signature": "md5", "parameters": {"vin": "${parameters.vin}"}}))
        .await;
    let body = assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"].as_array().expect("details").len(), 3, "{body}");
    app.create_user(&token, "viewer@test.example", "viewer").await;
    let viewer = app.token("viewer@test.example", ADMIN_PASSWORD).await;
    assert_error(app.delete(&viewer, &format!("/webhooks/{id}")).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(app.delete(&token, &format!("/webhooks/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert_error(app.delete(&token, &format!("/webhooks/{id}")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_timestamped_signature_is_accepted_once_fresh_and_refused_when_stale() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (id, secret) = setup(&app, &token, "hmac-sha256").await;
    let body = br#"{"vin":"WDB1234567890"}"#;
    let send = |timestamp: i64, signed_with: i64| {
        let mut signed = signed_with.to_string().into_bytes();
        signed.push(b'.');
        signed.extend_from_slice(body);
        app.client
            .post(app.url(&format!("/webhooks/{id}")))
            .header("content-type", "application/json")
            .header("x-source", "dms")
            .header("x-webhook-secret", &secret)
            .header("x-webhook-timestamp", timestamp.to_string())
            .header("x-webhook-signature", sign(&secret, &signed))
            .body(body.to_vec())
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    assert_eq!(send(now, now).await.expect("send").status(), StatusCode::ACCEPTED);
    // A captured request replayed an hour later, and a timestamp changed without re-signing.
    let stale = send(now - 3600, now - 3600).await.expect("send");
    let body_json = assert_error(stale, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(body_json["error"]["message"].as_str().unwrap_or_default().contains("300 s"), "{body_json}");
    assert_error(send(now + 1, now).await.expect("send"), StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}
