//! Plugins' outbound requests as the host makes them: over https to a system whose certificate
//! the configured CA (`extra_ca_file`) signed, on kept-alive connections that no other
//! enterprise's requests ride on.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::helpers::TestApp;
use crate::helpers::tls::{test_pki, tls_server};

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
