//! Admission pushes back: past the enterprise's `rate_limits.max_queued_executions`, execute
//! and webhook triggers answer 429 `RATE_LIMIT` with `Retry-After` and leave nothing behind (no
//! execution, the idempotency key free, the executions-per-minute hit given back); a
//! sub-orchestration's child is never refused (its parent was admitted) and a schedule slot is
//! recorded as missed.
//!
//! Each test runs a node with one slot: an execution waiting at the mock's closed gate holds
//! it, so the executions admitted after it stay `queued` until the test opens the gate.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};
use crate::mock::MockServer;

/// A node that runs one execution at a time.
async fn one_slot(adjust: impl FnOnce(&mut dibop::Config)) -> TestApp {
    TestApp::spawn_with(|config| {
        config.max_in_flight = 1;
        config.enterprise_slots = Some(1);
        adjust(config);
    })
    .await
}

/// Sets the enterprise's queue bound and executions a minute (the rest far above the tests).
async fn limits(app: &TestApp, token: &str, max_queued: i64, per_minute: i64) {
    let body = json!({"rate_limits": {"api_requests_per_minute": 100_000, "executions_per_minute": per_minute,
                                      "outbound_requests_per_minute": 100_000, "max_queued_executions": max_queued}});
    let response = app.put(token, "/settings", body).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
}

/// A connection to the mock's gate and an orchestration whose one step waits there; answers
/// the orchestration's id.
async fn gated(app: &TestApp, token: &str, mock: &MockServer) -> String {
    app.create_connection(
        token,
        json!({"name": "dms", "system": "rest", "allowed_hosts": [mock.authority],
               "config": {"base_url": format!("{}/dms", mock.base),
                          "operations": {"gated": {"method": "GET", "path": "/gate/{key}"}}}}),
    )
    .await;
    app.create_orchestration(
        token,
        json!({"name": "Gated", "parameters": [{"name": "key", "type": "string", "required": true}],
               "steps": [{"name": "gated", "type": "api_call", "connection": "dms", "operation": "gated",
                          "parameters": {"key": "${parameters.key}"}, "timeout_ms": 60000}]}),
    )
    .await
}

/// `POST /orchestrations/{id}/execute` with `parameters`, `async` or waiting, with an
/// `Idempotency-Key` when given.
async fn execute(
    app: &TestApp,
    token: &str,
    id: &str,
    parameters: Value,
    run_async: bool,
    key: Option<&str>,
) -> Response {
    let mut request = app
        .client
        .post(app.url(&format!("/orchestrations/{id}/execute")))
        .bearer_auth(token)
        .json(&json!({"parameters": parameters, "async": run_async}));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("execute")
}

/// The execution id of a 202.
async fn accepted(response: Response) -> String {
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["execution_id"].as_str().expect("execution_id").to_owned()
}

/// Asserts a refusal for a full queue: 429 `RATE_LIMIT` in the SPEC shape with `Retry-After`.
async fn assert_queue_full(response: Response) {
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = assert_error(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT").await;
    let retry_after: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_queued_executions"), "a full queue, not another limit: {body}");
}

/// Polls `check` until it holds (60 s at most, then fails naming `what`).
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `total` of a list.
async fn total(app: &TestApp, token: &str, path: &str) -> i64 {
    let list: Value = app.get(token, path).await.json().await.expect("json");
    list["pagination"]["total"].as_i64().unwrap_or_else(|| panic!("no total: {list}"))
}

/// Starts one execution of `orchestration` that waits at the gate with the node's only slot,
/// then queues `queued` more behind it; answers every id.
async fn fill(app: &TestApp, token: &str, mock: &MockServer, orchestration: &str, queued: usize) -> Vec<String> {
    let mut ids = vec![accepted(execute(app, token, orchestration, json!({"key": "first"}), true, None).await).await];
    until("the first execution at the gate", || async { mock.count("/dms/gate/") == 1 }).await;
    for i in 0..queued {
        let key = format!("queued-{i}");
        ids.push(accepted(execute(app, token, orchestration, json!({"key": key}), true, None).await).await);
    }
    assert_eq!(total(app, token, "/executions?status=queued").await, i64::try_from(queued).expect("small"));
    ids
}

#[tokio::test]
async fn past_the_queue_bound_execute_answers_429_and_leaves_nothing_behind() {
    let app = one_slot(|_| {}).await;
    let token = app.admin_token().await;
    let mock = MockServer::start().await;
    let orchestration = gated(&app, &token, &mock).await;
    // Five executions a minute: the three admitted now, and the two at the end. Had the refused
    // requests kept their hits, the ones at the end would be over the limit.
    limits(&app, &token, 2, 5).await;
    let ids = fill(&app, &token, &mock, &orchestration, 2).await;

    // The queue holds its bound: async and waiting executes are refused, whatever their key.
    let refused = execute(&app, &token, &orchestration, json!({"key": "late"}), true, Some("late-delivery")).await;
    assert_queue_full(refused).await;
    assert_queue_full(execute(&app, &token, &orchestration, json!({"key": "late"}), false, None).await).await;
    assert_eq!(total(&app, &token, "/executions").await, 3, "a refused request started nothing");
    assert_eq!(total(&app, &token, "/executions?status=queued").await, 2);

    // Once the queue drains, the same request with the same key is admitted: the key was not
    // taken by the refusal, and the refused requests did not use up the executions a minute.
    mock.open_gate();
    for id in &ids {
        assert_eq!(app.wait_finished(&token, id).await["status"], "success");
    }
    let late =
        accepted(execute(&app, &token, &orchestration, json!({"key": "late"}), true, Some("late-delivery")).await)
            .await;
    assert!(!ids.contains(&late), "a new execution");
    let again = execute(&app, &token, &orchestration, json!({"key": "late"}), true, Some("late-delivery")).await;
    // 200 once the execution finished, 202 before.
    assert!(again.status().is_success(), "{}", again.status());
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["execution_id"].as_str(), Some(late.as_str()), "the key now names the admitted execution");
    assert_eq!(app.wait_finished(&token, &late).await["status"], "success");
}

#[tokio::test]
async fn past_the_queue_bound_a_webhook_answers_429_and_is_acknowledged_only_once_queued() {
    let app = one_slot(|_| {}).await;
    let token = app.admin_token().await;
    let mock = MockServer::start().await;
    let orchestration = gated(&app, &token, &mock).await;
    // Three a minute: the two admitted now and the delivery at the end.
    limits(&app, &token, 1, 3).await;
    let created = app
        .post(
            &token,
            "/webhooks",
            json!({"name": "oem relay", "orchestration_id": orchestration, "parameters": {"key": "${body.key}"}}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let (webhook, secret) = (created["id"].as_str().expect("id"), created["secret"].as_str().expect("secret"));
    let deliver = || {
        app.client
            .post(app.url(&format!("/webhooks/{webhook}")))
            .header("x-webhook-secret", secret)
            .header("content-type", "application/json")
            .body(r#"{"event":"vehicle_updated","key":"relayed"}"#)
            .send()
    };
    let ids = fill(&app, &token, &mock, &orchestration, 1).await;

    // The relay is told to come back, twice; nothing was queued for it.
    assert_queue_full(deliver().await.expect("deliver")).await;
    assert_queue_full(deliver().await.expect("deliver")).await;
    assert_eq!(total(&app, &token, "/executions?triggered_by=event").await, 0);
    assert_eq!(total(&app, &token, "/executions").await, 2);

    // Its retransmission after the queue drained is admitted, and the 202 names an execution
    // that is already stored.
    mock.open_gate();
    for id in &ids {
        assert_eq!(app.wait_finished(&token, id).await["status"], "success");
    }
    let execution = accepted(deliver().await.expect("deliver")).await;
    let stored = app.get(&token, &format!("/executions/{execution}")).await;
    assert_eq!(stored.status(), StatusCode::OK, "acknowledged before it was stored");
    let done = app.wait_finished(&token, &execution).await;
    assert_eq!((done["status"].as_str(), done["triggered_by"].as_str()), (Some("success"), Some("event")), "{done}");
}

#[tokio::test]
async fn a_sub_orchestration_of_an_admitted_execution_is_not_refused_by_a_full_queue() {
    let app = one_slot(|_| {}).await;
    let token = app.admin_token().await;
    let mock = MockServer::start().await;
    gated(&app, &token, &mock).await;
    limits(&app, &token, 1, 100_000).await;
    let leaf = app
        .create_orchestration(
            &token,
            json!({"name": "Leaf", "steps": [{"name": "x", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
        )
        .await;
    let parent = app
        .create_orchestration(
            &token,
            json!({"name": "Parent", "steps": [
                {"name": "gated", "type": "api_call", "connection": "dms", "operation": "gated",
                 "parameters": {"key": "parent"}, "timeout_ms": 60000},
                {"name": "child", "type": "sub_orchestration", "orchestration": "Leaf"}]}),
        )
        .await;
    // The parent holds the only slot at the gate; a leaf queued behind it fills the queue.
    let parent_id = accepted(execute(&app, &token, &parent, json!({}), true, None).await).await;
    until("the parent at the gate", || async { mock.count("/dms/gate/") == 1 }).await;
    let queued = accepted(execute(&app, &token, &leaf, json!({}), true, None).await).await;
    assert_queue_full(execute(&app, &token, &leaf, json!({}), true, None).await).await;

    // The parent goes on and starts its child while the queue is still full (the queued leaf
    // cannot be claimed before the parent frees the slot): the child is admitted and runs.
    mock.open_gate();
    let done = app.wait_finished(&token, &parent_id).await;
    assert_eq!(done["status"], "success", "{done}");
    let child_id = done["steps"][1]["input"]["execution_id"].as_str().expect("child id");
    let child: Value = app.get(&token, &format!("/executions/{child_id}")).await.json().await.expect("json");
    assert_eq!((child["triggered_by"].as_str(), child["status"].as_str()), (Some("orchestration"), Some("success")));
    assert_eq!(app.wait_finished(&token, &queued).await["status"], "success");
}

#[tokio::test]
async fn a_schedule_slot_past_the_queue_bound_is_recorded_as_missed_and_later_slots_fire() {
    let app = one_slot(|config| config.min_cron_interval_secs = 1).await;
    let token = app.admin_token().await;
    let mock = MockServer::start().await;
    let orchestration = gated(&app, &token, &mock).await;
    limits(&app, &token, 1, 100_000).await;
    let ids = fill(&app, &token, &mock, &orchestration, 1).await;
    let scheduled = app
        .create_orchestration(
            &token,
            json!({"name": "Every second", "trigger": {"type": "schedule", "cron": "* * * * * *", "timezone": "UTC"},
                   "steps": [{"name": "x", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
        )
        .await;
    let shown = || async {
        let shown: Value = app.get(&token, &format!("/orchestrations/{scheduled}")).await.json().await.expect("json");
        shown["schedule_error"].as_str().unwrap_or_default().to_owned()
    };
    until("a slot recorded as missed", || async { !shown().await.is_empty() }).await;
    let error = shown().await;
    assert!(error.contains("max_queued_executions"), "{error}");
    let runs = format!("/orchestrations/{scheduled}/executions");
    assert_eq!(total(&app, &token, &runs).await, 0, "a missed slot starts nothing");

    // Nothing failed: once the queue drains, the next slots fire.
    mock.open_gate();
    for id in &ids {
        assert_eq!(app.wait_finished(&token, id).await["status"], "success");
    }
    until("a later slot's execution", || async { total(&app, &token, &format!("{runs}?status=success")).await > 0 })
        .await;
}

#[tokio::test]
async fn past_the_queue_bound_a_retry_and_a_replay_are_refused_with_nothing_changed() {
    let app = one_slot(|_| {}).await;
    let token = app.admin_token().await;
    let mock = MockServer::start().await;
    let orchestration = gated(&app, &token, &mock).await;
    limits(&app, &token, 1, 100_000).await;
    // An execution that gives up at the closed gate: failed, to retry and to replay.
    let impatient = app
        .create_orchestration(
            &token,
            json!({"name": "Impatient", "steps": [{"name": "gated", "type": "api_call", "connection": "dms",
                   "operation": "gated", "parameters": {"key": "impatient"}, "timeout_ms": 200}]}),
        )
        .await;
    let failed = accepted(execute(&app, &token, &impatient, json!({}), true, None).await).await;
    assert_eq!(app.wait_finished(&token, &failed).await["status"], "failed");
    let ids = fill(&app, &token, &mock, &orchestration, 1).await;

    assert_queue_full(app.post(&token, &format!("/executions/{failed}/retry"), json!({})).await).await;
    assert_queue_full(app.post(&token, "/executions/replay", json!({"execution_ids": [failed]})).await).await;
    let unchanged: Value = app.get(&token, &format!("/executions/{failed}")).await.json().await.expect("json");
    assert_eq!(unchanged["status"], "failed", "{unchanged}");
    assert_eq!(total(&app, &token, "/executions").await, 3, "no replay was stored");

    mock.open_gate();
    for id in &ids {
        assert_eq!(app.wait_finished(&token, id).await["status"], "success");
    }
    let replayed = app.post(&token, "/executions/replay", json!({"execution_ids": [failed]})).await;
    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    let replayed: Value = replayed.json().await.expect("json");
    let replay = replayed["execution_ids"][0].as_str().expect("replay id");
    assert_eq!(app.wait_finished(&token, replay).await["status"], "success");
    let retried = app.post(&token, &format!("/executions/{failed}/retry"), json!({})).await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    assert_eq!(app.wait_finished(&token, &failed).await["status"], "success");
}
