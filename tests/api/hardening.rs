//! A hostile tenant against the engine: text that used to panic a worker, waits that used to
//! hold workers forever, a tenant filling the node, schedules that stopped other schedules,
//! cycles and unbounded fan-out.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};

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

fn body_wait(name: &str, ms: u64) -> Value {
    json!({"name": name, "steps": [
        {"name": "each", "type": "for_each", "items": "${parameters.items}",
         "steps": [{"name": "pause", "type": "wait", "duration_ms": ms}]}],
        "parameters": [{"name": "items", "type": "array", "default": [1]}]})
}

#[tokio::test]
async fn non_ascii_text_in_conditions_and_windows_is_handled_not_panicked() {
    let app = TestApp::spawn_with(|config| config.max_in_flight = 2).await;
    let token = app.admin_token().await;
    let id = app.create_orchestration(&token, json!({"name": "Umlauts", "parameters": [{"name": "city", "type": "string", "required": true}],
               "steps": [{"name": "where", "type": "condition", "condition": "${parameters.city} == Zürich",
                          "then": [{"name": "swiss", "type": "transform", "transform": "map", "mapping": {"desk": "CH – Zürich"}}]}],
               "output": {"branch": "${where.branch}"}}),
    )
    .await;
    // More executions than workers: a panicking parser used to end a worker per execution.
    for city in ["Zürich", "Köln", "東京", "Zürich", "🚗"] {
        let run = app.execute(&token, &id, json!({"parameters": {"city": city}})).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["output"]["branch"] == "then", city == "Zürich", "{city}: {run}");
    }
    for path in ["/observability/sla?window=7é", "/api-calls/systems?window=é", "/observability/sla?window=1ß"] {
        assert_error(app.get(&token, path).await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    }
    let rule = json!({"name": "rate", "type": "error_rate_spike", "condition": {"threshold_percent": 10, "window": "5é"},
                      "channels": [{"type": "log"}]});
    assert_error(app.post(&token, "/alert-rules", rule).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
        .await;
}

/// `count` items for [`body_wait`].
fn items(count: usize) -> Value {
    json!({"parameters": {"items": vec![1; count]}, "async": true})
}

#[tokio::test]
async fn cancel_reaches_a_wait_inside_a_for_each_body() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // Short waits (these run in the worker) over 30 items: 45 s in all.
    let id = app.create_orchestration(&token, body_wait("Many short waits", 1_500)).await;
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
    let id = app.create_orchestration(&token, body_wait("Long body wait", 50_000)).await;
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
    let id = first.create_orchestration(&token, body_wait("Survives shutdown", 1_500)).await;
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
    let slow = app.create_orchestration(&greedy, body_wait("Greedy", 1_500)).await;
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

#[tokio::test]
async fn a_schedule_that_cannot_fire_is_recorded_and_does_not_stop_the_others() {
    let app = TestApp::spawn_with(|config| config.min_cron_interval_secs = 1).await;
    let token = app.admin_token().await;
    let every_second = |name: &str| {
        json!({"name": name, "trigger": {"type": "schedule", "cron": "* * * * * *", "timezone": "UTC"},
               "steps": [{"name": "echo", "type": "transform", "transform": "map", "mapping": {"ok": true}}]})
    };
    // A default of the wrong type is refused at save.
    let mut wrong_default = every_second("Wrong default");
    wrong_default["parameters"] = json!([{"name": "count", "type": "integer", "default": "many"}]);
    let body = assert_error(
        app.post(&token, "/orchestrations", wrong_default).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["parameters[0].default"], "{body}");

    // One schedule whose stored definition cannot bind its parameters (as an older version
    // could store it), created first so the scheduler meets it first; another tenant's
    // schedule beside it.
    let broken = app.create_orchestration(&token, every_second("Broken")).await;
    let mut stored = every_second("Broken");
    stored["parameters"] = json!([{"name": "region", "type": "string", "required": true}]);
    app.sql(&format!(
        "UPDATE orchestrations SET definition = '{}' WHERE id = '{broken}'",
        stored.to_string().replace('\'', "''")
    ))
    .await;
    let other = app.second_enterprise("punctual").await;
    let healthy = app.create_orchestration(&other, every_second("Healthy")).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;

    let runs: Value =
        app.get(&other, &format!("/orchestrations/{healthy}/executions")).await.json().await.expect("json");
    assert!(runs["pagination"]["total"].as_i64().unwrap_or(0) >= 2, "the healthy schedule fired: {runs}");
    let shown: Value = app.get(&token, &format!("/orchestrations/{broken}")).await.json().await.expect("json");
    let error = shown["schedule_error"].as_str().unwrap_or_default();
    assert!(error.contains("parameters.region is required"), "the failure is on the orchestration: {shown}");
    let runs: Value =
        app.get(&token, &format!("/orchestrations/{broken}/executions")).await.json().await.expect("json");
    assert_eq!(runs["pagination"]["total"], 0, "{runs}");
}

#[tokio::test]
async fn the_execution_limit_applies_to_schedules_and_is_shown_on_the_orchestration() {
    let app = TestApp::spawn_with(|config| config.min_cron_interval_secs = 1).await;
    let token = app.admin_token().await;
    app.sql("UPDATE enterprises SET executions_per_minute = 1").await;
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Too often", "trigger": {"type": "schedule", "cron": "* * * * * *", "timezone": "UTC"},
               "steps": [{"name": "echo", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
        )
        .await;
    let mut shown = Value::Null;
    for _ in 0..200 {
        shown = app.get(&token, &format!("/orchestrations/{id}")).await.json().await.expect("json");
        if shown["schedule_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs: Value = app.get(&token, &format!("/orchestrations/{id}/executions")).await.json().await.expect("json");
    // One per minute: one, or two when the run crossed into the next minute's window.
    let total = runs["pagination"]["total"].as_i64().unwrap_or(0);
    assert!((1..=2).contains(&total), "{runs}");
    let error = shown["schedule_error"].as_str().unwrap_or_default();
    assert!(error.contains("rate limit"), "{shown}");
    assert!(shown["schedule_error_at"].is_string(), "{shown}");
}

#[tokio::test]
async fn sub_orchestrations_count_against_the_limit_and_wait_for_it_and_cycles_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let leaf = json!({"name": "Leaf", "steps": [{"name": "x", "type": "transform", "transform": "map", "mapping": {"ok": true}}]});
    let leaf_id = app.create_orchestration(&token, leaf.clone()).await;
    let parent = app.create_orchestration(&token, json!({"name": "Parent", "steps": [{"name": "child", "type": "sub_orchestration", "orchestration": "Leaf"}]}),
    )
    .await;
    // Leaf -> Parent -> Leaf would be a cycle.
    let mut cyclic = leaf;
    cyclic["steps"] = json!([{"name": "back", "type": "sub_orchestration", "orchestration": "Parent"}]);
    let body = assert_error(
        app.put(&token, &format!("/orchestrations/{leaf_id}"), cyclic).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["steps[0].orchestration"], "{body}");
    assert!(body["error"]["details"][0]["message"].as_str().unwrap_or_default().contains("cycle"), "{body}");

    // The child is one execution too many for the minute: the admitted parent waits for the
    // next minute's window (parked) and then completes; it does not fail.
    app.sql("UPDATE enterprises SET executions_per_minute = 1").await;
    // Late in a minute (so the wait is short), not so late that the parent starts in the next.
    while !(50..55).contains(&(chrono::Utc::now().timestamp() % 60)) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let minute = chrono::Utc::now().timestamp() / 60;
    let started = app.execute(&token, &parent, json!({"parameters": {}, "async": true})).await;
    let id = started["execution_id"].as_str().unwrap_or_else(|| panic!("{started}")).to_owned();
    let run = app.wait_finished(&token, &id).await;
    assert_eq!(run["status"], "success", "the child waited for the limit's next window: {run}");
    assert!(chrono::Utc::now().timestamp() / 60 > minute, "it ran in a later minute");
}

#[tokio::test]
async fn fan_out_is_bounded_with_a_clear_error() {
    let app = TestApp::spawn_with(|config| {
        config.max_parallel_branches = 2;
        config.max_for_each_items = 3;
    })
    .await;
    let token = app.admin_token().await;
    let map = |name: &str| json!({"name": name, "steps": [{"name": format!("{name}_x"), "type": "transform", "transform": "map", "mapping": {"ok": true}}]});
    let wide = app.create_orchestration(&token, json!({"name": "Wide", "steps": [{"name": "all", "type": "parallel", "branches": [map("a"), map("b"), map("c")]}]}),
    )
    .await;
    let run = app.execute(&token, &wide, json!({"parameters": {}})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap_or_default().contains("at most 2"), "{run}");
    let many = app.create_orchestration(&token, body_wait("Many", 1)).await;
    let run = app.execute(&token, &many, json!({"parameters": {"items": [1, 2, 3, 4]}})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap_or_default().contains("at most 3"), "{run}");
    let branches: Vec<Value> = (0..65).map(|i| map(&format!("b{i}"))).collect();
    let body = assert_error(
        app.post(
            &token,
            "/orchestrations",
            json!({"name": "Too wide", "steps": [{"name": "all", "type": "parallel", "branches": branches}]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(detail_paths(&body).contains(&"steps[0].branches"), "{body}");
}

#[tokio::test]
async fn a_yaml_alias_bomb_is_refused_while_parsing() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // Nine levels of ten aliases each: 10^9 nodes once expanded, from a few hundred bytes.
    let mut yaml = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        yaml.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    yaml.push_str("name: bomb\nsteps: []\n");
    let response = app
        .client
        .post(app.url("/orchestrations"))
        .bearer_auth(&token)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .expect("send");
    let body = assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("expands to more than"), "{body}");
}

#[tokio::test]
async fn viewers_read_executions_and_traces_with_personal_data_masked() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let id = app.create_orchestration(&token, json!({"name": "Lead intake", "parameters": [{"name": "email", "type": "string", "required": true}],
               "steps": [{"name": "lead", "type": "transform", "transform": "map",
                          "mapping": {"customer": {"first_name": "Ann", "email": "${parameters.email}"}, "source": "web"}}]}),
    )
    .await;
    let run = app.execute(&token, &id, json!({"parameters": {"email": "ann@example.com"}})).await;
    let execution = run["execution_id"].as_str().expect("id");
    app.create_user(&token, "viewer@example.com", "viewer").await;
    let viewer = app.token("viewer@example.com", crate::helpers::ADMIN_PASSWORD).await;

    let seen: Value = app.get(&viewer, &format!("/executions/{execution}")).await.json().await.expect("json");
    assert_eq!(seen["parameters"]["email"], "****", "{seen}");
    assert_eq!(seen["steps"][0]["output"]["customer"], json!({"first_name": "****", "email": "****"}), "{seen}");
    assert_eq!(seen["steps"][0]["output"]["source"], "web");
    for path in [format!("/executions/{execution}/trace"), format!("/orchestrations/{id}/executions")] {
        let text = app.get(&viewer, &path).await.text().await.expect("text");
        assert!(!text.contains("ann@example.com"), "{path}: {text}");
    }
    let admin_view: Value = app.get(&token, &format!("/executions/{execution}")).await.json().await.expect("json");
    assert_eq!(admin_view["parameters"]["email"], "ann@example.com");
}

#[tokio::test]
async fn open_metrics_name_no_tenant_systems() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // One execution of its own, so that the executions family has a value whatever else ran.
    let id = app.create_orchestration(&token, json!({"name": "Counted", "steps": [{"name": "m", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
    )
    .await;
    let run = app.execute(&token, &id, json!({"parameters": {}})).await;
    assert_eq!(run["status"], "success", "{run}");
    let metrics = app.client.get(app.url("/metrics").replace("/api/v1", "")).send().await.expect("send");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("dibop_executions_total{status=\"success\"}"), "{text}");
    assert!(!text.contains("system=\""), "an open /metrics carries no system labels: {text}");
}

#[tokio::test]
async fn slots_that_came_due_while_no_node_ran_are_recorded_as_missed() {
    let mut first = TestApp::spawn().await;
    let token = first.admin_token().await;
    let id = first
        .create_orchestration(
            &token,
            json!({"name": "Hourly", "trigger": {"type": "schedule", "cron": "0 * * * *", "timezone": "UTC"},
               "steps": [{"name": "echo", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
        )
        .await;
    first.stop_keep_data().await.expect("stopped");
    // The cluster was down for three hours after the schedule was saved.
    first
        .sql(&format!("UPDATE orchestrations SET updated_at = updated_at - {} WHERE id = '{id}'", 3 * 3_600_000))
        .await;
    let shared = first
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", first.data_dir().join("dibop.db").display()));
    let second = TestApp::spawn_with(|config| config.database_url = Some(shared.into())).await;
    let token = second.admin_token().await;
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = second.get(&token, &format!("/orchestrations/{id}")).await.json().await.expect("json");
        if shown["schedule_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shown["schedule_error"], "no node was running", "{shown}");
}

#[tokio::test]
async fn sealed_credentials_copied_to_another_connection_do_not_open_there() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let mock = crate::mock::MockServer::start().await;
    let connection = |name: &str, key: &str| {
        json!({"name": name, "system": "vpic", "config": {"base_url": format!("{}/vpic", mock.base)},
               "allowed_hosts": [mock.authority], "credentials": {"api_key": key}})
    };
    let victim = app.create_connection(&token, connection("victim", "victim-key-1234")).await;
    let thief = app.create_connection(&token, connection("thief", "thief-key-5678")).await;
    // Someone with write access to the table moves the victim's sealed credentials.
    app.sql(&format!(
        "UPDATE connections SET credentials = (SELECT credentials FROM connections WHERE id = '{}') WHERE id = '{}'",
        victim["id"].as_str().expect("id"),
        thief["id"].as_str().expect("id")
    ))
    .await;
    let response = app
        .post(
            &token,
            &format!("/connections/{}/test", thief["id"].as_str().expect("id")),
            json!({"operation": "decode_vin", "input": {"vin": "1HGCM82633A004352"}}),
        )
        .await;
    let body = assert_error(response, StatusCode::CONFLICT, "CONFLICT").await;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("another connection"), "{body}");
    assert_eq!(mock.headers_of("DecodeVinValues").len(), 0, "the victim's key was never sent");
    // The tampered connection still lists (with no credentials) and can be given new ones.
    let listed = app.get(&token, "/connections").await;
    assert_eq!(listed.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_step_output_past_its_bound_fails_the_step_with_a_clear_error() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // 24 copies of a 1.5 MB parameter: 36 MB, past the 32 MiB a step's output may be.
    let copies: serde_json::Map<String, Value> =
        (0..24).map(|i| (format!("c{i}"), json!("${parameters.blob}"))).collect();
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Amplifier", "parameters": [{"name": "blob", "type": "string", "required": true}],
               "steps": [{"name": "copies", "type": "transform", "transform": "map", "mapping": copies}]}),
        )
        .await;
    let blob = "x".repeat(1_500_000);
    let run = app.execute(&token, &id, json!({"parameters": {"blob": blob}})).await;
    assert_eq!(run["status"], "failed", "{}", &run.to_string()[..300.min(run.to_string().len())]);
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("at most 33554432"), "{error}");
}

#[tokio::test]
async fn a_long_uri_is_refused_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let path = format!("/users?filter={}", "a".repeat(9_000));
    let body = assert_error(app.get(&token, &path).await, StatusCode::URI_TOO_LONG, "URI_TOO_LONG").await;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("8192"), "{body}");
}

#[tokio::test]
async fn a_refused_upload_leaves_no_compiled_artifact_behind() {
    use sha2::Digest;
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let bytes = crate::helpers::guest("not_a_plugin");
    let sha = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_error(app.upload(&token, bytes, None).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let artifacts = app.data_dir().join("plugins").join("artifacts");
    let left: Vec<String> = std::fs::read_dir(&artifacts)
        .expect("artifacts dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&sha))
        .collect();
    assert!(left.is_empty(), "compiled artifacts of a refused upload: {left:?}");
}
