//! Several nodes on one database: whatever a node needs to run an execution is in the database,
//! not in the data directory of the node that stored it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, guest};

#[tokio::test]
async fn plugins_stored_by_one_node_run_on_a_node_with_its_own_data_directory() {
    let first = TestApp::spawn().await;
    let token = first.admin_token().await;
    assert_eq!(first.upload(&token, guest("hostile"), None).await.status(), StatusCode::CREATED);
    let connection = first
        .create_connection(&token, json!({"name": "hostile", "system": "hostile", "credentials": {"api_key": "k-1"}}))
        .await;
    let connection = connection["id"].as_str().expect("id").to_owned();
    let def = json!({
        "name": "Check",
        "parameters": [{"name": "vin", "type": "string", "required": true}],
        "steps": [{"name": "checked", "type": "transform", "transform": "vin-check", "mapping": {"vin": "${parameters.vin}"}}]
    });
    let created: Value = first.post(&token, "/orchestrations", def).await.json().await.expect("json");
    let orchestration = created["id"].as_str().expect("id").to_owned();

    // The second node has never seen these bytes: no blob and no artifact in its data directory.
    let second = first.another_node().await;
    let plugins_dir = second.data_dir().join("plugins").join("blobs");
    assert_eq!(std::fs::read_dir(&plugins_dir).map(Iterator::count).unwrap_or(0), 0, "nothing cached yet");
    let token = second.admin_token().await;

    // An uploaded connector, with credentials sealed by the first node.
    let echo = second.test_call(&token, &connection, "echo", json!({"from": "the second node"})).await;
    assert_eq!(echo["status"], "success", "{echo}");
    assert_eq!(echo["output"], json!({"from": "the second node"}), "{echo}");

    // A bundled transform, registered by the first node.
    let result: Value = second
        .post(
            &token,
            &format!("/orchestrations/{orchestration}/execute"),
            json!({"parameters": {"vin": "1HGCM82633A004352"}}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(result["output"]["valid"], true, "{result}");

    // The bytes came from the database and are now cached on the second node too.
    assert!(std::fs::read_dir(&plugins_dir).expect("blobs").count() >= 2);
    second.stop().await.expect("second node stops");
    first.stop().await.expect("first node stops");
}

#[tokio::test]
async fn plugin_bytes_kept_only_on_disk_by_an_older_version_move_into_the_database_at_start() {
    let mut first = TestApp::spawn().await;
    let token = first.admin_token().await;
    let uploaded: Value = first.upload(&token, guest("hostile"), None).await.json().await.expect("json");
    let sha = uploaded["sha256"].as_str().expect("sha256").to_owned();
    first.stop_keep_data().await.expect("stops");
    // As an install from before the database kept plugin bytes: only the data directory has them.
    first.sql(&format!("DELETE FROM plugin_blobs WHERE sha256 = '{sha}'")).await;

    // Before the node that has them starts again, another node cannot run the plugin...
    let other = first.another_node().await;
    let token = other.admin_token().await;
    let connection = other.create_connection(&token, json!({"name": "hostile", "system": "hostile"})).await;
    let connection = connection["id"].as_str().expect("id").to_owned();
    let refused =
        other.post(&token, &format!("/connections/{connection}/test"), json!({"operation": "echo", "input": {}})).await;
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // ...and once it started, it has put them into the database for every node.
    let data_dir = first.data_dir().to_path_buf();
    let database_url = first.database_url.clone();
    let restarted = TestApp::spawn_with(move |config| {
        config.data_dir = data_dir.clone();
        config.database_url =
            Some(database_url.unwrap_or_else(|| format!("sqlite://{}", data_dir.join("dibop.db").display())).into());
    })
    .await;
    let echo = other.test_call(&token, &connection, "echo", json!({"ok": 1})).await;
    assert_eq!(echo["output"], json!({"ok": 1}), "{echo}");
    restarted.stop().await.expect("stops");
    other.stop().await.expect("stops");
}
