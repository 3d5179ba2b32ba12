//! The client subcommands against a running server, authenticated with an API key.

use serde_json::{Value, json};

use crate::helpers::{TestApp, guest};
use crate::process::run_dibop;

// The server runs on this runtime while the blocking subprocess waits on another thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_execute_and_push_from_the_command_line() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let key = app.api_key(&token, "cli").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("greet.json");
    let mut definition = json!({"name": "Greet", "parameters": [{"name": "who", "type": "string", "required": true}, {"name": "n", "type": "integer"}],
                                "steps": [{"name": "say", "type": "transform", "transform": "map", "mapping": {"text": "hello ${parameters.who}", "n": "${parameters.n}"}}]});
    std::fs::write(&file, definition.to_string()).expect("write");
    let path = file.to_str().expect("utf-8").to_owned();

    let app_ref = &app;
    let run = |args: Vec<String>| {
        let key = key.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env = [("DIBOP_URL", app_ref.address.as_str()), ("DIBOP_TOKEN", key.as_str())];
            tokio::task::block_in_place(|| run_dibop(&args, &env))
        }
    };
    let (ok, out, err) = run(vec!["orchestration".into(), "apply".into(), "-f".into(), path.clone()]).await;
    assert!(ok && out.contains("Greet version 1"), "{out}{err}");
    definition["description"] = json!("second version");
    std::fs::write(&file, definition.to_string()).expect("write");
    let (ok, out, err) = run(vec!["orchestration".into(), "apply".into(), "-f".into(), path]).await;
    assert!(ok && out.contains("Greet version 2"), "{out}{err}");
    // The same definition as YAML (a third version).
    let yaml = dir.path().join("greet.yaml");
    let text = "name: Greet\nparameters:\n  - {name: who, type: string, required: true}\n  - {name: n, type: integer}\n\
                steps:\n  - name: say\n    type: transform\n    transform: map\n    mapping:\n      \
                text: \"hello ${parameters.who}\"\n      n: \"${parameters.n}\"\n";
    std::fs::write(&yaml, text).expect("write");
    let (ok, out, err) =
        run(vec!["orchestration".into(), "apply".into(), "-f".into(), yaml.to_str().expect("utf-8").into()]).await;
    assert!(ok && out.contains("Greet version 3"), "{out}{err}");

    let (ok, out, err) =
        run(vec!["execute".into(), "Greet".into(), "--param".into(), "who=world".into(), "-p".into(), "n=3".into()])
            .await;
    assert!(ok, "{out}{err}");
    let summary: Value = serde_json::from_str(&out).expect("summary JSON");
    assert_eq!(summary["output"], json!({"text": "hello world", "n": 3}));

    let (ok, _, err) = run(vec!["execute".into(), "Greet".into()]).await;
    assert!(!ok && err.contains("422 VALIDATION_ERROR") && err.contains("parameters.who"), "{err}");
    let (ok, _, err) = run(vec!["execute".into(), "Nope".into()]).await;
    assert!(!ok && err.contains("no orchestration named"), "{err}");

    let wasm = dir.path().join("hostile.wasm");
    std::fs::write(&wasm, guest("hostile")).expect("write wasm");
    let (ok, out, err) = run(vec!["plugin".into(), "push".into(), wasm.to_str().expect("utf-8").into()]).await;
    assert!(ok && out.contains("hostile 1.0.0 (connector"), "{out}{err}");
}
