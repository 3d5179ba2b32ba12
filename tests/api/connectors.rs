//! The bundled connectors through their connections: `vpic` decodes a VIN (each request an
//! API-call row) and reports its own errors, pings tell online from offline and timeout, the
//! `dms` connector reads and creates idempotently, and the generic `rest` connector follows its
//! connection's configuration. Connections themselves are in `connections.rs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, merged};
use crate::mock::MockServer;

const VIN: &str = "1HGCM82633A004352";
const VPIC_KEY: &str = "vpic-secret-key-987654";

/// The mock's `vpic` connection with a key, under `prefix` of the mock (`/down`, `/slow`) and
/// named after it (`vpic-down`), with a timeout of `timeout_ms`.
async fn vpic_connection(app: &TestApp, token: &str, mock: &MockServer, prefix: &str, timeout_ms: u64) -> Value {
    let variant = json!({"name": format!("vpic{}", prefix.replace('/', "-")),
                         "config": {"base_url": format!("{}{prefix}/vpic", mock.base)},
                         "credentials": {"api_key": VPIC_KEY}, "timeout_ms": timeout_ms});
    app.create_connection(token, merged(mock.vpic(), variant)).await
}

#[tokio::test]
async fn vpic_decodes_a_vin_and_every_request_is_an_api_call_row() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = vpic_connection(&app, &token, &mock, "", 5000).await;
    assert_eq!(connection["credentials"]["api_key"], "****7654", "credentials are masked");
    let id = connection["id"].as_str().expect("id");

    let result = app.test_call(&token, id, "decode_vin", json!({"vin": VIN})).await;
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(
        result["output"],
        json!({"vin": VIN, "make": "HONDA", "model": "Accord", "year": 2003, "trim": "EX-V6", "body_class": "Coupe",
               "engine_type": "J30A4", "fuel_type": "Gasoline"})
    );
    assert_eq!(result["api_calls"].as_array().expect("calls").len(), 1);
    assert_eq!(mock.count("DecodeVinValues"), 1);
    assert_eq!(mock.headers_of("DecodeVinValues")[0]["x-api-key"], VPIC_KEY, "the plugin used the credential upstream");

    let calls: Value = app.get(&token, "/api-calls?system=vpic").await.json().await.expect("json");
    assert_eq!(calls["pagination"]["total"], 1);
    let row = &calls["data"][0];
    assert_eq!(row["status"], "success");
    assert_eq!(row["status_code"], 200);
    assert_eq!(row["method"], "GET");
    assert_eq!(row["connection"], connection["name"]);
    assert!(
        row["url"].as_str().expect("url").ends_with(&format!("/vpic/vehicles/DecodeVinValues/{VIN}?format=json")),
        "{row}"
    );
    assert!(row["duration_ms"].as_i64().is_some());
    for field in ["id", "timestamp", "system", "orchestration_id", "execution_id", "step"] {
        assert!(row.get(field).is_some(), "{field} in {row}");
    }

    let none: Value = app.get(&token, "/api-calls?status=error").await.json().await.expect("json");
    assert_eq!(none["pagination"]["total"], 0);
    let later: Value = app.get(&token, "/api-calls?from=2999-01-01T00:00:00Z").await.json().await.expect("json");
    assert_eq!(later["pagination"]["total"], 0);
    assert_error(app.get(&token, "/api-calls?from=yesterday").await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert_error(app.get(&token, "/api-calls?status=maybe").await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;

    let stats: Value = app.get(&token, "/api-calls/systems").await.json().await.expect("json");
    let vpic = stats.as_array().expect("array").iter().find(|s| s["system"] == "vpic").expect("vpic stats");
    assert_eq!(vpic["calls"], 1);
    assert_eq!(vpic["success"], 1);
    assert_eq!(vpic["success_rate"], 100.0);
    assert_eq!(vpic["health"], "healthy");
    let dms = stats.as_array().expect("array").iter().find(|s| s["system"] == "dms").expect("dms stats");
    assert_eq!(dms["health"], "unchecked");
}

#[tokio::test]
async fn a_bad_vin_is_the_plugins_own_error() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = vpic_connection(&app, &token, &mock, "", 5000).await;
    let result =
        app.test_call(&token, connection["id"].as_str().expect("id"), "decode_vin", json!({"vin": "SHORT"})).await;
    assert_eq!(result["status"], "error");
    assert_eq!(result["error"]["code"], "invalid_input", "{result}");
    assert_eq!(result["error"]["retryable"], false);
    assert_eq!(mock.count("DecodeVinValues"), 0, "nothing was sent upstream");
}

#[tokio::test]
async fn ping_reports_online_offline_and_timeout() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    assert_error(app.post(&token, "/systems/vpic/ping", json!({})).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    vpic_connection(&app, &token, &mock, "", 5000).await;
    let online: Value = app.post(&token, "/systems/vpic/ping", json!({})).await.json().await.expect("json");
    assert_eq!(online["system"], "vpic");
    assert_eq!(online["status"], "online", "{online}");
    assert!(online["latency_ms"].as_u64().is_some() && online["checked_at"].is_string());

    vpic_connection(&app, &token, &mock, "/down", 5000).await;
    let down: Value =
        app.post(&token, "/systems/vpic/ping?connection=vpic-down", json!({})).await.json().await.expect("json");
    assert_eq!(down["status"], "offline", "{down}");

    vpic_connection(&app, &token, &mock, "/slow", 500).await;
    let slow: Value =
        app.post(&token, "/systems/vpic/ping?connection=vpic-slow", json!({})).await.json().await.expect("json");
    assert_eq!(slow["status"], "timeout", "{slow}");
    assert!(slow["latency_ms"].as_u64().expect("latency") < 2500, "the deadline cut the call short: {slow}");

    let calls: Value = app.get(&token, "/api-calls?system=vpic&page_size=200").await.json().await.expect("json");
    let statuses: Vec<&str> =
        calls["data"].as_array().expect("data").iter().map(|c| c["status"].as_str().expect("status")).collect();
    assert!(statuses.contains(&"success") && statuses.contains(&"error"), "pings are API calls: {statuses:?}");
    assert_eq!(
        app.client.get(format!("{}/healthz", app.address)).send().await.expect("health").status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_dms_connector_reads_vehicles_and_creates_customers_idempotently() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = app
        .create_connection(
            &token,
            json!({"name": "dms", "system": "dms", "config": {"base_url": format!("{}/dms", mock.base)},
                   "credentials": {"api_key": "dms-key-123456"}, "allowed_hosts": [mock.authority]}),
        )
        .await;
    let id = connection["id"].as_str().expect("id");
    let vehicle = app.test_call(&token, id, "get_vehicle", json!({"vin": VIN})).await;
    assert_eq!(vehicle["status"], "success", "{vehicle}");
    assert_eq!(vehicle["output"]["stock_number"], "STK-1001");
    let missing = app.test_call(&token, id, "get_vehicle", json!({"vin": "2HGCM82633A004352"})).await;
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");
    assert_eq!(missing["error"]["http_status"], 404);

    let created = app
        .test_call(&token, id, "create_customer", json!({"customer_name": "Ada Lovelace", "email": "ada@example.com"}))
        .await;
    assert_eq!(created["output"]["customer_id"], "C-42", "{created}");
    let headers = mock.headers_of("/dms/customers");
    assert!(headers[0].get("idempotency-key").is_some(), "writes carry an idempotency key");
}

#[tokio::test]
async fn the_generic_rest_connector_follows_its_connection_config() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = app
        .create_connection(
            &token,
            json!({"name": "dms-rest", "system": "rest",
                   "config": {"base_url": format!("{}/dms", mock.base), "auth": {"type": "api_key", "header": "X-Api-Key"},
                              "operations": {"get_vehicle": {"method": "GET", "path": "/vehicles/{vin}"},
                                             "create_customer": {"method": "POST", "path": "/customers", "body": "${input}"}}},
                   "credentials": {"api_key": "dms-key-123456"}, "allowed_hosts": [mock.authority]}),
        )
        .await;
    let id = connection["id"].as_str().expect("id");
    let vehicle = app.test_call(&token, id, "get_vehicle", json!({"vin": VIN})).await;
    assert_eq!(vehicle["output"]["make"], "Honda", "{vehicle}");
    let created = app.test_call(&token, id, "create_customer", json!({"customer_name": "Grace"})).await;
    assert_eq!(created["output"], json!({"customer_name": "Grace", "customer_id": "C-42"}), "{created}");
    let unknown = app.test_call(&token, id, "delete_everything", json!({})).await;
    assert_eq!(unknown["error"]["code"], "invalid_input", "{unknown}");
}
