//! Supply chain: a capability-widening version is approved by someone other than its uploader
//! and is told apart from every version the enterprise sees; an enterprise that requires signed
//! plugins connects to no unsigned global one; `dibop connector test` keeps a component to the
//! hosts it declares, as the server does.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, assert_error, detail_paths, guest};
use crate::process::run_dibop;

async fn set_status(app: &TestApp, token: &str, id: &str, status: &str) -> reqwest::Response {
    app.request(Method::PATCH, token, &format!("/plugins/{id}"), Some(json!({"status": status}))).await
}

async fn uploaded(app: &TestApp, token: &str, name: &str) -> Value {
    let response = app.upload(token, guest(name), None).await;
    assert_eq!(response.status(), StatusCode::CREATED, "upload {name}");
    response.json().await.expect("json")
}

#[tokio::test]
async fn a_widening_version_is_approved_by_someone_other_than_its_uploader() {
    let app = TestApp::spawn().await;
    let admin = app.second_enterprise("acme").await;
    uploaded(&app, &admin, "lookup_v1").await;
    let key = app.api_key(&admin, "ci").await;
    let wider = uploaded(&app, &key, "lookup_v2").await;
    assert_eq!(wider["status"], "pending", "{wider}");
    let id = wider["id"].as_str().expect("id");

    // Neither the key that uploaded it nor the admin who made that key approves it.
    for uploader in [&key, &admin] {
        let refused = set_status(&app, uploader, id, "active").await;
        let body = assert_error(refused, StatusCode::FORBIDDEN, "FORBIDDEN").await;
        assert!(body["error"]["message"].as_str().expect("message").contains("other than its uploader"), "{body}");
    }
    let shown: Value = app.get(&admin, &format!("/plugins/{id}")).await.json().await.expect("json");
    assert_eq!(shown["status"], "pending");
    // Another admin of the enterprise does.
    app.create_user(&admin, "second@acme.example", "enterprise_admin").await;
    let other = app.token("second@acme.example", ADMIN_PASSWORD).await;
    let approved = set_status(&app, &other, id, "active").await;
    assert_eq!(approved.status(), StatusCode::OK);
    let approved: Value = approved.json().await.expect("json");
    assert_eq!(approved["status"], "active", "{approved}");
}

#[tokio::test]
async fn disabling_the_narrower_version_does_not_let_a_wider_one_in_unapproved() {
    let app = TestApp::spawn().await;
    let admin = app.second_enterprise("beta").await;
    let narrow = uploaded(&app, &admin, "lookup_v1").await;
    let disabled = set_status(&app, &admin, narrow["id"].as_str().expect("id"), "disabled").await;
    assert_eq!(disabled.status(), StatusCode::OK);
    // Compared with every version the enterprise sees, a disabled one included.
    let wider = uploaded(&app, &admin, "lookup_v2").await;
    assert_eq!(wider["status"], "pending", "{wider}");
}

#[tokio::test]
async fn an_enterprise_that_requires_signatures_connects_to_no_unsigned_global_plugin() {
    let app = TestApp::spawn().await;
    let platform = app.admin_token().await;
    let global = app.upload(&platform, guest("lookup_v1"), Some("global")).await;
    assert_eq!(global.status(), StatusCode::CREATED);
    let admin = app.second_enterprise("strict").await;
    // Before it requires signatures, it may connect to it.
    app.create_connection(&admin, json!({"name": "before", "system": "lookup"})).await;
    let set = app.put(&admin, "/settings", json!({"require_signed_plugins": true})).await;
    assert_eq!(set.status(), StatusCode::OK);

    let refused = app.post(&admin, "/connections", json!({"name": "after", "system": "lookup"})).await;
    let body = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&body), ["plugin_version"], "{body}");
    assert!(body.to_string().contains("unsigned plugin of the global catalogue"), "{body}");
    let dry = app.post(&admin, "/connections?dry_run=true", json!({"name": "after", "system": "lookup"})).await;
    assert_error(dry, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    // The plugins shipped with DIBOP are part of the runtime: still connectable.
    app.create_connection(
        &admin,
        json!({"name": "rest", "system": "rest", "config": {"base_url": "http://127.0.0.1:9/api",
                                                             "operations": {"x": {"method": "GET", "path": "/x"}}}}),
    )
    .await;
}

#[test]
fn connector_test_keeps_a_component_to_the_hosts_it_declares() {
    let dir = tempfile::tempdir().expect("dir");
    let component = dir.path().join("lookup.wasm");
    std::fs::write(&component, guest("lookup_v1")).expect("component");
    let run = |extra: &[&str]| {
        let mut args = vec!["connector", "test", component.to_str().expect("utf-8"), "--operation", "find"];
        args.extend_from_slice(extra);
        run_dibop(&args, &[])
    };
    let (ok, out, err) = run(&[]);
    assert!(ok && out.contains("1.0.0"), "{out}{err}");
    for extra in [["--allow-host", "127.0.0.1:9"], ["--config", "base_url=http://127.0.0.1:9/x"]] {
        let (ok, out, err) = run(&extra);
        assert!(!ok, "{out}{err}");
        assert!(err.contains("127.0.0.1:9 is outside the hosts lookup 1.0.0 declares"), "{err}");
    }
    let (ok, _, err) = run(&["--allow-host", "api.lookup.example"]);
    assert!(ok, "a declared host is fine: {err}");
}
