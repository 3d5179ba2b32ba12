//! The bundled VIN-check transform, run through the plugin host (transform steps reach it
//! through the orchestration engine; this checks the component itself).

use dibop::plugins::registry::sha256_hex;
use dibop::plugins::{CallSpec, Loaded, PluginHost};
use serde_json::json;

use crate::helpers::guest;

async fn vin_check() -> (PluginHost, dibop::plugins::TransformPre, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = PluginHost::new(dir.path(), false, 0).expect("host");
    let bytes = guest("vin_check");
    let Ok(Loaded::Transform(pre)) = host.load(&sha256_hex(&bytes), &bytes).await else {
        panic!("vin_check is a transform component")
    };
    (host, pre, dir)
}

#[tokio::test]
async fn the_vin_check_transform_verifies_the_iso_3779_check_digit() {
    let (host, pre, _dir) = vin_check().await;
    let spec = CallSpec::default();
    let valid =
        host.run_transform(&pre, &spec, &json!({"vin": "1hgcm82633a004352"}), &json!({})).await.result.expect("runs");
    assert_eq!(valid["vin"], "1HGCM82633A004352");
    assert_eq!(valid["valid"], true, "{valid}");
    assert_eq!(valid["expected_check_digit"], "3");

    let tampered = host.run_transform(&pre, &spec, &json!("1HGCM82633A004353"), &json!({})).await.result.expect("runs");
    assert_eq!(tampered["valid"], false, "{tampered}");

    let short = host.run_transform(&pre, &spec, &json!({"vin": "ABC"}), &json!({})).await.result.expect("runs");
    assert_eq!(short["valid"], false);
    assert!(!short["errors"].as_array().expect("errors").is_empty(), "{short}");

    let wrong = host.run_transform(&pre, &spec, &json!(42), &json!({})).await.result.expect_err("not a VIN");
    assert_eq!(wrong.code, "invalid_input");
}
