//! Alert rules: validation, firing on execution completion (execution_failure,
//! consecutive_failures, latency_threshold), cooldown, signed webhook and Slack-style
//! deliveries, the test endpoint and the list of fired alerts; and how deliveries leave the
//! server: https with a CA from the configuration, no redirects, at most five channels, refused
//! addresses reported in our own words (never connected to), and a full delivery queue that
//! drops and records while the server stays responsive. Every receiver is on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::tls::{test_pki, tls_server};
use crate::helpers::{TestApp, assert_error, detail_paths, merged};
use crate::mock::MockServer;

type Received = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// A webhook receiver on loopback that remembers (path, headers, body).
async fn receiver() -> (String, Received) {
    let (app, received) = recording_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

/// The routes of a receiver: every POST is remembered and answered `ok`.
fn recording_router() -> (axum::Router, Received) {
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

async fn wait_for(received: &Received, path: &str, n: usize) -> Vec<(HeaderMap, String)> {
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

fn verify(secret: &str, headers: &HeaderMap, body: &str) {
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
    app.create_connection(&token, mock.vpic()).await;
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
        merged(mock.vpic(), json!({"config": {"base_url": format!("{}/missing", mock.base)}})),
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

/// An https receiver on 127.0.0.1 serving `server`'s certificate: its port, what it received and
/// how many handshakes failed.
async fn tls_receiver(server: rustls::ServerConfig) -> (u16, Received, Arc<AtomicUsize>) {
    let (app, received) = recording_router();
    let (port, handshakes_failed, _) = tls_server(server, app).await;
    (port, received, handshakes_failed)
}

/// Creates a rule whose notifications go to `channels` and answers (id, secret).
async fn rule_to(app: &TestApp, token: &str, channels: Value) -> (String, String) {
    let body = json!({"name": "Egress", "type": "execution_failure", "notification": {"channels": channels}});
    let response = app.post(token, "/alert-rules", body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("json");
    (created["id"].as_str().expect("id").to_owned(), created["secret"].as_str().expect("secret").to_owned())
}

/// `POST /alert-rules/{id}/test` and the deliveries it answers.
async fn test_deliveries(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.post(token, &format!("/alert-rules/{id}/test"), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["deliveries"].clone()
}

#[tokio::test]
async fn https_channels_are_delivered_when_the_configured_ca_signed_the_receiver() {
    let pki = test_pki();
    let (port, received, handshakes_failed) = tls_receiver(pki.server).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("extra-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write CA");

    let app = TestApp::spawn_with(|config| config.extra_ca_file = Some(ca_file.clone())).await;
    let token = app.admin_token().await;
    // `localhost` goes through the checked resolver and is the TLS server name.
    let (id, secret) = rule_to(
        &app,
        &token,
        json!([{"type": "webhook", "url": format!("https://localhost:{port}/signed")},
               {"type": "slack", "url": format!("https://localhost:{port}/slack")}]),
    )
    .await;
    let deliveries = test_deliveries(&app, &token, &id).await;
    let statuses: Vec<&str> =
        deliveries.as_array().expect("array").iter().filter_map(|d| d["status"].as_str()).collect();
    assert_eq!(statuses, ["delivered", "delivered"], "{deliveries}");
    let signed = wait_for(&received, "signed", 1).await;
    verify(&secret, &signed[0].0, &signed[0].1);
    let alert: Value = serde_json::from_str(&signed[0].1).expect("json");
    assert_eq!(alert["metric"], "test");
    let slack: Value = serde_json::from_str(&wait_for(&received, "slack", 1).await[0].1).expect("json");
    assert!(slack["text"].as_str().expect("text").contains("Egress"), "{slack}");
    assert_eq!(handshakes_failed.load(Ordering::SeqCst), 0);

    // A server without the extra CA does not trust the receiver: nothing is delivered.
    let untrusting = TestApp::spawn().await;
    let token = untrusting.admin_token().await;
    let (id, _) = rule_to(
        &untrusting,
        &token,
        json!([{"type": "webhook", "url": format!("https://localhost:{port}/untrusted")}]),
    )
    .await;
    let deliveries = test_deliveries(&untrusting, &token, &id).await;
    assert_eq!(
        (&deliveries[0]["status"], &deliveries[0]["error"]),
        (&json!("failed"), &json!("tls failed")),
        "{deliveries}"
    );
    assert!(handshakes_failed.load(Ordering::SeqCst) >= 1);
    assert!(received.lock().expect("lock").iter().all(|(path, _, _)| path != "untrusted"));
}

#[tokio::test]
async fn a_redirect_is_a_failed_delivery_and_is_not_followed() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (target, stolen) = receiver().await;
    // The receiver answers 307 (which would repeat the signed POST) towards another listener.
    let location = format!("{target}/stolen");
    let redirecting = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, redirecting).await });

    let (id, _) = rule_to(&app, &token, json!([{"type": "webhook", "url": format!("http://{address}/hook")}])).await;
    let deliveries = test_deliveries(&app, &token, &id).await;
    assert_eq!(deliveries[0]["status"], "failed", "{deliveries}");
    assert_eq!(deliveries[0]["error"], "redirect refused", "{deliveries}");
    assert_eq!(deliveries[0]["attempts"], 1, "a redirect is not retried: {deliveries}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(stolen.lock().expect("lock").is_empty(), "the redirect target got nothing");

    // The stored alert says the same.
    let alerts: Value = app.get(&token, &format!("/alerts?rule_id={id}")).await.json().await.expect("json");
    assert_eq!(alerts["data"][0]["deliveries"][0]["error"], "redirect refused", "{alerts}");
}

#[tokio::test]
async fn a_rule_has_at_most_five_channels() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let six = vec![json!({"type": "log"}); 6];
    let body = json!({"name": "Loud", "type": "execution_failure", "notification": {"channels": six}});
    let response = app.post(&token, "/alert-rules", body).await;
    let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&error), ["notification.channels"], "{error}");

    let (id, _) = rule_to(&app, &token, json!(vec![json!({"type": "log"}); 5])).await;
    let body = json!({"name": "Loud", "type": "execution_failure", "notification": {"channels": vec![json!({"type": "log"}); 6]}});
    let response = app.put(&token, &format!("/alert-rules/{id}"), body).await;
    let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&error), ["notification.channels"], "{error}");
}

#[tokio::test]
async fn refused_private_addresses_are_reported_without_system_error_text() {
    let app = TestApp::spawn_with(|config| config.allow_private_networks = false).await;
    let token = app.admin_token().await;
    // A listener that would see any connection: none may arrive.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (id, _) = rule_to(
        &app,
        &token,
        json!([{"type": "webhook", "url": format!("http://127.0.0.1:{port}/literal")},
               {"type": "webhook", "url": format!("http://localhost:{port}/name")},
               {"type": "slack", "url": format!("http://[::ffff:127.0.0.1]:{port}/mapped")},
               {"type": "webhook", "url": "http://[::1]:9/closed"},
               {"type": "webhook", "url": "http://2130706433:9/decimal"}]),
    )
    .await;
    let deliveries = test_deliveries(&app, &token, &id).await;
    for delivery in deliveries.as_array().expect("array") {
        assert_eq!(delivery["status"], "failed", "{delivery}");
        assert_eq!(delivery["error"], "address refused", "{delivery}");
    }
    let text = deliveries.to_string().to_ascii_lowercase();
    for leak in ["os error", "refused (", "connection refused", "tcp", "errno", "dns"] {
        assert!(!text.contains(leak), "{leak:?} in {text}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection reached loopback");
}

/// A receiver on 127.0.0.1 that holds every request until `release` is sent `true`: its base
/// URL and how many requests it is holding or has held.
async fn holding_receiver(release: tokio::sync::watch::Receiver<bool>) -> (String, Arc<AtomicUsize>) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let count = arrived.clone();
    let app = axum::Router::new().fallback(move || {
        let mut release = release.clone();
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = release.wait_for(|released| *released).await;
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, arrived)
}

#[tokio::test]
async fn a_full_delivery_queue_records_dropped_notifications_and_the_server_stays_responsive() {
    // Given a queue of one alert and a receiver that holds every delivery.
    let app = TestApp::spawn_with(|config| config.alert_queue = 1).await;
    let token = app.admin_token().await;
    let (release, held) = tokio::sync::watch::channel(false);
    let (base, arrived) = holding_receiver(held).await;
    let (id, _) = rule_to(&app, &token, json!([{"type": "webhook", "url": format!("{base}/held")}])).await;
    let test = {
        let (client, url, token) = (app.client.clone(), app.url(&format!("/alert-rules/{id}/test")), token.clone());
        move || {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let response = client.post(url).bearer_auth(token).json(&json!({})).send().await.expect("test");
                assert_eq!(response.status(), StatusCode::OK);
                let body: Value = response.json().await.expect("json");
                body["deliveries"][0].clone()
            })
        }
    };

    // When the sender is busy with as many deliveries as it runs at once (sent one after the
    // other: alerts queued at the same moment could overflow a queue of one already)...
    let mut busy = Vec::new();
    for n in 1..=dibop::alerts::CONCURRENT_DELIVERIES {
        busy.push(test());
        for _ in 0..200 {
            if arrived.load(Ordering::SeqCst) >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(arrived.load(Ordering::SeqCst), n, "delivery {n} is held by the receiver");
    }
    // ...and three more alerts come: one fits in the queue, two do not.
    let extra: Vec<_> = (0..3).map(|_| test()).collect();
    // A dropped alert is answered at once; the queued one waits for its delivery.
    for _ in 0..200 {
        if extra.iter().filter(|task| task.is_finished()).count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (answered, waiting): (Vec<_>, Vec<_>) = extra.into_iter().partition(|task| task.is_finished());

    // Then two are recorded as dropped, answered and stored alike...
    assert_eq!((answered.len(), waiting.len()), (2, 1));
    let mut dropped = Vec::new();
    for task in answered {
        dropped.push(task.await.expect("test task"));
    }
    for delivery in &dropped {
        assert_eq!((&delivery["status"], &delivery["error"]), (&json!("dropped"), &json!("delivery queue full")));
        assert_eq!(delivery["attempts"], 0, "{delivery}");
    }
    // ...while the server answers other requests promptly.
    let prompt = std::time::Duration::from_secs(2);
    let ready = tokio::time::timeout(prompt, app.client.get(format!("{}/readyz", app.address)).send())
        .await
        .expect("readyz answers promptly")
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let alerts: Value = tokio::time::timeout(prompt, app.get(&token, &format!("/alerts?rule_id={id}")))
        .await
        .expect("alerts answer promptly")
        .json()
        .await
        .expect("json");
    let statuses = |alerts: &Value, status: &str| {
        alerts["data"].as_array().expect("data").iter().filter(|a| a["deliveries"][0]["status"] == status).count()
    };
    assert_eq!(statuses(&alerts, "dropped"), 2, "{alerts}");

    // Once the receiver answers, every alert that was queued or in flight is delivered.
    release.send(true).expect("release");
    for task in busy {
        let delivery = task.await.expect("test task");
        assert_eq!(delivery["status"], "delivered", "{delivery}");
    }
    let delivered = dibop::alerts::CONCURRENT_DELIVERIES + 1;
    for _ in 0..200 {
        let alerts: Value = app.get(&token, &format!("/alerts?rule_id={id}")).await.json().await.expect("json");
        if statuses(&alerts, "delivered") == delivered {
            assert_eq!(statuses(&alerts, "dropped"), 2, "{alerts}");
            assert_eq!(arrived.load(Ordering::SeqCst), delivered, "dropped alerts never reached the receiver");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the queued alert was not delivered");
}
