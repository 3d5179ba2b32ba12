//! The OpenAPI document against the server's real answers: what `scripts/fuzz.sh`
//! (schemathesis) checks, kept here as regressions of what it found.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// The schema a `$ref` points at.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("local ref {reference}"));
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "{reference} resolves");
    schema
}

/// Checks `value` against the JSON Schema subset the document uses; each mismatch is reported
/// with its path in the value.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        return conforms(doc, resolve(doc, reference), value, at, errors);
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        conforms(doc, part, value, at, errors);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let fits = options.iter().any(|option| {
                let mut inner = Vec::new();
                conforms(doc, option, value, at, &mut inner);
                inner.is_empty()
            });
            if !fits {
                errors.push(format!("{at}: matches no {key} option: {value}"));
            }
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        errors.push(format!("{at}: {value} is not of type {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                errors.push(format!("{at}: required {name} missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, item) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => conforms(doc, property, item, &format!("{at}.{name}"), errors),
                None if schema["additionalProperties"] == json!(false) => {
                    errors.push(format!("{at}: {name} is not a documented property"));
                }
                None if schema["additionalProperties"].is_object() => {
                    conforms(doc, &schema["additionalProperties"], item, &format!("{at}.{name}"), errors);
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(doc, schema, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Sends a request and checks the answer against the schema documented for its status.
async fn check(app: &TestApp, doc: &Value, token: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    let full = format!("/api/v1{path}");
    let wanted: Vec<&str> = full.split('/').collect();
    let template = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .filter(|template| {
            let segments: Vec<&str> = template.split('/').collect();
            segments.len() == wanted.len() && segments.iter().zip(&wanted).all(|(t, p)| t.starts_with('{') || t == p)
        })
        .min_by_key(|template| template.matches('{').count())
        .unwrap_or_else(|| panic!("{path} is documented"))
        .clone();
    let response = app.request(method.clone(), token, path, body).await;
    let status = response.status().as_u16().to_string();
    let documented = &doc["paths"][&template][method.as_str().to_lowercase()]["responses"][&status];
    assert!(documented.is_object(), "{method} {template} documents {status}");
    let value: Value = response.json().await.expect("json");
    let schema = &documented["content"]["application/json"]["schema"];
    let mut errors = Vec::new();
    conforms(doc, schema, &value, "$", &mut errors);
    assert!(errors.is_empty(), "{method} {path} answers {status} outside its schema: {errors:#?}\n{value:#}");
    value
}

#[tokio::test]
async fn every_reference_resolves_and_every_operation_documents_its_rejections() {
    let app = TestApp::spawn().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.expect("r").json().await.expect("json");

    fn references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                out.extend(map.get("$ref").and_then(Value::as_str));
                map.values().for_each(|v| references(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&doc, &mut found);
    assert!(found.contains(&"#/components/schemas/Branch"), "parallel steps refer to Branch");
    for reference in found {
        resolve(&doc, reference);
    }

    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            let located =
                |place: &str| operation["parameters"].as_array().into_iter().flatten().any(|p| p["in"] == place);
            let responses = &operation["responses"];
            if located("query") {
                assert!(responses["400"].is_object(), "{method} {path} documents 400 for its query parameters");
            }
            if located("path") {
                assert!(responses["404"].is_object(), "{method} {path} documents 404 for its path parameters");
            }
        }
    }
    let conflict = |path: &str| doc["paths"][path]["post"]["responses"]["409"].is_object();
    assert!(conflict("/api/v1/connections/{id}/test"), "a connection without connector is 409");
    assert!(conflict("/api/v1/systems/{slug}/ping"));

    let upload = &doc["paths"]["/api/v1/plugins"]["post"]["requestBody"]["content"]["application/wasm"]["schema"];
    let upload = upload["$ref"].as_str().map_or(upload, |r| resolve(&doc, r));
    assert_eq!((&upload["type"], &upload["format"]), (&json!("string"), &json!("binary")), "{upload}");
}

#[tokio::test]
async fn answers_match_their_documented_schemas() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.expect("r").json().await.expect("json");

    // An orchestration (shown as its definition plus id, version and timestamps), run once.
    let definition = json!({"name": "Echo", "parameters": [{"name": "vin", "type": "string"}],
        "steps": [{"name": "echo", "type": "transform", "transform": "map", "mapping": {"vin": "${parameters.vin}"}}]});
    let created = check(&app, &doc, &token, Method::POST, "/orchestrations", Some(definition)).await;
    let id = created["id"].as_str().expect("id").to_owned();
    check(&app, &doc, &token, Method::GET, &format!("/orchestrations/{id}"), None).await;
    check(&app, &doc, &token, Method::GET, "/orchestrations", None).await;
    let run = json!({"parameters": {"vin": "1HGCM82633A004352"}});
    let run = check(&app, &doc, &token, Method::POST, &format!("/orchestrations/{id}/execute"), Some(run)).await;
    let execution = run["execution_id"].as_str().expect("execution id").to_owned();
    app.wait_finished(&token, &execution).await;
    // The trace's mapping span has no attributes: an empty object, as documented.
    let trace = check(&app, &doc, &token, Method::GET, &format!("/executions/{execution}/trace"), None).await;
    let spans = trace["spans"].as_array().expect("spans");
    assert!(spans.iter().any(|s| s["kind"] == "mapping"), "{trace:#}");
    assert!(spans.iter().all(|s| s["attributes"].is_object()), "{trace:#}");

    // An alert rule whose type takes no condition: `condition` is null, as documented.
    let rule = json!({"name": "Failures", "type": "execution_failure",
        "notification": {"channels": [{"type": "log"}]}});
    let rule = check(&app, &doc, &token, Method::POST, "/alert-rules", Some(rule)).await;
    assert_eq!(rule["condition"], Value::Null);
    let rule_id = rule["id"].as_str().expect("id").to_owned();
    check(&app, &doc, &token, Method::GET, &format!("/alert-rules/{rule_id}"), None).await;
    check(&app, &doc, &token, Method::GET, "/alert-rules", None).await;

    for path in ["/users", "/settings", "/settings/api-keys", "/enterprises", "/plugins", "/systems", "/connections"] {
        check(&app, &doc, &token, Method::GET, path, None).await;
    }

    // A connection whose system has no active connector any more: 409, in the error shape.
    let connection = app
        .create_connection(&token, json!({"name": "vpic", "system": "vpic", "credentials": {"api_key": "abcdefgh"}}))
        .await;
    let plugins: Value = app.get(&token, "/plugins?page_size=200").await.json().await.expect("json");
    for plugin in plugins["data"].as_array().expect("plugins").iter().filter(|p| p["slug"] == "vpic") {
        let id = plugin["id"].as_str().expect("id");
        assert_eq!(app.delete(&token, &format!("/plugins/{id}")).await.status(), StatusCode::NO_CONTENT);
    }
    let test = format!("/connections/{}/test", connection["id"].as_str().expect("id"));
    let answer = check(&app, &doc, &token, Method::POST, &test, Some(json!({"operation": "decode_vin"}))).await;
    assert_eq!(answer["error"]["code"], "CONFLICT", "{answer}");
}
