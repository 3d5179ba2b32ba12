//! Hostile plugins are contained: each misbehaviour fails its call with a clear error and the
//! server stays healthy.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, guest};
use crate::mock::MockServer;

/// Uploads the `hostile` test connector and creates a connection for it.
async fn hostile(app: &TestApp, token: &str, allowed: Vec<String>, timeout_ms: u64) -> String {
    let uploaded = app.upload(token, guest("hostile"), None).await;
    assert!(uploaded.status().is_success());
    let connection = app
        .create_connection(
            token,
            json!({"name": "hostile", "system": "hostile", "credentials": {"api_key": "hostile-secret-4242"},
                   "allowed_hosts": allowed, "timeout_ms": timeout_ms}),
        )
        .await;
    connection["id"].as_str().expect("id").to_owned()
}

async fn assert_healthy(app: &TestApp, token: &str, connection: &str) {
    let health = app.client.get(format!("{}/healthz", app.address)).send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let echo = app.test_call(token, connection, "echo", json!({"still": "alive"})).await;
    assert_eq!(echo["output"], json!({"still": "alive"}), "{echo}");
}

#[tokio::test]
async fn an_infinite_loop_hits_the_deadline_and_the_server_stays_healthy() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![], 1000).await;
    let started = std::time::Instant::now();
    let result = app.test_call(&token, &connection, "spin", json!({})).await;
    assert_eq!(result["status"], "error");
    assert_eq!(result["error"]["code"], "timeout", "{result}");
    assert!(result["error"]["message"].as_str().expect("message").contains("1000 ms"), "{result}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_healthy(&app, &token, &connection).await;
}

#[tokio::test]
async fn a_memory_bomb_fails_naming_the_memory_limit() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![], 10_000).await;
    let result = app.test_call(&token, &connection, "alloc", json!({"mib": 200})).await;
    assert_eq!(result["error"]["code"], "memory_limit", "{result}");
    assert!(result["error"]["message"].as_str().expect("message").contains("64 MiB"), "{result}");
    let small = app.test_call(&token, &connection, "alloc", json!({"mib": 8})).await;
    assert_eq!(small["status"], "success", "within the limit it works: {small}");
    assert_healthy(&app, &token, &connection).await;
}

#[tokio::test]
async fn a_panic_fails_with_the_plugins_own_message() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![], 5000).await;
    let result = app.test_call(&token, &connection, "panic", json!({})).await;
    assert_eq!(result["error"]["code"], "trap", "{result}");
    // Once, with its place and message: no empty backtrace header, no RUST_BACKTRACE hint.
    assert_eq!(
        result["error"]["message"],
        "the plugin panicked at test-guests/hostile/src/lib.rs:79:24: hostile plugin panicked on purpose",
        "{result}"
    );
    // The raw stderr stays available beside it.
    assert!(result["stderr"].as_str().expect("stderr").contains("panicked at"), "{result}");
    assert_healthy(&app, &token, &connection).await;
}

#[tokio::test]
async fn hosts_off_the_allow_list_are_denied_and_logged() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec!["api.example.invalid".into()], 5000).await;
    let url = format!("{}/vpic/vehicles/GetMakesForVehicleType/car", mock.base);
    let result = app.test_call(&token, &connection, "fetch", json!({"url": url})).await;
    assert_eq!(result["status"], "error", "{result}");
    assert_eq!(result["error"]["code"], "denied", "{result}");
    assert_eq!(mock.count("GetMakes"), 0, "nothing reached the mock");
    let calls: Value = app.get(&token, "/api-calls?system=hostile").await.json().await.expect("json");
    assert_eq!(calls["pagination"]["total"], 1);
    assert_eq!(calls["data"][0]["status"], "error");
    assert!(
        calls["data"][0]["error"].as_str().expect("error").contains("not in the connection's allowed hosts"),
        "{calls}"
    );
}

#[tokio::test]
async fn loopback_is_denied_unless_private_networks_are_allowed() {
    let app = TestApp::spawn_with(|config| config.allow_private_networks = false).await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![mock.authority.clone()], 5000).await;
    let url = format!("{}/vpic/vehicles/GetMakesForVehicleType/car", mock.base);
    let result = app.test_call(&token, &connection, "fetch", json!({"url": url})).await;
    assert_eq!(result["status"], "error", "{result}");
    assert_eq!(mock.count("GetMakes"), 0);
    let error = result["api_calls"][0]["error"].as_str().expect("logged reason");
    assert!(error.contains("private or loopback"), "{error}");
}

#[tokio::test]
async fn oversized_responses_and_request_floods_are_cut_off() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![mock.authority.clone()], 10_000).await;
    // 40 MiB, past the 32 MiB a plugin may read of one answer; with memory enough to read that
    // much, so that the host's bound (not the plugin's memory) ends it.
    let roomy = app
        .create_connection(
            &token,
            json!({"name": "roomy", "system": "hostile", "memory_limit_mb": 256,
                                           "allowed_hosts": [mock.authority], "timeout_ms": 10_000}),
        )
        .await;
    let roomy = roomy["id"].as_str().expect("id");
    let big = app.test_call(&token, roomy, "fetch", json!({"url": format!("{}/big", mock.base)})).await;
    assert_eq!(big["status"], "error", "{}", big["error"]);
    let error = big["api_calls"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("exceeds the limit"), "{error} {}", big["error"]);

    let url = format!("{}/vpic/vehicles/GetMakesForVehicleType/car", mock.base);
    let flood = app.test_call(&token, &connection, "fetch", json!({"url": url, "count": 25})).await;
    assert_eq!(flood["status"], "error", "{flood}");
    assert_eq!(mock.count("GetMakes"), 20, "the per-call cap stopped the flood");
    assert_healthy(&app, &token, &connection).await;
}

#[tokio::test]
async fn guests_see_no_environment_and_no_files() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![], 5000).await;
    let result = app.test_call(&token, &connection, "env", json!({})).await;
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(result["output"]["env"], json!([]), "{result}");
    assert!(!result["output"]["file"].as_str().expect("file").contains("root:"), "{result}");
    assert!(!result["output"]["dir"].to_string().contains("etc"), "{result}");
}

#[tokio::test]
async fn logs_and_output_are_captured_and_secrets_redacted() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![], 5000).await;
    let result = app.test_call(&token, &connection, "log", json!({})).await;
    assert_eq!(result["logs"][0]["message"], "hostile says hello", "{result}");
    assert_eq!(result["logs"][0]["fields"], json!({"n": 1}));
    assert!(result["stdout"].as_str().expect("stdout").contains("to stdout"));
    assert!(result["stderr"].as_str().expect("stderr").contains("to stderr"));
    let secret = app.test_call(&token, &connection, "secret", json!({})).await;
    assert_eq!(secret["output"], json!({"has_api_key": true}));
    assert!(!secret.to_string().contains("hostile-secret-4242"));
}

#[tokio::test]
async fn log_output_and_error_bombs_are_cut_to_their_bounds() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![], 20_000).await;
    // 40 lines with 4 MiB messages and fields: once a 168 MB answer.
    let response = app
        .post(&token, &format!("/connections/{connection}/test"), json!({"operation": "log_flood", "input": {}}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    assert!(text.len() < 512 * 1024, "the answer stays small: {} bytes", text.len());
    let flood: Value = serde_json::from_str(&text).expect("json");
    let logs = flood["logs"].as_array().expect("logs");
    assert!(!logs.is_empty(), "{}", &text[..500.min(text.len())]);
    assert!(logs[0]["message"].as_str().expect("message").contains("[truncated"), "{}", logs[0]);
    assert!(logs[0]["fields"]["_truncated"].as_str().expect("note").contains("bytes of fields left out"));

    // Past the 32 MiB a plugin may answer, with memory enough to build it.
    let roomy = app
        .create_connection(
            &token,
            json!({"name": "roomy", "system": "hostile", "memory_limit_mb": 256, "timeout_ms": 20_000}),
        )
        .await;
    let roomy = roomy["id"].as_str().expect("id");
    let output = app.test_call(&token, roomy, "big_output", json!({"mib": 33})).await;
    assert_eq!(output["error"]["code"], "output_too_large", "{}", output["error"]);
    let error = app.test_call(&token, &connection, "big_error", json!({"mib": 1})).await;
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.len() < 5_000 && message.contains("[truncated"), "{} bytes", message.len());
    assert_healthy(&app, &token, &connection).await;
}

#[tokio::test]
async fn denied_requests_count_against_the_per_call_cap_before_they_are_recorded() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec!["api.example.invalid".into()], 20_000).await;
    // A plugin that ignores refusals and tries 4,000 times: once 4,000 rows and a gigabyte.
    let result = app
        .test_call(
            &token,
            &connection,
            "fetch",
            json!({"url": "http://127.0.0.1:9/x", "count": 4000, "keep_going": true}),
        )
        .await;
    assert_eq!(result["output"]["failed"], 4000, "{result}");
    let calls: Value = app.get(&token, "/api-calls?system=hostile&page_size=200").await.json().await.expect("json");
    assert_eq!(calls["pagination"]["total"], 21, "20 refusals and one saying the cap was passed");
    let over = calls["data"][0]["error"].as_str().unwrap_or_default();
    assert!(over.contains("more than 20 requests"), "{calls}");
}

#[tokio::test]
async fn oauth_tokens_and_encoded_secrets_are_unreadable_in_api_call_logs() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![mock.authority.clone()], 10_000).await;
    // The connection's credential base64-encoded in the query, and a token in the answer.
    let url = format!("{}/oauth/token?client_id=me&q=aG9zdGlsZS1zZWNyZXQtNDI0Mg&client_secret=other-value", mock.base);
    let result = app.test_call(&token, &connection, "fetch", json!({"url": url})).await;
    assert_eq!(result["status"], "success", "{result}");
    let calls: Value = app.get(&token, "/api-calls?system=hostile").await.json().await.expect("json");
    let text = calls.to_string();
    for secret in ["tok-abcdef123456", "aG9zdGlsZS1zZWNyZXQtNDI0Mg", "other-value"] {
        assert!(!text.contains(secret), "{secret} readable: {text}");
    }
    assert!(text.contains("access_token"), "the field itself stays: {text}");
}

#[tokio::test]
async fn input_that_breaks_the_declared_schema_never_reaches_the_plugin() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = hostile(&app, &token, vec![], 5000).await;
    // `fetch` declares {"required": ["url"], "properties": {"url": {"type": "string"}, "count": {"minimum": 1}}}.
    let result = app.test_call(&token, &connection, "fetch", json!({"count": 0})).await;
    assert_eq!(result["error"]["code"], "invalid_input", "{result}");
    let message = result["error"]["message"].as_str().expect("message");
    assert!(message.starts_with("the input does not match the input_schema of fetch: "), "{message}");
    assert!(message.contains("(input): \"url\" is a required property"), "{message}");
    assert!(message.contains("count: 0 is less than the minimum of 1"), "{message}");
    assert_eq!(result["api_calls"], json!([]));
    assert_eq!((&result["stdout"], &result["stderr"], &result["logs"]), (&json!(""), &json!(""), &json!([])));

    // In an orchestration the step fails the same way, and its trace shows no plugin call.
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Bad input", "steps": [{"name": "get", "type": "api_call", "connection": "hostile",
                   "operation": "fetch", "parameters": {"url": 42}}]}),
        )
        .await;
    let run = app.execute(&token, &id, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().expect("error").contains("url: 42 is not of type \"string\""), "{run}");
}

#[tokio::test]
async fn a_panicking_step_shows_a_failed_plugin_call_in_its_trace() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    hostile(&app, &token, vec![], 5000).await;
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Panics", "steps": [
                {"name": "first", "type": "transform", "transform": "map", "mapping": {"ok": true}},
                {"name": "boom", "type": "api_call", "connection": "hostile", "operation": "panic", "parameters": {}}]}),
        )
        .await;
    let run = app.execute(&token, &id, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    // Only the step that succeeded counts as completed, also after a retry that fails again.
    assert_eq!((&run["steps_completed"], &run["steps_total"]), (&json!(1), &json!(2)), "{run}");
    let execution = run["execution_id"].as_str().expect("id");
    let retried = app.post(&token, &format!("/executions/{execution}/retry"), json!({})).await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED, "{:?}", retried.text().await);
    let detail = app.wait_finished(&token, execution).await;
    assert_eq!((&detail["status"], &detail["steps_completed"]), (&json!("failed"), &json!(1)), "{detail}");
    let trace: Value = app.get(&token, &format!("/executions/{execution}/trace")).await.json().await.expect("json");
    let spans = trace["spans"].as_array().expect("spans");
    let of = |kind: &str| spans.iter().find(|s| s["kind"] == kind).unwrap_or_else(|| panic!("no {kind} span: {trace}"));
    let boom = spans.iter().find(|s| s["kind"] == "step" && s["name"] == "boom").unwrap_or_else(|| panic!("{trace}"));
    assert_eq!(boom["status"], "failed");
    assert_eq!(of("attempt")["status"], "failed");
    let invoke = of("plugin.invoke");
    assert_eq!(invoke["status"], "failed", "{invoke}");
    assert!(invoke["attributes"]["error"].as_str().expect("error").contains("panicked at"), "{invoke}");
    assert_eq!(of("plugin.instantiate")["status"], "success");
}
