//! Connections: validated against their connector's schema, names unique in an enterprise, and
//! credentials write-only: masked when shown, kept by a `PUT` that leaves them out, asked for
//! again when the connection points elsewhere, sealed at rest, and sealed to their own
//! connection (copied to another one they do not open).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths, merged};
use crate::mock::MockServer;

const VIN: &str = "1HGCM82633A004352";
const VPIC_KEY: &str = "vpic-secret-key-987654";

#[tokio::test]
async fn connections_are_validated_against_the_connector() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let bad = app
        .post(
            &token,
            "/connections",
            json!({"name": "x", "system": "dms", "config": {"colour": "red", "base_url": "ftp://x"},
                                              "credentials": {"password": "p"}, "allowed_hosts": ["http://a/b"]}),
        )
        .await;
    let body = assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let paths = detail_paths(&body);
    for path in ["credentials.api_key", "config.colour", "credentials.password", "config.base_url", "allowed_hosts[0]"]
    {
        assert!(paths.contains(&path), "{path} in {paths:?}");
    }
    let unknown = app.post(&token, "/connections", json!({"name": "y", "system": "sap"})).await;
    assert_error(unknown, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let listed: Value = app.get(&token, "/connections").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 0);

    let good = json!({"name": "vpic", "system": "vpic", "credentials": {"api_key": "abcdefgh"}});
    app.create_connection(&token, good.clone()).await;
    assert_error(app.post(&token, "/connections", good).await, StatusCode::CONFLICT, "CONFLICT").await;
}

#[tokio::test]
async fn credentials_are_write_only_and_never_leak() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = app
        .create_connection(
            &token,
            merged(mock.vpic(), json!({"credentials": {"api_key": VPIC_KEY}, "timeout_ms": 5000})),
        )
        .await;
    let id = connection["id"].as_str().expect("id");
    app.test_call(&token, id, "decode_vin", json!({"vin": VIN})).await;

    // Replace without credentials keeps them; the plugin still sends the key.
    let replaced = app.put(&token, &format!("/connections/{id}"), mock.vpic()).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    app.test_call(&token, id, "decode_vin", json!({"vin": VIN})).await;
    assert_eq!(mock.headers_of("DecodeVinValues")[1]["x-api-key"], VPIC_KEY);

    // Pointing the connection somewhere else needs the credentials again: stored ones are
    // never sent to a new destination.
    let moved = app
        .put(
            &token,
            &format!("/connections/{id}"),
            json!({"name": "vpic", "system": "vpic",
             "config": {"base_url": "http://127.0.0.1:9/elsewhere"}, "allowed_hosts": ["127.0.0.1:9"]}),
        )
        .await;
    let body = assert_error(moved, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&body), ["credentials"], "{body}");
    let shown: Value = app.get(&token, &format!("/connections/{id}")).await.json().await.expect("json");
    assert_eq!(shown["config"]["base_url"], format!("{}/vpic", mock.base), "nothing changed: {shown}");

    for path in [
        format!("/connections/{id}"),
        "/connections".into(),
        "/api-calls?page_size=200".into(),
        "/api-calls/systems".into(),
    ] {
        let text = app.get(&token, &path).await.text().await.expect("body");
        assert!(!text.contains(VPIC_KEY), "{path} leaked the credential: {text}");
    }
    // At rest (SQLite lives in the data directory) the key is sealed, never plaintext.
    for entry in std::fs::read_dir(app.data_dir()).expect("data dir").flatten() {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).expect("read");
            assert!(
                !bytes.windows(VPIC_KEY.len()).any(|w| w == VPIC_KEY.as_bytes()),
                "{} holds the plaintext key",
                entry.path().display()
            );
        }
    }
}

#[tokio::test]
async fn sealed_credentials_copied_to_another_connection_do_not_open_there() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let mock = MockServer::start().await;
    let connection =
        |name: &str, key: &str| merged(mock.vpic(), json!({"name": name, "credentials": {"api_key": key}}));
    let victim = app.create_connection(&token, connection("victim", "victim-key-1234")).await;
    let thief = app.create_connection(&token, connection("thief", "thief-key-5678")).await;
    // Someone with write access to the table moves the victim's sealed credentials.
    app.sql(&format!(
        "UPDATE connections SET credentials = (SELECT credentials FROM connections WHERE id = '{}') WHERE id = '{}'",
        victim["id"].as_str().expect("id"),
        thief["id"].as_str().expect("id")
    ))
    .await;
    let response = app
        .post(
            &token,
            &format!("/connections/{}/test", thief["id"].as_str().expect("id")),
            json!({"operation": "decode_vin", "input": {"vin": "1HGCM82633A004352"}}),
        )
        .await;
    let body = assert_error(response, StatusCode::CONFLICT, "CONFLICT").await;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("another connection"), "{body}");
    assert_eq!(mock.headers_of("DecodeVinValues").len(), 0, "the victim's key was never sent");
    // The tampered connection still lists (with no credentials) and can be given new ones.
    let listed = app.get(&token, "/connections").await;
    assert_eq!(listed.status(), StatusCode::OK);
}
