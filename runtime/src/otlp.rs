//! OpenTelemetry export: with `otlp_endpoint` set, every execution this node finishes is sent
//! to `<endpoint>/v1/traces` as an OTLP/HTTP (protobuf) trace: the execution, its steps (and
//! the steps inside containers), attempts, plugin phases and HTTP calls, the spans
//! `GET /executions/{id}/trace` shows, with the same ids and attributes. The messages are the
//! `opentelemetry-proto` types; an execution that came with a `traceparent` is a child of the
//! caller's span. Span names carry no values: an HTTP call's span is named by its method and
//! host, never its path or query (they hold ids and tokens). Step inputs, outputs, stderr and
//! error texts (which quote the upstream's answer) go along only with `otlp_payloads`; without
//! it an error is exported as its code (`dibop.error_code`, and the span status's message).
//!
//! Runs off the engine's path: a finished run offers its execution to a bounded queue (a full
//! queue drops the export), one task builds and sends each trace, a failure is logged, and a
//! panic in one export does not stop the task. `dibop_otlp_exports_total{outcome}` counts them
//! (sent, failed, dropped) in `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use dibop_core::ApiCallStatus;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::engine::trace::TraceView;
use crate::store::Store;

/// Executions waiting to be exported; more are dropped (and counted).
pub const QUEUE: usize = 1024;

/// Attributes that carry tenant payloads (error texts quote the upstream's answer), exported
/// only with `otlp_payloads`.
const PAYLOAD_ATTRIBUTES: [&str; 4] = ["input", "output", "stderr", "error"];

/// The exporter's side the engine events see.
pub struct Exporter {
    queue: mpsc::Sender<(String, String)>,
}

impl Exporter {
    /// Starts the export task; it ends when `stop` turns true (after the queue is drained).
    pub fn start(
        endpoint: &str,
        store: Store,
        payloads: bool,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<(Arc<Self>, tokio::task::JoinHandle<()>)> {
        let trimmed = endpoint.trim().trim_end_matches('/');
        let url = if trimmed.ends_with("/v1/traces") { trimmed.to_owned() } else { format!("{trimmed}/v1/traces") };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (queue, mut pending) = mpsc::channel::<(String, String)>(QUEUE);
        let task = tokio::spawn(async move {
            loop {
                let stopping = async {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let next = tokio::select! {
                    next = pending.recv() => next,
                    () = stopping => {
                        pending.close();
                        pending.recv().await
                    }
                };
                let Some((enterprise_id, execution_id)) = next else { break };
                let exported =
                    dibop_core::guard::catch(export(&client, &url, &store, &enterprise_id, &execution_id, payloads))
                        .await;
                let outcome = match exported {
                    Ok(Ok(true)) => "sent",
                    Ok(Ok(false)) => continue,
                    Ok(Err(e)) => {
                        tracing::warn!(execution = %execution_id, error = %format!("{e:#}"), "OTLP export failed");
                        "failed"
                    }
                    Err(panic) => {
                        tracing::error!(execution = %execution_id, error = %panic, "OTLP export panicked");
                        "failed"
                    }
                };
                crate::metrics::get().otlp_export(outcome);
            }
        });
        Ok((Arc::new(Self { queue }), task))
    }

    /// Offers a finished run's execution for export; never waits.
    pub fn offer(&self, enterprise_id: &str, execution_id: &str) {
        if self.queue.try_send((enterprise_id.to_owned(), execution_id.to_owned())).is_err() {
            crate::metrics::get().otlp_export("dropped");
        }
    }
}

async fn export(
    client: &reqwest::Client,
    url: &str,
    store: &Store,
    enterprise_id: &str,
    execution_id: &str,
    payloads: bool,
) -> anyhow::Result<bool> {
    let Some(execution) = store.get_execution(enterprise_id, execution_id).await? else { return Ok(false) };
    // A run that parked or went back to the queue is exported when it ends.
    if !execution.is_final() {
        return Ok(false);
    }
    let trace = crate::engine::trace::build(store, execution).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let body = request(&trace, enterprise_id, payloads).encode_to_vec();
    client.post(url).header("content-type", "application/x-protobuf").body(body).send().await?.error_for_status()?;
    Ok(true)
}

/// The OTLP request of one trace.
pub fn request(trace: &TraceView, enterprise_id: &str, payloads: bool) -> ExportTraceServiceRequest {
    let trace_id = bytes(&trace.trace_id);
    let spans = trace
        .spans
        .iter()
        .map(|s| {
            let start = s.start.timestamp_nanos_opt().map_or(0, |n| u64::try_from(n).unwrap_or(0));
            let end = start + (s.duration_ms.max(0.0) * 1_000_000.0) as u64;
            let mut attributes = vec![
                text("dibop.kind", &s.kind),
                text("dibop.status", &s.status),
                text("dibop.execution_id", &trace.execution_id),
            ];
            if let Value::Object(fields) = &s.attributes {
                for (key, value) in fields {
                    if value.is_null() || (!payloads && PAYLOAD_ATTRIBUTES.contains(&key.as_str())) {
                        continue;
                    }
                    attributes.push(KeyValue {
                        key: format!("dibop.{key}"),
                        value: Some(any(value)),
                        ..KeyValue::default()
                    });
                }
            }
            let error = s.attributes.get("error").and_then(Value::as_str);
            let code = match s.attributes.get("error_code").and_then(Value::as_str) {
                Some(given) => Some(given),
                None => error.map(error_code).inspect(|code| attributes.push(text("dibop.error_code", code))),
            };
            let failed = if s.kind == "http" {
                s.status.parse::<ApiCallStatus>().is_ok_and(ApiCallStatus::is_failure)
            } else {
                ["failed", "cancelled"].contains(&s.status.as_str())
            };
            let message = if payloads { error } else { code };
            Span {
                trace_id: trace_id.clone(),
                span_id: bytes(&s.span_id),
                parent_span_id: s.parent_id.as_deref().map(bytes).unwrap_or_default(),
                name: if s.kind == "http" { http_name(&s.name) } else { s.name.clone() },
                kind: if s.kind == "http" { span::SpanKind::Client } else { span::SpanKind::Internal } as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: Some(Status {
                    message: if failed { message.unwrap_or_default().to_owned() } else { String::new() },
                    code: if failed { status::StatusCode::Error } else { status::StatusCode::Ok } as i32,
                }),
                ..Span::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "dibop"),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                    text("dibop.enterprise_id", enterprise_id),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "dibop".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// The name of an HTTP call's span, `<method> <url>` in the trace, as `<method> <host[:port]>`:
/// the path and query hold ids and tokens.
fn http_name(name: &str) -> String {
    let (method, url) = name.split_once(' ').unwrap_or((name, ""));
    let host = reqwest::Url::parse(url).ok().and_then(|u| {
        let host = u.host_str()?.to_owned();
        Some(u.port().map_or_else(|| host.clone(), |port| format!("{host}:{port}")))
    });
    match host {
        Some(host) => format!("{method} {host}"),
        None => method.to_owned(),
    }
}

/// The code of an error text (`<code>: <message>`, as steps and plugins write them), or
/// `error` when it has none.
fn error_code(error: &str) -> &str {
    let code = error.split_once(':').map_or(error, |(code, _)| code);
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.');
    let named = code.starts_with(|c: char| c.is_ascii_lowercase()) && code.len() <= 64 && code.chars().all(plain);
    if named { code } else { "error" }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..KeyValue::default()
    }
}

/// A JSON value as an OTLP attribute value: numbers, booleans and text as themselves, objects
/// and arrays as their JSON text.
fn any(value: &Value) -> AnyValue {
    let value = match value {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        other => any_value::Value::StringValue(other.to_string()),
    };
    AnyValue { value: Some(value) }
}

/// Hex ids as the bytes OTLP carries.
fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_spans_are_named_by_method_and_host() {
        assert_eq!(http_name("GET https://api.example.com/v1/vehicles/1HGCM?token=t"), "GET api.example.com");
        assert_eq!(http_name("POST http://127.0.0.1:8080/x"), "POST 127.0.0.1:8080");
        assert_eq!(http_name("GET not a url"), "GET");
    }

    #[test]
    fn error_codes_are_the_code_of_the_text_or_error() {
        assert_eq!(error_code("upstream_error: upstream answered HTTP 500: body"), "upstream_error");
        assert_eq!(error_code("timeout"), "timeout");
        assert_eq!(error_code("step balance failed: upstream_error: x"), "error");
        assert_eq!(error_code("error sending request for url (http://h/p?token=t)"), "error");
        assert_eq!(error_code(""), "error");
    }
}
