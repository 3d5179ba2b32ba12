//! Accepted work through database and disk faults: executions in flight when PostgreSQL resets
//! or refuses connections (15 s and 40 s), or when SQLite's file has no room, all end
//! successfully once the fault clears, without a restart; no step that had committed or had not
//! started runs again, and the upstream system sees each step at most twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::db_proxy::Mode;
use crate::helpers::{TestApp, on_postgres, unlimited};
use crate::mock::MockServer;

/// Executions started before each fault.
const EXECUTIONS: usize = 32;
/// The steps of each: quick calls to the mock (150 ms each).
const STEPS: [&str; 3] = ["one", "two", "three"];

fn vin(i: usize) -> String {
    format!("FAULT{i:04}")
}

/// A connection to the mock's 150 ms endpoint and an orchestration of three calls to it, each
/// with its own path per execution and step.
async fn setup(app: &TestApp, token: &str, mock: &MockServer) -> String {
    let response = app.put(token, "/settings", unlimited()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    app.create_connection(
        token,
        json!({"name": "dms", "system": "rest", "allowed_hosts": [mock.authority],
               "resilience": {"rate_limit": {"requests_per_minute": 100000}},
               "config": {"base_url": format!("{}/dms", mock.base),
                          "operations": {"quick": {"method": "GET", "path": "/inflight/{key}"}}}}),
    )
    .await;
    let steps: Vec<Value> = STEPS
        .iter()
        .map(|step| {
            json!({"name": step, "type": "api_call", "connection": "dms", "operation": "quick",
                   "parameters": {"key": format!("${{parameters.vin}}-{step}")}, "timeout_ms": 30000})
        })
        .collect();
    app.create_orchestration(
        token,
        json!({"name": "Through faults", "parameters": [{"name": "vin", "type": "string", "required": true}],
               "steps": steps}),
    )
    .await
}

/// Starts [`EXECUTIONS`] executions without waiting; answers their ids.
async fn start_all(app: &TestApp, token: &str, orchestration: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..EXECUTIONS {
        let started = app.execute(token, orchestration, json!({"parameters": {"vin": vin(i)}, "async": true})).await;
        ids.push(started["execution_id"].as_str().unwrap_or_else(|| panic!("not accepted: {started}")).to_owned());
    }
    ids
}

/// Waits until every execution is final (at most `within`), then checks each succeeded with
/// every step recorded once, and that the mock saw each step at most twice, with at most one
/// step of an execution (the one in flight when the fault began) seen twice.
async fn all_succeed_once(app: &TestApp, token: &str, mock: &MockServer, ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    for id in ids {
        let detail = loop {
            let response = app.get(token, &format!("/executions/{id}")).await;
            let detail: Value = response.json().await.unwrap_or(Value::Null);
            if detail["finished_at"].is_string() {
                break detail;
            }
            assert!(Instant::now() < deadline, "not final {within:?} after the fault cleared: {detail}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(detail["status"], "success", "{detail}");
        let steps: Vec<&str> =
            detail["steps"].as_array().expect("steps").iter().map(|s| s["name"].as_str().unwrap_or("?")).collect();
        assert_eq!(steps, STEPS, "each step recorded once: {detail}");
    }
    let mut calls: HashMap<String, usize> = HashMap::new();
    for (path, _) in mock.arrivals("/dms/inflight/FAULT") {
        *calls.entry(path).or_default() += 1;
    }
    for i in 0..EXECUTIONS {
        let counts: Vec<usize> = STEPS
            .iter()
            .map(|step| calls.get(&format!("/dms/inflight/{}-{step}", vin(i))).copied().unwrap_or(0))
            .collect();
        assert!(counts.iter().all(|n| (1..=2).contains(n)), "{}: calls per step {counts:?}", vin(i));
        assert!(counts.iter().filter(|n| **n == 2).count() <= 1, "{}: calls per step {counts:?}", vin(i));
    }
}

/// PostgreSQL behind a proxy that fails in `mode` for `outage` while executions run.
async fn through_an_outage(mode: Mode, outage: Duration) {
    let mock = MockServer::start().await;
    let Some((app, proxy)) = TestApp::spawn_through_proxy(|config| {
        // Shorter than the outage: leases expire while the database is away.
        config.lease_ms = 3_000;
        config.max_in_flight = 8;
        config.enterprise_slots = Some(8);
    })
    .await
    else {
        eprintln!("skipped: the proxied database is PostgreSQL (set DIBOP_TEST_DATABASE_URL)");
        return;
    };
    let token = app.admin_token().await;
    let orchestration = setup(&app, &token, &mock).await;
    let ids = start_all(&app, &token, &orchestration).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.count("/dms/inflight/FAULT") < EXECUTIONS {
        assert!(Instant::now() < deadline, "executions did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.set(mode);
    tokio::time::sleep(outage).await;
    proxy.set(Mode::Pass);
    all_succeed_once(&app, &token, &mock, &ids, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_in_flight_finish_after_15_s_of_reset_connections() {
    through_an_outage(Mode::Reset, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_in_flight_finish_after_40_s_of_refused_connections() {
    through_an_outage(Mode::Refuse, Duration::from_secs(40)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_in_flight_finish_after_the_sqlite_file_had_no_room() {
    if on_postgres() {
        eprintln!("skipped: the size cap is SQLite's");
        return;
    }
    let mock = MockServer::start().await;
    // A server with its data, stopped, to learn the size of its file.
    let mut first = TestApp::spawn().await;
    let token = first.admin_token().await;
    let orchestration = setup(&first, &token, &mock).await;
    first.stop_keep_data().await.expect("stopped");
    let (app, mut disk, cap_mb) = first
        .restart_with_sqlite_cap(|config| {
            config.lease_ms = 3_000;
            config.max_in_flight = 8;
            config.enterprise_slots = Some(8);
        })
        .await;
    let token = app.admin_token().await;
    let ids = start_all(&app, &token, &orchestration).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.count("/dms/inflight/FAULT") < EXECUTIONS {
        assert!(Instant::now() < deadline, "executions did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Something else takes every page left under the cap for 15 s: step results cannot be
    // committed, claims of queued executions need no new page and go on.
    let fill = format!("CREATE TABLE filler (b BLOB); INSERT INTO filler VALUES (zeroblob({}))", cap_mb * 1024 * 1024);
    sqlx::raw_sql(&fill).execute(&mut disk).await.expect("fill");
    tokio::time::sleep(Duration::from_secs(15)).await;
    sqlx::raw_sql("DROP TABLE filler").execute(&mut disk).await.expect("free");
    all_succeed_once(&app, &token, &mock, &ids, Duration::from_secs(60)).await;
    disk.close().await.expect("close");
}
