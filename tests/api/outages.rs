//! Honest answers during a database outage: a database that refuses connections, resets them,
//! hangs, or has no room left is answered `503 SERVICE_UNAVAILABLE` with `Retry-After` within
//! seconds (never a bare 500, never the pool's old 30 s wait), `/readyz` says so within a second
//! and says ready again as soon as the fault clears, and nothing accepted is lost. A node told
//! to stop answers the callers waiting on a synchronous execute before it goes.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::db_proxy::Mode;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, assert_error, fresh_database, on_postgres};
use crate::mock::MockServer;
use crate::process::{Server, free_port};

/// `/readyz`'s bound.
const READY_WITHIN: Duration = Duration::from_secs(1);
/// The pool's acquire bound (3 s) and slack for a loaded test machine.
const API_WITHIN: Duration = Duration::from_secs(6);

/// One step that copies the `note` parameter into the output.
fn echo() -> Value {
    json!({"name": "Echo", "parameters": [{"name": "note", "type": "string", "required": false}],
           "steps": [{"name": "echo", "type": "transform", "transform": "map", "mapping": {"note": "${parameters.note}"}}]})
}

/// Asserts the SPEC error shape with `503 SERVICE_UNAVAILABLE` and a `Retry-After` of a few
/// seconds.
async fn assert_unavailable(response: Response, what: &str) -> Value {
    let retry_after = response
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After ({})", response.status()))
        .to_str()
        .expect("ascii")
        .parse::<u64>()
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry_after), "{what}: Retry-After {retry_after}");
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await
}

/// `GET /readyz` and how long it took.
async fn readyz(app: &TestApp) -> (Response, Duration) {
    let started = Instant::now();
    let response = app.client.get(format!("{}/readyz", app.address)).send().await.expect("readyz");
    (response, started.elapsed())
}

/// `/readyz` answers 503 in the error shape within its bound.
async fn assert_not_ready(app: &TestApp, fault: &str) {
    let (response, took) = readyz(app).await;
    assert!(took < READY_WITHIN, "{fault}: readyz took {took:?}");
    let body = assert_unavailable(response, &format!("{fault}: readyz")).await;
    eprintln!("{fault}: readyz 503 in {took:?}: {}", body["error"]["message"]);
}

/// `/readyz` answers 200 again within `within` of the fault clearing; answers how long it took.
async fn await_ready(app: &TestApp, fault: &str, within: Duration) -> Duration {
    let cleared = Instant::now();
    loop {
        let (response, _) = readyz(app).await;
        if response.status() == StatusCode::OK {
            return cleared.elapsed();
        }
        assert!(cleared.elapsed() < within, "{fault}: readyz still {} after the fault cleared", response.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Executes and waits; the answer must be a finished success. Answers the execution id.
async fn run(app: &TestApp, token: &str, id: &str, note: &str) -> String {
    let response =
        app.post(token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"note": note}})).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    body["execution_id"].as_str().expect("execution_id").to_owned()
}

/// Requests that each need the database, answered within [`API_WITHIN`] in the error shape
/// with `Retry-After`: a synchronous and an asynchronous execute, a read, and a login.
async fn assert_requests_unavailable(app: &TestApp, token: &str, id: &str, fault: &str, note: &str) {
    let execute = format!("/orchestrations/{id}/execute");
    let timed = |request: reqwest::RequestBuilder| async move {
        let started = Instant::now();
        let response = request.send().await.expect("request");
        (response, started.elapsed())
    };
    let (sync, async_, read, login) = tokio::join!(
        timed(app.client.post(app.url(&execute)).bearer_auth(token).json(&json!({"parameters": {"note": note}}))),
        timed(
            app.client
                .post(app.url(&execute))
                .bearer_auth(token)
                .json(&json!({"parameters": {"note": note}, "async": true}))
        ),
        timed(app.client.get(app.url(&format!("/orchestrations/{id}"))).bearer_auth(token)),
        timed(app.client.post(app.url("/auth/login")).json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))),
    );
    for (what, (response, took)) in [("execute", sync), ("async execute", async_), ("read", read), ("login", login)] {
        assert!(took < API_WITHIN, "{fault}: {what} took {took:?}");
        assert_unavailable(response, &format!("{fault}: {what}")).await;
        eprintln!("{fault}: {what} 503 in {took:?}");
    }
}

#[tokio::test]
async fn a_postgres_database_that_refuses_resets_or_hangs_is_answered_503_in_seconds_and_recovers() {
    let Some((app, proxy)) = TestApp::spawn_through_proxy(|_| {}).await else {
        eprintln!("skipped: the proxied database is PostgreSQL (set DIBOP_TEST_DATABASE_URL)");
        return;
    };
    let token = app.admin_token().await;
    let id = app.create_orchestration(&token, echo()).await;
    let mut accepted = vec![run(&app, &token, &id, "before").await];

    for (mode, fault) in [(Mode::Refuse, "refused"), (Mode::Reset, "reset"), (Mode::Stall, "hanging")] {
        proxy.set(mode);
        assert_not_ready(&app, fault).await;
        assert_requests_unavailable(&app, &token, &id, fault, "during").await;
        // Still not ready while the fault lasts (not a one-off).
        assert_not_ready(&app, fault).await;
        assert_eq!(app.client.get(format!("{}/healthz", app.address)).send().await.expect("healthz").status(), 200);

        proxy.set(Mode::Pass);
        let back = await_ready(&app, fault, Duration::from_secs(3)).await;
        eprintln!("{fault}: readyz 200 {back:?} after the database came back");
        accepted.push(run(&app, &token, &id, fault).await);
    }

    // Nothing that was accepted is lost, and what was refused was not run.
    for execution in &accepted {
        assert_eq!(app.wait_finished(&token, execution).await["status"], "success");
    }
    let listed: Value = app.get(&token, &format!("/orchestrations/{id}/executions")).await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], accepted.len(), "{listed}");
}

#[tokio::test]
async fn a_sqlite_database_at_its_size_cap_is_answered_503_until_room_is_made() {
    if on_postgres() {
        eprintln!("skipped: the size cap is SQLite's");
        return;
    }
    // A server with data, stopped, to learn the size of its file.
    let mut first = TestApp::spawn().await;
    let token = first.admin_token().await;
    let id = first.create_orchestration(&token, echo()).await;
    first.stop_keep_data().await.expect("stopped");
    // The same data under a cap with room to spare.
    let (app, mut disk, cap_mb) = first.restart_with_sqlite_cap(|_| {}).await;
    let token = app.admin_token().await;
    let mut accepted = vec![run(&app, &token, &id, "before").await];

    // Something else fills the file past the cap (and takes every free page).
    let fill = format!("CREATE TABLE filler (b BLOB); INSERT INTO filler VALUES (zeroblob({}))", cap_mb * 1024 * 1024);
    sqlx::raw_sql(&fill).execute(&mut disk).await.expect("fill");
    // A note that needs pages of its own (it is stored with the execution and its step).
    let big = "n".repeat(20_000);
    assert_not_ready(&app, "full").await;
    let execute = format!("/orchestrations/{id}/execute");
    for body in [json!({"parameters": {"note": big}}), json!({"parameters": {"note": big}, "async": true})] {
        let started = Instant::now();
        let response = app.post(&token, &execute, body).await;
        assert!(started.elapsed() < API_WITHIN, "full: execute took {:?}", started.elapsed());
        assert_unavailable(response, "full: execute").await;
    }
    // Logging in writes in place (the user's last login): it needs no new page, and succeeds.
    let login = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK, "login at the cap");
    assert_not_ready(&app, "full").await;

    // Room again: ready at once, and the same request runs.
    sqlx::raw_sql("DROP TABLE filler").execute(&mut disk).await.expect("free");
    let back = await_ready(&app, "full", Duration::from_secs(1)).await;
    eprintln!("full: readyz 200 {back:?} after room was made");
    accepted.push(run(&app, &token, &id, &big).await);

    for execution in &accepted {
        assert_eq!(app.wait_finished(&token, execution).await["status"], "success");
    }
    let listed: Value = app.get(&token, &format!("/orchestrations/{id}/executions")).await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], accepted.len(), "nothing refused was queued: {listed}");
    disk.close().await.expect("close");
}

#[tokio::test]
async fn a_caller_waiting_on_execute_gets_its_answer_when_the_node_is_stopped() {
    let mock = MockServer::start().await;
    let data = tempfile::tempdir().expect("data dir");
    let database = fresh_database().await;
    let port = free_port();
    let client = reqwest::Client::new();
    // A short grace period: the slow step is still in flight when it ends, so the execution
    // goes back to the queue and the next start finishes it.
    let grace = [("DIBOP_SHUTDOWN_GRACE_MS", "500")];

    let mut first = Server::start(data.path(), database.as_deref(), port, &grace);
    first.wait_ready(&client).await;
    let token = first.token(&client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    first
        .create(
            &client,
            &token,
            "/connections",
            json!({"name": "dms", "system": "rest", "allowed_hosts": [mock.authority],
                   "config": {"base_url": format!("{}/dms", mock.base),
                              "operations": {"create": {"method": "POST", "path": "/slow-customers", "body": "${input}"}}}}),
        )
        .await;
    let id = first
        .create(
            &client,
            &token,
            "/orchestrations",
            json!({"name": "Onboard", "steps": [
                {"name": "slow", "type": "api_call", "connection": "dms", "operation": "create", "timeout_ms": 20000,
                 "parameters": {"name": "Ada"}},
                {"name": "done", "type": "transform", "transform": "map", "mapping": {"customer": "${slow.response.customer_id}"}}
            ]}),
        )
        .await;

    // A caller waits on the execute while the slow step (4 s) is in flight...
    let execute = client.post(first.api(&format!("/orchestrations/{id}/execute"))).bearer_auth(&token).json(&json!({}));
    let waiting = tokio::spawn(async move {
        let response = execute.send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.json::<Value>().await?))
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.count("/dms/slow-customers") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mock.count("/dms/slow-customers"), 1, "the slow step started");

    // ...when the node is told to stop: the caller is answered, not cut off.
    let stopped_at = Instant::now();
    assert!(first.terminate(Duration::from_secs(20)).await, "the node stopped by itself");
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered")
        .expect("task")
        .expect("an HTTP answer before the connection closed");
    eprintln!("stopped in {:?}; the caller got {status} {body}", stopped_at.elapsed());
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(matches!(body["status"].as_str(), Some("running" | "queued")), "{body}");
    let execution = body["execution_id"].as_str().expect("execution_id").to_owned();

    // The execution was handed back and finishes after a restart.
    let mut second = Server::start(data.path(), database.as_deref(), port, &[]);
    second.wait_ready(&client).await;
    let url = second.api(&format!("/executions/{execution}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let detail: Value = client.get(&url).bearer_auth(&token).send().await.expect("get").json().await.expect("json");
        if detail["finished_at"].is_string() || Instant::now() > deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    second.kill();
    assert_eq!(finished["status"], "success", "{finished}");
    assert_eq!(finished["output"], json!({"customer": "C-7"}));
}
