//! Nothing accepted is lost: a server process killed with SIGKILL in the middle of an execution
//! is restarted on the same database and finishes it, without repeating committed steps.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, fresh_database};
use crate::mock::MockServer;
use crate::process::{Server, free_port};

async fn poll(client: &reqwest::Client, url: &str, token: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value: Value = client.get(url).bearer_auth(token).send().await.expect("poll").json().await.expect("json");
        if until(&value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_killed_server_resumes_the_execution_without_repeating_committed_steps() {
    let mock = MockServer::start().await;
    let data = tempfile::tempdir().expect("data dir");
    let database = fresh_database().await;
    let port = free_port();
    let client = reqwest::Client::new();

    let mut first = Server::start(data.path(), database.as_deref(), port, &[]);
    first.wait_ready(&client).await;
    let api = first.api("");
    let token = first.token(&client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let post = |path: &str, body: Value| client.post(format!("{api}{path}")).bearer_auth(&token).json(&body).send();
    for connection in [
        mock.vpic(),
        json!({"name": "dms", "system": "rest", "allowed_hosts": [mock.authority],
               "config": {"base_url": format!("{}/dms", mock.base),
                          "operations": {"create": {"method": "POST", "path": "/slow-customers", "body": "${input}"}}}}),
    ] {
        assert_eq!(post("/connections", connection).await.expect("connection").status(), StatusCode::CREATED);
    }
    let orchestration: Value = post(
        "/orchestrations",
        json!({"name": "Onboard", "parameters": [{"name": "vin", "type": "string", "required": true}],
               "steps": [
                   {"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin", "parameters": {"vin": "${parameters.vin}"}},
                   {"name": "slow", "type": "api_call", "connection": "dms", "operation": "create", "timeout_ms": 20000,
                    "parameters": {"make": "${decode.response.make}"}},
                   {"name": "done", "type": "transform", "transform": "map", "mapping": {"customer": "${slow.response.customer_id}"}}
               ]}),
    )
    .await
    .expect("orchestration")
    .json()
    .await
    .expect("json");
    let id = orchestration["id"].as_str().expect("id");
    let queued: Value = post(
        &format!("/orchestrations/{id}/execute"),
        json!({"parameters": {"vin": "1HGCM82633A004352"}, "async": true}),
    )
    .await
    .expect("execute")
    .json()
    .await
    .expect("json");
    let execution = queued["execution_id"].as_str().expect("execution id").to_owned();
    let url = format!("{api}/executions/{execution}");

    // Wait until the first step is committed and the slow second one is in flight, then kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.count("/dms/slow-customers") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mock.count("/dms/slow-customers"), 1, "the slow step started");
    first.kill();

    let mut second = Server::start(data.path(), database.as_deref(), port, &[]);
    second.wait_ready(&client).await;
    let finished = poll(&client, &url, &token, |v| v["finished_at"].is_string()).await;
    second.kill();

    assert_eq!(finished["status"], "success", "{finished}");
    assert_eq!(finished["output"], json!({"customer": "C-7"}));
    assert_eq!(mock.count("DecodeVinValues"), 1, "the committed step was not called again");
    assert_eq!(mock.count("/dms/slow-customers"), 2, "the in-flight step ran again");
    let keys: Vec<String> = mock
        .headers_of("/dms/slow-customers")
        .iter()
        .map(|h| h.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(keys[0], format!("{execution}:slow"));
    assert_eq!(keys[0], keys[1], "the repeated step carried the same idempotency key");
}
