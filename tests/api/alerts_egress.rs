//! Egress of the server's own requests (alert webhooks): https with a CA from the
//! configuration, no redirects, at most five channels, refused addresses reported in our own
//! words. Every receiver is on loopback; refused addresses are never connected to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::alerts::{Received, receiver, recording_router, verify, wait_for};
use crate::helpers::{TestApp, assert_error, detail_paths};

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1.
struct TestPki {
    ca_pem: String,
    server: rustls::ServerConfig,
}

fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "DIBOP test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");

    let key = rustls::pki_types::PrivateKeyDer::from(leaf_key);
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .expect("server config");
    TestPki { ca_pem: ca_cert.pem(), server }
}

/// A TLS listener for `axum::serve`; failed handshakes are skipped and counted, connections
/// that completed one are counted too.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes_failed: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else { continue };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => {
                    self.accepted.fetch_add(1, Ordering::SeqCst);
                    return (tls, address);
                }
                Err(_) => {
                    self.handshakes_failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An https receiver on 127.0.0.1 serving `server`'s certificate: its port, what it received and
/// how many handshakes failed.
async fn tls_receiver(server: rustls::ServerConfig) -> (u16, Received, Arc<AtomicUsize>) {
    let (app, received) = recording_router();
    let (port, handshakes_failed, _) = tls_server(server, app).await;
    (port, received, handshakes_failed)
}

/// `app` over https on 127.0.0.1 with `server`'s certificate: its port, and how many
/// handshakes failed and how many connections were accepted.
async fn tls_server(server: rustls::ServerConfig, app: axum::Router) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let (handshakes_failed, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        handshakes_failed: handshakes_failed.clone(),
        accepted: accepted.clone(),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, handshakes_failed, accepted)
}

/// Creates a rule whose notifications go to `channels` and answers (id, secret).
async fn rule(app: &TestApp, token: &str, channels: Value) -> (String, String) {
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
    let (id, secret) = rule(
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
    let (id, _) =
        rule(&untrusting, &token, json!([{"type": "webhook", "url": format!("https://localhost:{port}/untrusted")}]))
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
async fn plugin_requests_over_tls_reuse_a_kept_alive_connection_of_their_own_enterprise() {
    let pki = test_pki();
    let dms = axum::Router::new().route(
        "/vehicles/{vin}",
        axum::routing::get(|axum::extract::Path(vin): axum::extract::Path<String>| async move {
            axum::Json(json!({"vin": vin, "status": "in_stock"}))
        }),
    );
    let (port, handshakes_failed, accepted) = tls_server(pki.server, dms).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("extra-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write CA");
    let app = TestApp::spawn_with(|config| config.extra_ca_file = Some(ca_file.clone())).await;

    // Three executions of two steps each: six requests to the same https system.
    let run_six_requests = async |token: &str| {
        app.create_connection(
            token,
            json!({"name": "dms", "system": "rest", "allowed_hosts": [format!("localhost:{port}")],
                   "config": {"base_url": format!("https://localhost:{port}"),
                              "operations": {"vehicle": {"method": "GET", "path": "/vehicles/{vin}"}}}}),
        )
        .await;
        let step = |name: &str| {
            json!({"name": name, "type": "api_call", "connection": "dms", "operation": "vehicle",
                   "parameters": {"vin": "${parameters.vin}"}})
        };
        let id = app
            .create_orchestration(
                token,
                json!({"name": "Twice", "parameters": [{"name": "vin", "type": "string", "required": true}],
                       "steps": [step("first"), step("second")], "output": {"status": "${second.response.status}"}}),
            )
            .await;
        for vin in ["V1", "V2", "V3"] {
            let result = app.execute(token, &id, json!({"parameters": {"vin": vin}})).await;
            assert_eq!(result["output"], json!({"status": "in_stock"}), "{result}");
        }
    };
    let admin = app.admin_token().await;
    run_six_requests(&admin).await;
    // A connection goes back to the pool on its own task once the response was read: allow
    // one more if a request came before that.
    let first = accepted.load(Ordering::SeqCst);
    assert!((1..=2).contains(&first), "six requests over {first} connections");

    // Another enterprise's requests to the same address never ride on the first one's.
    let other = app.second_enterprise("keepalive").await;
    run_six_requests(&other).await;
    let more = accepted.load(Ordering::SeqCst) - first;
    assert!((1..=2).contains(&more), "the other enterprise opened {more} connections");
    assert_eq!(handshakes_failed.load(Ordering::SeqCst), 0);
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

    let (id, _) = rule(&app, &token, json!([{"type": "webhook", "url": format!("http://{address}/hook")}])).await;
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

    let (id, _) = rule(&app, &token, json!(vec![json!({"type": "log"}); 5])).await;
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
    let (id, _) = rule(
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
    let (id, _) = rule(&app, &token, json!([{"type": "webhook", "url": format!("{base}/held")}])).await;
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
