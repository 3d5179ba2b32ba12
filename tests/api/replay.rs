//! Dead letters and replay through HTTP: failed executions listed across orchestrations with
//! their filters, replayed by id (with changed parameters) or by filter from the failed step,
//! the earlier steps not called again, each replay recording who asked; bad requests change
//! nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};
use crate::mock::MockServer;

const VIN: &str = "1HGCM82633A004352";
const UNKNOWN: &str = "2HGCM82633A004352";

/// A decode step, then a DMS lookup that fails for a VIN the DMS does not have, then a map.
async fn setup(app: &TestApp, token: &str, mock: &MockServer) -> String {
    app.create_connection(token, mock.vpic()).await;
    app.create_connection(token, mock.dms()).await;
    app.create_orchestration(
        token,
        json!({"name": "Lookup", "parameters": [{"name": "vin", "type": "string", "required": true},
                                                {"name": "stock_vin", "type": "string", "required": true}],
               "steps": [
                   {"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                    "parameters": {"vin": "${parameters.vin}"}},
                   {"name": "stock", "type": "api_call", "connection": "dms", "operation": "get_vehicle",
                    "parameters": {"vin": "${parameters.stock_vin}"}},
                   {"name": "summary", "type": "transform", "transform": "map",
                    "mapping": {"make": "${decode.response.make}", "stock_number": "${stock.response.stock_number}"}}],
               "output": {"summary": "${summary}"}}),
    )
    .await
}

async fn list(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let response = app.get(token, &format!("/executions{query}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let body: Value = response.json().await.expect("json");
    body["data"].as_array().expect("data").clone()
}

#[tokio::test]
async fn failed_executions_are_listed_and_replayed_from_their_failed_step() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let lookup = setup(&app, &token, &mock).await;
    let other = app
        .create_orchestration(
            &token,
            json!({"name": "Other", "steps": [{"name": "m", "type": "transform", "transform": "map", "mapping": {"a": 1}}]}),
        )
        .await;
    let mut failed = Vec::new();
    for _ in 0..2 {
        let result = app.execute(&token, &lookup, json!({"parameters": {"vin": VIN, "stock_vin": UNKNOWN}})).await;
        assert_eq!(result["status"], "failed", "{result}");
        failed.push(result["execution_id"].as_str().expect("id").to_owned());
    }
    let ok = app.execute(&token, &other, json!({})).await;
    assert_eq!(ok["status"], "success", "{ok}");

    // Across orchestrations, with each filter.
    assert_eq!(list(&app, &token, "").await.len(), 3);
    let dead = list(&app, &token, "?status=failed").await;
    assert_eq!(dead.iter().map(|e| e["id"].as_str().expect("id")).collect::<Vec<_>>(), [&failed[1], &failed[0]]);
    assert_eq!(list(&app, &token, &format!("?orchestration_id={other}")).await.len(), 1);
    assert_eq!(list(&app, &token, "?triggered_by=manual&status=success").await.len(), 1);
    assert_eq!(list(&app, &token, "?triggered_by=schedule").await.len(), 0);
    assert_eq!(list(&app, &token, "?error=404").await.len(), 2, "the DMS answered 404");
    assert_eq!(list(&app, &token, "?error=100%25").await.len(), 0, "% is text, not a wildcard");
    assert_eq!(list(&app, &token, "?from=2099-01-01T00:00:00Z").await.len(), 0);
    let bad = app.get(&token, "/executions?triggered_by=cron").await;
    assert_error(bad, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;

    // By id, with the DMS VIN corrected: decode is not called again.
    let decodes = mock.count("/vpic/vehicles/DecodeVinValues/");
    let response = app
        .post(&token, "/executions/replay", json!({"execution_ids": [failed[0]], "parameters": {"stock_vin": VIN}}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let replayed: Value = response.json().await.expect("json");
    assert_eq!(replayed["replays"][0]["replay_of"], failed[0].as_str(), "{replayed}");
    assert_eq!(replayed["remaining"], 0);
    let new_id = replayed["execution_ids"][0].as_str().expect("id");
    let done = app.wait_finished(&token, new_id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"summary": {"make": "HONDA", "stock_number": "STK-1001"}}));
    assert_eq!(done["parameters"], json!({"vin": VIN, "stock_vin": VIN}));
    assert_eq!(done["replay_of"], failed[0].as_str());
    let users: Value = app.get(&token, "/users").await.json().await.expect("json");
    let admin = users["data"].as_array().expect("users").iter().find(|u| u["email"] == crate::helpers::ADMIN_EMAIL);
    let admin_id = admin.and_then(|u| u["id"].as_str()).expect("the admin");
    assert_eq!(done["replayed_by"], format!("user:{admin_id}"));
    assert_eq!(mock.count("/vpic/vehicles/DecodeVinValues/"), decodes, "the decode result was kept");
    let original: Value = app.get(&token, &format!("/executions/{}", failed[0])).await.json().await.expect("json");
    assert_eq!(done["steps"][0], original["steps"][0], "the step before the failure is the original's");
    assert_eq!(original["status"], "failed", "the original stays as it was");

    // By filter: the failed executions not replayed yet (the second one), oldest first.
    let response = app.post(&token, "/executions/replay", json!({"filter": {"orchestration_id": lookup}})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let by_filter: Value = response.json().await.expect("json");
    assert_eq!(by_filter["replays"].as_array().expect("replays").len(), 1, "{by_filter}");
    assert_eq!(by_filter["replays"][0]["replay_of"], failed[1].as_str());
    let again = app.wait_finished(&token, by_filter["execution_ids"][0].as_str().expect("id")).await;
    assert_eq!(again["status"], "failed", "the same parameters fail the same way: {again}");
}

#[tokio::test]
async fn bad_replays_are_refused_and_start_nothing() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let lookup = setup(&app, &token, &mock).await;
    let failed = app.execute(&token, &lookup, json!({"parameters": {"vin": VIN, "stock_vin": UNKNOWN}})).await;
    let failed = failed["execution_id"].as_str().expect("id").to_owned();
    let succeeded = app.execute(&token, &lookup, json!({"parameters": {"vin": VIN, "stock_vin": VIN}})).await;
    let succeeded = succeeded["execution_id"].as_str().expect("id").to_owned();
    let before = list(&app, &token, "").await.len();

    for (body, paths) in [
        (json!({}), vec!["execution_ids"]),
        (json!({"execution_ids": [failed], "filter": {}}), vec!["execution_ids"]),
        (json!({"execution_ids": []}), vec!["execution_ids"]),
        (
            json!({"execution_ids": [failed, succeeded, "nope", failed]}),
            vec!["execution_ids[1]", "execution_ids[2]", "execution_ids[3]"],
        ),
        (json!({"execution_ids": [failed], "parameters": {"vin": 7}}), vec!["vin"]),
        (json!({"execution_ids": [failed], "parameters": {"colour": "red"}}), vec!["colour"]),
        (json!({"filter": {"status": "success"}}), vec!["filter.status"]),
    ] {
        let response = app.post(&token, "/executions/replay", body.clone()).await;
        let refused = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        let found = detail_paths(&refused);
        assert!(paths.iter().all(|p| found.iter().any(|f| f.ends_with(p))), "{body}: {refused}");
    }
    let unknown = app.post(&token, "/executions/replay", json!({"execution_ids": [failed], "extra": 1})).await;
    assert!(unknown.status().is_client_error());
    assert_eq!(list(&app, &token, "").await.len(), before, "nothing was started");

    // Viewers read dead letters but do not replay them; another enterprise cannot see them.
    app.create_user(&token, "viewer@example.com", "viewer").await;
    let viewer = app.token("viewer@example.com", crate::helpers::ADMIN_PASSWORD).await;
    assert_eq!(list(&app, &viewer, "?status=failed").await.len(), 1);
    let response = app.post(&viewer, "/executions/replay", json!({"execution_ids": [failed]})).await;
    assert_error(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let stranger = app.second_enterprise("elsewhere").await;
    assert_eq!(list(&app, &stranger, "").await.len(), 0);
    let response = app.post(&stranger, "/executions/replay", json!({"execution_ids": [failed]})).await;
    let refused = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&refused), ["execution_ids[0]"]);
}

#[tokio::test]
async fn paused_and_archived_orchestrations_do_not_replay() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    let lookup = setup(&app, &token, &mock).await;
    let failed = app.execute(&token, &lookup, json!({"parameters": {"vin": VIN, "stock_vin": UNKNOWN}})).await;
    let failed = failed["execution_id"].as_str().expect("id").to_owned();
    let shown: Value = app.get(&token, &format!("/orchestrations/{lookup}")).await.json().await.expect("json");
    let mut def = shown.clone();
    for field in ["id", "enterprise_id", "version", "created_at", "updated_at"] {
        def.as_object_mut().expect("object").remove(field);
    }
    let before = list(&app, &token, "").await.len();

    for status in ["paused", "archived"] {
        def["status"] = json!(status);
        let saved = app.put(&token, &format!("/orchestrations/{lookup}"), def.clone()).await;
        assert_eq!(saved.status(), StatusCode::OK, "{}", saved.text().await.unwrap_or_default());
        for body in [json!({"execution_ids": [failed]}), json!({"filter": {"orchestration_id": lookup}})] {
            let response = app.post(&token, "/executions/replay", body.clone()).await;
            let refused = assert_error(response, StatusCode::CONFLICT, "CONFLICT").await;
            let message = refused["error"]["message"].as_str().expect("message");
            assert!(message.contains(&format!("is {status}")), "{body}: {message}");
        }
        assert_eq!(list(&app, &token, "").await.len(), before, "nothing was started while {status}");
    }

    // Active again, it replays.
    def["status"] = json!("active");
    assert_eq!(app.put(&token, &format!("/orchestrations/{lookup}"), def).await.status(), StatusCode::OK);
    let response = app.post(&token, "/executions/replay", json!({"execution_ids": [failed]})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}
