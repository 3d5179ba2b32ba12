//! Connectors written in Python (componentize-py) and JavaScript (componentize-js), built by
//! `scripts/build-connectors.sh`: uploaded, run in an orchestration against the mock, and
//! compared with the Rust `vpic` connector.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::mock::MockServer;

const VIN: &str = "1HGCM82633A004352";

/// A component built by `scripts/build-connectors.sh` into `<target>/polyglot/`.
fn polyglot(name: &str) -> Vec<u8> {
    let guests = std::path::Path::new(dibop::plugins::registry::GUEST_DIR);
    let target = guests.ancestors().find(|p| p.ends_with("wasm-plugins")).and_then(|p| p.parent()).expect("target dir");
    let dir = target.join("polyglot");
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}; build it with scripts/build-connectors.sh", path.display()))
}

/// Decodes the VIN through a new connection of `system` in an orchestration; answers the step
/// output and the connection's id.
async fn decode_through(app: &TestApp, token: &str, mock: &MockServer, system: &str) -> (Value, String) {
    let connection = app
        .create_connection(
            token,
            json!({"name": system, "system": system, "config": {"base_url": format!("{}/vpic", mock.base)},
               "credentials": {"api_key": "s3cret-key"}, "allowed_hosts": [mock.authority]}),
        )
        .await;
    let def = json!({"name": format!("Decode with {system}"), "parameters": [{"name": "vin", "type": "string", "required": true}],
        "steps": [{"name": "decode", "type": "api_call", "connection": system, "operation": "decode_vin",
                   "parameters": {"vin": "${parameters.vin}"}}],
        "output": "${decode.response}"});
    let created: Value = app.post(token, "/orchestrations", def).await.json().await.expect("json");
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}"));
    let result: Value = app
        .post(token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": VIN}}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(result["status"], "success", "{system}: {result}");
    (result["output"].clone(), connection["id"].as_str().expect("id").to_owned())
}

#[tokio::test]
async fn python_and_javascript_connectors_answer_like_the_rust_one() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let (rust, _) = decode_through(&app, &token, &mock, "vpic").await;
    assert_eq!(rust["make"], "HONDA");

    for (file, system) in [("vpic_py", "vpic-py"), ("vpic_js", "vpic-js")] {
        // Compiling a large component takes seconds; the API keeps answering meanwhile.
        let upload = {
            let (client, url, token, bytes) =
                (reqwest::Client::new(), app.url("/plugins"), token.clone(), polyglot(file));
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/wasm")
                    .body(bytes)
                    .send()
                    .await
                    .expect("upload")
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for _ in 0..3 {
            assert_eq!(app.get(&token, "/systems").await.status(), StatusCode::OK);
        }
        assert!(!upload.is_finished(), "{system}: other requests were answered while the upload compiled");
        let uploaded = upload.await.expect("upload task");
        assert_eq!(uploaded.status(), StatusCode::CREATED, "{system}");
        let plugin: Value = uploaded.json().await.expect("json");
        assert_eq!(plugin["slug"], system);
        assert_eq!(plugin["world"], "connector");
        let operations: Vec<&str> =
            plugin["operations"].as_array().expect("operations").iter().filter_map(|o| o["name"].as_str()).collect();
        assert_eq!(operations, ["decode_vin", "echo"], "{plugin}");
        assert_eq!((plugin["auth"].as_str(), plugin["system_type"].as_str()), (Some("none"), Some("general")));

        let (output, connection_id) = decode_through(&app, &token, &mock, system).await;
        assert_eq!(output, rust, "{system} answers exactly what the Rust connector answers");

        // Its outbound request is an API-call row of its system, credentials redacted.
        let calls: Value = app.get(&token, &format!("/api-calls?system={system}")).await.json().await.expect("json");
        let row = &calls["data"][0];
        assert_eq!(row["status"], "success", "{calls}");
        assert_eq!(row["status_code"], 200);
        assert!(row["url"].as_str().expect("url").contains(&format!("/vpic/vehicles/DecodeVinValues/{VIN}")), "{row}");

        // Input the declared schema refuses never reaches the plugin; the author's own error
        // (an operation it does not offer) reaches the step with its code and message.
        let test = app.test_call(&token, &connection_id, "decode_vin", json!({"vin": "short"})).await;
        let error = test["error"].to_string();
        assert!(error.contains("invalid_input") && error.contains("input_schema of decode_vin"), "{system}: {test}");
        assert_eq!(test["api_calls"], json!([]), "{system}: {test}");
        let test = app.test_call(&token, &connection_id, "recall", json!({})).await;
        let error = test["error"].to_string();
        assert!(error.contains("invalid_input") && error.contains("unknown operation `recall`"), "{system}: {test}");

        // The sandbox applies: a host off the allow-list is refused, and logged as refused.
        let connection: Value = app
            .post(
                &token,
                "/connections",
                json!({"name": format!("{system}-elsewhere"), "system": system,
                       "config": {"base_url": "http://198.51.100.7/vpic"}, "allowed_hosts": []}),
            )
            .await
            .json()
            .await
            .expect("json");
        let denied: Value = app
            .post(
                &token,
                &format!("/connections/{}/test", connection["id"].as_str().expect("id")),
                json!({"operation": "decode_vin", "input": {"vin": VIN}}),
            )
            .await
            .json()
            .await
            .expect("json");
        assert!(denied["error"].is_object(), "{system}: {denied}");
    }
    // The mock saw the API key on every call of every language.
    let headers = mock.headers_of("/vpic/vehicles/DecodeVinValues/");
    assert_eq!(headers.len(), 3);
    assert!(headers.iter().all(|h| h.get("x-api-key").and_then(|v| v.to_str().ok()) == Some("s3cret-key")));
}
