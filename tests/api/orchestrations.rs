use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};
use crate::mock::MockServer;

const VIN: &str = "1HGCM82633A004352";

/// The connections of SPEC 12: `vpic` and a generic REST `dms`.
async fn connections(app: &TestApp, token: &str, mock: &MockServer) {
    let mut vpic = mock.vpic();
    vpic["credentials"] = json!({"api_key": "s3cret"});
    app.create_connection(token, vpic).await;
    app.create_connection(token, mock.dms()).await;
}

/// The SPEC's example, as shipped in `examples/` (and run by `dibop demo`).
fn vehicle_lookup() -> Value {
    serde_json::from_str(dibop::demo::VEHICLE_LOOKUP).expect("example JSON")
}

#[tokio::test]
async fn the_vehicle_lookup_of_the_spec_runs_end_to_end() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    let created = app.post(&token, "/orchestrations", vehicle_lookup()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["version"], 1);
    assert_eq!(created["steps"].as_array().expect("steps").len(), 3);
    let id = created["id"].as_str().expect("id");

    let result = app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": VIN}})).await;
    assert_eq!(result.status(), StatusCode::OK);
    let result: Value = result.json().await.expect("json");
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(result["output"], json!({"vehicle": {"vin": VIN, "make": "HONDA", "stock_number": "STK-1001"}}));
    assert_eq!(result["steps_completed"], 3);
    assert_eq!(result["steps_total"], 3);

    let execution_id = result["execution_id"].as_str().expect("id");
    let detail: Value = app.get(&token, &format!("/executions/{execution_id}")).await.json().await.expect("json");
    assert_eq!(detail["orchestration_version"], 1);
    assert_eq!(detail["triggered_by"], "manual");
    assert_eq!(detail["parameters"], json!({"vin": VIN}));
    let steps = detail["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["name"], "decode");
    assert_eq!(steps[0]["system"], "vpic");
    assert_eq!(steps[0]["operation"], "decode_vin");
    assert_eq!(steps[0]["input"], json!({"vin": VIN}));
    assert_eq!(steps[0]["output"]["status_code"], 200);
    assert_eq!(steps[0]["output"]["headers"]["content-type"], "application/json", "{}", steps[0]);
    assert_eq!(steps[0]["output"]["response"]["model"], "Accord");
    assert_eq!(steps[0]["attempts"], 1);
    assert_eq!(steps[2]["output"]["make"], "HONDA");

    let calls: Value =
        app.get(&token, &format!("/api-calls?execution_id={execution_id}")).await.json().await.expect("json");
    assert_eq!(calls["pagination"]["total"], 2, "{calls}");
    assert!(calls["data"].as_array().expect("data").iter().all(|c| c["orchestration_id"] == id));
    let listed: Value =
        app.get(&token, &format!("/orchestrations/{id}/executions?status=success")).await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 1);

    let trace: Value = app.get(&token, &format!("/executions/{execution_id}/trace")).await.json().await.expect("json");
    assert_eq!(trace["trace_id"].as_str().expect("trace id").len(), 32);
    let spans = trace["spans"].as_array().expect("spans");
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "step").count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "attempt").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "plugin.instantiate").count(), 2);
    let ids: Vec<&str> = spans.iter().map(|s| s["span_id"].as_str().expect("id")).collect();
    for span in spans.iter().skip(1) {
        assert!(ids.contains(&span["parent_id"].as_str().expect("parent")), "orphan span {span}");
        assert_eq!(span["span_id"].as_str().expect("id").len(), 16);
    }
    let http: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "http").collect();
    assert_eq!(http.len(), 2);
    let call_ids: Vec<&Value> = calls["data"].as_array().expect("data").iter().map(|c| &c["id"]).collect();
    assert!(
        http.iter().all(|s| call_ids.contains(&&s["attributes"]["api_call_id"])),
        "http spans link their API-call rows"
    );
    let parent_kind =
        |span: &Value| spans.iter().find(|s| s["span_id"] == span["parent_id"]).map(|s| s["kind"].clone());
    assert!(http.iter().all(|s| parent_kind(s) == Some(json!("attempt"))), "HTTP calls sit under their attempt");
}

#[tokio::test]
async fn the_trace_carries_the_plugins_log_lines() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert!(app.upload(&token, crate::helpers::guest("hostile"), None).await.status().is_success());
    app.create_connection(&token, json!({"name": "hostile", "system": "hostile"})).await;
    let created: Value = app
        .post(
            &token,
            "/orchestrations",
            json!({"name": "Chatty", "steps": [
            {"name": "talk", "type": "api_call", "connection": "hostile", "operation": "log"},
            {"name": "big", "type": "transform", "transform": "map", "mapping": {"blob": "${talk}", "pad": "x"}}]}),
        )
        .await
        .json()
        .await
        .expect("json");
    let result: Value = app
        .post(&token, &format!("/orchestrations/{}/execute", created["id"].as_str().expect("id")), json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(result["status"], "success", "{result}");
    let trace: Value = app
        .get(&token, &format!("/executions/{}/trace", result["execution_id"].as_str().expect("id")))
        .await
        .json()
        .await
        .expect("json");
    let line = &trace["logs"][0];
    assert_eq!(line["message"], "hostile says hello", "{trace}");
    assert_eq!(line["step"], "talk");
    let spans = trace["spans"].as_array().expect("spans");
    let span = spans.iter().find(|s| s["span_id"] == line["span_id"]).expect("log span");
    assert_eq!(span["kind"], "attempt");
    let step = spans.iter().find(|s| s["name"] == "talk").expect("step span");
    assert!(step["attributes"]["stderr"].as_str().expect("stderr").contains("to stderr"));
}

#[tokio::test]
async fn saving_lists_every_problem_of_a_definition() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    let bad = json!({
        "name": "Broken",
        "parameters": [{"name": "vin", "type": "text"}],
        "steps": [
            {"name": "a", "type": "api_call", "connection": "nowhere", "operation": "x", "parameters": {"v": "${parameters.nope}"}},
            {"name": "b", "type": "api_call", "connection": "vpic", "operation": "fly", "parameters": {"v": "${later.x}"}},
            {"name": "a", "type": "transform", "transform": "map", "mapping": {"v": "${b.items[?(@.x==]}"}},
            {"name": "c", "type": "teleport"}
        ]
    });
    let body = assert_error(
        app.post(&token, "/orchestrations", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let paths = detail_paths(&body);
    for path in [
        "parameters[0].type",
        "steps[0].connection",
        "steps[0].parameters",
        "steps[1].operation",
        "steps[1].parameters",
        "steps[2].name",
        "steps[2].mapping",
        "steps[3].type",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    let listed: Value = app.get(&token, "/orchestrations").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 0);
}

#[tokio::test]
async fn updates_version_the_definition_and_paused_ones_do_not_run() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    let created: Value = app.post(&token, "/orchestrations", vehicle_lookup()).await.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    let mut paused = vehicle_lookup();
    paused["status"] = json!("paused");
    let updated: Value = app.put(&token, &format!("/orchestrations/{id}"), paused).await.json().await.expect("json");
    assert_eq!(updated["version"], 2);
    let run = app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": VIN}})).await;
    assert_error(run, StatusCode::CONFLICT, "CONFLICT").await;
    let missing = app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {}})).await;
    assert_error(missing, StatusCode::CONFLICT, "CONFLICT").await;

    let active = vehicle_lookup();
    app.put(&token, &format!("/orchestrations/{id}"), active).await;
    let no_vin = app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {}})).await;
    let body = assert_error(no_vin, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"][0]["path"], "parameters.vin");
    let wrong =
        app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": 7, "extra": 1}})).await;
    let body = assert_error(wrong, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"].as_array().expect("details").len(), 2);
    let ran: Value = app
        .post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": VIN}}))
        .await
        .json()
        .await
        .expect("json");
    let detail: Value = app
        .get(&token, &format!("/executions/{}", ran["execution_id"].as_str().expect("id")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(detail["orchestration_version"], 3);
    assert_eq!(app.delete(&token, &format!("/orchestrations/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert_error(app.get(&token, &format!("/orchestrations/{id}")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn retries_partial_results_skips_async_and_idempotency() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    app.create_connection(
        &token,
        json!({"name": "flaky", "system": "rest",
               "config": {"base_url": format!("{}/flaky", mock.base), "operations": {"status": {"method": "GET", "path": "/status"}}},
               "allowed_hosts": [mock.authority]}),
    )
    .await;
    let def = json!({
        "name": "Resilient",
        "parameters": [{"name": "vin", "type": "string", "required": true}, {"name": "check", "type": "boolean", "default": false}],
        "steps": [
            {"name": "status", "type": "api_call", "connection": "flaky", "operation": "status",
             "retry": {"max_attempts": 3, "initial_interval_ms": 10, "backoff_coefficient": 2.0}},
            {"name": "missing", "type": "api_call", "connection": "dms", "operation": "get_vehicle",
             "parameters": {"vin": "2HGCM82633A004352"}, "on_error": "continue"},
            {"name": "checked", "type": "transform", "transform": "vin-check", "mapping": {"vin": "${parameters.vin}"},
             "when": "${parameters.check}"},
            {"name": "summary", "type": "transform", "transform": "map", "mapping": {"ok": "${status.response.ok}", "tries": "${status.response.attempt}"}}
        ]
    });
    let created: Value = app.post(&token, "/orchestrations", def).await.json().await.expect("json");
    let id = created["id"].as_str().unwrap_or_else(|| panic!("created: {created}"));
    let result: Value = app
        .post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": VIN}}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(result["status"], "partial", "{result}");
    assert_eq!(result["output"], json!({"ok": true, "tries": 3}));
    let detail: Value = app
        .get(&token, &format!("/executions/{}", result["execution_id"].as_str().expect("id")))
        .await
        .json()
        .await
        .expect("json");
    let steps = detail["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["attempts"], 3, "two 503s then success");
    assert_eq!(steps[1]["status"], "failed");
    assert_eq!(steps[2]["status"], "skipped");
    assert_eq!(mock.count("/flaky/status"), 3);

    // Async with an idempotency key: 202 at once, the same key gives the same execution.
    let first = app
        .client
        .post(app.url(&format!("/orchestrations/{id}/execute")))
        .bearer_auth(&token)
        .header("idempotency-key", "order-77")
        .json(&json!({"parameters": {"vin": VIN, "check": true}, "async": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.expect("json");
    let again: Value = app
        .client
        .post(app.url(&format!("/orchestrations/{id}/execute")))
        .bearer_auth(&token)
        .header("idempotency-key", "order-77")
        .json(&json!({"parameters": {"vin": VIN, "check": true}}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(again["execution_id"], first["execution_id"]);
    let detail = app.wait_finished(&token, first["execution_id"].as_str().expect("id")).await;
    assert_eq!(detail["steps"][2]["status"], "success", "{detail}");
    assert_eq!(detail["steps"][2]["output"]["valid"], true);
}

#[tokio::test]
async fn retry_resumes_from_the_failed_step_and_cancel_stops_before_the_next() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    app.create_connection(
        &token,
        json!({"name": "backend", "system": "rest", "allowed_hosts": [mock.authority],
               "config": {"base_url": mock.base, "operations": {"status": {"method": "GET", "path": "/flaky/status"},
                                                              "slow": {"method": "POST", "path": "/dms/slow-customers", "body": "${input}"}}}}),
    )
    .await;
    let flaky: Value = app
        .post(&token, "/orchestrations", json!({"name": "Flaky", "parameters": [{"name": "vin", "type": "string"}], "steps": [
            {"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin", "parameters": {"vin": "${parameters.vin}"}},
            {"name": "status", "type": "api_call", "connection": "backend", "operation": "status"}]}))
        .await
        .json()
        .await
        .expect("json");
    let id = flaky["id"].as_str().expect("id");
    let failed: Value = app
        .post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": VIN}}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].as_str().expect("error").contains("step status failed"), "{failed}");
    let execution = failed["execution_id"].as_str().expect("id");
    assert_error(
        app.post(&token, &format!("/executions/{execution}/cancel"), json!({})).await,
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;

    for expected in ["failed", "success"] {
        let retried = app.post(&token, &format!("/executions/{execution}/retry"), json!({})).await;
        assert_eq!(retried.status(), StatusCode::ACCEPTED);
        let detail = app.wait_finished(&token, execution).await;
        assert_eq!(detail["status"], expected, "{detail}");
    }
    assert_eq!(mock.count("DecodeVinValues"), 1, "the completed step was kept, not called again");
    assert_eq!(mock.count("/flaky/status"), 3);
    assert_error(
        app.post(&token, &format!("/executions/{execution}/retry"), json!({})).await,
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;

    let slow: Value = app
        .post(
            &token,
            "/orchestrations",
            json!({"name": "Slow", "steps": [
            {"name": "slow", "type": "api_call", "connection": "backend", "operation": "slow", "parameters": {"n": 1}},
            {"name": "after", "type": "transform", "transform": "map", "mapping": {"done": true}}]}),
        )
        .await
        .json()
        .await
        .expect("json");
    let queued: Value = app
        .post(&token, &format!("/orchestrations/{}/execute", slow["id"].as_str().expect("id")), json!({"async": true}))
        .await
        .json()
        .await
        .expect("json");
    let execution = queued["execution_id"].as_str().expect("id");
    while mock.count("/dms/slow-customers") == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let cancel = app.post(&token, &format!("/executions/{execution}/cancel"), json!({})).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    let detail = app.wait_finished(&token, execution).await;
    assert_eq!(detail["status"], "cancelled", "{detail}");
    assert_eq!(detail["steps_completed"], 1, "the running step finished, the next one never started");
    assert_error(app.post(&token, "/executions/nope/cancel", json!({})).await, StatusCode::NOT_FOUND, "NOT_FOUND")
        .await;
}

fn every_second() -> Value {
    json!({"name": "Every second", "trigger": {"type": "schedule", "cron": "* * * * * *", "timezone": "Europe/Berlin"},
           "parameters": [{"name": "region", "type": "string", "required": true, "default": "EU"}],
           "steps": [{"name": "echo", "type": "transform", "transform": "map", "mapping": {"region": "${parameters.region}"}}]})
}

#[tokio::test]
async fn a_schedule_fires_once_per_slot_even_with_two_nodes() {
    // The platform's minimum interval (one minute by default) refuses a schedule every second.
    let strict = TestApp::spawn().await;
    let strict_token = strict.admin_token().await;
    let body = assert_error(
        strict.post(&strict_token, "/orchestrations", every_second()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"][0]["path"], "trigger.cron", "{body}");
    assert!(body["error"]["details"][0]["message"].as_str().unwrap_or_default().contains("60 s"), "{body}");

    let first = TestApp::spawn_with(|config| config.min_cron_interval_secs = 1).await;
    let token = first.admin_token().await;
    for (bad, path) in [
        (json!({"type": "schedule"}), "trigger.cron"),
        (json!({"type": "schedule", "cron": "every tuesday"}), "trigger.cron"),
        (json!({"type": "schedule", "cron": "0 * * * *", "timezone": "Mars/Base"}), "trigger.timezone"),
    ] {
        let mut def = every_second();
        def["trigger"] = bad;
        let body = assert_error(
            first.post(&token, "/orchestrations", def).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["error"]["details"][0]["path"], path, "{body}");
    }
    let mut no_default = every_second();
    no_default["parameters"][0].as_object_mut().expect("param").remove("default");
    let body = assert_error(
        first.post(&token, "/orchestrations", no_default).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"][0]["path"], "parameters[0].default");

    let created: Value = first.post(&token, "/orchestrations", every_second()).await.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    // A second node sharing the database (SQLite file here; the same PostgreSQL database when
    // the suite runs on PostgreSQL, through the URL the first node was given).
    let shared = first
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", first.data_dir().join("dibop.db").display()));
    let second = TestApp::spawn_with(|config| {
        config.database_url = Some(shared.into());
        config.min_cron_interval_secs = 1;
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let runs: Value =
        second.get(&token, &format!("/orchestrations/{id}/executions?page_size=200")).await.json().await.expect("json");
    let runs = runs["data"].as_array().expect("data");
    assert!(runs.len() >= 2, "fired every second: {runs:?}");
    assert!(runs.len() <= 5, "each slot fired once, not once per node: {}", runs.len());
    assert!(
        runs.iter().all(|r| r["triggered_by"] == "schedule" && r["parameters"] == json!({"region": "EU"})),
        "{runs:?}"
    );
}

#[tokio::test]
async fn condition_steps_run_one_branch_and_skip_the_other() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let def = json!({"name": "Route by make",
        "parameters": [{"name": "make", "type": "string", "required": true}, {"name": "year", "type": "integer", "default": 2020}],
        "steps": [
            {"name": "check", "type": "condition", "condition": "${parameters.make} == 'HONDA'",
             "then": [{"name": "honda", "type": "transform", "transform": "map", "mapping": {"dealer": "Honda desk"}},
                      {"name": "recent", "type": "condition", "condition": "${parameters.year} >= 2015",
                       "then": [{"name": "warranty", "type": "transform", "transform": "map", "mapping": {"warranty": true}}]}],
             "else": [{"name": "other", "type": "transform", "transform": "map", "mapping": {"dealer": "General desk"}}]},
            {"name": "done", "type": "transform", "transform": "map", "mapping": {"branch": "${check.branch}"}}
        ],
        "output": {"branch": "${done.branch}", "result": "${check.result}"}});
    let created: Value = app.post(&token, "/orchestrations", def).await.json().await.expect("json");
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}"));

    let honda: Value = app
        .post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"make": "HONDA"}}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(honda["status"], "success", "{honda}");
    assert_eq!(honda["output"], json!({"branch": "then", "result": true}));
    assert_eq!(honda["steps_total"], 6);
    let detail: Value = app
        .get(&token, &format!("/executions/{}", honda["execution_id"].as_str().expect("id")))
        .await
        .json()
        .await
        .expect("json");
    let statuses: Vec<(&str, &str)> = detail["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| (s["name"].as_str().expect("n"), s["status"].as_str().expect("s")))
        .collect();
    assert_eq!(
        statuses,
        [
            ("check", "success"),
            ("honda", "success"),
            ("recent", "success"),
            ("warranty", "success"),
            ("other", "skipped"),
            ("done", "success")
        ]
    );

    let other: Value = app
        .post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"make": "FORD"}}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(other["output"], json!({"branch": "else", "result": false}));
    let detail: Value = app
        .get(&token, &format!("/executions/{}", other["execution_id"].as_str().expect("id")))
        .await
        .json()
        .await
        .expect("json");
    let skipped: Vec<&str> = detail["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["status"] == "skipped")
        .map(|s| s["name"].as_str().expect("n"))
        .collect();
    assert_eq!(skipped, ["honda", "recent", "warranty"]);

    let bad = json!({"name": "Bad", "steps": [
        {"name": "x", "type": "transform", "transform": "map", "mapping": {}, "then": [{"name": "y", "type": "transform", "transform": "map", "mapping": {}}]},
        {"name": "c", "type": "condition", "then": [{"name": "z", "type": "transform", "transform": "map", "mapping": {"v": "${nope.v}"}}]}]});
    let body = assert_error(
        app.post(&token, "/orchestrations", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let paths = detail_paths(&body);
    for path in ["steps[0].then", "steps[1].condition", "steps[1].then[0].mapping"] {
        assert!(paths.contains(&path), "{path} in {paths:?}");
    }
}

#[tokio::test]
async fn references_into_skipped_or_failed_steps_are_null_and_defaults_fill_them() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    let def = json!({
        "name": "Null-safe",
        "parameters": [{"name": "vin", "type": "string", "required": true},
                       {"name": "check", "type": "boolean", "default": false}],
        "steps": [
            {"name": "stock", "type": "api_call", "connection": "dms", "operation": "get_vehicle",
             "parameters": {"vin": "${parameters.vin}"}, "on_error": "continue"},
            {"name": "checked", "type": "transform", "transform": "vin-check", "mapping": {"vin": "${parameters.vin}"},
             "when": "${parameters.check}"},
            {"name": "summary", "type": "transform", "transform": "map", "mapping": {
                "stock_number": "${stock.response.stock_number}",
                "stock_or_none": "${stock.response.stock_number ?? 'not in stock'}",
                "valid": "${checked.valid ?? 'unchecked'}",
                "label": "VIN ${parameters.vin}: ${stock.response.status ?? 'unknown'}"}}
        ],
        "output": {"summary": "${summary}"}
    });
    let id = app.create_orchestration(&token, def).await;
    let missing = "2HGCM82633A004352";
    let result = app.execute(&token, &id, json!({"parameters": {"vin": missing}})).await;
    assert_eq!(result["status"], "partial", "{result}");
    assert_eq!(
        result["output"]["summary"],
        json!({"stock_number": null, "stock_or_none": "not in stock", "valid": "unchecked",
               "label": format!("VIN {missing}: unknown")})
    );
    let found = app.execute(&token, &id, json!({"parameters": {"vin": VIN, "check": true}})).await;
    assert_eq!(found["status"], "success", "{found}");
    assert_eq!(
        found["output"]["summary"],
        json!({"stock_number": "STK-1001", "stock_or_none": "STK-1001", "valid": true,
               "label": format!("VIN {VIN}: in_stock")})
    );

    // Save-time validation reads every alternative and refuses a dangling `??`.
    let bad = json!({
        "name": "Bad defaults",
        "steps": [{"name": "a", "type": "transform", "transform": "map", "mapping": {"x": 1}},
                  {"name": "b", "type": "transform", "transform": "map",
                   "mapping": {"ok": "${a.x ?? 'none'}", "later": "${a.y ?? c.z}"}},
                  {"name": "b2", "type": "transform", "transform": "map", "mapping": {"open": "${a.x ??}"}},
                  {"name": "c", "type": "transform", "transform": "map", "mapping": {"z": 1}}]
    });
    let refused = assert_error(
        app.post(&token, "/orchestrations", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let messages: Vec<&str> =
        refused["error"]["details"].as_array().expect("details").iter().filter_map(|d| d["message"].as_str()).collect();
    assert_eq!(messages.len(), 2, "{refused}");
    assert!(messages.iter().any(|m| m.contains("\"c\" is not an earlier step")), "{refused}");
    assert!(messages.iter().any(|m| m.contains("??")), "{refused}");
}

#[tokio::test]
async fn every_version_is_kept_and_readable_by_its_enterprise_only() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let mut def = json!({"name": "Versioned", "steps": [{"name": "a", "type": "transform", "transform": "map",
        "mapping": {"x": 1}}]});
    let id = app.create_orchestration(&token, def.clone()).await;
    def["status"] = json!("paused");
    def["steps"][0]["mapping"] = json!({"x": 2});
    let replaced: Value = app.put(&token, &format!("/orchestrations/{id}"), def).await.json().await.expect("json");
    assert_eq!(replaced["version"], 2);

    let versions: Value = app.get(&token, &format!("/orchestrations/{id}/versions")).await.json().await.expect("json");
    assert_eq!(versions["pagination"]["total"], 2);
    let numbers: Vec<&Value> = versions["data"].as_array().expect("data").iter().map(|v| &v["version"]).collect();
    assert_eq!(numbers, [&json!(2), &json!(1)], "newest first");
    assert!(versions["data"][0]["created_at"].is_string());

    let first: Value = app.get(&token, &format!("/orchestrations/{id}/versions/1")).await.json().await.expect("json");
    assert_eq!((&first["version"], &first["orchestration_id"]), (&json!(1), &json!(id)));
    assert_eq!(first["definition"]["status"], "active");
    assert_eq!(first["definition"]["steps"][0]["mapping"], json!({"x": 1}));
    let second: Value = app.get(&token, &format!("/orchestrations/{id}/versions/2")).await.json().await.expect("json");
    assert_eq!(second["definition"]["status"], "paused");
    assert_eq!(second["definition"]["steps"][0]["mapping"], json!({"x": 2}));

    for missing in ["3", "0", "-1"] {
        let response = app.get(&token, &format!("/orchestrations/{id}/versions/{missing}")).await;
        assert_error(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    for malformed in ["latest", "9223372036854775808", "1.5"] {
        let response = app.get(&token, &format!("/orchestrations/{id}/versions/{malformed}")).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
        assert!(body["error"]["message"].as_str().expect("message").contains("whole number"), "{body}");
    }

    let other = app.second_enterprise("versions").await;
    for path in [format!("/orchestrations/{id}/versions"), format!("/orchestrations/{id}/versions/1")] {
        assert_error(app.get(&other, &path).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
}
