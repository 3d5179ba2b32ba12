//! The container and control steps: for_each, parallel, error_handler, sub_orchestration, wait;
//! their bounds (fan-out, sub-orchestration cycles and limits); and YAML definitions.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths, wait_per_item};
use crate::mock::MockServer;

const VIN: &str = "1HGCM82633A004352";

/// `vpic` and a REST `dms` with `get_vehicle` and `check` (the overlap-counting endpoint).
async fn connections(app: &TestApp, token: &str, mock: &MockServer) {
    // The connections' own rate limit stays within the enterprises' outbound quota.
    app.sql("UPDATE enterprises SET outbound_requests_per_minute = 100000").await;
    app.create_connection(token, mock.vpic()).await;
    app.create_connection(token, dms(mock, "dms")).await;
}

/// A REST connection `name` to the mock's DMS with `get_vehicle`, `check` (the
/// overlap-counting endpoint) and `gate`.
fn dms(mock: &MockServer, name: &str) -> Value {
    json!({"name": name, "system": "rest",
           "config": {"base_url": format!("{}/dms", mock.base), "auth": {"type": "api_key", "header": "X-Api-Key"},
                      "operations": {"get_vehicle": {"method": "GET", "path": "/vehicles/{vin}"},
                                     "check": {"method": "GET", "path": "/inflight/{vin}"},
                                     "gate": {"method": "GET", "path": "/gate/{vin}"}}},
           "credentials": {"api_key": "dms-key-123456"}, "allowed_hosts": [mock.authority],
           // These tests put hundreds of calls on the system at once on purpose.
           "resilience": {"rate_limit": {"requests_per_minute": 100000}}})
}

async fn steps_of(app: &TestApp, token: &str, execution_id: &str) -> Vec<(String, String)> {
    let detail: Value = app.get(token, &format!("/executions/{execution_id}")).await.json().await.expect("json");
    detail["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| (s["name"].as_str().expect("name").to_owned(), s["status"].as_str().expect("status").to_owned()))
        .collect()
}

/// Queues `count` executions of orchestrations whose one step calls the mock's gated DMS
/// endpoint (with VINs `<prefix>0`, `<prefix>1`, ...), through two connections in turn (one
/// connection holds at most half of its enterprise's live calls), and answers their ids.
async fn queue_at_the_gate(app: &TestApp, token: &str, mock: &MockServer, prefix: &str, count: usize) -> Vec<String> {
    connections(app, token, mock).await;
    app.create_connection(token, dms(mock, "dms-b")).await;
    let mut ids = Vec::new();
    for connection in ["dms", "dms-b"] {
        let id = app
            .create_orchestration(
                token,
                json!({"name": format!("Wait on {connection}"),
                   "parameters": [{"name": "vin", "type": "string", "required": true}],
                   "steps": [{"name": "check", "type": "api_call", "connection": connection, "operation": "gate",
                              "parameters": {"vin": "${parameters.vin}"}}],
                   "output": {"checked": "${check.response.checked}"}}),
            )
            .await;
        ids.push(id);
    }
    let mut executions = Vec::new();
    for i in 0..count {
        let queued: Value = app
            .post(
                token,
                &format!("/orchestrations/{}/execute", ids[i % 2]),
                json!({"parameters": {"vin": format!("{prefix}{i}")}, "async": true}),
            )
            .await
            .json()
            .await
            .expect("json");
        executions.push(queued["execution_id"].as_str().unwrap_or_else(|| panic!("{queued}")).to_owned());
    }
    executions
}

/// Held by the tests that fill the live-call permits, which are the whole test process's (as
/// the instance pool they guard is): one such test at a time.
static LIVE_CALLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until `arrived` calls wait at the gate (30 s at most).
async fn wait_at_the_gate(mock: &MockServer, arrived: usize) {
    for _ in 0..600 {
        if mock.count("/dms/gate/") >= arrived {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn executions_waiting_on_a_slow_system_hold_no_scarce_slot() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    // Twelve executions: three times the four a node used to run at once.
    let executions = queue_at_the_gate(&app, &token, &mock, "V", 12).await;
    wait_at_the_gate(&mock, 12).await;
    // Every one reaches the DMS before the DMS answers any: each waits holding only its slot.
    assert_eq!(mock.count("/dms/gate/"), 12, "all twelve executions wait on the system at once");
    mock.open_gate();
    for execution in executions {
        let done = app.wait_finished(&token, &execution).await;
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["output"], json!({"checked": true}));
    }
    assert_eq!(mock.count("/dms/gate/"), 12, "no call was made twice");
}

#[tokio::test]
async fn more_executions_waiting_on_plugins_than_the_sandbox_holds_wait_their_turn_instead_of_failing() {
    let _alone = LIVE_CALLS.lock().await;
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let mut tokens = vec![app.admin_token().await];
    for slug in ["second", "third"] {
        tokens.push(app.second_enterprise(slug).await);
    }
    app.sql("UPDATE enterprises SET executions_per_minute = 10000, api_requests_per_minute = 10000").await;
    // Three enterprises, each with more executions than its share of the live calls, and
    // together more than the instance pool has room for; each call holds an instance while it
    // waits on the system.
    let (all, share) = (dibop::plugins::MAX_LIVE_CALLS, dibop::plugins::MAX_LIVE_CALLS_PER_ENTERPRISE);
    let per_enterprise = share + 10;
    let mut executions = Vec::new();
    for (token, prefix) in tokens.iter().zip(["A-", "B-", "C-"]) {
        for id in queue_at_the_gate(&app, token, &mock, prefix, per_enterprise).await {
            executions.push((token.clone(), id));
        }
    }
    wait_at_the_gate(&mock, all).await;
    assert_eq!(mock.count("/dms/gate/"), all, "as many calls as there are live-call permits wait at the system");
    for prefix in ["A-", "B-", "C-"] {
        let waiting = mock.count(&format!("/dms/gate/{prefix}"));
        assert!(waiting <= share, "enterprise {prefix} holds {waiting} live calls, more than its share of {share}");
    }
    mock.open_gate();
    for (token, execution) in &executions {
        let done = app.wait_finished(token, execution).await;
        assert_eq!(done["status"], "success", "{done}");
    }
    assert_eq!(mock.count("/dms/gate/"), 3 * per_enterprise, "every execution called the system once");
}

#[tokio::test]
async fn one_enterprise_waiting_on_a_slow_system_holds_at_most_its_share_of_the_live_calls() {
    let _alone = LIVE_CALLS.lock().await;
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    app.sql("UPDATE enterprises SET executions_per_minute = 10000, api_requests_per_minute = 10000").await;
    let share = dibop::plugins::MAX_LIVE_CALLS_PER_ENTERPRISE;
    let executions = queue_at_the_gate(&app, &token, &mock, "V", share + 20).await;
    wait_at_the_gate(&mock, share).await;
    assert_eq!(mock.count("/dms/gate/"), share, "the rest of the live calls stay free for other enterprises");

    // Another enterprise's call goes through while the first one's wait.
    let other = app.second_enterprise("other").await;
    connections(&app, &other, &mock).await;
    let connections: Value = app.get(&other, "/connections").await.json().await.expect("json");
    let dms = connections["data"].as_array().expect("data").iter().find(|c| c["name"] == "dms").expect("dms");
    let answer = app
        .test_call(&other, dms["id"].as_str().expect("id"), "get_vehicle", json!({"vin": "1HGCM82633A004352"}))
        .await;
    assert_eq!(answer["status"], "success", "{answer}");

    mock.open_gate();
    for execution in executions {
        let done = app.wait_finished(&token, &execution).await;
        assert_eq!(done["status"], "success", "{done}");
    }
}

#[tokio::test]
async fn for_each_runs_its_body_per_item_within_the_concurrency_bound() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    let vins = ["1HGCM82633A004351", "1HGCM82633A004352", "1HGCM82633A004353", "1HGCM82633A004354"];
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Check stock list",
            "parameters": [{"name": "vins", "type": "array", "required": true}],
            "steps": [
                {"name": "each", "type": "for_each", "items": "${parameters.vins}", "concurrency": 2, "steps": [
                    {"name": "check", "type": "api_call", "connection": "dms", "operation": "check",
                     "parameters": {"vin": "${item}"}},
                    {"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                     "parameters": {"vin": "${item}"}},
                    {"name": "row", "type": "transform", "transform": "map",
                     "mapping": {"n": "${index}", "vin": "${item}", "make": "${decode.response.make}",
                                 "checked": "${check.response.checked}"}}]},
                {"name": "count", "type": "transform", "transform": "map", "mapping": {"first": "${each[0].vin}"}}],
            "output": {"rows": "${each}", "first": "${count.first}"}}),
        )
        .await;
    let result = app.execute(&token, &id, json!({"parameters": {"vins": vins}})).await;
    assert_eq!(result["status"], "success", "{result}");
    let rows = result["output"]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row, &json!({"n": i, "vin": vins[i], "make": "HONDA", "checked": true}));
    }
    assert_eq!(result["output"]["first"], vins[0]);
    assert_eq!(mock.count("/dms/inflight/"), 4);
    assert_eq!(mock.count("/vpic/vehicles/DecodeVinValues/"), 4);
    assert_eq!(mock.max_inflight(), 2, "concurrency 2 over 4 slow items overlaps exactly two at a time");

    // Each item's calls are logged under the item's own label, and the trace nests them.
    let execution_id = result["execution_id"].as_str().expect("id");
    let calls: Value =
        app.get(&token, &format!("/api-calls?execution_id={execution_id}")).await.json().await.expect("json");
    let mut labels: Vec<&str> =
        calls["data"].as_array().expect("data").iter().map(|c| c["step"].as_str().expect("step")).collect();
    labels.sort_unstable();
    assert_eq!(&labels[..3], ["each[0].check", "each[0].decode", "each[1].check"]);
    let trace: Value = app.get(&token, &format!("/executions/{execution_id}/trace")).await.json().await.expect("json");
    let spans = trace["spans"].as_array().expect("spans");
    let each = spans.iter().find(|s| s["name"] == "each").expect("each span");
    let nested = spans.iter().find(|s| s["name"] == "each[2].decode").expect("nested span");
    assert_eq!(nested["parent_id"], each["span_id"]);
    assert!(spans.iter().any(|s| s["kind"] == "http" && s["parent_id"].is_string()));
    assert!(spans.iter().any(|s| s["kind"] == "mapping" && s["name"] == "each[2].row mapping"));

    // An item that fails fails the step, naming the item; `on_error: continue` inside makes it partial.
    let failing = app
        .create_orchestration(
            &token,
            json!({"name": "Stock per VIN", "parameters": [{"name": "vins", "type": "array", "required": true}],
            "steps": [{"name": "each", "type": "for_each", "items": "${parameters.vins}", "steps": [
                {"name": "stock", "type": "api_call", "connection": "dms", "operation": "get_vehicle",
                 "parameters": {"vin": "${item}"}}]}]}),
        )
        .await;
    let result = app.execute(&token, &failing, json!({"parameters": {"vins": [VIN, "UNKNOWN0000000000"]}})).await;
    assert_eq!(result["status"], "failed", "{result}");
    let error = result["error"].as_str().expect("error");
    assert!(error.contains("1 of 2 items failed") && error.contains("item 1"), "{error}");
    let lenient = app.create_orchestration(&token, json!({"name": "Stock per VIN, lenient", "parameters": [{"name": "vins", "type": "array", "required": true}],
            "steps": [{"name": "each", "type": "for_each", "items": "${parameters.vins}", "steps": [
                {"name": "stock", "type": "api_call", "connection": "dms", "operation": "get_vehicle",
                 "parameters": {"vin": "${item}"}, "on_error": "continue"}]}]}),
    )
    .await;
    let result = app.execute(&token, &lenient, json!({"parameters": {"vins": [VIN, "UNKNOWN0000000000"]}})).await;
    assert_eq!(result["status"], "partial", "{result}");
    assert_eq!(result["output"][0]["response"]["stock_number"], "STK-1001");

    let result = app.execute(&token, &lenient, json!({"parameters": {"vins": []}})).await;
    assert_eq!(result["status"], "success", "an empty list runs nothing: {result}");
    assert_eq!(result["output"], json!([]));
}

#[tokio::test]
async fn parallel_runs_every_branch_and_maps_their_outputs() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    let id = app.create_orchestration(&token, json!({"name": "Decode and stock at once",
            "parameters": [{"name": "vin", "type": "string", "required": true}],
            "steps": [
                {"name": "both", "type": "parallel", "branches": [
                    {"name": "decoded", "steps": [
                        {"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                         "parameters": {"vin": "${parameters.vin}"}},
                        {"name": "make", "type": "transform", "transform": "map", "mapping": "${decode.response.make}"}]},
                    {"name": "stock", "steps": [
                        {"name": "check_a", "type": "api_call", "connection": "dms", "operation": "check",
                         "parameters": {"vin": "A"}}]},
                    {"name": "stock2", "steps": [
                        {"name": "check_b", "type": "api_call", "connection": "dms", "operation": "check",
                         "parameters": {"vin": "B"}}]}]},
                {"name": "summary", "type": "transform", "transform": "map",
                 "mapping": {"make": "${both.decoded}", "a": "${both.stock.response.vin}", "b": "${both.stock2.response.vin}"}}]}),
    )
    .await;
    let result = app.execute(&token, &id, json!({"parameters": {"vin": VIN}})).await;
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(result["output"], json!({"make": "HONDA", "a": "A", "b": "B"}));
    assert_eq!(mock.max_inflight(), 2, "the branches ran at the same time");

    // A failing branch fails the step and names the branch; the others still ran.
    let failing = app
        .create_orchestration(
            &token,
            json!({"name": "One branch fails", "steps": [{"name": "both", "type": "parallel", "branches": [
            {"name": "good", "steps": [{"name": "ok", "type": "api_call", "connection": "dms", "operation": "check",
                                        "parameters": {"vin": "C"}}]},
            {"name": "bad", "steps": [{"name": "missing", "type": "api_call", "connection": "dms",
                                       "operation": "get_vehicle", "parameters": {"vin": "NOPE"}}]}]}]}),
        )
        .await;
    let result = app.execute(&token, &failing, json!({"parameters": {}})).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert!(result["error"].as_str().expect("error").contains("branch bad: step missing failed"), "{result}");
    assert_eq!(mock.count("/dms/inflight/C"), 1);

    // Branch steps cannot see each other, and branch names must be unique.
    let bad = json!({"name": "Bad branches", "steps": [{"name": "p", "type": "parallel", "branches": [
        {"name": "x", "steps": [{"name": "one", "type": "transform", "transform": "map", "mapping": {"v": 1}}]},
        {"name": "x", "steps": [{"name": "two", "type": "transform", "transform": "map", "mapping": {"v": "${one.v}"}}]}]}]});
    let body = assert_error(
        app.post(&token, "/orchestrations", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let paths = detail_paths(&body);
    assert!(paths.contains(&"steps[0].branches[1].name"), "{body}");
    assert!(paths.contains(&"steps[0].branches[1].steps[0].mapping"), "{body}");
}

#[tokio::test]
async fn fan_out_is_bounded_with_a_clear_error() {
    let app = TestApp::spawn_with(|config| {
        config.max_parallel_branches = 2;
        config.max_for_each_items = 3;
    })
    .await;
    let token = app.admin_token().await;
    let map = |name: &str| json!({"name": name, "steps": [{"name": format!("{name}_x"), "type": "transform", "transform": "map", "mapping": {"ok": true}}]});
    let wide = app.create_orchestration(&token, json!({"name": "Wide", "steps": [{"name": "all", "type": "parallel", "branches": [map("a"), map("b"), map("c")]}]}),
    )
    .await;
    let run = app.execute(&token, &wide, json!({"parameters": {}})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap_or_default().contains("at most 2"), "{run}");
    let many = app.create_orchestration(&token, wait_per_item("Many", 1)).await;
    let run = app.execute(&token, &many, json!({"parameters": {"items": [1, 2, 3, 4]}})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap_or_default().contains("at most 3"), "{run}");
    let branches: Vec<Value> = (0..65).map(|i| map(&format!("b{i}"))).collect();
    let body = assert_error(
        app.post(
            &token,
            "/orchestrations",
            json!({"name": "Too wide", "steps": [{"name": "all", "type": "parallel", "branches": branches}]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(detail_paths(&body).contains(&"steps[0].branches"), "{body}");
}

#[tokio::test]
async fn an_error_handler_runs_after_a_failure_and_may_recover() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    let def = |recover: bool| {
        json!({"name": format!("Handled {recover}"), "parameters": [{"name": "vin", "type": "string", "required": true}],
            "steps": [
                {"name": "stock", "type": "api_call", "connection": "dms", "operation": "get_vehicle",
                 "parameters": {"vin": "${parameters.vin}"}},
                {"name": "price", "type": "transform", "transform": "map", "mapping": {"p": "${stock.response.list_price}"}},
                {"name": "handler", "type": "error_handler", "recover": recover, "steps": [
                    {"name": "note", "type": "transform", "transform": "map",
                     "mapping": {"failed": "${handler.failed_step}", "why": "${handler.error}"}}]},
                {"name": "after", "type": "transform", "transform": "map", "mapping": {"done": true}}],
            "output": {"note": "${note}", "after": "${after}"}})
    };
    let failing = app.create_orchestration(&token, def(false)).await;
    let result = app.execute(&token, &failing, json!({"parameters": {"vin": "UNKNOWN0000000000"}})).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert!(result["error"].as_str().expect("error").starts_with("step stock failed"), "{result}");
    let execution_id = result["execution_id"].as_str().expect("id");
    let steps = steps_of(&app, &token, execution_id).await;
    let expected = [("stock", "failed"), ("price", "skipped"), ("handler", "success"), ("note", "success")];
    assert_eq!(steps, expected.map(|(n, s)| (n.to_owned(), s.to_owned())));
    let detail: Value = app.get(&token, &format!("/executions/{execution_id}")).await.json().await.expect("json");
    assert_eq!(detail["steps"][3]["output"]["failed"], "stock");
    assert!(detail["steps"][3]["output"]["why"].as_str().expect("why").contains("404"), "{detail}");

    let recovering = app.create_orchestration(&token, def(true)).await;
    let result = app.execute(&token, &recovering, json!({"parameters": {"vin": "UNKNOWN0000000000"}})).await;
    assert_eq!(result["status"], "partial", "{result}");
    assert_eq!(result["output"]["after"], json!({"done": true}));
    assert_eq!(result["output"]["note"]["failed"], "stock");

    // Nothing fails: the handler and its steps are skipped.
    let result = app.execute(&token, &recovering, json!({"parameters": {"vin": VIN}})).await;
    // The output maps the skipped handler's step: null, not a failure.
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(result["output"], json!({"note": null, "after": {"done": true}}));
    let steps = steps_of(&app, &token, result["execution_id"].as_str().expect("id")).await;
    let expected =
        [("stock", "success"), ("price", "success"), ("handler", "skipped"), ("note", "skipped"), ("after", "success")];
    assert_eq!(steps, expected.map(|(n, s)| (n.to_owned(), s.to_owned())));
}

#[tokio::test]
async fn a_sub_orchestration_runs_its_child_and_answers_the_childs_output() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    connections(&app, &token, &mock).await;
    app.create_orchestration(
        &token,
        json!({"name": "Decode", "parameters": [{"name": "vin", "type": "string", "required": true}],
            "steps": [{"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                       "parameters": {"vin": "${parameters.vin}"}}],
            "output": {"make": "${decode.response.make}", "model": "${decode.response.model}"}}),
    )
    .await;
    let parent = app
        .create_orchestration(
            &token,
            json!({"name": "Lookup via child", "parameters": [{"name": "vin", "type": "string", "required": true}],
            "steps": [{"name": "child", "type": "sub_orchestration", "orchestration": "Decode",
                       "parameters": {"vin": "${parameters.vin}"}},
                      {"name": "label", "type": "transform", "transform": "map",
                       "mapping": "${child.make} ${child.model}"}]}),
        )
        .await;
    let result = app.execute(&token, &parent, json!({"parameters": {"vin": VIN}})).await;
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(result["output"], "HONDA Accord");
    let execution_id = result["execution_id"].as_str().expect("id");
    let detail: Value = app.get(&token, &format!("/executions/{execution_id}")).await.json().await.expect("json");
    let child_id = detail["steps"][0]["input"]["execution_id"].as_str().expect("child id");
    let child: Value = app.get(&token, &format!("/executions/{child_id}")).await.json().await.expect("json");
    assert_eq!(child["triggered_by"], "orchestration");
    assert_eq!(child["parent_execution_id"], execution_id);
    assert_eq!(child["status"], "success");
    assert_eq!(child["parameters"], json!({"vin": VIN}));

    // Parameters the child refuses fail the step, naming them.
    let missing_param = app.create_orchestration(&token, json!({"name": "Forgets the VIN", "steps": [{"name": "child", "type": "sub_orchestration", "orchestration": "Decode"}]}),
    )
    .await;
    let result = app.execute(&token, &missing_param, json!({"parameters": {}})).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert!(result["error"].as_str().expect("error").contains("parameters.vin is required"), "{result}");

    // Unknown or self references are refused at save.
    let bad = json!({"name": "Loop", "steps": [
        {"name": "me", "type": "sub_orchestration", "orchestration": "Loop"},
        {"name": "nobody", "type": "sub_orchestration", "orchestration": "No such thing"}]});
    let body = assert_error(
        app.post(&token, "/orchestrations", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["steps[0].orchestration", "steps[1].orchestration"]);
}

#[tokio::test]
async fn sub_orchestrations_count_against_the_limit_and_wait_for_it_and_cycles_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let leaf = json!({"name": "Leaf", "steps": [{"name": "x", "type": "transform", "transform": "map", "mapping": {"ok": true}}]});
    let leaf_id = app.create_orchestration(&token, leaf.clone()).await;
    let parent = app.create_orchestration(&token, json!({"name": "Parent", "steps": [{"name": "child", "type": "sub_orchestration", "orchestration": "Leaf"}]}),
    )
    .await;
    // Leaf -> Parent -> Leaf would be a cycle.
    let mut cyclic = leaf;
    cyclic["steps"] = json!([{"name": "back", "type": "sub_orchestration", "orchestration": "Parent"}]);
    let body = assert_error(
        app.put(&token, &format!("/orchestrations/{leaf_id}"), cyclic).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["steps[0].orchestration"], "{body}");
    assert!(body["error"]["details"][0]["message"].as_str().unwrap_or_default().contains("cycle"), "{body}");

    // The child is one execution too many for the minute: the admitted parent waits for the
    // next minute's window (parked) and then completes; it does not fail.
    app.sql("UPDATE enterprises SET executions_per_minute = 1").await;
    // Late in a minute (so the wait is short), not so late that the parent starts in the next.
    while !(50..55).contains(&(chrono::Utc::now().timestamp() % 60)) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let minute = chrono::Utc::now().timestamp() / 60;
    let started = app.execute(&token, &parent, json!({"parameters": {}, "async": true})).await;
    let id = started["execution_id"].as_str().unwrap_or_else(|| panic!("{started}")).to_owned();
    let run = app.wait_finished(&token, &id).await;
    assert_eq!(run["status"], "success", "the child waited for the limit's next window: {run}");
    assert!(chrono::Utc::now().timestamp() / 60 > minute, "it ran in a later minute");
}

#[tokio::test]
async fn waits_pause_and_long_waits_free_the_worker_until_due() {
    let app = TestApp::spawn_with(|config| config.max_in_flight = 1).await;
    let token = app.admin_token().await;
    let def = |name: &str, ms: u64| {
        json!({"name": name, "steps": [
            {"name": "before", "type": "transform", "transform": "map", "mapping": {"at": "${_context.timestamp}"}},
            {"name": "pause", "type": "wait", "duration_ms": ms},
            {"name": "after", "type": "transform", "transform": "map", "mapping": {"waited": "${pause.wait_ms}"}}]})
    };
    let short = app.create_orchestration(&token, def("Short wait", 300)).await;
    let result = app.execute(&token, &short, json!({"parameters": {}})).await;
    assert_eq!(result["status"], "success", "{result}");
    assert!(result["duration_ms"].as_i64().expect("duration") >= 300, "{result}");

    // A 3 s wait parks the execution: the only worker runs other executions meanwhile.
    let long = app.create_orchestration(&token, def("Long wait", 3_000)).await;
    let parked: Value = app
        .post(&token, &format!("/orchestrations/{long}/execute"), json!({"async": true}))
        .await
        .json()
        .await
        .expect("json");
    let parked_id = parked["execution_id"].as_str().expect("id");
    let mut seen_parked = false;
    for _ in 0..40 {
        let steps = steps_of(&app, &token, parked_id).await;
        if steps.len() == 2 {
            seen_parked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(seen_parked, "the wait step was committed before its time was up");
    let other = app.execute(&token, &short, json!({"parameters": {}})).await;
    assert_eq!(other["status"], "success", "the worker was free during the wait: {other}");
    let detail: Value = app.get(&token, &format!("/executions/{parked_id}")).await.json().await.expect("json");
    assert_eq!(detail["status"], "running", "still waiting: {detail}");
    let done = app.wait_finished(&token, parked_id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert!(done["duration_ms"].as_i64().expect("duration") >= 3_000, "{done}");
    assert_eq!(done["output"], json!({"waited": 3_000}));

    // Cancelling a parked execution ends it without waiting out the pause.
    let day = app.create_orchestration(&token, def("A day", 86_400_000)).await;
    let parked: Value = app
        .post(&token, &format!("/orchestrations/{day}/execute"), json!({"async": true}))
        .await
        .json()
        .await
        .expect("json");
    let parked_id = parked["execution_id"].as_str().expect("id");
    for _ in 0..40 {
        if steps_of(&app, &token, parked_id).await.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let cancel = app.post(&token, &format!("/executions/{parked_id}/cancel"), json!({})).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    let done = app.wait_finished(&token, parked_id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["error"], "cancelled before step after");

    let bad = json!({"name": "Bad waits", "steps": [
        {"name": "a", "type": "wait"},
        {"name": "b", "type": "wait", "duration_ms": 1_000_000_000_000u64},
        {"name": "c", "type": "wait", "until": "tomorrow"}]});
    let body = assert_error(
        app.post(&token, "/orchestrations", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["steps[0].duration_ms", "steps[1].duration_ms", "steps[2].until"]);
}

#[tokio::test]
async fn definitions_may_be_sent_as_yaml() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let yaml = r#"
name: Greeting
parameters:
  - name: who
    type: string
    required: true
steps:
  - name: greet
    type: transform
    transform: map
    mapping:
      text: "Hello ${parameters.who}"
      count: 3
output: "${greet}"
"#;
    let client = reqwest::Client::new();
    let send = |body: &'static str| {
        client
            .post(app.url("/orchestrations"))
            .bearer_auth(&token)
            .header("content-type", "application/yaml")
            .body(body)
            .send()
    };
    let created = send(yaml).await.expect("send");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["steps"][0]["mapping"]["count"], 3, "YAML numbers stay numbers");
    let result = app.execute(&token, created["id"].as_str().expect("id"), json!({"parameters": {"who": "Ada"}})).await;
    assert_eq!(result["output"], json!({"text": "Hello Ada", "count": 3}));

    let body = assert_error(send("name: [unclosed").await.expect("send"), StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(body["error"]["message"].as_str().expect("message").contains("malformed YAML"), "{body}");
    let body = assert_error(
        send("name: Wrong\nsteps: 3\n").await.expect("send"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["steps"]);
}

#[tokio::test]
async fn a_long_wait_in_a_body_parks_the_execution_and_nothing_runs_twice() {
    // One worker: while the execution is parked, other work runs on it.
    let mut first = TestApp::spawn_with(|config| {
        config.max_in_flight = 1;
        config.shutdown_grace_ms = 300;
    })
    .await;
    let mock = MockServer::start().await;
    let token = first.admin_token().await;
    connections(&first, &token, &mock).await;
    let vins = ["1HGCM82633A004361", "1HGCM82633A004362", "1HGCM82633A004363"];
    let id = first.create_orchestration(&token, json!({"name": "Check, pause, decode", "parameters": [{"name": "vins", "type": "array", "required": true}],
            "steps": [
                {"name": "each", "type": "for_each", "items": "${parameters.vins}", "concurrency": 2, "steps": [
                    {"name": "check", "type": "api_call", "connection": "dms", "operation": "check",
                     "parameters": {"vin": "${item}"}},
                    {"name": "pause", "type": "wait", "duration_ms": 2_100},
                    {"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                     "parameters": {"vin": "${item}"}},
                    {"name": "row", "type": "transform", "transform": "map",
                     "mapping": {"vin": "${item}", "make": "${decode.response.make}", "checked": "${check.response.checked}"}}]},
                {"name": "both", "type": "parallel", "branches": [
                    {"name": "slow", "steps": [
                        {"name": "later", "type": "wait", "duration_ms": 2_100},
                        {"name": "after", "type": "api_call", "connection": "dms", "operation": "check",
                         "parameters": {"vin": "SLOWBRANCH0000001"}}]},
                    {"name": "fast", "steps": [
                        {"name": "now", "type": "api_call", "connection": "dms", "operation": "check",
                         "parameters": {"vin": "FASTBRANCH0000001"}}]}]}],
            "output": {"rows": "${each}", "slow": "${both.slow.response.vin}", "fast": "${both.fast.response.vin}"}}),
    )
    .await;
    let queued: Value = first
        .post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vins": vins}, "async": true}))
        .await
        .json()
        .await
        .expect("json");
    let execution = queued["execution_id"].as_str().expect("id").to_owned();
    // The first two items checked, then both wait: the execution is parked and holds no worker,
    // so another execution runs on the node's only worker meanwhile.
    for _ in 0..100 {
        if mock.count("/dms/inflight/") >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let quick = first.create_orchestration(&token, json!({"name": "Quick", "steps": [{"name": "hi", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
    )
    .await;
    let run = first.execute(&token, &quick, json!({})).await;
    assert_eq!(run["status"], "success", "{run}");
    // Had the waits held the worker, the quick run would have come after the whole execution.
    let detail: Value = first.get(&token, &format!("/executions/{execution}")).await.json().await.expect("json");
    assert_eq!(detail["status"], "running", "{detail}");
    assert_eq!(detail["steps_completed"], 0, "{detail}");
    assert_eq!(mock.count("/dms/inflight/"), 2, "the third item does not start while the first two wait");

    // The node stops while the execution is parked; started again, it resumes the execution
    // from what the bodies kept in the database.
    let shared = first
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", first.data_dir().join("dibop.db").display()));
    first.stop_keep_data().await.expect("stopped");
    let data_dir = first.data_dir().to_path_buf();
    let second = TestApp::spawn_with(|config| {
        config.database_url = Some(shared.into());
        config.data_dir = data_dir;
    })
    .await;
    let token = second.admin_token().await;
    let done = second.wait_finished(&token, &execution).await;
    assert_eq!(done["status"], "success", "{done}");
    let rows: Vec<Value> = vins.iter().map(|vin| json!({"vin": vin, "make": "HONDA", "checked": true})).collect();
    assert_eq!(done["output"], json!({"rows": rows, "slow": "SLOWBRANCH0000001", "fast": "FASTBRANCH0000001"}));
    // Every call was made once: three items' checks and decodes, and one per branch.
    assert_eq!(mock.count("/dms/inflight/1HGCM"), 3);
    assert_eq!(mock.count("/vpic/vehicles/DecodeVinValues/"), 3);
    assert_eq!(mock.count("/dms/inflight/SLOWBRANCH"), 1);
    assert_eq!(mock.count("/dms/inflight/FASTBRANCH"), 1);
    // ...and logged once, including those made before the node stopped.
    let calls: Value =
        second.get(&token, &format!("/api-calls?execution_id={execution}&limit=100")).await.json().await.expect("json");
    let mut labels: Vec<&str> =
        calls["data"].as_array().expect("data").iter().map(|c| c["step"].as_str().expect("step")).collect();
    labels.sort_unstable();
    assert_eq!(
        labels,
        [
            "both.fast.now",
            "both.slow.after",
            "each[0].check",
            "each[0].decode",
            "each[1].check",
            "each[1].decode",
            "each[2].check",
            "each[2].decode"
        ]
    );
    // The trace shows every body step under its container, kept ones included.
    let trace: Value = second.get(&token, &format!("/executions/{execution}/trace")).await.json().await.expect("json");
    let names: Vec<&str> =
        trace["spans"].as_array().expect("spans").iter().filter_map(|s| s["name"].as_str()).collect();
    for name in ["each[0].check", "each[0].pause", "each[2].row", "both.slow.later", "both.fast.now"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}
