//! Schedules: what a schedule would bind is checked when it is saved, and a slot that cannot
//! fire (its stored definition does not bind, the enterprise's execution limit is spent, no node
//! was running when it came due) is recorded on its orchestration as `schedule_error` and stops
//! no other schedule.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};

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
