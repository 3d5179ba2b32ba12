//! No input ends the process: everything recursive a tenant controls is refused by its depth
//! before it is parsed or built (SPEC §13), and what expands is refused by its size (a YAML alias
//! bomb while it is parsed, a step's output past its bound when it is built). The depth tests
//! send what aborted the process before and check the server still answers afterwards.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, serve};

/// `POST` of raw text (deep documents are built as text: a deep `Value` would recurse here).
async fn post_text(app: &TestApp, token: &str, path: &str, content_type: &str, body: String) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request")
}

async fn still_serving(app: &TestApp, token: &str) {
    let response = app.get(token, "/orchestrations").await;
    assert_eq!(response.status(), StatusCode::OK, "the server still answers");
}

#[tokio::test]
async fn a_filter_with_hundreds_of_nested_parentheses_is_refused_at_its_field() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // The report's request: about 935 parentheses in a filter, under the 2,048-byte cap.
    let reference = format!("${{parameters.list[?{}@.a == 1{}]}}", "(".repeat(935), ")".repeat(935));
    assert!(reference.len() < 2048);
    let def = json!({"name": "Deep filter", "parameters": [{"name": "list", "type": "array"}],
        "steps": [{"name": "pick", "type": "transform", "transform": "map", "mapping": {"x": reference}}]});
    let body = assert_error(
        app.post(&token, "/orchestrations", def).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let detail = &body["error"]["details"][0];
    assert_eq!(detail["path"], "steps[0].mapping", "{body}");
    assert!(detail["message"].as_str().is_some_and(|m| m.contains("nest deeper than 32 levels")), "{body}");

    // The same in a condition, a `when` and a default after `??`.
    for (field, text) in [
        ("condition", format!("${{parameters.list[?{}@.a{}]}} == 1", "(".repeat(500), ")".repeat(500))),
        ("when", format!("${{parameters.list[?{}@.a{}]}}", "length(".repeat(200), ")".repeat(200))),
    ] {
        let mut step = json!({"name": "s", "type": "condition", "condition": "${parameters.list}",
                              "then": [{"name": "t", "type": "transform", "transform": "map", "mapping": {}}]});
        step[field] = Value::String(text);
        let def = json!({"name": "Deep", "parameters": [{"name": "list", "type": "array"}], "steps": [step]});
        let response = app.post(&token, "/orchestrations", def).await;
        let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        assert!(body.to_string().contains("nest deeper than 32 levels"), "{field}: {body}");
    }
    still_serving(&app, &token).await;
}

/// Filters inside filters: the JSONPath parser's time doubles with each level (32 levels took
/// hours of a worker's time), so more than four are refused at their field, in a mapping and in
/// a condition, and four still save and run.
#[tokio::test]
async fn filters_nested_in_filters_are_refused_past_four_levels() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let nested = |n: usize| format!("parameters.list{}{}", "[?@.a".repeat(n), "]".repeat(n));
    let def = |reference: String| {
        json!({"name": "Nested filters", "parameters": [{"name": "list", "type": "array"}],
            "steps": [{"name": "s", "type": "condition", "condition": format!("${{{reference}}} == 1"),
                       "then": [{"name": "pick", "type": "transform", "transform": "map",
                                 "mapping": {"x": format!("${{{reference}}}")}}]}]})
    };
    let body = assert_error(
        app.post(&token, "/orchestrations", def(nested(32))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("filters ([?...]) nest deeper than 4 levels"), "{body}");
    assert_eq!(body["error"]["details"][0]["path"], "steps[0].condition", "{body}");

    let response = app.post(&token, "/orchestrations", def(nested(4))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
    let list = json!([{"a": [{"a": [{"a": [{"a": [1]}]}]}]}]);
    let body = app.run_to_end(&token, &id, json!({"parameters": {"list": list}})).await;
    assert_eq!(body["status"], "success", "{body}");
    still_serving(&app, &token).await;
}

#[tokio::test]
async fn map_steps_that_wrap_each_other_fail_at_the_bound_instead_of_ending_the_process() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // 80 map steps, each wrapping the previous output 40 levels deeper (the report used 115,
    // which a body may no longer hold): the fourth passes 100 levels.
    let wrap = |inner: String| {
        let mut value = Value::String(inner);
        for _ in 0..40 {
            value = json!({"w": value});
        }
        value
    };
    let mut steps =
        vec![json!({"name": "s0", "type": "transform", "transform": "map", "mapping": wrap("${parameters.x}".into())})];
    for i in 1..80 {
        steps.push(json!({"name": format!("s{i}"), "type": "transform", "transform": "map",
                          "mapping": wrap(format!("${{s{}}}", i - 1))}));
    }
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Onion", "parameters": [{"name": "x", "type": "string"}], "steps": steps}),
        )
        .await;
    let done = app.run_to_end(&token, &id, json!({"parameters": {"x": "core"}})).await;
    let execution_id = done["id"].as_str().expect("id").to_owned();
    assert_eq!(done["status"], "failed", "{done}");
    let failed: Vec<&Value> =
        done["steps"].as_array().expect("steps").iter().filter(|s| s["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{done}");
    assert_eq!(failed[0]["name"], "s2", "40 + 40 + 40 levels pass 100 at the third step: {done}");
    assert!(failed[0]["error"].as_str().is_some_and(|e| e.contains("deeper than 100 levels")), "{done}");
    // The trace and the execution list still read it.
    assert_eq!(app.get(&token, &format!("/executions/{execution_id}/trace")).await.status(), StatusCode::OK);
    still_serving(&app, &token).await;
}

#[tokio::test]
async fn bodies_nested_past_the_bound_are_refused_in_every_format() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let deep_json = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{{\"name\": \"x\", \"steps\": {}{}}}", "[".repeat(101), "]".repeat(101));
    for (content_type, body) in [
        ("application/json", deep_json.clone()),
        ("application/json", deep_object),
        ("application/yaml", format!("name: x\nsteps: {}1{}\n", "[".repeat(10_000), "]".repeat(10_000))),
        ("application/yaml", format!("name: x\nsteps: {}1{}\n", "{a: ".repeat(150), "}".repeat(150))),
    ] {
        let response = post_text(&app, &token, "/orchestrations", content_type, body).await;
        let error = assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
        assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("deeper than 100 levels")), "{error}");
    }
    // A canonical record, an alert rule and an execute body hit the same bound.
    for path in ["/canonical/vehicle", "/alert-rules", "/settings/api-keys"] {
        let response = post_text(&app, &token, path, "application/json", deep_json.clone()).await;
        assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    }
    still_serving(&app, &token).await;
}

#[tokio::test]
async fn steps_nested_deeper_than_sixteen_blocks_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let nest = |levels: usize| {
        let mut step = json!({"name": "leaf", "type": "transform", "transform": "map", "mapping": {}});
        for i in 0..levels {
            step =
                json!({"name": format!("c{i}"), "type": "condition", "condition": "${parameters.x}", "then": [step]});
        }
        json!({"name": format!("Nested {levels}"), "parameters": [{"name": "x", "type": "boolean"}], "steps": [step]})
    };
    // The top-level block and 15 more: accepted and run.
    let id = app.create_orchestration(&token, nest(15)).await;
    let done = app.run_to_end(&token, &id, json!({"parameters": {"x": true}})).await;
    assert_eq!(done["status"], "success", "{done}");
    // One more level is refused at save.
    let body = assert_error(
        app.post(&token, "/orchestrations", nest(16)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["error"]["details"][0]["path"], "steps", "{body}");
    assert!(body.to_string().contains("deeper than 16 levels"), "{body}");
    // As deep as a body may nest (two JSON levels a block): typed parsing holds, and the
    // answer is the same 422.
    let body = assert_error(
        app.post(&token, "/orchestrations", nest(47)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("deeper than 16 levels"), "{body}");
}

#[tokio::test]
async fn webhook_bodies_past_the_bound_are_refused_in_json_and_xml() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let orchestration = app
        .create_orchestration(
            &token,
            json!({"name": "Hook", "parameters": [{"name": "doc", "type": "object"}],
                   "steps": [{"name": "echo", "type": "transform", "transform": "map", "mapping": {"doc": "${parameters.doc}"}}]}),
        )
        .await;
    let created: Value = app
        .post(
            &token,
            "/webhooks",
            json!({"name": "in", "orchestration_id": orchestration, "parameters": {"doc": "${body}"}}),
        )
        .await
        .json()
        .await
        .expect("json");
    let (id, secret) = (created["id"].as_str().expect("id"), created["secret"].as_str().expect("secret"));
    let fire = |content_type: &'static str, body: String| {
        app.client
            .post(app.url(&format!("/webhooks/{id}")))
            .header("content-type", content_type)
            .header("x-webhook-secret", secret)
            .body(body)
            .send()
    };
    let response =
        fire("application/json", format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000))).await.expect("send");
    assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    // 60 elements inside each other, each with a repeated child name: an object and an array
    // per level once read as JSON, past 100 levels though under the XML bound of 64 elements.
    let xml = format!("{}{}", "<a><a/>".repeat(60), "</a>".repeat(60));
    let response = fire("application/xml", xml).await.expect("send");
    let error = assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("deeper than 100 levels")), "{error}");
    // Within the bounds, the same kind of document runs.
    let xml = format!("{}{}", "<a><a/>".repeat(20), "</a>".repeat(20));
    let response = fire("application/xml", xml).await.expect("send");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    let done = app.wait_finished(&token, accepted["execution_id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "success", "{done}");
    still_serving(&app, &token).await;
}

#[tokio::test]
async fn an_upstream_answer_past_the_bound_fails_its_step() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // 110 levels: within what JSON parsers take (128), past what the engine keeps.
    let deep = format!("{}1{}", "[".repeat(110), "]".repeat(110));
    let router = axum::Router::new().route(
        "/deep",
        axum::routing::get(move || {
            let deep = deep.clone();
            async move { ([("content-type", "application/json")], deep) }
        }),
    );
    let authority = serve(router).await;
    app.create_connection(
        &token,
        json!({"name": "deep", "system": "rest", "allowed_hosts": [authority],
               "config": {"base_url": format!("http://{authority}"), "operations": {"get": {"method": "GET", "path": "/deep"}}}}),
    )
    .await;
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Deep answer", "steps": [{"name": "fetch", "type": "api_call", "connection": "deep", "operation": "get", "parameters": {}}]}),
        )
        .await;
    let done = app.run_to_end(&token, &id, json!({})).await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("deeper than 100 levels"), "{done}");
    still_serving(&app, &token).await;
}

#[tokio::test]
async fn a_yaml_alias_bomb_is_refused_while_parsing() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // Nine levels of ten aliases each: 10^9 nodes once expanded, from a few hundred bytes.
    let mut yaml = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        yaml.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    yaml.push_str("name: bomb\nsteps: []\n");
    let response = post_text(&app, &token, "/orchestrations", "application/yaml", yaml).await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("expands to more than"), "{body}");
}

#[tokio::test]
async fn a_step_output_past_its_bound_fails_the_step_with_a_clear_error() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // 24 copies of a 1.5 MB parameter: 36 MB, past the 32 MiB a step's output may be.
    let copies: serde_json::Map<String, Value> =
        (0..24).map(|i| (format!("c{i}"), json!("${parameters.blob}"))).collect();
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Amplifier", "parameters": [{"name": "blob", "type": "string", "required": true}],
               "steps": [{"name": "copies", "type": "transform", "transform": "map", "mapping": copies}]}),
        )
        .await;
    let blob = "x".repeat(1_500_000);
    let run = app.execute(&token, &id, json!({"parameters": {"blob": blob}})).await;
    assert_eq!(run["status"], "failed", "{}", &run.to_string()[..300.min(run.to_string().len())]);
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("at most 33554432"), "{error}");
}
