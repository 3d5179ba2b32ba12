use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};

#[tokio::test]
async fn settings_have_the_spec_defaults_and_can_be_changed() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let settings: Value = app.get(&admin, "/settings").await.json().await.expect("json");
    assert_eq!(settings["name"], "Default");
    assert_eq!(settings["timezone"], "UTC");
    assert_eq!(settings["session_duration_minutes"], 60);
    assert_eq!(settings["retention_days"], 90);
    assert_eq!(
        settings["rate_limits"],
        json!({"api_requests_per_minute": 300, "executions_per_minute": 60, "outbound_requests_per_minute": 60,
               "max_queued_executions": 10000})
    );

    let changed = app
        .put(
            &admin,
            "/settings",
            json!({"name": "Main Street Motors", "timezone": "America/Toronto", "retention_days": 45}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let changed: Value = changed.json().await.expect("json");
    assert_eq!(changed["name"], "Main Street Motors");
    assert_eq!(changed["timezone"], "America/Toronto");
    assert_eq!(changed["retention_days"], 45);
    assert_eq!(changed["session_duration_minutes"], 60, "absent fields keep their value");
}

#[tokio::test]
async fn invalid_settings_list_every_problem_and_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let response = app
        .put(
            &admin,
            "/settings",
            json!({"name": "Renamed", "timezone": "Nowhere/City", "session_duration_minutes": 30, "retention_days": 7,
                   "rate_limits": {"api_requests_per_minute": 0, "executions_per_minute": 10}}),
        )
        .await;
    let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let paths = detail_paths(&body);
    assert_eq!(
        paths,
        ["timezone", "session_duration_minutes", "retention_days", "rate_limits.api_requests_per_minute"]
    );
    let settings: Value = app.get(&admin, "/settings").await.json().await.expect("json");
    assert_eq!(settings["name"], "Default");

    let typo = app.put(&admin, "/settings", json!({"retention_dayz": 40})).await;
    let body = assert_error(typo, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert!(body["error"]["details"][0]["message"].as_str().expect("message").contains("retention_dayz"));
    let wrong_type = app.put(&admin, "/settings", json!({"retention_days": "forty"})).await;
    let body = assert_error(wrong_type, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"][0]["path"], "retention_days");
}

#[tokio::test]
async fn rate_limits_need_platform_rights() {
    let app = TestApp::spawn().await;
    let other = app.second_enterprise("ratecity").await;
    let limits = json!({"rate_limits": {"api_requests_per_minute": 100000, "executions_per_minute": 5000}});
    assert_error(app.put(&other, "/settings", limits.clone()).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let settings: Value = app.get(&other, "/settings").await.json().await.expect("json");
    assert_eq!(settings["rate_limits"]["api_requests_per_minute"], 300);

    let admin = app.admin_token().await;
    let changed: Value = app.put(&admin, "/settings", limits).await.json().await.expect("json");
    assert_eq!(changed["rate_limits"]["executions_per_minute"], 5000);
}

#[tokio::test]
async fn the_queue_bound_is_a_rate_limit_setting_kept_when_left_out() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let limits = |queued: Value| json!({"rate_limits": {"api_requests_per_minute": 300, "executions_per_minute": 60, "max_queued_executions": queued}});
    for bad in [json!(0), json!(1_000_001)] {
        let body = assert_error(
            app.put(&admin, "/settings", limits(bad)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(detail_paths(&body), ["rate_limits.max_queued_executions"], "{body}");
    }
    let other = app.second_enterprise("queuecity").await;
    assert_error(app.put(&other, "/settings", limits(json!(50))).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    let changed: Value = app.put(&admin, "/settings", limits(json!(5000))).await.json().await.expect("json");
    assert_eq!(changed["rate_limits"]["max_queued_executions"], 5000, "{changed}");
    let without = json!({"rate_limits": {"api_requests_per_minute": 300, "executions_per_minute": 60}});
    let kept: Value = app.put(&admin, "/settings", without).await.json().await.expect("json");
    assert_eq!(kept["rate_limits"]["max_queued_executions"], 5000, "left out: unchanged: {kept}");
    let theirs: Value = app.get(&other, "/settings").await.json().await.expect("json");
    assert_eq!(theirs["rate_limits"]["max_queued_executions"], 10000, "another enterprise keeps the default");
}
