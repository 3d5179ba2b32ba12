//! Nothing accepted is lost: a server process killed with SIGKILL in the middle of an execution
//! is restarted on the same database and finishes it, without repeating committed steps.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET, fresh_database};
use crate::mock::MockServer;

/// The `dibop` binary next to this test binary (`target/<profile>/dibop`).
pub fn dibop_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let binary = dir.join("dibop");
    assert!(binary.exists(), "{} missing or stale: run scripts/test.sh, which builds it first", binary.display());
    binary
}

/// A server process that is killed when the test ends, however it ends.
struct Server(Child);

impl Server {
    /// SIGKILL, and wait until the process is gone.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(data_dir: &std::path::Path, database: Option<&str>, port: u16) -> Server {
    let child = Command::new(dibop_binary())
        .arg("serve")
        .env("DIBOP_LISTEN", format!("127.0.0.1:{port}"))
        .env("DIBOP_DATA_DIR", data_dir)
        .env("DATABASE_URL", database.unwrap_or(""))
        .env("DIBOP_JWT_SECRET", JWT_SECRET)
        .env("DIBOP_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("DIBOP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("DIBOP_ALLOW_PRIVATE_NETWORKS", "true")
        .env("DIBOP_LEASE_MS", "2000")
        .env("DIBOP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting dibop");
    Server(child)
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("dibop did not become ready at {base}");
}

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
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let base = format!("http://127.0.0.1:{port}");
    let api = format!("{base}/api/v1");
    let client = reqwest::Client::new();

    let mut first = start(data.path(), database.as_deref(), port);
    wait_ready(&client, &base).await;
    let login: Value = client
        .post(format!("{api}/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_owned();
    let post = |path: &str, body: Value| client.post(format!("{api}{path}")).bearer_auth(&token).json(&body).send();
    for connection in [
        json!({"name": "vpic", "system": "vpic", "config": {"base_url": format!("{}/vpic", mock.base)}, "allowed_hosts": [mock.authority]}),
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

    let mut second = start(data.path(), database.as_deref(), port);
    wait_ready(&client, &base).await;
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
