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

/// A TLS listener for `axum::serve`; failed handshakes are skipped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes_failed: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else { continue };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => return (tls, address),
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
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let handshakes_failed = Arc::new(AtomicUsize::new(0));
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        handshakes_failed: handshakes_failed.clone(),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, received, handshakes_failed)
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
