//! `TestApp`: a real server on port 0 with its own fresh database, and a client for it, and the
//! fixtures several test files share; `db_proxy`: a proxy that fails the database under a
//! server; `tls`: a test CA and https servers it signed.

pub mod call_log;
pub mod db_proxy;
pub mod tls;

use std::path::PathBuf;

use dibop::Config;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "admin@test.example";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery";
/// At least 32 bytes, as the server requires.
pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The database URL when the suite runs on PostgreSQL (`None`: SQLite in the data directory).
    pub database_url: Option<String>,
    /// Keeps the data directory alive as long as the server.
    _data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A database URL for one test: a fresh PostgreSQL database when `DIBOP_TEST_DATABASE_URL` is
/// set, otherwise `None` (the server's default SQLite file in its own data directory).
pub async fn fresh_database() -> Option<String> {
    let base = std::env::var("DIBOP_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())?;
    sqlx::any::install_default_drivers();
    let name = format!("dibop_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(&base).await.expect("connect to DIBOP_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
    admin.close().await.expect("close");
    let (without_query, query) = base.split_once('?').map_or((base.as_str(), None), |(a, q)| (a, Some(q)));
    let (server, _) = without_query.rsplit_once('/').expect("database URL has a path");
    Some(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    })
}

/// The URL of a server's database: `database` (its PostgreSQL database) when given, else the
/// SQLite file a server keeps in `data_dir`.
pub fn database_of(data_dir: &std::path::Path, database: Option<&str>) -> String {
    database.map_or_else(|| format!("sqlite://{}", data_dir.join("dibop.db").display()), str::to_owned)
}

/// Whether this run of the suite is the one on PostgreSQL (`DIBOP_TEST_DATABASE_URL` is set).
pub fn on_postgres() -> bool {
    std::env::var("DIBOP_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
}

/// `PUT /settings` rate limits far above what a test sends.
pub fn unlimited() -> Value {
    json!({"rate_limits": {"api_requests_per_minute": 100000, "executions_per_minute": 100000,
                                       "outbound_requests_per_minute": 100000}})
}

/// The configuration every test server starts from, with its data in `data_dir`.
fn test_config(data_dir: &tempfile::TempDir) -> Config {
    let mut config = Config::new(PathBuf::from(data_dir.path()));
    config.jwt_secret = Some(JWT_SECRET.to_owned().into());
    config.admin_email = Some(ADMIN_EMAIL.into());
    config.admin_password = Some(ADMIN_PASSWORD.to_owned().into());
    config.db_max_connections = 4;
    // Tests talk to mock systems on loopback.
    config.allow_private_networks = true;
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server whose configuration `adjust` may change first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&data_dir);
        let database_url = fresh_database().await;
        config.database_url = database_url.clone().map(Into::into);
        adjust(&mut config);
        Self::start(config, data_dir, database_url).await
    }

    /// On PostgreSQL (`DIBOP_TEST_DATABASE_URL`), a server whose database connections go
    /// through a [`db_proxy::DbProxy`] the test controls, and the proxy; `None` on SQLite.
    /// The app's `database_url` is the direct one (for [`TestApp::sql`]).
    pub async fn spawn_through_proxy(adjust: impl FnOnce(&mut Config)) -> Option<(Self, db_proxy::DbProxy)> {
        let direct = fresh_database().await?;
        let proxy = db_proxy::DbProxy::start(db_proxy::target_of(&direct)).await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&data_dir);
        config.database_url = Some(proxy.url_through(&direct).into());
        adjust(&mut config);
        Some((Self::start(config, data_dir, Some(direct)).await, proxy))
    }

    /// Another node on this server's database: its own data directory (no plugin bytes or
    /// compiled artifacts of the first), the same secret key and JWT secret, as several nodes
    /// behind a load balancer are configured.
    pub async fn another_node(&self) -> Self {
        let shared = self.database();
        let key = std::fs::read_to_string(self.data_dir().join("secret-key")).expect("the first node's secret key");
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&data_dir);
        config.database_url = Some(shared.into());
        config.secret_key = Some(key.trim().to_owned().into());
        Self::start(config, data_dir, self.database_url.clone()).await
    }

    /// Serves `config` on port 0 and waits until the server is ready.
    async fn start(config: Config, data_dir: tempfile::TempDir, database_url: Option<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(dibop::serve(listener, config, async {
            let _ = rx.await;
        }));
        let app = Self {
            address,
            client: reqwest::Client::new(),
            database_url,
            _data_dir: data_dir,
            shutdown: Some(tx),
            server: Some(server),
        };
        // The listener is bound, so requests queue until the server has migrated and accepts.
        // Readiness is bounded (a probe slower than its bound answers 503): on a loaded machine
        // the first probes may be refused.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let health = app.client.get(format!("{}/readyz", app.address)).send().await.expect("readyz");
            if health.status() == StatusCode::OK {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the server is not ready: {}", health.status());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        app
    }

    /// Stops the server gracefully and returns what `serve` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server handle").await.expect("server task")
    }

    /// Stops the server like [`TestApp::stop`] but keeps its data directory (and database)
    /// for another server; answers what `serve` returned.
    pub async fn stop_keep_data(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server handle").await.expect("server task")
    }

    /// Starts a server on this stopped server's SQLite file ([`TestApp::stop_keep_data`]) with
    /// the file capped 2 MiB above its size (`sqlite_max_size_mb`) and `adjust` applied; answers
    /// it, a connection of the test's own to the file (to fill it), and the cap in MiB.
    pub async fn restart_with_sqlite_cap(
        &self,
        adjust: impl FnOnce(&mut Config),
    ) -> (TestApp, sqlx::SqliteConnection, u64) {
        let url = format!("sqlite://{}", self.data_dir().join("dibop.db").display());
        let mut disk = sqlx::SqliteConnection::connect(&url).await.expect("open the database file");
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut disk).await.expect("page_count");
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut disk).await.expect("page_size");
        let cap_mb = u64::try_from(pages * page_size).expect("size") / (1024 * 1024) + 2;
        let data_dir = self.data_dir().to_path_buf();
        let app = TestApp::spawn_with(move |config| {
            config.data_dir = data_dir;
            config.database_url = Some(url.into());
            config.sqlite_max_size_mb = Some(cap_mb);
            adjust(config);
        })
        .await;
        (app, disk, cap_mb)
    }

    /// Runs one SQL statement on the server's database (tests use it to age rows).
    pub async fn sql(&self, statement: &str) {
        let url = self.database();
        let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect to the test database");
        sqlx::query(statement).execute(&mut conn).await.expect("statement");
    }

    /// The first column of the first row `query` answers on the server's database, as text
    /// (`None` for no row or NULL); tests use it to read what the API does not show.
    pub async fn sql_text(&self, query: &str) -> Option<String> {
        let url = self.database();
        let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect to the test database");
        let row: Option<(Option<String>,)> = sqlx::query_as(query).fetch_optional(&mut conn).await.expect("query");
        row.and_then(|(text,)| text)
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    /// The URL of this server's database (see [`database_of`]).
    pub fn database(&self) -> String {
        database_of(self.data_dir(), self.database_url.as_deref())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.address)
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// Logs in and returns the access token, failing the test otherwise.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login as {email}");
        let body: Value = response.json().await.expect("login body");
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// The id of the user with `email` in the token's enterprise.
    pub async fn user_id(&self, token: &str, email: &str) -> String {
        let users: Value = self.get(token, "/users?page_size=200").await.json().await.expect("json");
        let user = users["data"].as_array().expect("data").iter().find(|u| u["email"] == email).expect("user listed");
        user["id"].as_str().expect("id").to_owned()
    }

    pub async fn request(&self, method: Method, token: &str, path: &str, body: Option<Value>) -> Response {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.request(Method::GET, token, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Response {
        self.request(Method::POST, token, path, Some(body)).await
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> Response {
        self.request(Method::PUT, token, path, Some(body)).await
    }

    pub async fn delete(&self, token: &str, path: &str) -> Response {
        self.request(Method::DELETE, token, path, None).await
    }

    /// Creates a user in the token's enterprise and returns its JSON.
    pub async fn create_user(&self, token: &str, email: &str, role: &str) -> Value {
        let response = self
            .post(
                token,
                "/users",
                json!({"email": email, "name": "Test User", "role": role, "password": ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "create user {email}");
        response.json().await.expect("user body")
    }

    /// Creates a second enterprise with its own admin and returns that admin's token.
    pub async fn second_enterprise(&self, slug: &str) -> String {
        let admin = self.admin_token().await;
        let email = format!("admin@{slug}.example");
        let response = self
            .post(
                &admin,
                "/enterprises",
                json!({"name": format!("Enterprise {slug}"), "slug": slug, "admin_email": email, "admin_password": ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "create enterprise {slug}");
        self.token(&email, ADMIN_PASSWORD).await
    }
}

/// The bytes of a guest built from `plugins/` (bundled or test-only), e.g. `hostile`.
pub fn guest(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(dibop::plugins::registry::GUEST_DIR).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

impl TestApp {
    /// A new enterprise-admin API key (its secret) made with `token`.
    pub async fn api_key(&self, token: &str, name: &str) -> String {
        let created: Value = self
            .post(token, "/settings/api-keys", json!({"name": name, "role": "enterprise_admin"}))
            .await
            .json()
            .await
            .expect("json");
        created["key"].as_str().unwrap_or_else(|| panic!("no key: {created}")).to_owned()
    }

    /// `POST /plugins` with raw component bytes.
    pub async fn upload(&self, token: &str, bytes: Vec<u8>, scope: Option<&str>) -> Response {
        let query = scope.map(|s| format!("?scope={s}")).unwrap_or_default();
        self.client
            .post(self.url(&format!("/plugins{query}")))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("upload")
    }

    /// Polls `GET /executions/{id}` until the execution finished (30 s at most) and returns it.
    pub async fn wait_finished(&self, token: &str, execution_id: &str) -> Value {
        for _ in 0..600 {
            let detail: Value =
                self.get(token, &format!("/executions/{execution_id}")).await.json().await.expect("json");
            if detail["finished_at"].is_string() {
                return detail;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("execution {execution_id} did not finish");
    }

    /// `POST /orchestrations`, which must answer 201; answers the new id.
    pub async fn create_orchestration(&self, token: &str, def: Value) -> String {
        let response = self.post(token, "/orchestrations", def).await;
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// `POST /orchestrations/{id}/execute` with `body`; answers the JSON it got.
    pub async fn execute(&self, token: &str, id: &str, body: Value) -> Value {
        self.post(token, &format!("/orchestrations/{id}/execute"), body).await.json().await.expect("json")
    }

    /// Executes orchestration `id` with `body` and answers the finished execution.
    pub async fn run_to_end(&self, token: &str, id: &str, body: Value) -> Value {
        let started = self.execute(token, id, body).await;
        let execution_id = started["execution_id"].as_str().unwrap_or_else(|| panic!("not started: {started}"));
        self.wait_finished(token, execution_id).await
    }

    /// `POST /connections`, which must answer 201; answers the connection's JSON.
    pub async fn create_connection(&self, token: &str, body: Value) -> Value {
        let response = self.post(token, "/connections", body.clone()).await;
        let status = response.status();
        let json: Value = response.json().await.expect("connection body");
        assert_eq!(status, StatusCode::CREATED, "create connection {body}: {json}");
        json
    }

    /// `POST /connections/{id}/test` and its JSON answer.
    pub async fn test_call(&self, token: &str, connection_id: &str, operation: &str, input: Value) -> Value {
        let response = self
            .post(token, &format!("/connections/{connection_id}/test"), json!({"operation": operation, "input": input}))
            .await;
        let status = response.status();
        let json: Value = response.json().await.expect("test body");
        assert_eq!(status, StatusCode::OK, "test call {operation}: {json}");
        json
    }
}

/// `base` with `extra` laid over it: objects are merged key by key (recursively), anything else
/// in `extra` replaces what `base` had. Tests use it for a variant of a shared fixture, e.g.
/// `merged(mock.vpic(), json!({"name": "decoder"}))`.
pub fn merged(base: Value, extra: Value) -> Value {
    match (base, extra) {
        (Value::Object(mut fields), Value::Object(extra)) => {
            for (key, value) in extra {
                let slot = fields.entry(key).or_insert(Value::Null);
                *slot = merged(slot.take(), value);
            }
            Value::Object(fields)
        }
        (_, extra) => extra,
    }
}

/// An orchestration `name` whose `for_each` waits `ms` for each of its `items` parameter
/// (default `[1]`): short waits run in the worker, long ones park the execution.
pub fn wait_per_item(name: &str, ms: u64) -> Value {
    json!({"name": name, "steps": [
        {"name": "each", "type": "for_each", "items": "${parameters.items}",
         "steps": [{"name": "pause", "type": "wait", "duration_ms": ms}]}],
        "parameters": [{"name": "items", "type": "array", "default": [1]}]})
}

/// Asserts `response` has `status` and the SPEC error shape with `code`; returns the body.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let request_id =
        response.headers().get("x-request-id").expect("x-request-id header").to_str().expect("ascii").to_owned();
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["error"]["request_id"], request_id.as_str(), "{body}");
    assert!(body["error"].as_object().expect("object").contains_key("details"), "{body}");
    body
}

/// The `path` of every entry of a 422 answer's `details`, in order.
pub fn detail_paths(body: &Value) -> Vec<&str> {
    body["error"]["details"].as_array().expect("details").iter().map(|d| d["path"].as_str().expect("path")).collect()
}

/// Serves `router` on a loopback port of its own (a system, token endpoint or collector the
/// test plays); answers its `host:port`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let authority = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    authority
}
