//! Resilience of connections through HTTP: the circuit breaker (opens after consecutive
//! failures, refuses at once while open, lets one trial through, shared by nodes, shown as
//! health), the outbound rate limit's bounds (the enterprise's quota; waiting and parking for
//! permits is in `flow_control`) and an upstream's `Retry-After`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};

/// A system that is down (503) until told otherwise, optionally slow, and one that answers
/// 429 with `Retry-After: 1` to its first request. Counts requests and remembers when they came.
#[derive(Clone, Default)]
struct Upstream {
    up: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicUsize>,
    /// Unix ms of each request to `/limited`.
    limited: Arc<Mutex<Vec<u128>>>,
}

impl Upstream {
    async fn start() -> (Self, String) {
        let upstream = Self::default();
        let app = Router::new()
            .route("/sys/status", get(status))
            .route("/limited", get(limited))
            .with_state(upstream.clone());
        (upstream, crate::helpers::serve(app).await)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn status(State(upstream): State<Upstream>) -> impl IntoResponse {
    upstream.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(upstream.delay_ms.load(Ordering::SeqCst))).await;
    if upstream.up.load(Ordering::SeqCst) {
        (StatusCode::OK, axum::Json(json!({"ok": true})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": "maintenance"})))
    }
}

async fn limited(State(upstream): State<Upstream>) -> impl IntoResponse {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis();
    let first = {
        let mut seen = upstream.limited.lock().expect("lock");
        seen.push(now);
        seen.len() == 1
    };
    if first {
        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], axum::Json(json!({"error": "slow down"})))
    } else {
        (StatusCode::OK, [("retry-after", "0")], axum::Json(json!({"ok": true})))
    }
}

/// A `rest` connection to the upstream with `resilience`, and a one-step orchestration calling
/// `operation` with `step` merged into the step. Answers (connection id, orchestration id).
async fn setup(app: &TestApp, token: &str, authority: &str, resilience: Value, step: Value) -> (String, String) {
    let connection = app
        .create_connection(
            token,
            json!({"name": "dealer", "system": "rest", "allowed_hosts": [authority], "resilience": resilience,
                   "config": {"base_url": format!("http://{authority}"),
                              "operations": {"status": {"method": "GET", "path": "/sys/status"},
                                             "limited": {"method": "GET", "path": "/limited"}}}}),
        )
        .await;
    let mut call = json!({"name": "call", "type": "api_call", "connection": "dealer", "operation": "status"});
    for (key, value) in step.as_object().expect("step fields") {
        call[key] = value.clone();
    }
    let id = app.create_orchestration(token, json!({"name": "Call the dealer", "steps": [call]})).await;
    (connection["id"].as_str().expect("id").to_owned(), id)
}

async fn health_of(app: &TestApp, token: &str, path: &str) -> String {
    let body: Value = app.get(token, path).await.json().await.expect("json");
    let rows = body.get("data").unwrap_or(&body).as_array().expect("rows").clone();
    let row = rows.iter().find(|r| r["system"] == "rest" || r["slug"] == "rest").expect("the rest system");
    row["health"].as_str().expect("health").to_owned()
}

async fn circuit(app: &TestApp, token: &str, connection: &str) -> Value {
    let body: Value = app.get(token, &format!("/connections/{connection}")).await.json().await.expect("json");
    body["circuit"].clone()
}

#[tokio::test]
async fn a_failing_system_opens_the_circuit_for_every_node_and_one_trial_closes_it() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (upstream, authority) = Upstream::start().await;
    let policy = json!({"circuit_breaker": {"failure_threshold": 2, "open_ms": 1500}});
    let (connection, id) = setup(&app, &token, &authority, policy, json!({})).await;
    let shown: Value = app.get(&token, &format!("/connections/{connection}")).await.json().await.expect("json");
    assert_eq!(
        shown["resilience"],
        json!({"circuit_breaker": {"failure_threshold": 2, "open_ms": 1500},
                                          "rate_limit": null})
    );
    assert_eq!(shown["circuit"], "closed");
    assert_eq!(health_of(&app, &token, "/systems").await, "unchecked");

    // Two failures in a row open it.
    for n in 1..=2 {
        let result = app.execute(&token, &id, json!({})).await;
        assert_eq!(result["status"], "failed", "{result}");
        assert!(result["error"].as_str().expect("error").contains("503"), "{result}");
        assert_eq!(upstream.hits(), n);
    }
    assert_eq!(circuit(&app, &token, &connection).await, "open");
    assert_eq!(health_of(&app, &token, "/systems").await, "offline");
    assert_eq!(health_of(&app, &token, "/api-calls/systems").await, "offline");

    // Open: the next call fails at once without reaching the system, on this node and another.
    let other = app.another_node().await;
    let other_token = other.admin_token().await;
    assert_eq!(circuit(&other, &other_token, &connection).await, "open");
    for node in [&app, &other] {
        let result = node.execute(&token, &id, json!({})).await;
        assert_eq!(result["status"], "failed", "{result}");
        let error = result["error"].as_str().expect("error");
        assert!(error.contains("circuit_open") && error.contains("dealer"), "{result}");
    }
    assert_eq!(upstream.hits(), 2, "an open circuit sends nothing");
    let refused: Value = app.get(&token, "/api-calls?status=circuit_open").await.json().await.expect("json");
    assert_eq!(refused["data"].as_array().expect("rows").len(), 2, "{refused}");
    assert_eq!(refused["data"][0]["connection_id"], connection.as_str());
    let stats: Value = app.get(&token, "/api-calls/systems").await.json().await.expect("json");
    let rest = stats.as_array().expect("rows").iter().find(|r| r["system"] == "rest").expect("rest").clone();
    assert_eq!((rest["calls"].as_u64(), rest["circuit_open"].as_u64()), (Some(2), Some(2)), "{rest}");

    // After open_ms one trial goes through; while it runs, other calls are still refused.
    upstream.up.store(true, Ordering::SeqCst);
    upstream.delay_ms.store(2000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let trial = app.execute(&token, &id, json!({"async": true})).await;
    let trial_id = trial["execution_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.hits() < 3 {
        assert!(Instant::now() < deadline, "the trial call never reached the system");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(circuit(&other, &other_token, &connection).await, "half_open");
    let during = other.execute(&token, &id, json!({})).await;
    assert!(during["error"].as_str().is_some_and(|e| e.contains("half-open")), "{during}");
    let trial = app.wait_finished(&token, &trial_id).await;
    assert_eq!(trial["status"], "success", "{trial}");
    assert_eq!(upstream.hits(), 3);
    assert_eq!(circuit(&app, &token, &connection).await, "closed");

    upstream.delay_ms.store(0, Ordering::SeqCst);
    let after = app.execute(&token, &id, json!({})).await;
    assert_eq!(after["status"], "success", "{after}");
    other.stop().await.expect("stop");
}

#[tokio::test]
async fn a_failed_trial_opens_the_circuit_again() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (upstream, authority) = Upstream::start().await;
    let policy = json!({"circuit_breaker": {"failure_threshold": 1, "open_ms": 300}});
    let (connection, id) = setup(&app, &token, &authority, policy, json!({})).await;
    app.execute(&token, &id, json!({})).await;
    assert_eq!(circuit(&app, &token, &connection).await, "open");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let trial = app.execute(&token, &id, json!({})).await;
    assert!(trial["error"].as_str().is_some_and(|e| e.contains("503")), "the trial ran: {trial}");
    assert_eq!(upstream.hits(), 2);
    assert_eq!(circuit(&app, &token, &connection).await, "open");
    let refused = app.execute(&token, &id, json!({})).await;
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("circuit_open")), "{refused}");
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn retry_after_of_a_429_delays_the_next_attempt_and_the_attempt_records_it() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (upstream, authority) = Upstream::start().await;
    let step = json!({"operation": "limited",
                      "retry": {"max_attempts": 2, "initial_interval_ms": 10, "backoff_coefficient": 1.0}});
    let (_, id) = setup(&app, &token, &authority, json!({}), step).await;
    let result = app.execute(&token, &id, json!({})).await;
    assert_eq!(result["status"], "success", "{result}");
    let seen = upstream.limited.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    assert!(seen[1] - seen[0] >= 1000, "the second attempt came {} ms after the first", seen[1] - seen[0]);
    let execution = result["execution_id"].as_str().expect("id");
    let trace: Value = app.get(&token, &format!("/executions/{execution}/trace")).await.json().await.expect("json");
    let attempts: Vec<&Value> =
        trace["spans"].as_array().expect("spans").iter().filter(|s| s["kind"] == "attempt").collect();
    assert_eq!(attempts.len(), 2, "{trace}");
    assert_eq!(attempts[0]["attributes"]["retry_after_ms"], 1000, "{trace}");
}

#[tokio::test]
async fn resilience_settings_out_of_bounds_are_refused_with_their_paths() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let body = json!({"name": "x", "system": "rest", "config": {"base_url": "http://127.0.0.1:9/"},
                      "resilience": {"circuit_breaker": {"failure_threshold": 0, "open_ms": 5},
                                     "rate_limit": {"requests_per_minute": 0}}});
    let refused = crate::helpers::assert_error(
        app.post(&token, "/connections", body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(
        crate::helpers::detail_paths(&refused),
        [
            "resilience.circuit_breaker.failure_threshold",
            "resilience.circuit_breaker.open_ms",
            "resilience.rate_limit.requests_per_minute"
        ]
    );
    let unknown = json!({"name": "x", "system": "rest", "resilience": {"retries": 3}});
    let response = app.post(&token, "/connections", unknown).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let listed: Value = app.get(&token, "/connections").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 0, "nothing was stored: {listed}");
}

#[tokio::test]
async fn a_connection_without_its_own_rate_limit_takes_the_enterprise_default() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (upstream, authority) = Upstream::start().await;
    upstream.up.store(true, Ordering::SeqCst);
    let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
    assert_eq!(settings["rate_limits"]["outbound_requests_per_minute"], 60, "{settings}");
    let limits = json!({"rate_limits": {"api_requests_per_minute": 300, "executions_per_minute": 60,
                                        "outbound_requests_per_minute": 1}});
    assert_eq!(app.put(&token, "/settings", limits).await.status(), StatusCode::OK);
    // No rate of its own; it waits for no permit, so a call past the quota fails at once.
    let policy = json!({"rate_limit": {"max_wait_ms": 0}});
    let (_, id) = setup(&app, &token, &authority, policy, json!({})).await;
    // Not in the last 2 s of a minute, so both calls fall in one window.
    while SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() % 60 >= 58 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = app.execute(&token, &id, json!({})).await;
    assert_eq!(first["status"], "success", "{first}");
    let second = app.execute(&token, &id, json!({})).await;
    assert!(second["error"].as_str().is_some_and(|e| e.contains("rate_limited")), "{second}");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn a_connection_rate_limit_above_the_enterprise_outbound_quota_is_refused_at_its_path() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let limits = json!({"rate_limits": {"api_requests_per_minute": 300, "executions_per_minute": 60,
                                        "outbound_requests_per_minute": 2}});
    assert_eq!(app.put(&token, "/settings", limits).await.status(), StatusCode::OK);
    let body = |rate: u32| {
        json!({"name": "dealer", "system": "rest", "config": {"base_url": "http://127.0.0.1:9/"},
               "resilience": {"rate_limit": {"requests_per_minute": rate}}})
    };
    let refused = crate::helpers::assert_error(
        app.post(&token, "/connections", body(1_000_000)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(crate::helpers::detail_paths(&refused), ["resilience.rate_limit.requests_per_minute"]);
    let message = refused["error"]["details"][0]["message"].as_str().expect("message");
    assert!(message.contains("outbound quota of 2"), "{message}");
    let listed: Value = app.get(&token, "/connections").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 0, "nothing was stored: {listed}");

    // At the quota it is stored; raised past it on a replace, it is refused and kept as it was.
    let connection = app.create_connection(&token, body(2)).await;
    let path = format!("/connections/{}", connection["id"].as_str().expect("id"));
    let refused = crate::helpers::assert_error(
        app.put(&token, &path, body(3)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(crate::helpers::detail_paths(&refused), ["resilience.rate_limit.requests_per_minute"]);
    let stored: Value = app.get(&token, &path).await.json().await.expect("json");
    assert_eq!(stored["resilience"]["rate_limit"]["requests_per_minute"], 2, "{stored}");
}

#[tokio::test]
async fn a_quota_lowered_after_a_connection_was_saved_bounds_its_own_rate_limit() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (upstream, authority) = Upstream::start().await;
    upstream.up.store(true, Ordering::SeqCst);
    let policy = json!({"rate_limit": {"requests_per_minute": 60, "max_wait_ms": 0}});
    let (connection, id) = setup(&app, &token, &authority, policy, json!({})).await;
    let limits = json!({"rate_limits": {"api_requests_per_minute": 300, "executions_per_minute": 60,
                                        "outbound_requests_per_minute": 1}});
    assert_eq!(app.put(&token, "/settings", limits).await.status(), StatusCode::OK);
    // Saving the connection unchanged still works (its limit is not new); raising it is refused.
    let path = format!("/connections/{connection}");
    assert_eq!(app.put(&token, &path, json!({"timeout_ms": 20000})).await.status(), StatusCode::OK);
    let raised = json!({"resilience": {"rate_limit": {"requests_per_minute": 61, "max_wait_ms": 0}}});
    let body =
        assert_error(app.put(&token, &path, raised).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&body), ["resilience.rate_limit.requests_per_minute"], "{body}");
    // Not in the last 2 s of a minute, so both calls fall in one window.
    while SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() % 60 >= 58 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = app.execute(&token, &id, json!({})).await;
    assert_eq!(first["status"], "success", "{first}");
    let second = app.execute(&token, &id, json!({})).await;
    assert_eq!(second["status"], "failed", "{second}");
    assert!(second["error"].as_str().is_some_and(|e| e.contains("allows 1 calls a minute")), "{second}");
    assert_eq!(upstream.hits(), 1, "the quota of 1, not the connection's 60, held");
}
