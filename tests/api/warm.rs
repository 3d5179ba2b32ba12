//! Warm connector instances: reused within one connection up to the configured number of calls,
//! never after a failed call, never across connections.

use serde_json::{Value, json};

use crate::helpers::{TestApp, merged};
use crate::mock::MockServer;

const VIN: &str = "1HGCM82633A004352";

/// Runs the decode orchestration `id` and answers how long its plugin instantiation took (ms):
/// zero when a warm instance served the call.
async fn instantiate_ms(app: &TestApp, token: &str, id: &str, vin: &str) -> (String, f64) {
    let result = app.execute(token, id, json!({"parameters": {"vin": vin}})).await;
    let execution_id = result["execution_id"].as_str().expect("id");
    let trace: Value = app.get(token, &format!("/executions/{execution_id}/trace")).await.json().await.expect("json");
    let span = trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .find(|s| s["kind"] == "plugin.instantiate")
        .unwrap_or_else(|| panic!("no instantiate span: {trace}"));
    (result["status"].as_str().expect("status").to_owned(), span["duration_ms"].as_f64().expect("ms"))
}

#[tokio::test]
async fn warm_instances_serve_one_connection_until_their_share_or_a_failure() {
    let app = TestApp::spawn_with(|config| config.warm_instance_calls = 3).await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let mut ids = Vec::new();
    let mut connections = Vec::new();
    for name in ["vpic_a", "vpic_b"] {
        let connection = app.create_connection(&token, merged(mock.vpic(), json!({"name": name}))).await;
        connections.push(connection["id"].as_str().expect("id").to_owned());
        let def = json!({"name": format!("Decode via {name}"), "parameters": [{"name": "vin", "type": "string", "required": true}],
            "steps": [{"name": "decode", "type": "api_call", "connection": name, "operation": "decode_vin",
                       "parameters": {"vin": "${parameters.vin}"}}]});
        let created: Value = app.post(&token, "/orchestrations", def).await.json().await.expect("json");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let (a, b) = (&ids[0], &ids[1]);
    let fresh = |ms: f64| ms > 0.0;

    let (status, first) = instantiate_ms(&app, &token, a, VIN).await;
    assert_eq!(status, "success");
    assert!(fresh(first), "the first call instantiates");
    let (_, second) = instantiate_ms(&app, &token, a, VIN).await;
    let (_, third) = instantiate_ms(&app, &token, a, VIN).await;
    assert_eq!((second, third), (0.0, 0.0), "the next calls of the connection reuse the instance");
    let (_, fourth) = instantiate_ms(&app, &token, a, VIN).await;
    assert!(fresh(fourth), "after 3 calls the instance is dropped");

    let (_, other) = instantiate_ms(&app, &token, b, VIN).await;
    assert!(fresh(other), "another connection never gets this connection's instance");

    // A failed call (the plugin's own error: an operation it does not offer, through the
    // connection test on the same connection) discards its instance.
    let failed = app.test_call(&token, &connections[0], "no_such_operation", json!({})).await;
    assert_eq!(failed["error"]["code"], "invalid_input", "{failed}");
    assert!(failed["error"]["message"].as_str().expect("message").contains("unknown operation"), "{failed}");
    let (_, after_failure) = instantiate_ms(&app, &token, a, VIN).await;
    assert!(fresh(after_failure), "no reuse after a failed call");
}
