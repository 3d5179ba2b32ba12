//! OpenTelemetry through HTTP: a finished execution arrives at an OTLP/HTTP receiver inside
//! the test as a protobuf trace (decoded with `opentelemetry-proto`) under the caller's
//! `traceparent`, with the spans and ids of the trace endpoint; outbound requests carry a
//! `traceparent` naming their HTTP span.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::mock::MockServer;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<(String, ExportTraceServiceRequest)>>>,
}

async fn receive(State(receiver): State<Receiver>, headers: axum::http::HeaderMap, body: Bytes) -> &'static str {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    receiver.requests.lock().expect("lock").push((content_type, request));
    ""
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    })
}

/// Executes `orchestration` with the header `traceparent`.
async fn execute_with(app: &TestApp, token: &str, orchestration: &str, traceparent: &str) -> Value {
    app.client
        .post(app.url(&format!("/orchestrations/{orchestration}/execute")))
        .bearer_auth(token)
        .header("traceparent", traceparent)
        .json(&json!({}))
        .send()
        .await
        .expect("execute")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn finished_executions_export_as_otlp_traces_under_the_callers_traceparent() {
    let receiver = Receiver::default();
    let router = Router::new().route("/v1/traces", post(receive)).with_state(receiver.clone());
    let collector = crate::helpers::serve(router).await;
    let app = TestApp::spawn_with(|config| config.otlp_endpoint = Some(format!("http://{collector}"))).await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    app.create_connection(&token, mock.vpic()).await;
    let orchestration = app
        .create_orchestration(
            &token,
            json!({"name": "Decode", "steps": [{"name": "decode", "type": "api_call", "connection": "vpic",
                                                "operation": "decode_vin", "parameters": {"vin": "1HGCM82633A004352"}}]}),
        )
        .await;
    let result = execute_with(&app, &token, &orchestration, &format!("00-{TRACE}-{CALLER_SPAN}-01")).await;
    assert_eq!(result["status"], "success", "{result}");
    let execution = result["execution_id"].as_str().expect("id");

    let deadline = Instant::now() + Duration::from_secs(15);
    while receiver.requests.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no export arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (content_type, request) = receiver.requests.lock().expect("lock")[0].clone();
    assert_eq!(content_type, "application/x-protobuf");
    let resource = request.resource_spans[0].resource.as_ref().expect("resource");
    assert!(resource.attributes.iter().any(|a| a.key == "service.name"));
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    assert!(spans.iter().all(|s| hex(&s.trace_id) == TRACE), "every span is in the caller's trace");
    let root = spans.iter().find(|s| attribute(s, "dibop.kind").as_deref() == Some("execution")).expect("root");
    assert_eq!(hex(&root.parent_span_id), CALLER_SPAN);
    assert_eq!(attribute(root, "dibop.execution_id").as_deref(), Some(execution));
    let kinds: Vec<String> = spans.iter().filter_map(|s| attribute(s, "dibop.kind")).collect();
    for kind in ["execution", "step", "attempt", "plugin.instantiate", "plugin.invoke", "http"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    let ids: Vec<String> = spans.iter().map(|s| hex(&s.span_id)).collect();
    for s in spans.iter().filter(|s| s.span_id != root.span_id) {
        assert!(ids.contains(&hex(&s.parent_span_id)), "{} has its parent in the trace", s.name);
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
    let http = spans.iter().find(|s| attribute(s, "dibop.kind").as_deref() == Some("http")).expect("http span");
    assert_eq!(http.kind, span::SpanKind::Client as i32);
    assert_eq!(attribute(http, "dibop.status_code").as_deref(), Some("200"));
    assert!(spans.iter().all(|s| attribute(s, "dibop.input").is_none()), "no payloads without otlp_payloads");
    let metrics = app.client.get(app.url("/metrics").replace("/api/v1", "")).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("dibop_otlp_exports_total{outcome=\"sent\"}"), "{metrics}");

    // The trace endpoint shows the same trace, and the request to the system carried its span.
    let trace: Value = app.get(&token, &format!("/executions/{execution}/trace")).await.json().await.expect("json");
    assert_eq!(trace["trace_id"], TRACE);
    assert_eq!(trace["spans"][0]["parent_id"], CALLER_SPAN);
    let sent = mock.headers_of("/vpic/vehicles/DecodeVinValues/");
    let traceparent = sent[0].get("traceparent").and_then(|v| v.to_str().ok()).expect("traceparent sent");
    assert_eq!(traceparent, format!("00-{TRACE}-{}-01", hex(&http.span_id)));

    // Without a valid traceparent the execution has its own trace; an invalid one is ignored.
    let own = execute_with(&app, &token, &orchestration, "00-not-a-trace-01").await;
    let own_id = own["execution_id"].as_str().expect("id");
    let own_trace: Value = app.get(&token, &format!("/executions/{own_id}/trace")).await.json().await.expect("json");
    assert_ne!(own_trace["trace_id"], TRACE);
    assert_eq!(own_trace["spans"][0]["parent_id"], Value::Null);
}

/// A system whose accounts answer 500 with a body the step's error quotes.
async fn failing_system() -> String {
    let router = Router::new().route(
        "/accounts/{id}",
        axum::routing::get(|| async {
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "ledger says secret-body-4471 is overdrawn")
        }),
    );
    crate::helpers::serve(router).await
}

/// Runs one call of `GET /accounts/acct-55231?sig=query-token-8812` that fails, with the
/// export going to a collector; answers the exported spans.
async fn export_of_a_failed_call(payloads: bool) -> (Vec<Span>, String) {
    let receiver = Receiver::default();
    let router = Router::new().route("/v1/traces", post(receive)).with_state(receiver.clone());
    let collector = crate::helpers::serve(router).await;
    let app = TestApp::spawn_with(|config| {
        config.otlp_endpoint = Some(format!("http://{collector}"));
        config.otlp_payloads = payloads;
    })
    .await;
    let token = app.admin_token().await;
    let system = failing_system().await;
    app.create_connection(
        &token,
        json!({"name": "ledger", "system": "rest", "allowed_hosts": [system],
               "config": {"base_url": format!("http://{system}")}}),
    )
    .await;
    let orchestration = app
        .create_orchestration(
            &token,
            json!({"name": "Balance", "steps": [{"name": "balance", "type": "api_call", "connection": "ledger",
                    "operation": "request", "retry": {"max_attempts": 1},
                    "parameters": {"path": "/accounts/acct-55231", "query": {"sig": "query-token-8812"}}}]}),
        )
        .await;
    let result = app.execute(&token, &orchestration, json!({})).await;
    assert_eq!(result["status"], "failed", "{result}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while receiver.requests.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no export arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, request) = receiver.requests.lock().expect("lock")[0].clone();
    (request.resource_spans[0].scope_spans[0].spans.clone(), system)
}

/// Every text a span exports: its name, attribute values and status message.
fn texts(span: &Span) -> Vec<String> {
    let mut all = vec![span.name.clone(), span.status.as_ref().map(|s| s.message.clone()).unwrap_or_default()];
    all.extend(span.attributes.iter().filter_map(|a| attribute(span, &a.key)));
    all
}

#[tokio::test]
async fn exported_spans_name_no_path_or_query_and_carry_no_upstream_error_text_without_payloads() {
    let (spans, system) = export_of_a_failed_call(false).await;
    for span in &spans {
        for text in texts(span) {
            for value in ["acct-55231", "query-token-8812", "/accounts", "secret-body-4471"] {
                assert!(!text.contains(value), "{value} in {text:?} of span {}", span.name);
            }
        }
    }
    let http = spans.iter().find(|s| attribute(s, "dibop.kind").as_deref() == Some("http")).expect("http span");
    assert_eq!(http.name, format!("GET {system}"));
    assert_eq!(attribute(http, "dibop.status_code").as_deref(), Some("500"));
    let step = spans.iter().find(|s| attribute(s, "dibop.kind").as_deref() == Some("step")).expect("step span");
    assert_eq!(attribute(step, "dibop.error_code").as_deref(), Some("upstream_error"));
    assert_eq!(step.status.as_ref().map(|s| s.message.as_str()), Some("upstream_error"));
    assert!(attribute(step, "dibop.error").is_none());
    let root = spans.iter().find(|s| attribute(s, "dibop.kind").as_deref() == Some("execution")).expect("root");
    assert_eq!(attribute(root, "dibop.error_code").as_deref(), Some("STEP_FAILED"));
}

#[tokio::test]
async fn with_otlp_payloads_error_texts_go_out_but_span_names_stay_templates() {
    let (spans, system) = export_of_a_failed_call(true).await;
    let step = spans.iter().find(|s| attribute(s, "dibop.kind").as_deref() == Some("step")).expect("step span");
    let error = attribute(step, "dibop.error").expect("the error text");
    assert!(error.contains("secret-body-4471"), "{error}");
    assert!(step.status.as_ref().is_some_and(|s| s.message.contains("secret-body-4471")));
    let http = spans.iter().find(|s| attribute(s, "dibop.kind").as_deref() == Some("http")).expect("http span");
    assert_eq!(http.name, format!("GET {system}"));
    assert!(spans.iter().all(|s| !s.name.contains("acct-55231") && !s.name.contains('?')));
}
