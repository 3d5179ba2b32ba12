//! Version pinning: a connection uses the plugin versions its `plugin_version` admits (a new
//! connection pins the newest), so an upload moves no connection; upgrading is a `PUT`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, guest};

async fn find(app: &TestApp, token: &str, connection: &str) -> Value {
    app.test_call(token, connection, "find", json!({})).await["output"]["version"].clone()
}

#[tokio::test]
async fn an_upload_moves_no_connection_and_an_upgrade_is_a_put() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.upload(&token, guest("lookup_v1"), None).await.status(), StatusCode::CREATED);
    let pinned = app.create_connection(&token, json!({"name": "pinned", "system": "lookup"})).await;
    assert_eq!(pinned["plugin_version"], "1.0.0", "a new connection pins the newest: {pinned}");
    let ranged =
        app.create_connection(&token, json!({"name": "ranged", "system": "lookup", "plugin_version": ">=1"})).await;
    let (pinned, ranged) = (pinned["id"].as_str().expect("id"), ranged["id"].as_str().expect("id"));

    // Version 2 arrives: the exact pin stays on 1.0.0, the range takes 2.0.0.
    assert_eq!(app.upload(&token, guest("lookup_v2"), None).await.status(), StatusCode::CREATED);
    assert_eq!(find(&app, &token, pinned).await, "1.0.0");
    assert_eq!(find(&app, &token, ranged).await, "2.0.0");
    // Orchestrations see the operations of the pinned version.
    let only_v2 = json!({"name": "More", "steps": [{"name": "m", "type": "api_call", "connection": "pinned",
                         "operation": "find_more", "parameters": {}}]});
    let refused = app.post(&token, "/orchestrations", only_v2.clone()).await;
    assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;

    // A PUT without plugin_version keeps the pin; with one, it upgrades.
    let body = json!({"name": "pinned", "system": "lookup"});
    let kept: Value = app.put(&token, &format!("/connections/{pinned}"), body).await.json().await.expect("json");
    assert_eq!(kept["plugin_version"], "1.0.0", "{kept}");
    let body = json!({"name": "pinned", "system": "lookup", "plugin_version": "2.0.0"});
    let upgraded: Value = app.put(&token, &format!("/connections/{pinned}"), body).await.json().await.expect("json");
    assert_eq!(upgraded["plugin_version"], "2.0.0", "{upgraded}");
    assert_eq!(find(&app, &token, pinned).await, "2.0.0");
    assert_eq!(app.post(&token, "/orchestrations", only_v2).await.status(), StatusCode::CREATED);

    // Pins that match nothing, or are not versions, are refused at their field.
    for (pin, says) in
        [("^3", "no active version of lookup matches \"^3\" (the newest is 2.0.0)"), ("soon", "is neither")]
    {
        let body = json!({"name": "pinned", "system": "lookup", "plugin_version": pin});
        let response = app.put(&token, &format!("/connections/{pinned}"), body).await;
        let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        assert_eq!(error["error"]["details"][0]["path"], "plugin_version", "{error}");
        assert!(error["error"]["details"][0]["message"].as_str().expect("message").contains(says), "{error}");
    }

    // A pinned version that is disabled fails the connection's calls; it never falls over to another.
    let plugins: Value = app.get(&token, "/plugins?page_size=100").await.json().await.expect("json");
    let v1 =
        plugins["data"].as_array().expect("data").iter().find(|p| p["slug"] == "lookup" && p["version"] == "1.0.0");
    let v1 = v1.expect("lookup 1.0.0")["id"].as_str().expect("id").to_owned();
    let body = json!({"name": "old", "system": "lookup", "plugin_version": "1.0.0"});
    let old = app.create_connection(&token, body).await;
    assert_eq!(app.delete(&token, &format!("/plugins/{v1}")).await.status(), StatusCode::NO_CONTENT);
    let response = app
        .post(&token, &format!("/connections/{}/test", old["id"].as_str().expect("id")), json!({"operation": "find"}))
        .await;
    let body: Value = response.json().await.expect("json");
    assert!(body.to_string().contains("matches the connection's plugin_version \\\"1.0.0\\\""), "{body}");
}

#[tokio::test]
async fn connections_stored_before_pinning_are_pinned_when_a_node_starts() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let connection = app.create_connection(&token, json!({"name": "vpic", "system": "vpic"})).await;
    let id = connection["id"].as_str().expect("id");
    app.sql(&format!("UPDATE connections SET plugin_version = '' WHERE id = '{id}'")).await;
    let other = app.another_node().await;
    let shown: Value = other.get(&token, &format!("/connections/{id}")).await.json().await.expect("json");
    assert_eq!(shown["plugin_version"], "0.1.0", "{shown}");
}
