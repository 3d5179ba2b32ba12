//! The audit log through HTTP: changes by users and API keys with who, when, what, before and
//! after without secrets; filters; who may read whose rows; retention.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, assert_error};

async fn entries(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let response = app.get(token, &format!("/audit-log?page_size=100{query}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let body: Value = response.json().await.expect("json");
    body["data"].as_array().expect("data").clone()
}

fn find<'a>(rows: &'a [Value], action: &str, resource: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["action"] == action && r["resource"] == resource)
        .unwrap_or_else(|| panic!("no {action} of a {resource} in {rows:#?}"))
}

#[tokio::test]
async fn changes_are_logged_with_who_what_and_before_after_without_secrets() {
    let app = TestApp::spawn_with(|config| config.retention_sweep_ms = 100).await;
    let token = app.admin_token().await;
    let users: Value = app.get(&token, "/users").await.json().await.expect("json");
    let admin_id = users["data"][0]["id"].as_str().expect("id").to_owned();
    let me = format!("user:{admin_id}");

    // A connection with a credential and host-managed auth, then changed.
    let base = json!({"name": "dms", "system": "rest", "config": {"base_url": "http://127.0.0.1:9/dms"},
                      "credentials": {"api_key": "cred-secret-5501"},
                      "auth": {"type": "bearer", "token": "bearer-secret-7702"}});
    let connection = app.create_connection(&token, base.clone()).await;
    let connection_id = connection["id"].as_str().expect("id");
    let mut changed = base.clone();
    changed["timeout_ms"] = json!(5000);
    assert_eq!(app.put(&token, &format!("/connections/{connection_id}"), changed).await.status(), StatusCode::OK);

    // An orchestration created, replaced and deleted; an API key, a webhook, settings, a user.
    let def = json!({"name": "Audited", "steps": [{"name": "m", "type": "transform", "transform": "map", "mapping": {"a": 1}}]});
    let orchestration = app.create_orchestration(&token, def.clone()).await;
    let mut def2 = def.clone();
    def2["description"] = json!("second version");
    assert_eq!(app.put(&token, &format!("/orchestrations/{orchestration}"), def2).await.status(), StatusCode::OK);
    let key: Value = app
        .post(&token, "/settings/api-keys", json!({"name": "ci", "role": "enterprise_admin"}))
        .await
        .json()
        .await
        .expect("json");
    let key_value = key["key"].as_str().expect("key").to_owned();
    let webhook: Value = app
        .post(&token, "/webhooks", json!({"name": "lead", "orchestration_id": orchestration, "parameters": {}}))
        .await
        .json()
        .await
        .expect("json");
    let webhook_secret = webhook["secret"].as_str().expect("secret").to_owned();
    assert_eq!(app.put(&token, "/settings", json!({"retention_days": 45})).await.status(), StatusCode::OK);
    let user = app.create_user(&token, "clerk@example.com", "viewer").await;
    let user_id = user["id"].as_str().expect("id");
    let password_change = json!({"password": "another-long-password-9"});
    assert_eq!(app.put(&token, &format!("/users/{user_id}"), password_change).await.status(), StatusCode::OK);
    // Through the API key: its own actor.
    let deleted = app.delete(&key_value, &format!("/orchestrations/{orchestration}")).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    // A failed and a good login.
    assert_eq!(app.login(ADMIN_EMAIL, "wrong-password-123").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::OK);

    let rows = entries(&app, &token, "").await;
    let created = find(&rows, "create", "connection");
    assert_eq!(created["actor"], me.as_str());
    assert_eq!(created["resource_id"], connection_id);
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["credentials"], "[removed]");
    assert_eq!(created["after"]["auth"], json!({"type": "bearer", "token": "[removed]"}));
    let updated = find(&rows, "update", "connection");
    assert_eq!(
        (updated["before"]["timeout_ms"].as_i64(), updated["after"]["timeout_ms"].as_i64()),
        (Some(30000), Some(5000))
    );
    let replaced = find(&rows, "update", "orchestration");
    assert_eq!((replaced["before"]["version"].as_i64(), replaced["after"]["version"].as_i64()), (Some(1), Some(2)));
    let removed = find(&rows, "delete", "orchestration");
    assert_eq!(removed["actor"], format!("api_key:{}", key["id"].as_str().expect("id")));
    assert_eq!(removed["before"]["description"], "second version");
    assert_eq!(find(&rows, "create", "api_key")["after"]["key"], "[removed]");
    assert_eq!(find(&rows, "create", "webhook")["resource_id"], webhook["id"]);
    let settings = find(&rows, "update", "settings");
    assert_eq!(
        (settings["before"]["retention_days"].as_i64(), settings["after"]["retention_days"].as_i64()),
        (Some(90), Some(45))
    );
    assert_eq!(find(&rows, "update", "user")["after"]["password_changed"], true);
    assert_eq!(find(&rows, "login", "session")["actor"], me.as_str());
    assert_eq!(find(&rows, "login_failed", "session")["actor"], format!("email:{ADMIN_EMAIL}"));
    let text = serde_json::to_string(&rows).expect("text");
    for secret in [
        "cred-secret-5501",
        "bearer-secret-7702",
        "7702",
        key_value.as_str(),
        webhook_secret.as_str(),
        "another-long-password-9",
    ] {
        assert!(!text.contains(secret), "{secret} is in the audit log");
    }

    // Filters.
    let connections = entries(&app, &token, "&resource=connection").await;
    assert_eq!(connections.len(), 2);
    assert!(entries(&app, &token, "&action=update").await.iter().all(|r| r["action"] == "update"));
    let by_key = entries(&app, &token, &format!("&actor=api_key:{}", key["id"].as_str().expect("id"))).await;
    assert_eq!(by_key.len(), 1);
    assert!(entries(&app, &token, "&from=2099-01-01T00:00:00Z").await.is_empty());
    assert!(entries(&app, &token, &format!("&to={}", "2000-01-01T00:00:00Z")).await.is_empty());
    // A name no action or resource has is refused, naming the ones there are (a typo must not
    // read as "no such changes").
    for (query, names) in [("action=updated", "create, update"), ("resource=connections", "orchestration, connection")]
    {
        let refused = app.get(&token, &format!("/audit-log?{query}")).await;
        let body = assert_error(refused, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names) && message.contains(query.split('=').nth(1).unwrap_or("?")), "{body}");
    }

    // Viewers read none; another enterprise's admin sees only its own.
    let viewer = app.token("clerk@example.com", "another-long-password-9").await;
    assert_error(app.get(&viewer, "/audit-log").await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let other = app.second_enterprise("elsewhere").await;
    let theirs = entries(&app, &other, "").await;
    assert!(theirs.iter().all(|r| r["resource_id"] != connection_id), "{theirs:?}");
    // Platform rights read every enterprise's rows, or one enterprise's.
    let everything = entries(&app, &token, "").await;
    let created_enterprise = find(&everything, "create", "enterprise");
    assert_eq!(created_enterprise["actor"], me.as_str());
    let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
    let own = settings["enterprise_id"].as_str().expect("id");
    let only_own = entries(&app, &token, &format!("&enterprise_id={own}")).await;
    assert!(only_own.iter().all(|r| r["enterprise_id"] == own) && !only_own.is_empty());
    assert!(
        theirs.iter().any(|r| r["action"] == "create" && r["resource"] == "enterprise"),
        "its creation: {theirs:?}"
    );

    // Kept for the enterprise's retention (45 days now).
    let id = created["id"].as_str().expect("id");
    app.sql(&format!("UPDATE audit_log SET at = at - CAST(46 AS BIGINT) * 86400000 WHERE id = '{id}'")).await;
    let mut gone = false;
    for _ in 0..100 {
        if !entries(&app, &token, "&resource=connection").await.iter().any(|r| r["id"] == id) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the sweep removed the old row");
    assert_eq!(entries(&app, &token, "&resource=connection").await.len(), 1, "the newer row stays");
}

#[tokio::test]
async fn platform_rights_see_who_did_what_in_other_enterprises_but_not_their_payloads() {
    let app = TestApp::spawn().await;
    let platform = app.admin_token().await;
    let tenant = app.second_enterprise("tenant").await;
    let settings: Value = app.get(&tenant, "/settings").await.json().await.expect("json");
    let tenant_id = settings["enterprise_id"].as_str().expect("id").to_owned();

    // The tenant saves a definition and a connection configuration carrying its data.
    let def = json!({"name": "Payroll", "description": "ssn 078-05-1120",
                     "steps": [{"name": "m", "type": "transform", "transform": "map", "mapping": {"ssn": "078-05-1120"}}]});
    let orchestration = app.create_orchestration(&tenant, def).await;
    let connection = app
        .create_connection(
            &tenant,
            json!({"name": "hr", "system": "rest", "config": {"base_url": "http://127.0.0.1:9/hr-private-path"}}),
        )
        .await;
    // The platform admin changes something in its own enterprise.
    let own_def = json!({"name": "Own", "steps": [{"name": "m", "type": "transform", "transform": "map",
                                                    "mapping": {"own": "platform-own-marker"}}]});
    let own_orchestration = app.create_orchestration(&platform, own_def).await;

    // Another enterprise's rows: who, what, which resource and when; no before or after.
    for query in [format!("&enterprise_id={tenant_id}"), String::new()] {
        let response = app.get(&platform, &format!("/audit-log?page_size=100{query}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.expect("text");
        assert!(!text.contains("078-05-1120") && !text.contains("hr-private-path"), "{text}");
        let rows: Vec<Value> =
            serde_json::from_str::<Value>(&text).expect("json")["data"].as_array().expect("data").clone();
        let theirs: Vec<&Value> = rows.iter().filter(|r| r["enterprise_id"] == tenant_id.as_str()).collect();
        for resource_id in [orchestration.as_str(), connection["id"].as_str().expect("id")] {
            let row = theirs
                .iter()
                .find(|r| r["action"] == "create" && r["resource_id"] == resource_id)
                .unwrap_or_else(|| panic!("the create of {resource_id} in {rows:#?}"));
            assert!(row["actor"].as_str().is_some_and(|a| a.starts_with("user:")), "{row}");
            assert!(row["at"].is_string(), "{row}");
            assert_eq!((&row["before"], &row["after"]), (&Value::Null, &Value::Null), "{row}");
            assert_eq!(row["payload_withheld"], true, "{row}");
        }
        assert!(theirs.iter().all(|r| r["after"].is_null() && r["before"].is_null()), "{theirs:#?}");
    }

    // Its own enterprise's rows the platform admin still reads whole.
    let own = entries(&app, &platform, "&resource=orchestration").await;
    let created = own.iter().find(|r| r["resource_id"] == own_orchestration.as_str()).expect("own create");
    assert_eq!(created["after"]["steps"][0]["mapping"]["own"], "platform-own-marker", "{created}");
    assert_eq!(created["payload_withheld"], false);
    // And the tenant's admin reads its own rows whole.
    let tenant_rows = entries(&app, &tenant, "&resource=orchestration").await;
    let created = find(&tenant_rows, "create", "orchestration");
    assert_eq!(created["after"]["description"], "ssn 078-05-1120", "{created}");
    assert_eq!(created["payload_withheld"], false);
}
