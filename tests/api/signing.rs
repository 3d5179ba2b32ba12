//! Signed plugins: keys made and components signed with the CLI, signers trusted by platform
//! admins, uploads verified, and enterprises that accept signed uploads only.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, guest};
use crate::process::run_dibop;

/// `dibop ARGS` with its stdout trimmed (a public key or a signature).
fn dibop(args: &[&str]) -> (bool, String, String) {
    let (ok, out, err) = run_dibop(args, &[]);
    (ok, out.trim().to_owned(), err)
}

async fn upload_signed(app: &TestApp, token: &str, bytes: Vec<u8>, signature: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/api/v1/plugins", app.address))
        .bearer_auth(token)
        .header("content-type", "application/wasm");
    if let Some(signature) = signature {
        request = request.header("x-dibop-signature", signature);
    }
    request.body(bytes).send().await.expect("upload")
}

#[tokio::test]
async fn uploads_are_verified_against_trusted_signers_and_enterprises_may_require_them() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("author.key");
    let (ok, public, err) = dibop(&["plugin", "keygen", "--out", key.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    let (ok, _, _) = dibop(&["plugin", "keygen", "--out", key.to_str().expect("utf-8")]);
    assert!(!ok, "an existing key is never overwritten");
    let component = dir.path().join("lookup.wasm");
    std::fs::write(&component, guest("lookup_v1")).expect("component");
    let (ok, signature, err) =
        dibop(&["plugin", "sign", component.to_str().expect("utf-8"), "--key", key.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    let sig_file = std::fs::read_to_string(dir.path().join("lookup.wasm.sig")).expect("FILE.sig");
    assert_eq!(sig_file.trim(), signature);

    // Not trusted yet: the signature verifies with no trusted key, and nothing is stored.
    let refused = upload_signed(&app, &token, guest("lookup_v1"), Some(&signature)).await;
    let body = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"][0]["path"], "x-dibop-signature", "{body}");
    let plugins: Value = app.get(&token, "/plugins?page_size=100").await.json().await.expect("json");
    assert!(!plugins.to_string().contains("\"lookup\""), "{plugins}");

    // Only platform rights trust a signer; any admin reads them.
    let admin_of_other = app.second_enterprise("makers").await;
    let input = json!({"name": "Acme connectors", "public_key": public});
    let forbidden = app.post(&admin_of_other, "/plugin-signers", input.clone()).await;
    assert_error(forbidden, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let bad = app.post(&token, "/plugin-signers", json!({"name": "x", "public_key": "AAAA"})).await;
    let body = assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["error"]["details"][0]["path"], "public_key", "{body}");
    let created = app.post(&token, "/plugin-signers", input.clone()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let signer: Value = created.json().await.expect("json");
    assert_eq!(signer["fingerprint"].as_str().expect("fingerprint").len(), 16, "{signer}");
    assert_error(app.post(&token, "/plugin-signers", input).await, StatusCode::CONFLICT, "CONFLICT").await;
    let listed: Value = app.get(&admin_of_other, "/plugin-signers").await.json().await.expect("json");
    assert_eq!(listed[0]["name"], "Acme connectors", "{listed}");

    // Trusted: the upload verifies and the catalogue shows who signed it.
    let uploaded = upload_signed(&app, &token, guest("lookup_v1"), Some(&signature)).await;
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let plugin: Value = uploaded.json().await.expect("json");
    assert_eq!(plugin["signed_by"], "Acme connectors", "{plugin}");
    let systems: Value = app.get(&token, "/systems?page_size=100").await.json().await.expect("json");
    let lookup = systems["data"].as_array().expect("data").iter().find(|s| s["slug"] == "lookup").expect("lookup");
    assert_eq!(lookup["signed_by"], "Acme connectors", "{lookup}");
    // A signature of other bytes does not verify for these.
    let other = upload_signed(&app, &token, guest("lookup_v2"), Some(&signature)).await;
    assert_error(other, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;

    // An enterprise that requires signatures refuses unsigned uploads; signed ones pass.
    let settings: Value = app
        .put(&admin_of_other, "/settings", json!({"require_signed_plugins": true}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(settings["require_signed_plugins"], true, "{settings}");
    let unsigned = upload_signed(&app, &admin_of_other, guest("lookup_v2"), None).await;
    let body = assert_error(unsigned, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert!(
        body["error"]["details"][0]["message"].as_str().expect("message").contains("signed plugins only"),
        "{body}"
    );
    let signed = upload_signed(&app, &admin_of_other, guest("lookup_v1"), Some(&signature)).await;
    assert_eq!(signed.status(), StatusCode::CREATED);

    // `dibop plugin push` sends FILE.sig.
    let second = dir.path().join("lookup2.wasm");
    std::fs::write(&second, guest("lookup_v2")).expect("component");
    let (ok, _, err) =
        dibop(&["plugin", "sign", second.to_str().expect("utf-8"), "--key", key.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    let api_key = app.api_key(&token, "pusher").await;
    let (ok, out, err) = tokio::task::spawn_blocking({
        let (component, address, key) = (second.clone(), app.address.clone(), api_key);
        move || {
            let env = [("DIBOP_URL", address.as_str()), ("DIBOP_TOKEN", key.as_str())];
            run_dibop(&["plugin", "push", component.to_str().expect("utf-8")], &env)
        }
    })
    .await
    .expect("joined");
    assert!(ok && out.contains("lookup 2.0.0") && out.contains("signed by Acme connectors"), "{out}{err}");

    // Removing the signer (platform rights) leaves what it signed as it was.
    let id = signer["id"].as_str().expect("id");
    assert_eq!(app.delete(&token, &format!("/plugin-signers/{id}")).await.status(), StatusCode::NO_CONTENT);
    let again = upload_signed(&app, &admin_of_other, guest("lookup_v2"), Some(&signature)).await;
    assert_error(again, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
}
