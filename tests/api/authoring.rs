//! `dibop connector new | build | test`: a project in each language is written, built with the
//! pinned tools, unit-tested in its own language and run in the sandbox against the mock, as a
//! new author would; then the Rust one goes the whole way to an executed orchestration. These
//! tests use no database, so the PostgreSQL pass of the suite skips them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TestApp, on_postgres};
use crate::mock::MockServer;
use crate::process::run_dibop;

const KEY: &str = "shop-key-123456";

/// Runs `dibop ARGS` (blocking this worker thread); answers success, stdout, stderr.
fn dibop(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    // Rust projects share one build cache across runs of the suite.
    let projects = target_dir().join("connector-projects");
    let mut env = env.to_vec();
    env.push(("CARGO_TARGET_DIR", projects.to_str().expect("utf-8")));
    tokio::task::block_in_place(|| run_dibop(args, &env))
}

/// `target/` (or CARGO_TARGET_DIR) of this build.
fn target_dir() -> PathBuf {
    let guests = Path::new(dibop::plugins::registry::GUEST_DIR);
    guests.ancestors().find(|p| p.ends_with("wasm-plugins")).and_then(Path::parent).expect("target dir").to_owned()
}

/// `dibop connector new NAME --lang LANG` in `parent`, then `build`; answers the project and
/// the component.
fn new_and_build(parent: &Path, name: &str, lang: &str, edit: impl FnOnce(&Path)) -> (PathBuf, PathBuf) {
    let parent_text = parent.to_str().expect("utf-8");
    let (ok, out, err) = dibop(&["connector", "new", name, "--lang", lang, "--dir", parent_text], &[]);
    assert!(ok, "new {lang}: {out}{err}");
    let project = PathBuf::from(out.trim());
    assert_eq!(project, parent.join(name));
    edit(&project);
    let (ok, out, err) = dibop(&["connector", "build", project.to_str().expect("utf-8")], &[]);
    assert!(ok, "build {lang}: {out}{err}");
    let component = PathBuf::from(out.trim());
    assert_eq!(component, project.join("dist").join(format!("{name}.wasm")));
    (project, component)
}

/// `dibop connector test COMPONENT ARGS` against the mock; answers success and the report.
fn try_call(component: &Path, mock: &MockServer, args: &[&str]) -> (bool, Value) {
    let base = format!("base_url={}/shop", mock.base);
    let secret = format!("api_key={KEY}");
    let mut all = vec!["connector", "test", component.to_str().expect("utf-8"), "--config", &base, "--secret", &secret];
    all.extend_from_slice(args);
    all.push("--allow-private-networks");
    let (ok, out, err) = dibop(&all, &[]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (ok, report)
}

/// The item the template's `get_item` reads, with its request and redacted key.
fn assert_reads_the_item(component: &Path, mock: &MockServer) {
    let (ok, report) = try_call(component, mock, &["--operation", "get_item", "--input", r#"{"id": "42"}"#]);
    assert!(ok, "{report}");
    assert_eq!(report["output"], json!({"id": "42", "name": "Wheel", "price": 120.5}), "{report}");
    let calls = report["api_calls"].as_array().expect("api_calls");
    assert_eq!(calls.len(), 1, "{report}");
    assert_eq!((&calls[0]["method"], &calls[0]["status_code"]), (&json!("GET"), &json!(200)), "{report}");
    assert!(calls[0]["url"].as_str().expect("url").ends_with("/shop/items/42"), "{report}");
    assert!(!report.to_string().contains(KEY), "the key is redacted everywhere: {report}");

    // Input that breaks the operation's input_schema never reaches the connector.
    let (ok, report) = try_call(component, mock, &["--operation", "get_item", "--input", r#"{"id": 7}"#]);
    assert!(!ok);
    assert_eq!(report["error"]["code"], "invalid_input", "{report}");
    assert!(report["error"]["message"].as_str().expect("message").contains("id: 7 is not of type"), "{report}");
    assert_eq!(report["api_calls"], json!([]));

    // An item the system does not have fails the call with the connector's own error; the
    // request is shown with its status.
    let (ok, report) = try_call(component, mock, &["--operation", "get_item", "--input", r#"{"id": "404"}"#]);
    assert!(!ok);
    assert_eq!(report["error"]["code"], "not_found", "{report}");
    assert_eq!(report["api_calls"][0]["status_code"], 404, "{report}");

    // A host outside the allow-list is refused inside the sandbox, and shown.
    let elsewhere = "base_url=http://192.0.2.1/shop";
    let (ok, out, _) = dibop(
        &[
            "connector",
            "test",
            component.to_str().expect("utf-8"),
            "--config",
            elsewhere,
            "--secret",
            &format!("api_key={KEY}"),
            "--operation",
            "get_item",
            "--input",
            r#"{"id": "42"}"#,
        ],
        &[],
    );
    assert!(!ok);
    let report: Value = serde_json::from_str(&out).expect("report");
    assert_eq!(report["api_calls"][0]["status"], "error", "{report}");
}

/// The template's operation and capabilities work, and its `explode` operation (a bug the test
/// added) fails `trap` naming the `exception` and the author's `file`.
fn assert_works_and_keeps_the_words_of(component: &Path, mock: &MockServer, exception: &str, file: &str) {
    assert_reads_the_item(component, mock);
    let (_, report) = try_call(component, mock, &[]);
    assert_eq!(report["describe"]["capabilities"], json!({"hosts": ["*"], "memory_mb": 64}), "{report}");
    let (ok, report) = try_call(component, mock, &["--operation", "explode"]);
    assert!(!ok);
    assert_eq!(report["error"]["code"], "trap", "{report}");
    let message = report["error"]["message"].as_str().expect("message");
    assert!(message.contains(exception) && message.contains(file), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_connector_goes_from_new_to_an_executed_orchestration() {
    if on_postgres() {
        return eprintln!("skipped on the PostgreSQL pass: no database involved");
    }
    let mock = MockServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (project, component) = new_and_build(dir.path(), "shop-items", "rust", |_| {});
    // Its unit test passes on the host target.
    let test = tokio::task::block_in_place(|| {
        Command::new("cargo")
            .arg("test")
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", target_dir().join("connector-projects"))
            .output()
    })
    .expect("cargo test");
    assert!(test.status.success(), "{}", String::from_utf8_lossy(&test.stderr));
    let (ok, report) = try_call(&component, &mock, &[]);
    assert!(ok && report["describe"]["slug"] == "shop-items", "{report}");
    assert_eq!(report["describe"]["capabilities"], json!({"hosts": ["*"], "memory_mb": 64}), "{report}");
    assert_reads_the_item(&component, &mock);
    let (ok, report) = try_call(&component, &mock, &["--ping"]);
    assert!(ok && report["output"]["status"] == "online", "{report}");

    // Upload, connect, apply the project's orchestration.yaml, execute: the README's steps.
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let key = app.api_key(&token, "author").await;
    let env = [("DIBOP_URL", app.address.as_str()), ("DIBOP_TOKEN", key.as_str())];
    let (ok, out, err) = dibop(&["plugin", "push", component.to_str().expect("utf-8")], &env);
    assert!(ok && out.contains("shop-items 0.1.0"), "{out}{err}");
    app.create_connection(
        &token,
        json!({"name": "shop-items", "system": "shop-items", "config": {"base_url": format!("{}/shop", mock.base)},
               "credentials": {"api_key": KEY}}),
    )
    .await;
    let yaml = project.join("orchestration.yaml");
    let (ok, out, err) = dibop(&["orchestration", "apply", "-f", yaml.to_str().expect("utf-8")], &env);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = dibop(&["execute", "Shop items lookup", "--param", "id=42"], &env);
    assert!(ok, "{out}{err}");
    let result: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(result["output"]["item"]["name"], "Wheel", "{result}");
    assert_eq!(result["steps_completed"], 1, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_python_connectors_keep_the_authors_words_when_they_throw() {
    if on_postgres() {
        return eprintln!("skipped on the PostgreSQL pass: no database involved");
    }
    let mock = MockServer::start().await;
    let dir = tempfile::tempdir().expect("dir");

    // JavaScript: the template, plus an operation with a bug.
    let (project, component) = new_and_build(dir.path(), "shop-js", "js", |project| {
        let file = project.join("src").join("connector.js");
        let source = std::fs::read_to_string(&file)
            .expect("source")
            .replace("  operations: {\n", "  operations: {\n    explode: { run: (input) => input.missing.name },\n");
        std::fs::write(&file, source).expect("edited");
    });
    let unit = tokio::task::block_in_place(|| Command::new("npm").arg("test").current_dir(&project).output())
        .expect("npm test");
    assert!(unit.status.success(), "{}", String::from_utf8_lossy(&unit.stdout));
    assert_works_and_keeps_the_words_of(&component, &mock, "TypeError", "connector.js:");

    // A describe() mistake names its field and fails at once.
    let (_, broken) = new_and_build(dir.path(), "shop-broken", "js", |project| {
        let file = project.join("src").join("connector.js");
        let source = std::fs::read_to_string(&file)
            .expect("source")
            .replace("outputSchema: { type: 'object' },", "outputSchema: 42,");
        std::fs::write(&file, source).expect("edited");
    });
    let started = std::time::Instant::now();
    let (ok, out, err) = dibop(&["connector", "test", broken.to_str().expect("utf-8")], &[]);
    assert!(!ok, "{out}");
    assert!(err.contains("operations.get_item.outputSchema: expected a JSON Schema object, got 42"), "{err}");
    eprintln!("the broken describe() was refused in {:?}", started.elapsed());

    // Python: the template, plus an operation with a bug.
    let (project, component) = new_and_build(dir.path(), "shop-py", "python", |project| {
        let file = project.join("app.py");
        let source = std::fs::read_to_string(&file).expect("source").replace(
            "OPERATIONS = {\"get_item\": get_item}",
            "def explode(data):\n    return data[\"missing\"]\n\n\nOPERATIONS = {\"get_item\": get_item, \"explode\": explode}",
        );
        std::fs::write(&file, source).expect("edited");
    });
    let unit =
        tokio::task::block_in_place(|| Command::new("python3").args(["-m", "unittest"]).current_dir(&project).output())
            .expect("python3 -m unittest");
    assert!(unit.status.success(), "{}", String::from_utf8_lossy(&unit.stderr));
    assert_works_and_keeps_the_words_of(&component, &mock, "KeyError", "app.py:");
}
