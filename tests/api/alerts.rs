//! Alert rules: validation, firing on execution completion (execution_failure,
//! consecutive_failures, latency_threshold), cooldown, signed webhook and Slack-style
//! deliveries, the test endpoint and the list of fired alerts.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, assert_error, detail_paths};
use crate::mock::MockServer;

pub type Received = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// A webhook receiver on loopback that remembers (path, headers, body).
pub async fn receiver() -> (String, Received) {
    let (app, received) = recording_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

/// The routes of a receiver: every POST is remembered and answered `ok`.
pub fn recording_router() -> (axum::Router, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(
            move |axum::extract::Path(path): axum::extract::Path<String>, headers: HeaderMap, body: String| {
                let store = store.clone();
                async move {
                    store.lock().expect("lock").push((path, headers, body));
                    "ok"
                }
            },
        ),
    );
    (app, received)
}

pub async fn wait_for(received: &Received, path: &str, n: usize) -> Vec<(HeaderMap, String)> {
    for _ in 0..200 {
        let got: Vec<_> = received
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{path} did not receive {n} notifications");
}

pub fn verify(secret: &str, headers: &HeaderMap, body: &str) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let expected =
        format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>());
    assert_eq!(headers.get("x-dibop-signature").and_then(|v| v.to_str().ok()), Some(expected.as_str()), "{body}");
}

#[tokio::test]
async fn rules_fire_on_completion_respect_cooldown_and_sign_their_notifications() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let (hooks, received) = receiver().await;
    app.create_connection(
        &token,
        json!({"name": "vpic", "system": "vpic", "config": {"base_url": format!("{}/vpic", mock.base)},
               "allowed_hosts": [mock.authority]}),
    )
    .await;
    let decode = json!({"name": "Decode", "parameters": [{"name": "vin", "type": "string", "required": true}],
        "steps": [{"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                   "parameters": {"vin": "${parameters.vin}"}}]});
    let created: Value = app.post(&token, "/orchestrations", decode).await.json().await.expect("json");
    let decode_id = created["id"].as_str().expect("id").to_owned();
    let slow = json!({"name": "Slow", "steps": [{"name": "pause", "type": "wait", "duration_ms": 300}]});
    let created: Value = app.post(&token, "/orchestrations", slow).await.json().await.expect("json");
    let slow_id = created["id"].as_str().expect("id").to_owned();

    // Validation lists every problem.
    let bad = json!({"name": "", "type": "moon_phase", "notification": {"channels": [{"type": "webhook"}, {"type": "pager"}]}});
    let body =
        assert_error(app.post(&token, "/alert-rules", bad).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
            .await;
    assert_eq!(detail_paths(&body), ["name", "type", "notification.channels[0].url", "notification.channels[1].type"]);
    let bad = json!({"name": "No threshold", "type": "consecutive_failures", "notification": {"channels": [{"type": "log"}]}});
    let body =
        assert_error(app.post(&token, "/alert-rules", bad).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
            .await;
    assert_eq!(detail_paths(&body), ["condition.threshold"]);

    let create = |body: Value| {
        let app = &app;
        let token = token.clone();
        async move {
            let response = app.post(&token, "/alert-rules", body).await;
            assert_eq!(response.status(), StatusCode::CREATED);
            response.json::<Value>().await.expect("json")
        }
    };
    let failure = create(json!({"name": "Decode failing", "type": "execution_failure", "severity": "critical",
        "scope": {"orchestration_id": decode_id}, "cooldown_minutes": 15,
        "notification": {"channels": [{"type": "webhook", "url": format!("{hooks}/failure")}, {"type": "log"}]}}))
    .await;
    let secret = failure["secret"].as_str().expect("secret shown once").to_owned();
    let streak = create(json!({"name": "Two in a row", "type": "consecutive_failures", "condition": {"threshold": 2},
        "scope": {"orchestration_id": decode_id}, "cooldown_minutes": 15,
        "notification": {"channels": [{"type": "slack", "url": format!("{hooks}/slack")}]}}))
    .await;
    let latency = create(json!({"name": "Slow runs", "type": "latency_threshold", "condition": {"threshold_ms": 100},
        "scope": {"orchestration_id": slow_id}, "cooldown_minutes": 0,
        "notification": {"channels": [{"type": "webhook", "url": format!("{hooks}/latency")}]}}))
    .await;
    let listed: Value = app.get(&token, "/alert-rules").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 3);
    assert!(listed["data"].as_array().expect("data").iter().all(|r| r.get("secret").is_none()));

    // A success fires nothing; a failure fires the failure rule once, signed.
    let execute = |id: String, vin: &'static str| {
        let app = &app;
        let token = token.clone();
        async move { app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": vin}})).await }
    };
    execute(decode_id.clone(), "1HGCM82633A004352").await;
    execute(decode_id.clone(), "NOT-A-VIN").await;
    let got = wait_for(&received, "failure", 1).await;
    let (headers, body) = &got[0];
    verify(&secret, headers, body);
    let alert: Value = serde_json::from_str(body).expect("json");
    assert_eq!(alert["rule_id"], failure["id"]);
    assert_eq!((&alert["severity"], &alert["metric"]), (&json!("critical"), &json!("execution_failed")));
    assert!(alert["message"].as_str().expect("message").contains("invalid_input"), "{alert}");

    // A second failure: the streak rule fires (Slack text); the failure rule is cooling down.
    execute(decode_id.clone(), "NOT-A-VIN").await;
    let slack = wait_for(&received, "slack", 1).await;
    let text: Value = serde_json::from_str(&slack[0].1).expect("json");
    assert!(text["text"].as_str().expect("text").contains("Two in a row"), "{text}");
    assert_eq!(wait_for(&received, "failure", 1).await.len(), 1, "cooldown: no second failure notification");

    // Latency: a 300 ms run against a 100 ms threshold.
    app.post(&token, &format!("/orchestrations/{slow_id}/execute"), json!({})).await;
    let got = wait_for(&received, "latency", 1).await;
    let alert: Value = serde_json::from_str(&got[0].1).expect("json");
    assert!(alert["value"].as_f64().expect("value") >= 300.0, "{alert}");
    assert_eq!(alert["threshold"], 100.0);
    assert_eq!(alert["rule_id"], latency["id"]);

    // Fired alerts are listed with their deliveries; the filter narrows them.
    let alerts: Value = app.get(&token, "/alerts").await.json().await.expect("json");
    assert_eq!(alerts["pagination"]["total"], 3, "{alerts}");
    let only: Value = app
        .get(&token, &format!("/alerts?rule_id={}", streak["id"].as_str().expect("id")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(only["pagination"]["total"], 1);
    assert_eq!(only["data"][0]["deliveries"][0]["status"], "delivered", "{only}");
    assert_eq!(only["data"][0]["metric"], "consecutive_failures");
    assert_eq!(only["data"][0]["value"], 2.0);

    // The test endpoint sends now, signed with the same secret.
    let test: Value = app
        .post(&token, &format!("/alert-rules/{}/test", failure["id"].as_str().expect("id")), json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(test["metric"], "test");
    let statuses: Vec<&str> =
        test["deliveries"].as_array().expect("deliveries").iter().filter_map(|d| d["status"].as_str()).collect();
    assert_eq!(statuses, ["delivered", "delivered"], "{test}");
    let got = wait_for(&received, "failure", 2).await;
    verify(&secret, &got[1].0, &got[1].1);

    // A receiver that is down: three attempts, recorded as failed.
    let broken =
        create(json!({"name": "Broken", "type": "execution_failure", "scope": {"orchestration_id": decode_id},
        "notification": {"channels": [{"type": "webhook", "url": "http://127.0.0.1:9/nothing"}]}}))
        .await;
    let test: Value = app
        .post(&token, &format!("/alert-rules/{}/test", broken["id"].as_str().expect("id")), json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!((&test["deliveries"][0]["status"], &test["deliveries"][0]["attempts"]), (&json!("failed"), &json!(3)));
    assert_eq!(test["deliveries"][0]["error"], "connection failed", "our words, not the system's: {test}");
}

#[tokio::test]
async fn periodic_rules_watch_sla_systems_and_error_rates() {
    let app = TestApp::spawn_with(|config| config.alert_eval_ms = 100).await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let (hooks, received) = receiver().await;
    // A connection whose every call fails (the mock answers 404 under /missing).
    app.create_connection(
        &token,
        json!({"name": "vpic", "system": "vpic", "config": {"base_url": format!("{}/missing", mock.base)},
               "allowed_hosts": [mock.authority]}),
    )
    .await;
    let decode = json!({"name": "Decode", "sla_target": 90.0, "steps": [{"name": "decode", "type": "api_call",
        "connection": "vpic", "operation": "decode_vin", "parameters": {"vin": "1HGCM82633A004352"}}]});
    let created: Value = app.post(&token, "/orchestrations", decode).await.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_owned();

    let bad = json!({"name": "No system", "type": "system_down", "notification": {"channels": [{"type": "log"}]}});
    let body =
        assert_error(app.post(&token, "/alert-rules", bad).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
            .await;
    assert_eq!(detail_paths(&body), ["scope.system"]);
    let bad = json!({"name": "No rate", "type": "error_rate_spike", "condition": {"window": "soon"},
                     "notification": {"channels": [{"type": "log"}]}});
    let body =
        assert_error(app.post(&token, "/alert-rules", bad).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
            .await;
    assert_eq!(detail_paths(&body), ["condition.threshold_percent", "condition.window"]);

    for (name, body) in [
        ("sla", json!({"type": "sla_breach", "scope": {"orchestration_id": id}, "condition": {"window": "1h"}})),
        ("down", json!({"type": "system_down", "scope": {"system": "vpic"}, "condition": {"threshold": 2}})),
        (
            "spike",
            json!({"type": "error_rate_spike", "scope": {"system": "vpic"},
                         "condition": {"threshold_percent": 50, "min_calls": 2, "window": "1h"}}),
        ),
    ] {
        let mut rule = body;
        rule["name"] = json!(name);
        rule["notification"] = json!({"channels": [{"type": "webhook", "url": format!("{hooks}/{name}")}]});
        let response = app.post(&token, "/alert-rules", rule).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
    }
    // Nothing has failed yet: nothing fires.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(received.lock().expect("lock").is_empty());

    for _ in 0..2 {
        let result: Value =
            app.post(&token, &format!("/orchestrations/{id}/execute"), json!({})).await.json().await.expect("json");
        assert_eq!(result["status"], "failed", "{result}");
    }
    let sla: Value = serde_json::from_str(&wait_for(&received, "sla", 1).await[0].1).expect("json");
    assert_eq!((&sla["metric"], &sla["value"], &sla["threshold"]), (&json!("success_rate"), &json!(0.0), &json!(90.0)));
    let down: Value = serde_json::from_str(&wait_for(&received, "down", 1).await[0].1).expect("json");
    assert_eq!(down["metric"], "consecutive_failed_calls");
    let spike: Value = serde_json::from_str(&wait_for(&received, "spike", 1).await[0].1).expect("json");
    assert_eq!((&spike["value"], &spike["threshold"]), (&json!(100.0), &json!(50.0)));
    // The evaluator keeps running every 100 ms; the cooldown (15 minutes) keeps each at one.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    for path in ["sla", "down", "spike"] {
        assert_eq!(wait_for(&received, path, 1).await.len(), 1, "{path} fired once");
    }
}
