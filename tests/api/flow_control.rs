//! Flow control through HTTP: calls throttled by a connection's rate limit park their execution
//! (its slot is free meanwhile) and drain at the limit, each call made once; the time a call
//! waits for its permit is not part of its step's timeout; a call whose turn is further away than
//! its `max_wait_ms` fails `rate_limited`; a sender flooding a throttled orchestration is paced to
//! its drain. On three nodes of one PostgreSQL database the limit
//! holds across the nodes, a node killed in the middle of a drain loses nothing, and another
//! enterprise's executions run at once while one enterprise drains a flood.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::call_log::CallLog;
use crate::helpers::{TestApp, fresh_database, guest, unlimited};
use crate::process::{Server, cluster};

/// A system that counts calls by the clock: each request's `{step}/{id}` and when it came.
type Upstream = CallLog;

/// The upstream, serving on loopback, and its authority.
async fn start_upstream() -> (Upstream, String) {
    let upstream = Upstream::default();
    let app =
        Router::new().route("/t/{step}/{id}", get(call)).route("/hang/{id}", get(hang)).with_state(upstream.clone());
    (upstream, crate::helpers::serve(app).await)
}

async fn call(State(upstream): State<Upstream>, Path((step, id)): Path<(String, String)>) -> axum::Json<Value> {
    upstream.record(format!("{step}/{id}"));
    axum::Json(json!({"ok": true, "step": step, "id": id}))
}

/// A system that accepts the request and never answers (counted like the others, as `hang/{id}`).
async fn hang(State(upstream): State<Upstream>, Path(id): Path<String>) -> axum::Json<Value> {
    upstream.record(format!("hang/{id}"));
    tokio::time::sleep(Duration::from_secs(120)).await;
    axum::Json(json!({"ok": true}))
}

/// A node whose enterprise's own limits are raised out of the way, its admin's token, and the
/// upstream with its authority.
async fn unlimited_node() -> (TestApp, String, Upstream, String) {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.put(&token, "/settings", unlimited()).await.status(), StatusCode::OK);
    let (upstream, authority) = start_upstream().await;
    (app, token, upstream, authority)
}

/// A `rest` connection `name` to the upstream with `rate_limit` (JSON `null`: the quota's).
fn connection(authority: &str, name: &str, rate_limit: &Value) -> Value {
    json!({"name": name, "system": "rest", "allowed_hosts": [authority],
           "resilience": {"rate_limit": rate_limit},
           "config": {"base_url": format!("http://{authority}"),
                      "operations": {"hit": {"method": "GET", "path": "/t/{step}/{id}"},
                                     "hang": {"method": "GET", "path": "/hang/{id}"}}}})
}

/// An orchestration calling `connection` once per step name, each with the execution's `id`;
/// `extra` is merged into every step.
fn calls(name: &str, connection: &str, steps: &[&str], extra: &Value) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|step| {
            let mut call = json!({"name": step, "type": "api_call", "connection": connection, "operation": "hit",
                                  "parameters": {"step": step, "id": "${parameters.id}"}});
            for (key, value) in extra.as_object().expect("fields") {
                call[key] = value.clone();
            }
            call
        })
        .collect();
    json!({"name": name, "parameters": [{"name": "id", "type": "string", "required": true}], "steps": steps})
}

async fn successes(app: &TestApp, token: &str, orchestration: &str) -> u64 {
    let page: Value = app
        .get(token, &format!("/orchestrations/{orchestration}/executions?status=success&page_size=1"))
        .await
        .json()
        .await
        .expect("json");
    page["pagination"]["total"].as_u64().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_calls_park_without_a_slot_and_drain_at_the_limit_each_once() {
    const EXECUTIONS: usize = 30;
    // Four slots: were throttled executions to hold theirs, nothing else could run.
    let app = TestApp::spawn_with(|config| {
        config.max_in_flight = 4;
        config.enterprise_slots = Some(4);
    })
    .await;
    let token = app.admin_token().await;
    assert_eq!(app.put(&token, "/settings", unlimited()).await.status(), StatusCode::OK);
    let (upstream, authority) = start_upstream().await;
    app.create_connection(&token, connection(&authority, "dealer", &json!({"requests_per_second": 5}))).await;
    app.create_connection(&token, connection(&authority, "quick", &Value::Null)).await;
    let throttled = app.create_orchestration(&token, calls("Sync", "dealer", &["one", "two"], &json!({}))).await;
    let fast = app.create_orchestration(&token, calls("Look up", "quick", &["fast"], &json!({}))).await;

    // Sent together, as a burst: a sender going on one by one would be paced by admission
    // (see `a_sender_flooding_a_throttled_orchestration_is_paced_to_its_drain`).
    let sent = (0..EXECUTIONS)
        .map(|i| app.execute(&token, &throttled, json!({"parameters": {"id": format!("n{i}")}, "async": true})));
    let mut ids = Vec::new();
    for accepted in futures_util::future::join_all(sent).await {
        ids.push(accepted["execution_id"].as_str().unwrap_or_else(|| panic!("{accepted}")).to_owned());
    }
    // The drain is under way (5 calls a second, 60 to make): another connection's execution
    // finds a free slot at once and ends long before the throttled ones do.
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream.count() < 10 {
        assert!(Instant::now() < deadline, "the drain did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let quick = app.execute(&token, &fast, json!({"parameters": {"id": "q"}})).await;
    assert_eq!(quick["status"], "success", "{quick}");
    let done = successes(&app, &token, &throttled).await;
    assert!(done <= (EXECUTIONS as u64) - 10, "{done} throttled executions had ended before the quick one did");

    let deadline = Instant::now() + Duration::from_secs(90);
    while successes(&app, &token, &throttled).await < EXECUTIONS as u64 {
        assert!(Instant::now() < deadline, "the throttled executions did not all succeed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &ids {
        let detail: Value = app.get(&token, &format!("/executions/{id}")).await.json().await.expect("json");
        let steps: Vec<&str> =
            detail["steps"].as_array().expect("steps").iter().map(|s| s["name"].as_str().unwrap_or("?")).collect();
        assert_eq!((detail["status"].as_str(), steps), (Some("success"), vec!["one", "two"]), "{detail}");
    }
    let times = upstream.times_each();
    assert_eq!(times.len(), 2 * EXECUTIONS + 1, "{times:?}");
    assert!(times.values().all(|n| *n == 1), "a call was made twice: {times:?}");
    let busiest = upstream.busiest_second(&["one", "two"]);
    assert!(busiest <= 5, "{busiest} calls in one second of the clock");
    // Nothing was refused on the way.
    let refused: Value = app.get(&token, "/api-calls?status=rate_limited").await.json().await.expect("json");
    assert_eq!(refused["data"].as_array().expect("rows").len(), 0, "{refused}");
}

/// A sender that submits one execution after another of an orchestration whose calls are
/// throttled is slowed to about the pace they drain at once they are booked more than 1 s
/// ahead (each submission held up to 1 s), rather than filling the line as fast as it can send:
/// every submission is still accepted, and every call made once within the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_flooding_a_throttled_orchestration_is_paced_to_its_drain() {
    const EXECUTIONS: usize = 60;
    let (app, token, upstream, authority) = unlimited_node().await;
    app.create_connection(&token, connection(&authority, "dealer", &json!({"requests_per_second": 5}))).await;
    let throttled = app.create_orchestration(&token, calls("Sync", "dealer", &["one"], &json!({}))).await;

    let began = Instant::now();
    for i in 0..EXECUTIONS {
        let accepted =
            app.execute(&token, &throttled, json!({"parameters": {"id": format!("n{i}")}, "async": true})).await;
        assert!(accepted["execution_id"].is_string(), "{accepted}");
    }
    // 60 calls at 5 a second drain in 12 s; unpaced, a sender submits them in well under 3 s.
    // Paced, the 55 or so past the first second of bookings wait about 200 ms each.
    let took = began.elapsed();
    assert!(took >= Duration::from_secs(6), "60 submissions took {took:?}: they were not paced");
    let deadline = Instant::now() + Duration::from_secs(60);
    while successes(&app, &token, &throttled).await < EXECUTIONS as u64 {
        assert!(Instant::now() < deadline, "the paced executions did not all succeed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let times = upstream.times_each();
    assert_eq!(times.len(), EXECUTIONS, "{times:?}");
    assert!(times.values().all(|n| *n == 1), "a call was made twice: {times:?}");
    assert!(upstream.busiest_second(&["one"]) <= 5);
}

/// A call asking in the last quarter of a second (where calls wait for the next second, so that
/// a request cannot reach the system in a second it was not counted in) goes at once while that
/// second still has permits: it is counted in the next second instead. Unpaced it could not
/// reach the system before the next second began; each try here that asks in time shows it.
#[tokio::test]
async fn a_call_late_in_a_second_that_has_permits_left_goes_at_once() {
    let (app, token, upstream, authority) = unlimited_node().await;
    app.create_connection(&token, connection(&authority, "dealer", &json!({"requests_per_second": 50}))).await;
    let lookup = app.create_orchestration(&token, calls("Look up", "dealer", &["one"], &json!({}))).await;
    let warm = app.execute(&token, &lookup, json!({"parameters": {"id": "warm"}})).await;
    assert_eq!(warm["status"], "success", "{warm}");
    let now_ms =
        || i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms");
    let mut tries = Vec::new();
    for attempt in 0..8 {
        // 800 ms into a second: in its last quarter.
        let into = now_ms().rem_euclid(1_000);
        tokio::time::sleep(Duration::from_millis(u64::try_from((1_800 - into).rem_euclid(1_000)).unwrap_or(0))).await;
        let asked = now_ms();
        let id = format!("late{attempt}");
        let answer = app.execute(&token, &lookup, json!({"parameters": {"id": id}})).await;
        assert_eq!(answer["status"], "success", "{answer}");
        let arrived = upstream.calls().into_iter().find(|(key, _)| *key == format!("one/{id}")).map(|(_, at)| at);
        let arrived = arrived.expect("the call was made");
        // Only a try that asked inside the last quarter says anything.
        if asked.rem_euclid(1_000) >= 760 {
            tries.push((asked, arrived));
            if arrived.div_euclid(1_000) == asked.div_euclid(1_000) {
                return;
            }
        }
    }
    panic!("no call asked late in a second reached the system in that second: {tries:?}");
}

#[tokio::test]
async fn throttled_calls_in_a_for_each_park_and_every_item_is_called_once() {
    let (app, token, upstream, authority) = unlimited_node().await;
    app.create_connection(&token, connection(&authority, "dealer", &json!({"requests_per_second": 2}))).await;
    let items: Vec<String> = (0..8).map(|i| format!("v{i}")).collect();
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Stock list", "parameters": [{"name": "ids", "type": "array", "required": true}],
            "steps": [
                {"name": "each", "type": "for_each", "items": "${parameters.ids}", "concurrency": 4, "steps": [
                    {"name": "first", "type": "api_call", "connection": "dealer", "operation": "hit",
                     "parameters": {"step": "first", "id": "${item}"}},
                    {"name": "row", "type": "transform", "transform": "map",
                     "mapping": {"n": "${index}", "id": "${first.response.id}"}}]}],
            "output": {"rows": "${each}"}}),
        )
        .await;
    // Eight calls at two a second: most items park, some more than once, and replay the rest.
    let run = app.run_to_end(&token, &id, json!({"parameters": {"ids": items}})).await;
    assert_eq!(run["status"], "success", "{run}");
    let rows: Vec<Value> = (0..8).map(|i| json!({"n": i, "id": format!("v{i}")})).collect();
    assert_eq!(run["output"]["rows"], json!(rows), "{run}");
    let times = upstream.times_each();
    assert_eq!(times.len(), 8, "{times:?}");
    assert!(times.values().all(|n| *n == 1), "an item was called twice: {times:?}");
    assert!(upstream.busiest_second(&[]) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_system_holds_only_its_connections_share_of_live_calls() {
    let (app, token, upstream, authority) = unlimited_node().await;
    let mut stuck = connection(&authority, "stuck", &Value::Null);
    // The breaker stays closed: this is about the live calls, not the circuit.
    stuck["resilience"]["circuit_breaker"] = json!({"failure_threshold": 1000});
    app.create_connection(&token, stuck).await;
    app.create_connection(&token, connection(&authority, "quick", &Value::Null)).await;
    let hanging = |name: &str, timeout_ms: u64| {
        json!({"name": name, "parameters": [{"name": "id", "type": "string", "required": true}],
               "steps": [{"name": "call", "type": "api_call", "connection": "stuck", "operation": "hang",
                          "parameters": {"id": "${parameters.id}"}, "timeout_ms": timeout_ms}]})
    };
    let patient = app.create_orchestration(&token, hanging("Patient", 10_000)).await;
    let hasty = app.create_orchestration(&token, hanging("Hasty", 1_500)).await;
    let fast = app.create_orchestration(&token, calls("Look up", "quick", &["fast"], &json!({}))).await;
    let submit = async |orchestration: &str, prefix: &str, count: usize| {
        let mut ids = Vec::new();
        for i in 0..count {
            let body = json!({"parameters": {"id": format!("{prefix}{i}")}, "async": true});
            let accepted = app.execute(&token, orchestration, body).await;
            ids.push(accepted["execution_id"].as_str().unwrap_or_else(|| panic!("{accepted}")).to_owned());
        }
        ids
    };
    // More calls than the connection's share (40 of the enterprise's 80 live calls): the stuck
    // system holds 40 and no more.
    let patient_ids = submit(&patient, "p", 50).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream.count() < 40 {
        assert!(Instant::now() < deadline, "the stuck calls did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The same tenant's healthy system answers at once, before any stuck call gave up.
    let quick = app.execute(&token, &fast, json!({"parameters": {"id": "q"}})).await;
    assert_eq!(quick["status"], "success", "{quick}");
    let hung = || upstream.calls().iter().filter(|(key, _)| key.starts_with("hang/")).count();
    assert_eq!(hung(), 40, "one connection's live calls at once");

    // Calls that find no live call of their connection free wait for one within their own
    // timeout: they end by it, long before the calls that hold them.
    for id in submit(&hasty, "h", 5).await {
        let detail = app.wait_finished(&token, &id).await;
        assert_eq!(detail["status"], "failed", "{detail}");
        let error = detail["error"].as_str().unwrap_or_default();
        assert!(error.contains("for a live call") && error.contains("1500 ms"), "{detail}");
    }
    let failed: Value = app
        .get(&token, &format!("/orchestrations/{patient}/executions?status=failed"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(failed["pagination"]["total"], 0, "the hasty calls did not wait for the stuck ones: {failed}");
    assert_eq!(hung(), 40, "the hasty calls made no request");
    for id in &patient_ids {
        let detail = app.wait_finished(&token, id).await;
        assert_eq!(detail["status"], "failed", "{detail}");
    }
}

#[tokio::test]
async fn waiting_for_a_permit_is_not_part_of_the_steps_timeout() {
    let (app, token, upstream, authority) = unlimited_node().await;
    app.create_connection(&token, connection(&authority, "dealer", &json!({"requests_per_second": 1}))).await;
    // Four calls at one a second wait seconds for their permits; each call itself is quick.
    let steps = ["a", "b", "c", "d"];
    let id = app.create_orchestration(&token, calls("Patient", "dealer", &steps, &json!({"timeout_ms": 300}))).await;
    let started = Instant::now();
    let run = app.run_to_end(&token, &id, json!({"parameters": {"id": "x"}})).await;
    assert_eq!(run["status"], "success", "{run}");
    assert!(started.elapsed() >= Duration::from_secs(2), "the calls waited for their permits");
    assert_eq!(upstream.count(), 4);
    assert_eq!(upstream.busiest_second(&[]), 1);
}

/// A connector that computes for longer than a window before its first request reaches the
/// network after its permit's window: the request takes the next permit at that moment (and,
/// when that is not near, is not sent and the same attempt goes again on it) instead of
/// landing in a second another call's permit already holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_leaves_after_its_window_takes_the_next_permit_instead_of_crowding_that_second() {
    let (app, token, upstream, authority) = unlimited_node().await;
    assert!(app.upload(&token, guest("hostile"), None).await.status().is_success());
    app.create_connection(
        &token,
        json!({"name": "slowpoke", "system": "hostile", "allowed_hosts": [authority],
               "resilience": {"rate_limit": {"requests_per_second": 1}}}),
    )
    .await;
    let definition = json!({
        "name": "Late", "parameters": [{"name": "id", "type": "string", "required": true},
                                      {"name": "spin", "type": "integer", "required": true}],
        "steps": [{"name": "fetch", "type": "api_call", "connection": "slowpoke", "operation": "fetch",
                   "parameters": {"url": format!("http://{authority}/t/late/${{parameters.id}}"),
                                  "spin_ms": "${parameters.spin}"}}]});
    let id = app.create_orchestration(&token, definition).await;
    // The slow call takes the first permit and reaches the network 1.3 s later; the quick one
    // takes the next second's permit and sends at its start.
    let mut ids = Vec::new();
    for (name, spin) in [("slow", 1300), ("quick", 0)] {
        let accepted = app.execute(&token, &id, json!({"parameters": {"id": name, "spin": spin}, "async": true})).await;
        ids.push(accepted["execution_id"].as_str().unwrap_or_else(|| panic!("{accepted}")).to_owned());
    }
    for execution in &ids {
        let run = app.wait_finished(&token, execution).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["steps"][0]["attempts"], 1, "a late try is not an attempt: {run}");
    }
    let times = upstream.times_each();
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(times.values().all(|n| *n == 1), "a call was made twice: {times:?}");
    let calls = upstream.calls();
    assert_eq!(upstream.busiest_second(&[]), 1, "both requests came in one second of the clock: {calls:?}");
}

#[tokio::test]
async fn a_call_whose_turn_is_further_away_than_its_max_wait_fails_rate_limited() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (upstream, authority) = start_upstream().await;
    let limit = json!({"requests_per_minute": 1, "max_wait_ms": 10000});
    app.create_connection(&token, connection(&authority, "dealer", &limit)).await;
    let id = app.create_orchestration(&token, calls("Impatient", "dealer", &["call"], &json!({}))).await;
    // Windows are minutes of the clock: the next one is more than 10 s away.
    while SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() % 60 >= 45 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = app.execute(&token, &id, json!({"parameters": {"id": "1"}})).await;
    assert_eq!(first["status"], "success", "{first}");
    let second = app.execute(&token, &id, json!({"parameters": {"id": "2"}})).await;
    assert_eq!(second["status"], "failed", "{second}");
    let error = second["error"].as_str().unwrap_or_default();
    assert!(error.contains("rate_limited") && error.contains("max_wait_ms"), "{second}");
    assert_eq!(upstream.count(), 1);
    let rows: Value = app.get(&token, "/api-calls?status=rate_limited").await.json().await.expect("json");
    assert_eq!(rows["data"].as_array().expect("rows").len(), 1, "{rows}");
}

#[tokio::test]
async fn a_rate_is_per_second_or_per_minute_within_the_quota_and_its_wait_is_bounded() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let refused = |rate: Value| connection("127.0.0.1:9", "dealer", &rate);
    for (rate, path) in [
        (json!({"requests_per_second": 2}), "resilience.rate_limit.requests_per_second"),
        (json!({"requests_per_second": 1, "requests_per_minute": 1}), "resilience.rate_limit"),
        (json!({"max_wait_ms": -1}), "resilience.rate_limit.max_wait_ms"),
        (json!({"max_wait_ms": 604_800_001_u64}), "resilience.rate_limit.max_wait_ms"),
    ] {
        // The default quota is 60 calls a minute: 2 a second is 120.
        let body = crate::helpers::assert_error(
            app.post(&token, "/connections", refused(rate.clone())).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(crate::helpers::detail_paths(&body), [path], "{rate}: {body}");
    }
    let listed: Value = app.get(&token, "/connections").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 0, "nothing was stored: {listed}");
    let stored = app.create_connection(&token, refused(json!({"requests_per_second": 1, "max_wait_ms": 0}))).await;
    assert_eq!(stored["resilience"]["rate_limit"], json!({"requests_per_second": 1, "max_wait_ms": 0}), "{stored}");
}

/// Three nodes of one database, a connection limited to 20 calls a second to `upstream`, and
/// a two-call orchestration on it.
struct Drain {
    nodes: Vec<Server>,
    _dirs: Vec<tempfile::TempDir>,
    client: reqwest::Client,
    token: String,
    orchestration: String,
    upstream: Upstream,
}

impl Drain {
    async fn start(database: &str) -> Self {
        let (nodes, client, token) = cluster(database, 3, &[("DIBOP_MAX_IN_FLIGHT", "16")]).await;
        let (nodes, _dirs): (Vec<Server>, Vec<_>) = nodes.into_iter().unzip();
        let (upstream, authority) = start_upstream().await;
        let response = client
            .post(nodes[1].api("/connections"))
            .bearer_auth(&token)
            .json(&connection(&authority, "dealer", &json!({"requests_per_second": 20})))
            .send()
            .await
            .expect("connection");
        assert_eq!(response.status(), StatusCode::CREATED);
        let sync = calls("Sync", "dealer", &["one", "two"], &json!({}));
        let orchestration = nodes[2].create(&client, &token, "/orchestrations", sync).await;
        Self { nodes, _dirs, client, token, orchestration, upstream }
    }

    /// Submits `count` executions (ids `n{i}`) to the nodes in turn.
    async fn submit(&self, count: usize) {
        for i in 0..count {
            let node = &self.nodes[i % self.nodes.len()];
            let body = json!({"parameters": {"id": format!("n{i}")}, "async": true});
            let (status, answer) = node.execute(&self.client, &self.token, &self.orchestration, &body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        }
    }

    /// Waits until `count` executions succeeded, asking the first node.
    async fn all_succeed(&self, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let path = format!("/orchestrations/{}/executions?status=success&page_size=1", self.orchestration);
        loop {
            let page = self.nodes[0].get_json(&self.client, &self.token, &path).await;
            let total = page["pagination"]["total"].as_u64().unwrap_or_default();
            if total == count {
                return;
            }
            assert!(Instant::now() < deadline, "only {total} of {count} executions succeeded");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_drain_three_hundred_executions_at_twenty_calls_a_second_each_call_once() {
    const EXECUTIONS: usize = 300;
    let Some(database) = fresh_database().await else {
        eprintln!("skipped: several nodes need PostgreSQL (set DIBOP_TEST_DATABASE_URL)");
        return;
    };
    let drain = Drain::start(&database).await;
    drain.submit(EXECUTIONS).await;
    drain.all_succeed(EXECUTIONS as u64).await;
    let upstream = &drain.upstream;
    let times = upstream.times_each();
    assert_eq!(times.len(), 2 * EXECUTIONS);
    assert!(times.values().all(|n| *n == 1), "a call was made twice: {times:?}");
    let busiest = upstream.busiest_second(&[]);
    assert!(busiest <= 20, "{busiest} calls in one second of the clock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_in_the_middle_of_a_throttled_drain_loses_nothing() {
    const EXECUTIONS: usize = 120;
    let Some(database) = fresh_database().await else {
        eprintln!("skipped: several nodes need PostgreSQL (set DIBOP_TEST_DATABASE_URL)");
        return;
    };
    let mut drain = Drain::start(&database).await;
    drain.submit(EXECUTIONS).await;
    let upstream = drain.upstream.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while upstream.count() < 80 {
        assert!(Instant::now() < deadline, "the drain did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain.nodes[2].kill();
    drain.all_succeed(EXECUTIONS as u64).await;
    let times = upstream.times_each();
    assert_eq!(times.len(), 2 * EXECUTIONS, "every call was made");
    // Only a call in flight on the killed node may have been made again (same idempotency key).
    let again = times.values().filter(|n| **n > 1).count();
    assert!(again <= 16 && times.values().all(|n| *n <= 2), "{again} calls made again: {times:?}");
    let busiest = upstream.busiest_second(&[]);
    assert!(busiest <= 20, "{busiest} calls in one second of the clock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_enterprise_runs_at_once_on_three_nodes_while_one_drains_a_flood() {
    const FLOOD: usize = 400;
    let Some(database) = fresh_database().await else {
        eprintln!("skipped: several nodes need PostgreSQL (set DIBOP_TEST_DATABASE_URL)");
        return;
    };
    let drain = Drain::start(&database).await;
    let (client, nodes) = (&drain.client, &drain.nodes);
    // A second enterprise with its own connection to a system without a limit.
    let email = "admin@b.example";
    let created = client
        .post(nodes[0].api("/enterprises"))
        .bearer_auth(&drain.token)
        .json(&json!({"name": "Enterprise B", "slug": "b", "admin_email": email,
                      "admin_password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .expect("enterprise");
    assert_eq!(created.status(), StatusCode::CREATED);
    // Its limits stay the defaults (60 executions a minute): twelve executions fit in them.
    let b_token = nodes[0].token(client, email, crate::helpers::ADMIN_PASSWORD).await;
    let (quick, authority) = start_upstream().await;
    nodes[1].create(client, &b_token, "/connections", connection(&authority, "quick", &Value::Null)).await;
    let lookup =
        nodes[2].create(client, &b_token, "/orchestrations", calls("Look up", "quick", &["b"], &json!({}))).await;

    // 400 executions of two calls at 20 calls a second: a 40 s drain, submitted one by one
    // (admission paces them to the drain) while B runs twelve executions.
    let b_runs = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while drain.upstream.count() < 40 {
            assert!(Instant::now() < deadline, "the flood did not start draining");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for i in 0..12 {
            let node = &nodes[i % nodes.len()];
            let (_, answer) =
                node.execute(client, &b_token, &lookup, &json!({"parameters": {"id": format!("b{i}")}})).await;
            // It ended within the call (not 202 still queued behind the flood).
            assert_eq!(answer["status"], "success", "{answer}");
        }
        drain.upstream.count()
    };
    let ((), flooded) = tokio::join!(drain.submit(FLOOD), b_runs);
    assert!(flooded < FLOOD, "the flood had made {flooded} of its {} calls: B did not run during it", 2 * FLOOD);
    assert_eq!(quick.times_each().len(), 12);
    // And the flood all completes, each call once, within its limit.
    drain.all_succeed(FLOOD as u64).await;
    let times = drain.upstream.times_each();
    assert_eq!(times.len(), 2 * FLOOD);
    assert!(times.values().all(|n| *n == 1), "a call was made twice");
    assert!(drain.upstream.busiest_second(&[]) <= 20);
}
