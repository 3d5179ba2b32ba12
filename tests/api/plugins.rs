//! Plugin uploads and the catalogue: the bundled connectors, idempotent uploads of immutable
//! versions, refused uploads (with the reason, leaving no compiled artifact behind), who may
//! upload and publish globally, disabled versions, and the compile timeout.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, TestApp, assert_error, guest};

#[tokio::test]
async fn the_bundled_connectors_form_the_catalogue() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let systems: Value = app.get(&token, "/systems").await.json().await.expect("json");
    let slugs: Vec<&str> =
        systems["data"].as_array().expect("data").iter().map(|s| s["slug"].as_str().expect("slug")).collect();
    assert_eq!(slugs, ["dms", "rest", "vpic"], "connectors only, sorted: {systems}");
    let vpic = systems["data"].as_array().expect("data").iter().find(|s| s["slug"] == "vpic").expect("vpic");
    for field in ["name", "type", "description", "version"] {
        assert!(vpic[field].as_str().is_some_and(|v| !v.is_empty()), "{field}: {vpic}");
    }
    assert!(vpic["operations"].as_u64().expect("count") >= 1);
    // What a connection needs: the auth kind and the config keys, secret ones marked.
    assert_eq!(vpic["auth"], "none", "{vpic}");
    let keys: Vec<(&str, bool)> = vpic["config"]
        .as_array()
        .expect("config")
        .iter()
        .map(|k| (k["name"].as_str().expect("name"), k["secret"].as_bool().expect("secret")))
        .collect();
    assert_eq!(keys, [("base_url", false), ("api_key", true)], "{vpic}");

    let apis: Value = app.get(&token, "/systems/vpic/apis").await.json().await.expect("json");
    let decode = apis["data"].as_array().expect("data").iter().find(|a| a["name"] == "decode_vin").expect("decode_vin");
    assert_eq!(decode["method"], "GET");
    assert!(decode["path"].as_str().expect("path").contains("DecodeVinValues"));
    assert!(decode["input_schema"].is_object() && decode["output_schema"].is_object(), "{decode}");
    let dms: Value = app.get(&token, "/systems/dms/apis").await.json().await.expect("json");
    let names: Vec<&str> =
        dms["data"].as_array().expect("data").iter().map(|a| a["name"].as_str().expect("name")).collect();
    for op in ["get_vehicle", "list_inventory", "get_customer", "create_customer"] {
        assert!(names.contains(&op), "{op} in {names:?}");
    }
    assert_error(app.get(&token, "/systems/nope/apis").await, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    let plugins: Value = app.get(&token, "/plugins?page_size=200").await.json().await.expect("json");
    let check = plugins["data"].as_array().expect("data").iter().find(|p| p["slug"] == "vin-check").expect("vin-check");
    assert_eq!(check["world"], "transform");
    assert_eq!(check["scope"], "global");
    assert_eq!(check["bundled"], true);
}

#[tokio::test]
async fn uploading_a_component_is_idempotent_and_versions_are_immutable() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let bytes = guest("hostile");
    let first = app.upload(&token, bytes.clone(), None).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["slug"], "hostile");
    assert_eq!(first["world"], "connector");
    assert_eq!(first["scope"], "enterprise");
    assert_eq!(first["sha256"].as_str().expect("sha").len(), 64);
    assert!(first["operations"].as_array().expect("ops").iter().any(|o| o["name"] == "spin"));

    let again = app.upload(&token, bytes.clone(), None).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);

    // Same slug and version, different bytes: a custom section appended keeps it a valid component.
    let mut changed = bytes;
    changed.extend_from_slice(&[0x00, 0x06, 0x05, b'd', b'i', b'b', b'o', b'p']);
    let conflict = app.upload(&token, changed, None).await;
    assert_error(conflict, StatusCode::CONFLICT, "CONFLICT").await;

    let listed: Value = app.get(&token, "/plugins?page_size=200").await.json().await.expect("json");
    let hostile: Vec<&Value> =
        listed["data"].as_array().expect("data").iter().filter(|p| p["slug"] == "hostile").collect();
    assert_eq!(hostile.len(), 1, "the conflicting upload stored nothing");
    let id = first["id"].as_str().expect("id");
    let one: Value = app.get(&token, &format!("/plugins/{id}")).await.json().await.expect("json");
    assert_eq!(one["sha256"], first["sha256"]);
    let systems: Value = app.get(&token, "/systems").await.json().await.expect("json");
    assert!(
        systems["data"].as_array().expect("data").iter().any(|s| s["slug"] == "hostile"),
        "a private connector joins the catalogue"
    );
}

#[tokio::test]
async fn uploads_that_are_not_plugin_components_are_rejected_with_the_reason() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let cases: [(Vec<u8>, &str); 4] = [
        (b"definitely not wasm".to_vec(), "not a WebAssembly binary"),
        (b"\0asm\x01\0\0\0".to_vec(), "core WebAssembly module"),
        (b"\x7fELF\x02\x01\x01\0\0\0\0\0".to_vec(), "precompiled"),
        (guest("not_a_plugin"), "neither the dibop:plugin connector world"),
    ];
    for (bytes, reason) in cases {
        let body =
            assert_error(app.upload(&token, bytes, None).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
                .await;
        let message = body["error"]["details"][0]["message"].as_str().expect("message");
        assert!(message.contains(reason), "{reason:?} not in {message:?}");
    }
    let wrong_type = app
        .client
        .post(app.url("/plugins"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_error(wrong_type, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    let listed: Value = app.get(&token, "/plugins?page_size=200").await.json().await.expect("json");
    assert!(listed["data"].as_array().expect("data").iter().all(|p| p["bundled"] == true), "nothing stored");
}

#[tokio::test]
async fn a_refused_upload_leaves_no_compiled_artifact_behind() {
    use sha2::Digest;
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let bytes = guest("not_a_plugin");
    let sha = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_error(app.upload(&token, bytes, None).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let artifacts = app.data_dir().join("plugins").join("artifacts");
    let left: Vec<String> = std::fs::read_dir(&artifacts)
        .expect("artifacts dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&sha))
        .collect();
    assert!(left.is_empty(), "compiled artifacts of a refused upload: {left:?}");
}

#[tokio::test]
async fn only_admins_upload_and_only_platform_rights_publish_globally() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "viewer@test.example", "viewer").await;
    let viewer = app.token("viewer@test.example", ADMIN_PASSWORD).await;
    assert_error(app.upload(&viewer, guest("hostile"), None).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let other = app.second_enterprise("uploaders").await;
    assert_error(app.upload(&other, guest("hostile"), Some("global")).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_error(
        app.upload(&other, guest("hostile"), Some("everywhere")).await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;

    // A private upload is invisible to other enterprises; a global one is visible to all.
    let private: Value = app.upload(&other, guest("hostile"), None).await.json().await.expect("json");
    let id = private["id"].as_str().expect("id");
    assert_error(app.get(&admin, &format!("/plugins/{id}")).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_eq!(app.upload(&admin, guest("hostile"), Some("global")).await.status(), StatusCode::CREATED);
    let systems: Value = app.get(&other, "/systems").await.json().await.expect("json");
    assert_eq!(systems["data"].as_array().expect("data").iter().filter(|s| s["slug"] == "hostile").count(), 1);
}

#[tokio::test]
async fn a_disabled_version_leaves_the_catalogue() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let uploaded: Value = app.upload(&token, guest("hostile"), None).await.json().await.expect("json");
    let id = uploaded["id"].as_str().expect("id");
    assert_eq!(app.delete(&token, &format!("/plugins/{id}")).await.status(), StatusCode::NO_CONTENT);
    let one: Value = app.get(&token, &format!("/plugins/{id}")).await.json().await.expect("json");
    assert_eq!(one["status"], "disabled");
    let systems: Value = app.get(&token, "/systems").await.json().await.expect("json");
    assert!(!systems["data"].as_array().expect("data").iter().any(|s| s["slug"] == "hostile"));
}

/// `bytes` with a custom section holding `payload` appended: still the same component, but bytes
/// (and a sha256) no server of this process has compiled yet.
fn with_custom_section(mut bytes: Vec<u8>, payload: &str) -> Vec<u8> {
    let name = b"dibop-test";
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && payload.len() < 128, "one-byte LEB128 sizes");
    bytes.extend_from_slice(&[0x00, size as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

/// Files of `dir` whose names start with `prefix`.
fn files_starting_with(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_upload_whose_compile_outlasts_the_compile_timeout_is_refused_and_leaves_nothing() {
    // Given a server that waits 1 ms for a compile, and a real component no server compiled yet.
    let strict = TestApp::spawn_with(|config| config.compile_timeout_ms = 1).await;
    let token = strict.admin_token().await;
    let bytes = with_custom_section(guest("hostile"), &uuid::Uuid::new_v4().to_string());
    let sha256 = dibop::plugins::registry::sha256_hex(&bytes);

    // When it is uploaded, then it is refused in the error shape, saying why; twice, so nothing
    // of the first attempt was kept in memory either.
    for _ in 0..2 {
        let refused = strict.upload(&token, bytes.clone(), None).await;
        let body = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        assert_eq!(body["error"]["details"][0]["path"], "body", "{body}");
        let message = body["error"]["details"][0]["message"].as_str().expect("message");
        assert!(message.contains("compiling the component took longer than this server allows (1 ms"), "{message}");
        assert!(message.contains("DIBOP_COMPILE_TIMEOUT_MS"), "{message}");
    }

    // A fresh server with the default timeout accepts the same bytes. Compiles run one at a
    // time, so this one ran after the abandoned ones had ended.
    let normal = TestApp::spawn().await;
    let normal_token = normal.admin_token().await;
    let accepted = normal.upload(&normal_token, bytes, None).await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let accepted: Value = accepted.json().await.expect("json");
    assert_eq!(accepted["sha256"], sha256.as_str());
    let plugins = |app: &TestApp| app.data_dir().join("plugins");
    assert_eq!(files_starting_with(&plugins(&normal).join("artifacts"), &sha256).len(), 1, "compiled artifact kept");
    assert_eq!(files_starting_with(&plugins(&normal).join("blobs"), &sha256).len(), 1, "component stored");

    // The strict server kept nothing: no plugin, no stored component, no compiled artifact.
    let listed: Value = strict.get(&token, "/plugins?page_size=200").await.json().await.expect("json");
    assert!(listed["data"].as_array().expect("data").iter().all(|p| p["bundled"] == true), "{listed}");
    assert_eq!(files_starting_with(&plugins(&strict).join("artifacts"), &sha256), Vec::<String>::new());
    assert_eq!(files_starting_with(&plugins(&strict).join("blobs"), &sha256), Vec::<String>::new());
}
