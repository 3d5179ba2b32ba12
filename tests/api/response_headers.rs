//! What every answer tells the browser (no sniffing, no referrer, no framing), the Swagger UI's
//! Content-Security-Policy, and what a failed login leaves in the audit log.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn assert_protected(headers: &HeaderMap, what: &str) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"), "{what}: {headers:?}");
}

#[tokio::test]
async fn every_answer_forbids_sniffing_referrers_and_framing_errors_included() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let client = &app.client;
    let base = &app.address;
    let answers = [
        ("200", app.get(&token, "/settings").await),
        ("401 without a token", client.get(format!("{base}/api/v1/settings")).send().await.expect("send")),
        ("404 no such id", app.get(&token, "/connections/nothing-here").await),
        ("404 no such route", client.get(format!("{base}/api/v1/nowhere")).send().await.expect("send")),
        ("404 outside the API", client.get(format!("{base}/nowhere")).send().await.expect("send")),
        ("405", client.delete(format!("{base}/api/v1/auth/login")).send().await.expect("send")),
        ("422", app.post(&token, "/orchestrations", json!({"name": "x"})).await),
        (
            "400 malformed JSON",
            client
                .post(format!("{base}/api/v1/orchestrations"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{")
                .send()
                .await
                .expect("send"),
        ),
        ("the OpenAPI document", client.get(format!("{base}/api/v1/openapi.json")).send().await.expect("send")),
        ("a probe", client.get(format!("{base}/healthz")).send().await.expect("send")),
    ];
    for (what, response) in answers {
        assert_protected(response.headers(), what);
        let status = response.status();
        assert!(what.starts_with(status.as_str()) || status == StatusCode::OK, "{what}: {status}");
    }
}

#[tokio::test]
async fn the_swagger_ui_has_a_content_security_policy_of_its_own() {
    let app = TestApp::spawn().await;
    let page = app.client.get(format!("{}/api/v1/docs/", app.address)).send().await.expect("send");
    assert_eq!(page.status(), StatusCode::OK);
    assert_protected(page.headers(), "the Swagger UI");
    let policy = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    for part in
        ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "object-src 'none'", "base-uri 'none'"]
    {
        assert!(policy.contains(part), "{policy}");
    }
    assert!(!policy.contains("unsafe-eval") && !policy.contains("script-src 'self' 'unsafe-inline'"), "{policy}");
    // Its page runs no inline script, which the policy would refuse.
    let html = page.text().await.expect("text");
    assert!(!html.contains("<script>"), "{html}");
    // The console keeps its own policy.
    let console = app.client.get(format!("{}/console/", app.address)).send().await.expect("send");
    let console_policy = console.headers()["content-security-policy"].to_str().expect("ascii");
    assert!(console_policy.contains("form-action 'self'"), "{console_policy}");
}

#[tokio::test]
async fn a_failed_login_keeps_an_escaped_address_and_never_a_password() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    for email in ["correct horse battery staple", "Tr0ub4dor&3", "ada\u{1b}[2J\u{202e}@example.com"] {
        assert_eq!(app.login(email, "whatever-password").await.status(), StatusCode::UNAUTHORIZED, "{email}");
    }
    let rows: Value = app.get(&token, "/audit-log?action=login_failed&page_size=100").await.json().await.expect("json");
    let actors: Vec<&str> =
        rows["data"].as_array().expect("data").iter().map(|r| r["actor"].as_str().expect("actor")).collect();
    assert_eq!(actors.len(), 3, "{rows}");
    assert!(actors.contains(&"email:ada\\u{1b}[2j\\u{202e}@example.com"), "{actors:?}");
    assert_eq!(actors.iter().filter(|a| **a == "email:[not an address]").count(), 2, "{actors:?}");
    let text = rows.to_string();
    for leaked in ["horse", "Tr0ub4dor", "\u{1b}", "\u{202e}"] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
}
