//! Retry policies that know the error, through HTTP: `retry_on` by HTTP status, range and
//! class overrides what the connector calls retryable, `never_retry` wins over both, connection
//! errors and timeouts are classes of their own, and a policy that does not read is refused
//! at its path.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};

/// A system that answers each key with the statuses it was scripted with, in turn (200 once
/// the script is used up), and counts the requests per key.
#[derive(Clone, Default)]
struct Scripted {
    scripts: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

impl Scripted {
    async fn start() -> (Self, String) {
        let system = Self::default();
        let app = Router::new().route("/seq/{key}", get(answer)).with_state(system.clone());
        (system, crate::helpers::serve(app).await)
    }

    fn script(&self, key: &str, statuses: &[u16]) {
        self.scripts.lock().expect("lock").insert(key.to_owned(), statuses.iter().copied().collect());
    }

    fn seen(&self, key: &str) -> usize {
        self.seen.lock().expect("lock").get(key).copied().unwrap_or(0)
    }
}

async fn answer(State(system): State<Scripted>, Path(key): Path<String>) -> (StatusCode, axum::Json<Value>) {
    *system.seen.lock().expect("lock").entry(key.clone()).or_default() += 1;
    let status = system.scripts.lock().expect("lock").get_mut(&key).and_then(VecDeque::pop_front).unwrap_or(200);
    (StatusCode::from_u16(status).expect("status"), axum::Json(json!({"key": key, "status": status})))
}

fn connection(name: &str, authority: &str) -> Value {
    json!({"name": name, "system": "rest", "allowed_hosts": [authority],
           "config": {"base_url": format!("http://{authority}"),
                      "operations": {"seq": {"method": "GET", "path": "/seq/{key}"}}}})
}

/// An orchestration of one call of `connection` for `key` under `retry`.
async fn calling(app: &TestApp, token: &str, connection: &str, key: &str, retry: Value) -> String {
    let step = json!({"name": "call", "type": "api_call", "connection": connection, "operation": "seq",
                      "parameters": {"key": key}, "retry": retry});
    app.create_orchestration(token, json!({"name": format!("Call {key}"), "steps": [step]})).await
}

/// Runs it and answers (status, attempts of its step).
async fn run(app: &TestApp, token: &str, orchestration: &str) -> (String, i64) {
    let run = app.run_to_end(token, orchestration, json!({})).await;
    let attempts = run["steps"][0]["attempts"].as_i64().unwrap_or_else(|| panic!("{run}"));
    (run["status"].as_str().expect("status").to_owned(), attempts)
}

#[tokio::test]
async fn statuses_and_ranges_override_the_connector_and_never_retry_wins() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (system, authority) = Scripted::start().await;
    app.create_connection(&token, connection("dms", &authority)).await;
    let policy = |extra: Value| {
        let mut retry = json!({"max_attempts": 3, "initial_interval_ms": 10, "jitter": 0.5});
        for (key, value) in extra.as_object().expect("fields") {
            retry[key] = value.clone();
        }
        retry
    };
    let cases = [
        // A class of statuses, retried to success.
        ("a", vec![503, 502], json!({"retry_on": ["5xx"]}), "success", 3),
        // 404 is not retryable for the connector; the policy says it is.
        ("b", vec![404], json!({"retry_on": ["404"]}), "success", 2),
        // 503 is retryable for the connector; never_retry says it is not.
        ("c", vec![503], json!({"never_retry": ["503"]}), "failed", 1),
        // 422 is outside the range retried.
        ("d", vec![422], json!({"retry_on": ["500-599", "timeout"]}), "failed", 1),
        // Without rules the connector decides: a 500 is retried, up to the attempts.
        ("e", vec![500, 500, 500], json!({}), "failed", 3),
    ];
    for (key, script, rules, status, attempts) in cases {
        system.script(key, &script);
        let id = calling(&app, &token, "dms", key, policy(rules.clone())).await;
        assert_eq!(run(&app, &token, &id).await, (status.to_owned(), attempts), "{key}: {rules}");
        assert_eq!(system.seen(key), usize::try_from(attempts).expect("attempts"), "{key}");
    }
}

#[tokio::test]
async fn connection_errors_are_a_class_of_their_own() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // A port nothing listens on: every request is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    let mut gone = connection("gone", &closed);
    // The circuit stays closed: this is about the retry policy.
    gone["resilience"] = json!({"circuit_breaker": {"failure_threshold": 100}});
    app.create_connection(&token, gone).await;
    let retried = json!({"max_attempts": 3, "initial_interval_ms": 10, "retry_on": ["connection"]});
    let id = calling(&app, &token, "gone", "x", retried).await;
    assert_eq!(run(&app, &token, &id).await, ("failed".to_owned(), 3));
    // The connector calls a refused connection retryable; never_retry says otherwise.
    let never = json!({"max_attempts": 3, "initial_interval_ms": 10, "never_retry": ["connection"]});
    let id = calling(&app, &token, "gone", "y", never).await;
    assert_eq!(run(&app, &token, &id).await, ("failed".to_owned(), 1));
    // A timeout is not a connection error.
    let timeouts_only = json!({"max_attempts": 3, "initial_interval_ms": 10, "retry_on": ["timeout"]});
    let id = calling(&app, &token, "gone", "z", timeouts_only).await;
    assert_eq!(run(&app, &token, &id).await, ("failed".to_owned(), 1));
}

#[tokio::test]
async fn a_long_pause_between_attempts_parks_the_execution_and_frees_its_slot() {
    // One slot: were the waiting step to hold it, nothing else could run meanwhile.
    let app = TestApp::spawn_with(|config| {
        config.max_in_flight = 1;
        config.enterprise_slots = Some(1);
    })
    .await;
    let token = app.admin_token().await;
    let (system, authority) = Scripted::start().await;
    app.create_connection(&token, connection("dms", &authority)).await;
    system.script("later", &[503]);
    let patient = calling(&app, &token, "dms", "later", json!({"max_attempts": 2, "initial_interval_ms": 5000})).await;
    let quick = calling(&app, &token, "dms", "now", json!({"max_attempts": 1})).await;
    let started = app.execute(&token, &patient, json!({"async": true})).await;
    let id = started["execution_id"].as_str().unwrap_or_else(|| panic!("{started}")).to_owned();
    for _ in 0..600 {
        if system.seen("later") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let done = app.execute(&token, &quick, json!({})).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(system.seen("later"), 1, "the quick execution ran while the other waited for its next attempt");
    let run = app.wait_finished(&token, &id).await;
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["steps"][0]["attempts"], 2, "{run}");
    assert_eq!(system.seen("later"), 2);
}

#[tokio::test]
async fn a_policy_that_does_not_read_is_refused_at_its_paths() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (_, authority) = Scripted::start().await;
    app.create_connection(&token, connection("dms", &authority)).await;
    let retry = json!({"max_attempts": 2, "max_interval_ms": 3_600_001, "jitter": 2,
                       "retry_on": ["503", "600"], "never_retry": ["a b"]});
    let step = json!({"name": "call", "type": "api_call", "connection": "dms", "operation": "seq",
                      "parameters": {"key": "k"}, "retry": retry});
    let body = assert_error(
        app.post(&token, "/orchestrations", json!({"name": "Bad", "steps": [step]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(
        detail_paths(&body),
        [
            "steps[0].retry.max_interval_ms",
            "steps[0].retry.jitter",
            "steps[0].retry.retry_on[1]",
            "steps[0].retry.never_retry[0]"
        ],
        "{body}"
    );
    let listed: Value = app.get(&token, "/orchestrations").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 0, "nothing was stored: {listed}");
}
