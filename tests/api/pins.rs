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

    // Version 2 arrives declaring one host more, so it waits for approval and serves nothing.
    let uploaded: Value = app.upload(&token, guest("lookup_v2"), None).await.json().await.expect("json");
    assert_eq!(uploaded["status"], "pending", "{uploaded}");
    assert_eq!(uploaded["capabilities"]["hosts"][2], "more.example", "{uploaded}");
    assert_eq!(find(&app, &token, ranged).await, "1.0.0");
    // Approved, the exact pin stays on 1.0.0 and the range takes 2.0.0.
    approve(&app, &token, "2.0.0").await;
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
    let body = assert_error(response, StatusCode::CONFLICT, "CONFLICT").await;
    assert!(
        body.to_string().contains("plugin_disabled: version 1.0.0 of connector \\\"lookup\\\" is disabled"),
        "{body}"
    );
}

/// The id of a plugin version in `GET /plugins`.
async fn plugin_id(app: &TestApp, token: &str, slug: &str, version: &str) -> String {
    let plugins: Value = app.get(token, "/plugins?page_size=100").await.json().await.expect("json");
    let found = plugins["data"].as_array().expect("data").iter().find(|p| p["slug"] == slug && p["version"] == version);
    found.unwrap_or_else(|| panic!("{slug} {version}: {plugins}"))["id"].as_str().expect("id").to_owned()
}

async fn set_status(app: &TestApp, token: &str, id: &str, status: &str) -> reqwest::Response {
    app.request(reqwest::Method::PATCH, token, &format!("/plugins/{id}"), Some(json!({"status": status}))).await
}

/// Approves `lookup` `version` (uploaded `pending`: it declares more hosts than the one before).
async fn approve(app: &TestApp, token: &str, version: &str) {
    let id = plugin_id(app, token, "lookup", version).await;
    let approved: Value = set_status(app, token, &id, "active").await.json().await.expect("json");
    assert_eq!(approved["status"], "active", "{approved}");
}

#[tokio::test]
async fn deprecated_versions_serve_only_their_connections_and_disabled_ones_fail_plugin_disabled() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    for guest_name in ["lookup_v1", "lookup_v2"] {
        assert_eq!(app.upload(&token, guest(guest_name), None).await.status(), StatusCode::CREATED);
    }
    approve(&app, &token, "2.0.0").await;
    let v2 = plugin_id(&app, &token, "lookup", "2.0.0").await;
    let on_two = app.create_connection(&token, json!({"name": "on-two", "system": "lookup"})).await;
    let on_two = on_two["id"].as_str().expect("id").to_owned();

    let deprecated: Value = set_status(&app, &token, &v2, "deprecated").await.json().await.expect("json");
    assert_eq!(deprecated["status"], "deprecated", "{deprecated}");
    // The connection on 2.0.0 keeps it (also when saved again); new pins cannot choose it.
    assert_eq!(find(&app, &token, &on_two).await, "2.0.0");
    let same = app.put(&token, &format!("/connections/{on_two}"), json!({"name": "on-two", "system": "lookup"})).await;
    assert_eq!(same.status(), StatusCode::OK);
    let fresh = app.create_connection(&token, json!({"name": "fresh", "system": "lookup"})).await;
    assert_eq!(fresh["plugin_version"], "1.0.0", "the newest active version: {fresh}");
    let refused =
        app.post(&token, "/connections", json!({"name": "late", "system": "lookup", "plugin_version": "2.0.0"})).await;
    let error = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(error["error"]["details"][0]["path"], "plugin_version", "{error}");
    let message = error["error"]["details"][0]["message"].as_str().expect("message");
    assert!(
        message.contains("lookup 2.0.0 is deprecated") && message.contains("newest active version is 1.0.0"),
        "{message}"
    );
    // The catalogue describes the newest active version, and any version asked for.
    let apis: Value = app.get(&token, "/systems/lookup/apis").await.json().await.expect("json");
    assert_eq!((&apis["system"]["version"], &apis["system"]["auth"]), (&json!("1.0.0"), &json!("none")), "{apis}");
    assert_eq!(apis["system"]["config"][0]["name"], "base_url", "{apis}");
    let apis: Value = app.get(&token, "/systems/lookup/apis?version=2.0.0").await.json().await.expect("json");
    // find, find_more and reveal.
    assert_eq!((&apis["system"]["status"], &apis["pagination"]["total"]), (&json!("deprecated"), &json!(3)), "{apis}");
    let bad = app.get(&token, "/systems/lookup/apis?version=soon").await;
    assert_error(bad, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;

    // Disabled: the connection's calls fail plugin_disabled, in a test and in a step.
    assert_eq!(set_status(&app, &token, &v2, "disabled").await.status(), StatusCode::OK);
    let response = app.post(&token, &format!("/connections/{on_two}/test"), json!({"operation": "find"})).await;
    let body = assert_error(response, StatusCode::CONFLICT, "CONFLICT").await;
    assert!(body["error"]["message"].as_str().expect("message").starts_with("plugin_disabled: "), "{body}");
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Find", "steps": [{"name": "f", "type": "api_call", "connection": "on-two", "operation": "find", "parameters": {}}]}),
        )
        .await;
    let run = app.execute(&token, &id, json!({})).await;
    assert_eq!((&run["status"], &run["steps_completed"]), (&json!("failed"), &json!(0)), "{run}");
    assert!(run["error"].as_str().expect("error").contains("plugin_disabled: version 2.0.0"), "{run}");
    // Active again, it serves again.
    assert_eq!(set_status(&app, &token, &v2, "active").await.status(), StatusCode::OK);
    assert_eq!(find(&app, &token, &on_two).await, "2.0.0");

    // Only the three statuses, and only on versions the caller may change.
    let wrong = set_status(&app, &token, &v2, "retired").await;
    assert_error(wrong, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let other = app.second_enterprise("other-co").await;
    assert_error(set_status(&app, &other, &v2, "disabled").await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn an_upgrade_can_be_tried_first_and_outputs_checked_per_connection() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.upload(&token, guest("lookup_v1"), None).await.status(), StatusCode::CREATED);
    let connection = app.create_connection(&token, json!({"name": "c", "system": "lookup"})).await;
    let id = connection["id"].as_str().expect("id").to_owned();
    assert_eq!(connection["validate_output"], false, "{connection}");
    assert_eq!(app.upload(&token, guest("lookup_v2"), None).await.status(), StatusCode::CREATED);
    approve(&app, &token, "2.0.0").await;

    // A dry run answers the connection as it would be, with the test's result, and stores nothing.
    let body = json!({"name": "c", "system": "lookup", "plugin_version": "2.0.0", "test": {"operation": "find_more"}});
    let tried: Value =
        app.put(&token, &format!("/connections/{id}?dry_run=true"), body).await.json().await.expect("json");
    assert_eq!((&tried["plugin_version"], &tried["test"]["status"]), (&json!("2.0.0"), &json!("success")), "{tried}");
    assert_eq!(tried["test"]["output"], json!({"version": "2.0.0", "more": true}), "{tried}");
    let stored: Value = app.get(&token, &format!("/connections/{id}")).await.json().await.expect("json");
    assert_eq!(stored["plugin_version"], "1.0.0", "{stored}");
    assert!(stored.get("test").is_none(), "{stored}");

    // With output validation on, find_more's answer breaks its output_schema: the upgrade's
    // test fails, so nothing is stored.
    let body = json!({"name": "c", "system": "lookup", "plugin_version": "2.0.0", "validate_output": true,
                      "test": {"operation": "find_more"}});
    let refused = app.put(&token, &format!("/connections/{id}"), body).await;
    let error = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(error["error"]["details"][0]["path"], "test", "{error}");
    let message = error["error"]["details"][0]["message"].as_str().expect("message");
    assert!(message.contains("invalid_output: the output does not match the output_schema of find_more"), "{message}");
    let stored: Value = app.get(&token, &format!("/connections/{id}")).await.json().await.expect("json");
    assert_eq!((&stored["plugin_version"], &stored["validate_output"]), (&json!("1.0.0"), &json!(false)), "{stored}");

    // A test that passes lets the upgrade through; validation stays on for later calls.
    let body = json!({"name": "c", "system": "lookup", "plugin_version": "2.0.0", "validate_output": true,
                      "test": {"operation": "find"}});
    let upgraded: Value = app.put(&token, &format!("/connections/{id}"), body).await.json().await.expect("json");
    assert_eq!(
        (&upgraded["plugin_version"], &upgraded["validate_output"]),
        (&json!("2.0.0"), &json!(true)),
        "{upgraded}"
    );
    assert_eq!(upgraded["test"]["output"]["version"], "2.0.0", "{upgraded}");
    let checked = app.test_call(&token, &id, "find_more", json!({})).await;
    assert_eq!(checked["error"]["code"], "invalid_output", "{checked}");
    assert!(
        checked["error"]["message"].as_str().expect("message").contains("\"items\" is a required property"),
        "{checked}"
    );
    // Omitted, the setting is kept; false turns it off.
    let kept: Value = app
        .put(&token, &format!("/connections/{id}"), json!({"name": "c", "system": "lookup"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(kept["validate_output"], true, "{kept}");
    let body = json!({"name": "c", "system": "lookup", "validate_output": false});
    app.put(&token, &format!("/connections/{id}"), body).await;
    assert_eq!(app.test_call(&token, &id, "find_more", json!({})).await["status"], "success");

    // A dry run of a new connection creates nothing.
    let body = json!({"name": "d", "system": "lookup", "test": {"operation": "find"}});
    let response = app.post(&token, "/connections?dry_run=true", body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = app.get(&token, "/connections").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 1, "{listed}");
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

#[tokio::test]
async fn declared_hosts_bound_connections_and_a_version_asking_for_more_waits_for_approval() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let uploaded: Value = app.upload(&token, guest("lookup_v1"), None).await.json().await.expect("json");
    assert_eq!(uploaded["status"], "active", "the first version has nothing to exceed: {uploaded}");
    assert_eq!(uploaded["capabilities"]["hosts"], json!(["lookup.example", "*.lookup.example"]), "{uploaded}");

    // Hosts outside the declaration are refused at their field; inside, the connection is saved.
    let outside = json!({"name": "c", "system": "lookup", "config": {"base_url": "https://elsewhere.test"},
                         "allowed_hosts": ["lookup.example", "evil.test:443"]});
    let error = assert_error(
        app.post(&token, "/connections", outside).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let paths: Vec<&str> =
        error["error"]["details"].as_array().expect("details").iter().filter_map(|d| d["path"].as_str()).collect();
    assert_eq!(paths, ["config.base_url", "allowed_hosts[1]"], "{error}");
    assert!(error.to_string().contains("evil.test:443 is outside the hosts lookup 1.0.0 declares"), "{error}");
    let inside = json!({"name": "c", "system": "lookup", "config": {"base_url": "https://api.lookup.example/v1"},
                        "allowed_hosts": ["lookup.example:8443"]});
    let created = app.create_connection(&token, inside).await;
    let id = created["id"].as_str().expect("id").to_owned();

    // Version 2 declares more.example too: it waits, and nothing may pin it until approved.
    let uploaded: Value = app.upload(&token, guest("lookup_v2"), None).await.json().await.expect("json");
    assert_eq!(uploaded["status"], "pending", "{uploaded}");
    let early = json!({"name": "c", "system": "lookup", "config": {"base_url": "https://api.lookup.example/v1"},
                       "allowed_hosts": ["lookup.example:8443"], "plugin_version": "2.0.0"});
    let refused = app.put(&token, &format!("/connections/{id}"), early.clone()).await;
    let error = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert!(error.to_string().contains("lookup 2.0.0 declares more hosts or memory"), "{error}");
    let systems: Value = app.get(&token, "/systems/lookup/apis").await.json().await.expect("json");
    assert_eq!(systems["system"]["version"], "1.0.0", "{systems}");
    approve(&app, &token, "2.0.0").await;
    let moved: Value = app.put(&token, &format!("/connections/{id}"), early).await.json().await.expect("json");
    assert_eq!(moved["plugin_version"], "2.0.0", "{moved}");
    let more = json!({"name": "c", "system": "lookup", "allowed_hosts": ["more.example"]});
    assert_eq!(app.put(&token, &format!("/connections/{id}"), more).await.status(), StatusCode::OK);
}
