//! A stored secret reaches only the code and the origin it was given to: a new plugin version
//! gets the stored credentials only when they are sent again (dry runs and tests audited),
//! host-managed credentials go to the connection's exact origin, secrets an upstream echoes are
//! redacted from what a step leaves, credential-named headers are write-only, and alert channel
//! URLs that carry a secret are masked.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, assert_error, detail_paths, guest};

/// A system on loopback that remembers the `Authorization` header of each request and echoes
/// the credentials it got back as text and as XML; it also issues OAuth2 tokens.
#[derive(Clone, Default)]
struct Echo {
    authorizations: Arc<Mutex<Vec<Option<String>>>>,
}

impl Echo {
    async fn start() -> (Self, String) {
        let echo = Self::default();
        let app = Router::new()
            .route("/oauth/token", post(issue))
            .route("/api/text", get(text))
            .route("/api/xml", get(xml))
            .route("/api/seen", get(text))
            .with_state(echo.clone());
        (echo, crate::helpers::serve(app).await)
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.authorizations.lock().expect("lock").clone()
    }

    fn remember(&self, headers: &HeaderMap) -> (String, String) {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.authorizations.lock().expect("lock").push(value("authorization"));
        (value("authorization").unwrap_or_default(), value("x-api-key").unwrap_or_default())
    }
}

const LIVE_TOKEN: &str = "live-oauth-token-7f3a9c2e51";

async fn issue() -> impl IntoResponse {
    axum::Json(json!({"access_token": LIVE_TOKEN, "token_type": "Bearer", "expires_in": 3600}))
}

async fn text(State(echo): State<Echo>, headers: HeaderMap) -> impl IntoResponse {
    let (authorization, key) = echo.remember(&headers);
    let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain")], format!("you sent token {token} and key {key}"))
}

async fn xml(State(echo): State<Echo>, headers: HeaderMap) -> impl IntoResponse {
    let (authorization, key) = echo.remember(&headers);
    let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/xml")], format!("<echo><token>{token}</token><key>{key}</key></echo>"))
}

fn operations() -> Value {
    json!({"text": {"method": "GET", "path": "/text"}, "xml": {"method": "GET", "path": "/xml"},
           "seen": {"method": "GET", "path": "/seen"}})
}

#[tokio::test]
async fn a_new_plugin_version_gets_stored_credentials_only_when_they_are_sent_again() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.upload(&token, guest("lookup_v1"), None).await.status(), StatusCode::CREATED);
    let connection = app
        .create_connection(
            &token,
            json!({"name": "lk", "system": "lookup", "credentials": {"api_key": "sk-live-0123456789"}}),
        )
        .await;
    let id = connection["id"].as_str().expect("id");
    assert_eq!(connection["plugin_version"], "1.0.0");
    // An admin API key uploads a version 2 that answers the credential reversed; it is approved.
    let key = app.api_key(&token, "ci").await;
    let uploaded: Value = app.upload(&key, guest("lookup_v2"), None).await.json().await.expect("json");
    let approved = app
        .request(
            reqwest::Method::PATCH,
            &token,
            &format!("/plugins/{}", uploaded["id"].as_str().expect("id")),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(approved.status(), StatusCode::OK);

    // Moving the connection to 2.0.0 without sending the credential again is refused, with a
    // test and a dry run too, and nothing changes.
    let moved = json!({"name": "lk", "system": "lookup", "plugin_version": "2.0.0",
                       "test": {"operation": "reveal", "input": {}}});
    for path in [format!("/connections/{id}?dry_run=true"), format!("/connections/{id}")] {
        let refused = app.put(&key, &path, moved.clone()).await;
        let body = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        assert_eq!(detail_paths(&body), ["credentials"], "{body}");
        assert!(!body.to_string().contains("9876543210"), "{body}");
    }
    let shown: Value = app.get(&token, &format!("/connections/{id}")).await.json().await.expect("json");
    assert_eq!((&shown["plugin_version"], &shown["credentials"]["api_key"]), (&json!("1.0.0"), &json!("****6789")));
    // A range that admits versions the credential was not given to is a new pin too.
    let ranged = json!({"name": "lk", "system": "lookup", "plugin_version": ">=1"});
    let refused = app.put(&key, &format!("/connections/{id}"), ranged).await;
    assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;

    // Sent again, the new version gets the value sent, and the dry run stores nothing.
    let mut resent = moved.clone();
    resent["credentials"] = json!({"api_key": "given-again-42"});
    let tried = app.put(&key, &format!("/connections/{id}?dry_run=true"), resent).await;
    assert_eq!(tried.status(), StatusCode::OK);
    let tried: Value = tried.json().await.expect("json");
    assert_eq!(tried["test"]["output"], json!({"reversed": "24-niaga-nevig"}), "{tried}");
    // The same pin keeps the stored credential.
    let same = app
        .put(&key, &format!("/connections/{id}"), json!({"name": "lk", "system": "lookup", "plugin_version": "1.0.0"}))
        .await;
    let same: Value = same.json().await.expect("json");
    assert_eq!(same["credentials"]["api_key"], "****6789", "{same}");
    app.test_call(&key, id, "find", json!({})).await;

    // Dry runs and connection tests are in the audit log, with who ran them.
    let log: Value = app.get(&token, "/audit-log?resource=connection&page_size=100").await.json().await.expect("json");
    let rows = log["data"].as_array().expect("data");
    let key_actor = |row: &&Value| row["actor"].as_str().is_some_and(|a| a.starts_with("api_key:"));
    let dry_run = rows.iter().filter(key_actor).find(|r| r["action"] == "dry_run").expect("a dry_run row");
    assert_eq!(dry_run["resource_id"], id, "{dry_run}");
    let tests: Vec<&Value> = rows.iter().filter(key_actor).filter(|r| r["action"] == "test").collect();
    let operations: Vec<&Value> = tests.iter().map(|r| &r["after"]["operation"]).collect();
    assert!(operations.contains(&&json!("reveal")) && operations.contains(&&json!("find")), "{log}");
    assert!(!log.to_string().contains("given-again-42") && !log.to_string().contains("24-niaga"), "{log}");
}

#[tokio::test]
async fn host_managed_credentials_go_only_to_the_exact_origin_of_the_connection() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (origin, authority) = Echo::start().await;
    let (elsewhere, other_port) = Echo::start().await;
    let other_port = other_port.rsplit_once(':').expect("port").1.to_owned();
    let bearer = json!({"type": "bearer", "token": "bearer-origin-secret-1234"});
    // The host without a port is allowed on every port for the plugin's requests...
    let rest = app
        .create_connection(
            &token,
            json!({"name": "origin", "system": "rest", "allowed_hosts": ["127.0.0.1"], "auth": bearer,
                   "headers": {"X-Tenant": "t-1"},
                   "config": {"base_url": format!("http://{authority}/api"), "operations": operations()}}),
        )
        .await;
    let called = app.test_call(&token, rest["id"].as_str().expect("id"), "seen", json!({})).await;
    assert_eq!(called["status"], "success", "{called}");
    assert_eq!(origin.seen(), [Some("Bearer bearer-origin-secret-1234".to_owned())]);
    // ...but the credentials go to the base URL's origin only, not to another port of it.
    assert_eq!(app.upload(&token, guest("hostile"), None).await.status(), StatusCode::CREATED);
    let hostile = app
        .create_connection(
            &token,
            json!({"name": "roamer", "system": "hostile", "allowed_hosts": ["127.0.0.1"],
                                          "auth": bearer}),
        )
        .await;
    let url = format!("http://127.0.0.1:{other_port}/api/seen");
    let fetched = app.test_call(&token, hostile["id"].as_str().expect("id"), "fetch", json!({"url": url})).await;
    assert_eq!(fetched["output"]["status"], 200, "{fetched}");
    assert_eq!(elsewhere.seen(), [None], "no credential to another port or scheme");
}

#[tokio::test]
async fn secrets_an_upstream_echoes_are_redacted_from_step_outputs_and_executions() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (_echo, authority) = Echo::start().await;
    let oauth = json!({"type": "oauth2_client_credentials", "token_url": format!("http://{authority}/oauth/token"),
                       "client_id": "me", "client_secret": "client-secret-0099"});
    let api_key = json!({"type": "api_key", "header": "X-Api-Key", "key": "api-key-live-5678"});
    for (name, auth) in [("oauthed", oauth), ("keyed", api_key)] {
        app.create_connection(
            &token,
            json!({"name": name, "system": "rest", "allowed_hosts": [authority], "auth": auth,
                   "config": {"base_url": format!("http://{authority}/api"), "operations": operations()}}),
        )
        .await;
    }
    let step = |name: &str, connection: &str, operation: &str| json!({"name": name, "type": "api_call", "connection": connection, "operation": operation, "parameters": {}});
    let orchestration = app
        .create_orchestration(
            &token,
            json!({"name": "Echoes", "steps": [step("t1", "oauthed", "text"), step("x1", "oauthed", "xml"),
                                               step("t2", "keyed", "text"), step("x2", "keyed", "xml")],
                   "output": {"t1": "${t1.response}", "x1": "${x1.response}", "t2": "${t2.response}",
                              "x2": "${x2.response}"}}),
        )
        .await;
    let started = app.execute(&token, &orchestration, json!({})).await;
    let execution = started["execution_id"].as_str().expect("execution id").to_owned();
    let detail = app.wait_finished(&token, &execution).await;
    assert_eq!(detail["status"], "success", "{detail}");
    let text = detail.to_string();
    assert!(text.contains("you sent token ****") && text.contains("and key ****"), "the echoes, redacted: {text}");
    for secret in [LIVE_TOKEN, "api-key-live-5678", "client-secret-0099"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    app.create_user(&token, "viewer@test.example", "viewer").await;
    let viewer = app.token("viewer@test.example", ADMIN_PASSWORD).await;
    for path in [
        format!("/executions/{execution}"),
        format!("/executions/{execution}/trace"),
        format!("/orchestrations/{orchestration}/executions"),
        "/api-calls?page_size=100".to_owned(),
    ] {
        let shown = app.get(&viewer, &path).await.text().await.expect("text");
        assert!(!shown.contains(LIVE_TOKEN) && !shown.contains("api-key-live-5678"), "{path}: {shown}");
    }
    // The connection test shows the echo redacted too.
    let listed: Value = app.get(&token, "/connections?page_size=100").await.json().await.expect("json");
    let keyed = listed["data"].as_array().expect("data").iter().find(|c| c["name"] == "keyed").expect("keyed");
    let tested = app.test_call(&token, keyed["id"].as_str().expect("id"), "xml", json!({})).await;
    assert!(tested["output"].to_string().contains("****"), "{tested}");
    assert!(!tested.to_string().contains("api-key-live-5678"), "{tested}");
}

#[tokio::test]
async fn credential_headers_are_write_only_and_masked_and_secret_alert_urls_too() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (echo, authority) = Echo::start().await;
    let body = |headers: Value| {
        json!({"name": "hdr", "system": "rest", "allowed_hosts": [authority], "headers": headers,
               "config": {"base_url": format!("http://{authority}/api"), "operations": operations()}})
    };
    let created =
        app.create_connection(&token, body(json!({"Authorization": "Token hdr-secret-0042", "X-Dealer": "42"}))).await;
    let id = created["id"].as_str().expect("id");
    assert_eq!(created["headers"], json!({"Authorization": "****0042", "X-Dealer": "42"}), "{created}");
    // Sending the masked value back keeps the stored one; it still reaches the system.
    let kept: Value = app
        .put(&token, &format!("/connections/{id}"), body(created["headers"].clone()))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(kept["headers"]["Authorization"], "****0042", "{kept}");
    app.test_call(&token, id, "seen", json!({})).await;
    assert_eq!(echo.seen(), [Some("Token hdr-secret-0042".to_owned())]);
    let shown = app.get(&token, &format!("/connections/{id}")).await.text().await.expect("text");
    assert!(!shown.contains("hdr-secret"), "{shown}");
    // Its value is redacted from what calls leave, like the auth's.
    let calls = app.get(&token, "/api-calls?page_size=100").await.text().await.expect("text");
    assert!(!calls.contains("hdr-secret-0042"), "{calls}");
    // Moved elsewhere, a masked value is refused: it must be sent again.
    let mut moved = body(kept["headers"].clone());
    moved["config"]["base_url"] = json!("http://127.0.0.1:9/api");
    moved["allowed_hosts"] = json!(["127.0.0.1:9"]);
    let refused = app.put(&token, &format!("/connections/{id}"), moved).await;
    let error = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&error), ["headers.Authorization"], "{error}");
    // So is leaving the headers out (a PUT keeps what it omits, as shown): the secret does not
    // ride along to the new hosts.
    let mut omitted = body(json!({}));
    omitted.as_object_mut().expect("object").remove("headers");
    omitted["config"]["base_url"] = json!("http://127.0.0.1:9/api");
    omitted["allowed_hosts"] = json!(["127.0.0.1:9"]);
    let refused = app.put(&token, &format!("/connections/{id}"), omitted).await;
    let error = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&error), ["headers.Authorization"], "{error}");

    // Alert channel URLs that carry a secret are masked for everyone and write-only.
    let slack = "https://hooks.slack.com/services/T000/B000/XXXXsecretXk9z";
    let tokened = "https://alerts.example/notify?token=tok-in-query-77";
    let plain = "https://alerts.example/notify";
    let rule = json!({"name": "Failures", "type": "execution_failure", "notification": {"channels": [
        {"type": "slack", "url": slack}, {"type": "webhook", "url": tokened}, {"type": "webhook", "url": plain}]}});
    let created = app.post(&token, "/alert-rules", rule.clone()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let rule_id = created["id"].as_str().expect("id");
    let channels = &created["notification"]["channels"];
    assert_eq!(channels[0]["url"], "https://hooks.slack.com/****Xk9z", "{created}");
    assert_eq!(channels[1]["url"], "https://alerts.example/****y-77", "{created}");
    assert_eq!(channels[2]["url"], plain);
    let viewer_email = "watcher@test.example";
    app.create_user(&token, viewer_email, "viewer").await;
    let viewer = app.token(viewer_email, ADMIN_PASSWORD).await;
    for reader in [&token, &viewer] {
        let shown = app.get(reader, &format!("/alert-rules/{rule_id}")).await.text().await.expect("text");
        assert!(!shown.contains("XXXXsecret") && !shown.contains("tok-in-query"), "{shown}");
    }
    // A PUT with the masked URLs (or without the Slack one's) keeps the stored ones.
    let mut again = rule.clone();
    again["notification"]["channels"] = json!([{"type": "slack"}, channels[1].clone(), channels[2].clone()]);
    again["name"] = json!("Failures, renamed");
    let replaced = app.put(&token, &format!("/alert-rules/{rule_id}"), again).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let replaced: Value = replaced.json().await.expect("json");
    // (A masked URL stored as such would have been refused, as below.)
    assert_eq!(replaced["notification"]["channels"], *channels, "{replaced}");
    // A masked URL that matches no stored channel is refused.
    let mut stray = rule;
    stray["notification"]["channels"] = json!([{"type": "webhook", "url": "https://other.example/****abcd"}]);
    let refused = app.put(&token, &format!("/alert-rules/{rule_id}"), stray).await;
    let error = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&error), ["notification.channels[0].url"], "{error}");
}

#[tokio::test]
async fn a_range_pin_does_not_carry_credentials_to_a_newer_upload() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.upload(&token, guest("lookup_v1"), None).await.status(), StatusCode::CREATED);
    let with_secret = app
        .create_connection(
            &token,
            json!({"name": "kept", "system": "lookup", "plugin_version": ">=1",
                   "credentials": {"api_key": "sk-range-0123456789"}}),
        )
        .await;
    let without =
        app.create_connection(&token, json!({"name": "free", "system": "lookup", "plugin_version": ">=1"})).await;
    let (kept, free) = (with_secret["id"].as_str().expect("id"), without["id"].as_str().expect("id"));
    // A version 2 that answers the credential reversed arrives and is approved; the range admits it.
    let key = app.api_key(&token, "ci").await;
    let uploaded: Value = app.upload(&key, guest("lookup_v2"), None).await.json().await.expect("json");
    let path = format!("/plugins/{}", uploaded["id"].as_str().expect("id"));
    let approved = app.request(reqwest::Method::PATCH, &token, &path, Some(json!({"status": "active"}))).await;
    assert_eq!(approved.status(), StatusCode::OK);

    // The connection without credentials moves with its range; the one with them stays on the
    // build they were given to, so version 2 never sees them.
    assert_eq!(app.test_call(&token, free, "find", json!({})).await["output"]["version"], "2.0.0");
    assert_eq!(app.test_call(&token, kept, "find", json!({})).await["output"]["version"], "1.0.0");
    let revealed =
        app.post(&key, &format!("/connections/{kept}/test"), json!({"operation": "reveal", "input": {}})).await;
    let revealed = revealed.text().await.expect("text");
    assert!(!revealed.contains("9876543210"), "{revealed}");

    // Sent again, the credential goes to the newest build the range admits.
    let resent = json!({"name": "kept", "system": "lookup", "credentials": {"api_key": "given-again-42"}});
    assert_eq!(app.put(&token, &format!("/connections/{kept}"), resent).await.status(), StatusCode::OK);
    let answered = app.test_call(&token, kept, "reveal", json!({})).await;
    assert_eq!(answered["output"], json!({"reversed": "24-niaga-nevig"}), "{answered}");

    // A new pin that does not admit the build the credentials were given to needs them again.
    let pinned = json!({"name": "kept", "system": "lookup", "plugin_version": "1.0.0"});
    let refused = app.put(&token, &format!("/connections/{kept}"), pinned).await;
    let body = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&body), ["credentials"], "{body}");
}
