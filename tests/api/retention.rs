//! Retention: executions (with their step results) and API-call rows older than the
//! enterprise's `retention_days` are purged by a background sweep; newer ones stay.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::mock::MockServer;

const DAY_MS: i64 = 86_400_000;

async fn exists(app: &TestApp, token: &str, execution_id: &str) -> bool {
    app.get(token, &format!("/executions/{execution_id}")).await.status() == StatusCode::OK
}

async fn calls_of(app: &TestApp, token: &str, execution_id: &str) -> usize {
    let calls: Value =
        app.get(token, &format!("/api-calls?execution_id={execution_id}")).await.json().await.expect("json");
    calls["data"].as_array().expect("data").len()
}

#[tokio::test]
async fn the_sweep_purges_what_is_older_than_the_enterprises_retention() {
    let app = TestApp::spawn_with(|config| config.retention_sweep_ms = 100).await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    app.create_connection(&token, mock.vpic()).await;
    let def = json!({"name": "Decode", "steps": [{"name": "decode", "type": "api_call", "connection": "vpic",
        "operation": "decode_vin", "parameters": {"vin": "1HGCM82633A004352"}}]});
    let created: Value = app.post(&token, "/orchestrations", def).await.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    let mut runs = Vec::new();
    for _ in 0..3 {
        let result: Value =
            app.post(&token, &format!("/orchestrations/{id}/execute"), json!({})).await.json().await.expect("json");
        assert_eq!(result["status"], "success", "{result}");
        runs.push(result["execution_id"].as_str().expect("id").to_owned());
    }
    let (recent, aged_100, aged_200) = (&runs[0], &runs[1], &runs[2]);
    let settings = app.put(&token, "/settings", json!({"retention_days": 120})).await;
    assert_eq!(settings.status(), StatusCode::OK);
    for (execution_id, days) in [(aged_100, 100), (aged_200, 200)] {
        let age = days * DAY_MS;
        // Calls first: once the sweep can take the execution, its calls are old enough to go too.
        app.sql(&format!("UPDATE api_calls SET timestamp = timestamp - {age} WHERE execution_id = '{execution_id}'"))
            .await;
        app.sql(&format!("UPDATE executions SET created_at = created_at - {age} WHERE id = '{execution_id}'")).await;
    }

    // The 200-day-old run goes; the same sweep keeps the 100-day-old one (retention 120 days).
    let mut purged = false;
    // Generous: under a full parallel suite on PostgreSQL a sweep can take seconds.
    for _ in 0..400 {
        if !exists(&app, &token, aged_200).await {
            purged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(purged, "the sweep purged the 200-day-old execution");
    assert_eq!(calls_of(&app, &token, aged_200).await, 0, "and its API calls");
    assert!(exists(&app, &token, aged_100).await);
    assert_eq!(calls_of(&app, &token, aged_100).await, 1);

    // A shorter retention takes the 100-day-old run too; the recent one stays.
    let settings = app.put(&token, "/settings", json!({"retention_days": 90})).await;
    assert_eq!(settings.status(), StatusCode::OK);
    let mut purged = false;
    // Generous: under a full parallel suite on PostgreSQL a sweep can take seconds.
    for _ in 0..400 {
        if !exists(&app, &token, aged_100).await {
            purged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(purged, "the sweep purged the 100-day-old execution under a 90-day retention");
    assert_eq!(calls_of(&app, &token, aged_100).await, 0);
    assert!(exists(&app, &token, recent).await);
    assert_eq!(calls_of(&app, &token, recent).await, 1);
}
