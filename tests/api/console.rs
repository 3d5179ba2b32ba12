//! The web console's files: `/` leads to it, every file comes with a strict
//! Content-Security-Policy and its content type, and the page loads nothing from elsewhere.

use reqwest::StatusCode;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_console_is_served_from_the_binary_under_a_strict_policy() {
    let app = TestApp::spawn().await;
    let base = app.url("").replace("/api/v1", "");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let root = client.get(format!("{base}/")).send().await.expect("get /");
    assert_eq!(root.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(root.headers()["location"], "/console/");
    // The page, its style, and every module reachable from app.js through its imports.
    let mut queue = vec!["/console/app.js".to_owned()];
    let mut seen: Vec<String> = Vec::new();
    for (path, kind) in [("/console/", "text/html"), ("/console/style.css", "text/css")] {
        check_file(&client, &base, path, kind).await;
    }
    while let Some(path) = queue.pop() {
        if seen.contains(&path) {
            continue;
        }
        let text = check_file(&client, &base, &path, "text/javascript").await;
        for line in text.lines() {
            if let Some(module) = line.split("from './").nth(1).and_then(|rest| rest.split('\'').next()) {
                queue.push(format!("/console/{module}"));
            }
        }
        seen.push(path);
    }
    assert!(seen.len() >= 10, "the console's modules: {seen:?}");
    let page = client.get(format!("{base}/console/")).send().await.expect("get").text().await.expect("text");
    assert!(!page.contains("<script>") && page.contains(r#"<script type="module" src="/console/app.js">"#));
    let missing = client.get(format!("{base}/console/nope.js")).send().await.expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

/// Fetches one console file and checks its status, type, policy headers and that it names no
/// other host (the SVG namespace is a name, not a place it loads from). Answers its text.
async fn check_file(client: &reqwest::Client, base: &str, path: &str, kind: &str) -> String {
    let response = client.get(format!("{base}{path}")).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let headers = response.headers().clone();
    assert!(headers["content-type"].to_str().expect("ascii").starts_with(kind), "{path}");
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.starts_with("default-src 'self'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let text = response.text().await.expect("text");
    let elsewhere = text.replace("http://www.w3.org/2000/svg", "");
    assert!(!elsewhere.contains("http://") && !elsewhere.contains("https://"), "{path} names no other host");
    text
}
