//! Pause instead of fail: a step that ran out of attempts with `on_exhausted: pause` leaves its
//! execution `paused` (its completed steps kept, the step's error shown, no slot or lease
//! held); `POST /executions/{id}/resume` continues it without running the completed steps
//! again (as it is, with changed parameters, or skipping the step with a given output),
//! `POST /executions/resume` resumes by filter, and an `execution_paused` alert rule fires.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode as AxumStatus;
use axum::response::IntoResponse;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths, serve, unlimited};

/// A dealer system: `/vehicles/{vin}` always answers; `/prices/{vin}` answers 503 while it is
/// broken, and always for the VIN `BROKEN`. It counts the requests of each.
#[derive(Clone, Default)]
struct Dealer {
    broken: Arc<AtomicBool>,
    vehicles: Arc<AtomicUsize>,
    prices: Arc<AtomicUsize>,
}

impl Dealer {
    /// The dealer (its prices broken), serving, with `app`'s enterprise connected to it (see
    /// [`connect`]).
    async fn start(app: &TestApp, token: &str) -> Self {
        let dealer = Self::default();
        dealer.broken.store(true, Ordering::SeqCst);
        let router = Router::new()
            .route("/vehicles/{vin}", get(vehicle))
            .route("/prices/{vin}", get(price))
            .with_state(dealer.clone());
        connect(app, token, &serve(router).await).await;
        dealer
    }

    fn fix(&self) {
        self.broken.store(false, Ordering::SeqCst);
    }

    fn vehicles(&self) -> usize {
        self.vehicles.load(Ordering::SeqCst)
    }

    fn prices(&self) -> usize {
        self.prices.load(Ordering::SeqCst)
    }
}

async fn vehicle(State(dealer): State<Dealer>, Path(vin): Path<String>) -> Json<Value> {
    dealer.vehicles.fetch_add(1, Ordering::SeqCst);
    Json(json!({"vin": vin, "stock_number": format!("STK-{vin}")}))
}

async fn price(State(dealer): State<Dealer>, Path(vin): Path<String>) -> impl IntoResponse {
    dealer.prices.fetch_add(1, Ordering::SeqCst);
    if dealer.broken.load(Ordering::SeqCst) || vin == "BROKEN" {
        return (AxumStatus::SERVICE_UNAVAILABLE, Json(json!({"error": "price service down"})));
    }
    (AxumStatus::OK, Json(json!({"vin": vin, "price": 5990})))
}

/// The dealer connection (its circuit breaker does not open in these tests) and limits a test
/// does not reach.
async fn connect(app: &TestApp, token: &str, authority: &str) {
    assert_eq!(app.put(token, "/settings", unlimited()).await.status(), StatusCode::OK);
    app.create_connection(
        token,
        json!({"name": "dealer", "system": "rest", "allowed_hosts": [authority],
               "resilience": {"circuit_breaker": {"failure_threshold": 1000}},
               "config": {"base_url": format!("http://{authority}"),
                          "operations": {"vehicle": {"method": "GET", "path": "/vehicles/{vin}"},
                                         "price": {"method": "GET", "path": "/prices/{vin}"}}}}),
    )
    .await;
}

/// A three-step orchestration of the dealer connection: the vehicle, its price (two attempts,
/// then it pauses: by the orchestration's `on_exhausted`, or with `on_step` by the step's own),
/// a summary. Answers its id.
async fn orchestration(app: &TestApp, token: &str, name: &str, on_step: bool) -> String {
    let mut price = json!({"name": "price", "type": "api_call", "connection": "dealer", "operation": "price",
                           "parameters": {"vin": "${parameters.vin}"},
                           "retry": {"max_attempts": 2, "initial_interval_ms": 50}});
    let mut def = json!({"name": name, "parameters": [{"name": "vin", "type": "string", "required": true}],
        "steps": [
            {"name": "vehicle", "type": "api_call", "connection": "dealer", "operation": "vehicle",
             "parameters": {"vin": "${parameters.vin}"}},
            price.clone(),
            {"name": "summary", "type": "transform", "transform": "map",
             "mapping": {"stock_number": "${vehicle.response.stock_number}", "price": "${price.response.price}"}}],
        "output": "${summary}"});
    if on_step {
        price["on_exhausted"] = json!("pause");
        def["steps"][1] = price;
    } else {
        def["on_exhausted"] = json!("pause");
    }
    app.create_orchestration(token, def).await
}

/// Executes and answers the execution as `GET /executions/{id}` shows it once the execute
/// answered (it waits for the run, which ends or pauses).
async fn run(app: &TestApp, token: &str, orchestration: &str, vin: &str) -> Value {
    let response =
        app.post(token, &format!("/orchestrations/{orchestration}/execute"), json!({"parameters": {"vin": vin}})).await;
    let summary: Value = response.json().await.expect("json");
    let id = summary["execution_id"].as_str().unwrap_or_else(|| panic!("not started: {summary}"));
    app.get(token, &format!("/executions/{id}")).await.json().await.expect("json")
}

fn id_of(execution: &Value) -> String {
    execution["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_step_out_of_attempts_pauses_its_execution_and_a_resume_finishes_it_without_running_completed_steps() {
    // One slot: a paused execution that held it would keep the next one from running.
    let app = TestApp::spawn_with(|config| config.max_in_flight = 1).await;
    let token = app.admin_token().await;
    let dealer = Dealer::start(&app, &token).await;
    let sync = orchestration(&app, &token, "Price sync", false).await;

    let paused = run(&app, &token, &sync, "VIN1").await;
    assert_eq!(paused["status"], "paused", "{paused}");
    assert!(paused["finished_at"].is_null(), "a pause is no end: {paused}");
    assert_eq!(paused["error_code"], "STEP_FAILED");
    assert!(paused["error"].as_str().expect("error").contains("step price failed"), "{paused}");
    let steps = paused["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "the completed step and the one that paused: {paused}");
    assert_eq!((&steps[0]["name"], &steps[0]["status"]), (&json!("vehicle"), &json!("success")));
    assert_eq!(
        (&steps[1]["name"], &steps[1]["status"], &steps[1]["attempts"]),
        (&json!("price"), &json!("failed"), &json!(2))
    );
    assert!(steps[1]["error"].as_str().expect("the step's error").contains("503"), "{paused}");
    assert_eq!((dealer.vehicles(), dealer.prices()), (1, 2));
    let id = id_of(&paused);
    let lease = app.sql_text(&format!("SELECT lease_owner FROM executions WHERE id = '{id}'")).await;
    assert_eq!(lease, None, "a paused execution holds no lease");

    // Its slot is free: another orchestration runs on the one slot while it is paused.
    let other = app
        .create_orchestration(&token, json!({"name": "Other", "steps": [{"name": "m", "type": "transform", "transform": "map", "mapping": {"a": 1}}]}))
        .await;
    let done = app.execute(&token, &other, json!({})).await;
    assert_eq!(done["status"], "success", "{done}");
    // Listed as paused, across orchestrations and per orchestration; still paused.
    let listed: Value = app.get(&token, "/executions?status=paused").await.json().await.expect("json");
    assert_eq!(listed["data"].as_array().expect("data").len(), 1, "{listed}");
    let listed: Value =
        app.get(&token, &format!("/orchestrations/{sync}/executions?status=paused")).await.json().await.expect("json");
    assert_eq!(listed["data"][0]["id"], id.as_str());

    // Fixed, resumed: the price step runs once more, the vehicle step not at all.
    dealer.fix();
    let response = app.post(&token, &format!("/executions/{id}/resume"), json!({})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let queued: Value = response.json().await.expect("json");
    assert_eq!(queued["execution_id"], id.as_str());
    let done = app.wait_finished(&token, &id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"stock_number": "STK-VIN1", "price": 5990}));
    assert!(done["error"].is_null() && done["error_code"].is_null(), "{done}");
    assert_eq!(done["steps_completed"], 3);
    assert_eq!(done["steps"][0], paused["steps"][0], "the completed step's result is the one from before the pause");
    assert_eq!((dealer.vehicles(), dealer.prices()), (1, 3));

    // Only a paused execution resumes.
    let response = app.post(&token, &format!("/executions/{id}/resume"), json!({})).await;
    let refused = assert_error(response, StatusCode::CONFLICT, "CONFLICT").await;
    assert!(refused["error"]["message"].as_str().expect("message").contains("is success"), "{refused}");
    let response = app.post(&token, "/executions/nope/resume", json!({})).await;
    assert_error(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.expect("openapi").json().await.expect("json");
    let statuses = &doc["components"]["schemas"]["ExecutionStatus"]["enum"];
    assert!(statuses.as_array().expect("enum").contains(&json!("paused")), "{statuses}");
    assert_eq!((dealer.vehicles(), dealer.prices()), (1, 3), "a refused resume runs nothing");
}

#[tokio::test]
async fn a_resume_may_skip_the_step_with_an_output_or_change_the_parameters() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let dealer = Dealer::start(&app, &token).await;
    let sync = orchestration(&app, &token, "Price sync", false).await;
    // The step's own option works the same as the orchestration's.
    let own = orchestration(&app, &token, "Price sync, step option", true).await;

    // Skip: the price step is not called again; the summary reads the given output.
    let paused = run(&app, &token, &own, "VIN2").await;
    assert_eq!(paused["status"], "paused", "{paused}");
    let id = id_of(&paused);
    let prices = dealer.prices();
    let response = app
        .post(
            &token,
            &format!("/executions/{id}/resume"),
            json!({"skip": {"output": {"response": {"price": 4200}, "source": "manual"}}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let done = app.wait_finished(&token, &id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"stock_number": "STK-VIN2", "price": 4200}));
    assert_eq!(done["steps"][1]["status"], "success");
    assert_eq!(done["steps"][1]["output"], json!({"response": {"price": 4200}, "source": "manual"}));
    assert_eq!(dealer.prices(), prices, "the skipped step was not called");
    assert_eq!(dealer.vehicles(), 1);

    // Changed parameters: the VIN the price service refuses, corrected. The dealer is fixed but
    // for that VIN, so only the correction lets it through.
    dealer.fix();
    let paused = run(&app, &token, &sync, "BROKEN").await;
    assert_eq!(paused["status"], "paused", "{paused}");
    let id = id_of(&paused);
    // Bad parameters are refused and change nothing.
    for (body, path) in
        [(json!({"parameters": {"vin": 7}}), "vin"), (json!({"parameters": {"colour": "red"}}), "colour")]
    {
        let response = app.post(&token, &format!("/executions/{id}/resume"), body.clone()).await;
        let refused = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        assert!(detail_paths(&refused).iter().any(|p| p.ends_with(path)), "{body}: {refused}");
    }
    for body in [json!({"parameters": "VIN3"}), json!({"skip": {"output": 1}, "extra": true}), json!({"skip": 1})] {
        let response = app.post(&token, &format!("/executions/{id}/resume"), body.clone()).await;
        assert!(response.status().is_client_error(), "{body}");
    }
    let still: Value = app.get(&token, &format!("/executions/{id}")).await.json().await.expect("json");
    assert_eq!(still["status"], "paused");
    assert_eq!(still["parameters"], json!({"vin": "BROKEN"}));

    let vehicles = dealer.vehicles();
    let response = app.post(&token, &format!("/executions/{id}/resume"), json!({"parameters": {"vin": "VIN3"}})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let done = app.wait_finished(&token, &id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["parameters"], json!({"vin": "VIN3"}));
    // The vehicle step kept what it made of the old VIN; the price step ran with the new one.
    assert_eq!(done["output"], json!({"stock_number": "STK-BROKEN", "price": 5990}));
    assert_eq!(dealer.vehicles(), vehicles, "the completed step was not run again");
}

#[tokio::test]
async fn paused_executions_resume_by_filter_and_cancel() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let dealer = Dealer::start(&app, &token).await;
    let sync = orchestration(&app, &token, "Price sync", false).await;
    let own = orchestration(&app, &token, "Price sync, step option", true).await;
    let mut ours = Vec::new();
    for vin in ["A1", "A2", "A3"] {
        let paused = run(&app, &token, &sync, vin).await;
        assert_eq!(paused["status"], "paused", "{paused}");
        ours.push(id_of(&paused));
    }
    let elsewhere = id_of(&run(&app, &token, &own, "B1").await);
    let cancelled = id_of(&run(&app, &token, &own, "B2").await);

    // A paused execution cancels at once.
    let response = app.post(&token, &format!("/executions/{cancelled}/cancel"), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let gone: Value = app.get(&token, &format!("/executions/{cancelled}")).await.json().await.expect("json");
    assert_eq!((&gone["status"], &gone["error_code"]), (&json!("cancelled"), &json!("CANCELLED")), "{gone}");
    assert!(gone["finished_at"].is_string());

    // Bad bulk requests start nothing.
    for (body, path) in [
        (json!({}), "execution_ids"),
        (json!({"execution_ids": []}), "execution_ids"),
        (json!({"execution_ids": [ours[0], cancelled]}), "execution_ids[1]"),
        (json!({"filter": {"orchestration_id": sync}, "parameters": {"colour": "red"}}), "colour"),
    ] {
        let response = app.post(&token, "/executions/resume", body.clone()).await;
        let refused = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        assert!(detail_paths(&refused).iter().any(|p| p.ends_with(path)), "{body}: {refused}");
    }
    let response = app.post(&token, "/executions/resume", json!({"filter": {"status": "failed"}})).await;
    assert!(response.status().is_client_error(), "the filter has no status: always paused");

    // By filter: the three of one orchestration, oldest first; the other stays paused.
    dealer.fix();
    let vehicles = dealer.vehicles();
    let response = app.post(&token, "/executions/resume", json!({"filter": {"orchestration_id": sync}})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let resumed: Value = response.json().await.expect("json");
    assert_eq!(resumed["resumed"], json!(ours), "{resumed}");
    assert_eq!(resumed["remaining"], 0);
    for id in &ours {
        let done = app.wait_finished(&token, id).await;
        assert_eq!(done["status"], "success", "{done}");
    }
    assert_eq!(dealer.vehicles(), vehicles, "no completed step ran again");
    let still: Value = app.get(&token, &format!("/executions/{elsewhere}")).await.json().await.expect("json");
    assert_eq!(still["status"], "paused");

    // By id.
    let response = app.post(&token, "/executions/resume", json!({"execution_ids": [elsewhere]})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(app.wait_finished(&token, &elsewhere).await["status"], "success");
    let listed: Value = app.get(&token, "/executions?status=paused").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 0, "{listed}");

    // Viewers see paused executions but do not resume them.
    app.create_user(&token, "viewer@example.com", "viewer").await;
    let viewer = app.token("viewer@example.com", crate::helpers::ADMIN_PASSWORD).await;
    let response = app.post(&viewer, "/executions/resume", json!({"filter": {}})).await;
    assert_error(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn an_execution_paused_rule_fires_when_an_execution_pauses() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let dealer = Dealer::start(&app, &token).await;
    let sync = orchestration(&app, &token, "Price sync", false).await;
    let response = app
        .post(
            &token,
            "/alert-rules",
            json!({"name": "Paused syncs", "type": "execution_paused", "scope": {"orchestration_id": sync},
                   "notification": {"channels": [{"type": "log"}]}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rule: Value = response.json().await.expect("json");

    // A success fires nothing; a pause fires the rule.
    dealer.fix();
    assert_eq!(run(&app, &token, &sync, "OK1").await["status"], "success");
    let paused = run(&app, &token, &sync, "BROKEN").await;
    assert_eq!(paused["status"], "paused", "{paused}");
    let mut fired = Value::Null;
    for _ in 0..200 {
        let alerts: Value = app.get(&token, "/alerts").await.json().await.expect("json");
        if alerts["pagination"]["total"] != 0 {
            fired = alerts;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(fired["pagination"]["total"], 1, "{fired}");
    let alert = &fired["data"][0];
    assert_eq!((&alert["rule_id"], &alert["metric"]), (&rule["id"], &json!("execution_paused")), "{alert}");
    let message = alert["message"].as_str().expect("message");
    assert!(message.contains(paused["id"].as_str().expect("id")) && message.contains("step price failed"), "{message}");
}

#[tokio::test]
async fn on_exhausted_is_checked_when_an_orchestration_is_saved() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let _dealer = Dealer::start(&app, &token).await;
    let map = json!({"name": "m", "type": "transform", "transform": "map", "mapping": {"a": 1}});
    let with = |field: &str, value: Value| {
        let mut step = map.clone();
        step[field] = value;
        step
    };
    for (def, path) in [
        (json!({"name": "A", "on_exhausted": "retry", "steps": [map]}), "on_exhausted"),
        (json!({"name": "B", "steps": [with("on_exhausted", json!("later"))]}), "steps[0].on_exhausted"),
        (
            json!({"name": "C", "steps": [{"name": "m", "type": "transform", "transform": "map", "mapping": {"a": 1},
                                            "on_error": "continue", "on_exhausted": "pause"}]}),
            "steps[0].on_exhausted",
        ),
        (
            json!({"name": "D", "steps": [{"name": "each", "type": "for_each", "items": "${parameters.list}",
                                            "steps": [with("on_exhausted", json!("pause"))]}],
                   "parameters": [{"name": "list", "type": "array"}]}),
            "steps[0].steps[0].on_exhausted",
        ),
    ] {
        let response = app.post(&token, "/orchestrations", def.clone()).await;
        let refused = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        assert_eq!(detail_paths(&refused), [path], "{def}");
    }
    // A container may pause as a whole.
    let response = app
        .post(
            &token,
            "/orchestrations",
            json!({"name": "E", "parameters": [{"name": "list", "type": "array"}],
                   "steps": [{"name": "each", "type": "for_each", "items": "${parameters.list}", "on_exhausted": "pause",
                              "steps": [map]}]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}
