//! An execution's life on a node: it holds a worker only while it runs (a long wait or a child
//! parks it, and its parent with it), a cancel reaches it wherever it is, a fault of the engine
//! ends it as `INTERNAL` without internals in the answer, a stopping node hands it back within
//! its grace period, and one enterprise holds at most its share of the node's workers.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, wait_per_item};

/// Polls until the execution reaches `status` (or any final status), 30 s at most.
async fn wait_status(app: &TestApp, token: &str, execution: &str, status: &str) -> Value {
    for _ in 0..600 {
        let detail: Value = app.get(token, &format!("/executions/{execution}")).await.json().await.expect("json");
        if detail["status"] == status || detail["finished_at"].is_string() {
            return detail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {execution} never reached {status}");
}

/// `count` items for [`wait_per_item`], queued.
fn items(count: usize) -> Value {
    json!({"parameters": {"items": vec![1; count]}, "async": true})
}

#[tokio::test]
async fn cancel_reaches_a_wait_inside_a_for_each_body() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // Short waits (these run in the worker) over 30 items: 45 s in all.
    let id = app.create_orchestration(&token, wait_per_item("Many short waits", 1_500)).await;
    let queued = app.execute(&token, &id, items(30)).await;
    let execution = queued["execution_id"].as_str().expect("id");
    wait_status(&app, &token, execution, "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = app.post(&token, &format!("/executions/{execution}/cancel"), json!({})).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    // Well before the waits would have ended.
    let detail = app.wait_finished(&token, execution).await;
    assert_eq!(detail["status"], "cancelled", "{detail}");
    assert_eq!(detail["error_code"], "CANCELLED", "{detail}");

    // A long wait in a body parks the execution; cancelling it ends it at once.
    let id = app.create_orchestration(&token, wait_per_item("Long body wait", 50_000)).await;
    let queued = app.execute(&token, &id, items(1)).await;
    let execution = queued["execution_id"].as_str().expect("id");
    wait_status(&app, &token, execution, "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.post(&token, &format!("/executions/{execution}/cancel"), json!({})).await.status(), StatusCode::OK);
    let detail = app.wait_finished(&token, execution).await;
    assert_eq!(detail["status"], "cancelled", "{detail}");
    assert_eq!(detail["error"], "cancelled before step each", "{detail}");
}

#[tokio::test]
async fn a_parked_child_parks_its_parent_and_a_cancelled_parent_cancels_it() {
    // One worker: a parent that waited for its child in the worker would hold it.
    let app = TestApp::spawn_with(|config| config.max_in_flight = 1).await;
    let token = app.admin_token().await;
    app.create_orchestration(
        &token,
        json!({"name": "Slow child", "steps": [
            {"name": "pause", "type": "wait", "duration_ms": 3_000},
            {"name": "done", "type": "transform", "transform": "map", "mapping": {"child": "done"}}]}),
    )
    .await;
    let parent = app.create_orchestration(&token, json!({"name": "Patient parent", "steps": [{"name": "child", "type": "sub_orchestration", "orchestration": "Slow child"}],
               "output": {"from_child": "${child.child}"}}),
    )
    .await;
    let quick = app.create_orchestration(&token, json!({"name": "Quick", "steps": [{"name": "hi", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
    )
    .await;
    let queued = app.execute(&token, &parent, json!({"parameters": {}, "async": true})).await;
    let execution = queued["execution_id"].as_str().expect("id").to_owned();
    wait_status(&app, &token, &execution, "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = app.execute(&token, &quick, json!({"parameters": {}})).await;
    assert_eq!(run["status"], "success", "{run}");
    // Had the parent held the worker while its child waited, the quick run would have come last.
    let detail: Value = app.get(&token, &format!("/executions/{execution}")).await.json().await.expect("json");
    assert_eq!(detail["status"], "running", "{detail}");
    let done = app.wait_finished(&token, &execution).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"from_child": "done"}));

    // Cancelled while both are parked: the child goes with it.
    let forever = app
        .create_orchestration(
            &token,
            json!({"name": "Long child", "steps": [{"name": "pause", "type": "wait", "duration_ms": 600_000}]}),
        )
        .await;
    let parent = app.create_orchestration(&token, json!({"name": "Long parent", "steps": [{"name": "child", "type": "sub_orchestration", "orchestration": "Long child"}]}),
    )
    .await;
    let queued = app.execute(&token, &parent, json!({"parameters": {}, "async": true})).await;
    let execution = queued["execution_id"].as_str().expect("id").to_owned();
    let child = loop {
        let page: Value =
            app.get(&token, &format!("/orchestrations/{forever}/executions")).await.json().await.expect("json");
        if let Some(id) = page["data"][0]["id"].as_str() {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.post(&token, &format!("/executions/{execution}/cancel"), json!({})).await.status(), StatusCode::OK);
    let detail = app.wait_finished(&token, &execution).await;
    assert_eq!(detail["status"], "cancelled", "{detail}");
    let detail = app.wait_finished(&token, &child).await;
    assert_eq!(detail["status"], "cancelled", "{detail}");
}

#[tokio::test]
async fn a_fault_of_the_engine_ends_the_execution_with_code_internal() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Pause then map", "steps": [
            {"name": "pause", "type": "wait", "duration_ms": 2_100},
            {"name": "map", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
        )
        .await;
    let queued = app.execute(&token, &id, json!({"parameters": {}, "async": true})).await;
    let execution = queued["execution_id"].as_str().expect("id");
    wait_status(&app, &token, execution, "running").await;
    // While it is parked, its stored parameters become unreadable: resuming cannot go on.
    app.sql(&format!("UPDATE executions SET parameters = 'not json' WHERE id = '{execution}'")).await;
    let detail = app.wait_finished(&token, execution).await;
    assert_eq!(detail["status"], "failed", "{detail}");
    assert_eq!(detail["error_code"], "INTERNAL", "{detail}");
    // No internals leak into the answer (they are in the server's log with the execution id).
    assert_eq!(detail["error"], "internal engine error", "{detail}");

    // A failing step says so.
    let failing = app.create_orchestration(&token, json!({"name": "Not a list", "parameters": [{"name": "x", "type": "string", "default": "nope"}],
               "steps": [{"name": "each", "type": "for_each", "items": "${parameters.x}",
                          "steps": [{"name": "m", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}]}),
    )
    .await;
    let run = app.execute(&token, &failing, json!({"parameters": {}})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error_code"], "STEP_FAILED", "{run}");
}

#[tokio::test]
async fn shutdown_hands_a_running_execution_back_within_the_grace_period() {
    let mut first = TestApp::spawn_with(|config| {
        config.shutdown_grace_ms = 300;
        config.lease_ms = 60_000;
    })
    .await;
    let token = first.admin_token().await;
    // Short waits run in the worker: the execution is running when the node stops.
    let id = first.create_orchestration(&token, wait_per_item("Survives shutdown", 1_500)).await;
    let queued = first.execute(&token, &id, items(3)).await;
    let execution = queued["execution_id"].as_str().expect("id").to_owned();
    wait_status(&first, &token, &execution, "running").await;
    let shared = first
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", first.data_dir().join("dibop.db").display()));
    // Stopping used to wait for every execution (forever for a far wait); now it is bounded.
    tokio::time::timeout(Duration::from_secs(20), first.stop_keep_data())
        .await
        .expect("the server stops within its grace period")
        .expect("serve ended cleanly");
    // Handed back: a node on the same database resumes it at once (the lease is a minute, so
    // only the hand-back lets it), and it finishes.
    let second = TestApp::spawn_with(|config| config.database_url = Some(shared.into())).await;
    let token = second.admin_token().await;
    let detail = wait_status(&second, &token, &execution, "success").await;
    assert_eq!(detail["status"], "success", "{detail}");
}

#[tokio::test]
async fn one_tenant_cannot_occupy_every_worker_of_a_node() {
    let app = TestApp::spawn_with(|config| config.max_in_flight = 2).await;
    let greedy = app.admin_token().await;
    // Short waits run in the worker: 14 of them hold it for 21 s.
    let slow = app.create_orchestration(&greedy, wait_per_item("Greedy", 1_500)).await;
    for _ in 0..4 {
        let queued = app.execute(&greedy, &slow, items(14)).await;
        assert!(queued["execution_id"].is_string(), "{queued}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = app.second_enterprise("patient").await;
    let quick = app.create_orchestration(&other, json!({"name": "Quick", "steps": [{"name": "hi", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
    )
    .await;
    // With two workers and one per enterprise at most, the greedy tenant holds one; this
    // execution gets the other at once instead of queueing behind 20-second waits.
    let run = app.execute(&other, &quick, json!({"parameters": {}})).await;
    assert_eq!(run["status"], "success", "{run}");
}
