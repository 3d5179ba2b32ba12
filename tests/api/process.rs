//! `dibop serve` as a real process: started with the test configuration, killed with SIGKILL
//! by the test or when it ends, however it ends; and `run_dibop` for the binary's other
//! subcommands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET, unlimited};

/// Any 32 bytes, base64: the key every node of a test cluster seals and opens credentials with.
pub const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// `count` nodes on the PostgreSQL `database`, each with its own data directory, the same
/// secret key and `extra` variables, all ready, with the enterprise's rate limits raised far
/// above what a test sends; answers them (each keeps its data directory), a client and an
/// admin token.
pub async fn cluster(
    database: &str,
    count: usize,
    extra: &[(&str, &str)],
) -> (Vec<(Server, tempfile::TempDir)>, reqwest::Client, String) {
    let client = reqwest::Client::new();
    let mut variables = vec![("DIBOP_SECRET_KEY", SECRET_KEY)];
    variables.extend_from_slice(extra);
    let nodes: Vec<(Server, tempfile::TempDir)> = (0..count)
        .map(|_| {
            let dir = tempfile::tempdir().expect("data dir");
            (Server::start(dir.path(), Some(database), free_port(), &variables), dir)
        })
        .collect();
    for (node, _) in &nodes {
        node.wait_ready(&client).await;
    }
    let token = nodes[0].0.token(&client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let response = client.put(nodes[0].0.api("/settings")).bearer_auth(&token).json(&unlimited()).send().await;
    assert_eq!(response.expect("put").status(), StatusCode::OK);
    (nodes, client, token)
}

/// The `dibop` binary next to this test binary (`target/<profile>/dibop`).
pub fn dibop_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let binary = dir.join("dibop");
    assert!(binary.exists(), "{} missing or stale: run scripts/test.sh, which builds it first", binary.display());
    binary
}

/// Runs `dibop ARGS` with `env` added to the test's environment and waits for it to end
/// (blocking the calling thread: on a runtime, from `block_in_place` or `spawn_blocking`);
/// answers whether it succeeded, its stdout and its stderr.
pub fn run_dibop(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(dibop_binary()).args(args).envs(env.iter().copied()).output().expect("running dibop");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// A server process that is killed when the test ends, however it ends.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// `dibop serve` on `port` with its data in `data_dir` and the database `database` (the
    /// default SQLite file in `data_dir` when `None`), a 2 s lease, and `extra` variables.
    pub fn start(data_dir: &Path, database: Option<&str>, port: u16, extra: &[(&str, &str)]) -> Self {
        let mut command = Command::new(dibop_binary());
        command
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
            .stderr(Stdio::null());
        for (name, value) in extra {
            command.env(name, value);
        }
        let child = command.spawn().expect("starting dibop");
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// `base` + `/api/v1` + `path`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Waits until `/readyz` answers 200 (at most a minute).
    pub async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("dibop did not become ready at {}", self.base);
    }

    /// Logs in with `email` and answers the access token.
    pub async fn token(&self, client: &reqwest::Client, email: &str, password: &str) -> String {
        let login: Value = client
            .post(self.api("/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        login["access_token"].as_str().unwrap_or_else(|| panic!("no token: {login}")).to_owned()
    }

    /// `POST path` with `body`, which must answer 201; answers the new id.
    pub async fn create(&self, client: &reqwest::Client, token: &str, path: &str, body: Value) -> String {
        let response = client.post(self.api(path)).bearer_auth(token).json(&body).send().await.expect("post");
        let status = response.status();
        let created: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_str().unwrap_or_else(|| panic!("no id: {created}")).to_owned()
    }

    /// `POST /orchestrations/{orchestration}/execute` with `body`; answers the status and the
    /// JSON body.
    pub async fn execute(
        &self,
        client: &reqwest::Client,
        token: &str,
        orchestration: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let path = format!("/orchestrations/{orchestration}/execute");
        let response = client.post(self.api(&path)).bearer_auth(token).json(body).send().await.expect("execute");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    /// `GET path` with `token`; answers the JSON body.
    pub async fn get_json(&self, client: &reqwest::Client, token: &str, path: &str) -> Value {
        let response = client.get(self.api(path)).bearer_auth(token).send().await.expect("get");
        response.json().await.expect("json")
    }

    /// `GET /executions/{id}` until it is neither queued nor running (at most `within`);
    /// answers it.
    pub async fn wait_ended(&self, client: &reqwest::Client, token: &str, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let execution = self.get_json(client, token, &format!("/executions/{id}")).await;
            if !["queued", "running"].contains(&execution["status"].as_str().unwrap_or_default()) {
                return execution;
            }
            assert!(Instant::now() < deadline, "execution {id} did not end: {execution}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends the signal `name` (e.g. `STOP`, `CONT`, `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// SIGTERM (a graceful stop), then waits until the process is gone (SIGKILL after
    /// `within`); answers whether it exited by itself.
    pub async fn terminate(&mut self, within: Duration) -> bool {
        self.signal("TERM");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
