//! An execution's trace assembled from what it committed: the execution, its steps (and the
//! steps nested in container bodies), each plugin attempt with its setup, instantiation,
//! invocation and teardown, the mapping, every outbound HTTP call (linked to its API-call row)
//! and every log line the plugin wrote. `GET /executions/{id}/trace` answers it and the OTLP
//! export sends it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::TraceDetail;
use dibop_core::trace::span_id;
use dibop_store::{ExecutionRow, Store};

/// Largest JSON value (as text) a trace shows in a span before truncating it with a marker.
const TRACE_VALUE_CAP: usize = 4096;

/// One span of a trace.
#[derive(Serialize, ToSchema)]
pub struct Span {
    /// 16 hex digits, OpenTelemetry-compatible.
    pub span_id: String,
    pub parent_id: Option<String>,
    /// execution, step, mapping, attempt, plugin.setup, plugin.instantiate, plugin.invoke,
    /// plugin.teardown, http.
    pub kind: String,
    pub name: String,
    pub start: DateTime<Utc>,
    pub duration_ms: f64,
    pub status: String,
    #[schema(value_type = Object)]
    pub attributes: Value,
}

/// The timeline of one execution.
#[derive(Serialize, ToSchema)]
pub struct TraceView {
    pub execution_id: String,
    /// 32 hex digits, OpenTelemetry-compatible.
    pub trace_id: String,
    pub spans: Vec<Span>,
    /// Every line the plugins logged, with the span it belongs to.
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<Value>,
}

/// `value` as JSON, or its text cut at the cap with a marker saying how much was left out.
fn capped(value: Option<Value>) -> Value {
    let Some(value) = value else { return Value::Null };
    let text = value.to_string();
    if text.len() <= TRACE_VALUE_CAP {
        return value;
    }
    Value::String(dibop_core::bounded::clip(&text, TRACE_VALUE_CAP).into_owned())
}

/// What the trace needs of one step, committed or nested in a container's detail.
struct StepRecord {
    /// What its span ids derive from.
    seed: String,
    /// Its name, or its path inside containers (`each[2].decode`): what its API-call rows carry.
    label: String,
    status: String,
    started_at: i64,
    duration_ms: i64,
    attributes: Value,
    detail: TraceDetail,
}

/// Collects the spans and log lines of a trace.
struct TraceBuilder<'a> {
    calls: &'a [dibop_store::ApiCallRow],
    spans: Vec<Span>,
    logs: Vec<Value>,
}

impl TraceBuilder<'_> {
    /// The spans of one step: itself, its mapping, its attempts with their plugin phases, its
    /// HTTP calls, its log lines, and the steps inside it.
    fn step(&mut self, execution_id: &str, step: &StepRecord, parent: &str) {
        let step_id = span_id(&step.seed);
        let detail = &step.detail;
        self.spans.push(Span {
            span_id: step_id.clone(),
            parent_id: Some(parent.to_owned()),
            kind: "step".into(),
            name: step.label.clone(),
            start: datetime(step.started_at),
            duration_ms: step.duration_ms as f64,
            status: step.status.clone(),
            attributes: step.attributes.clone(),
        });
        if let Some(us) = detail.mapping_us {
            self.spans.push(Span {
                span_id: span_id(&format!("{}:mapping", step.seed)),
                parent_id: Some(step_id.clone()),
                kind: "mapping".into(),
                name: format!("{} mapping", step.label),
                start: datetime(step.started_at),
                duration_ms: us as f64 / 1000.0,
                status: "success".into(),
                attributes: Value::Object(serde_json::Map::new()),
            });
        }
        let mut windows = Vec::new();
        for attempt in detail.attempts.iter().flatten() {
            let n = attempt.attempt;
            let attempt_id = span_id(&format!("{}:{n}", step.seed));
            let begin = if attempt.started_at_ms == 0 { step.started_at } else { attempt.started_at_ms };
            self.spans.push(Span {
                span_id: attempt_id.clone(),
                parent_id: Some(step_id.clone()),
                kind: "attempt".into(),
                name: format!("{} attempt {n}", step.label),
                start: datetime(begin),
                duration_ms: attempt.duration_us as f64 / 1000.0,
                status: if attempt.error.is_none() { "success" } else { "failed" }.into(),
                attributes: serde_json::json!({"error": attempt.error, "retry_after_ms": attempt.retry_after_ms}),
            });
            let mut offset_us = 0;
            for (kind, us) in [
                ("plugin.setup", attempt.setup_us),
                ("plugin.instantiate", attempt.instantiate_us),
                ("plugin.invoke", attempt.invoke_us),
                ("plugin.teardown", attempt.teardown_us),
            ] {
                self.spans.push(Span {
                    span_id: span_id(&format!("{attempt_id}:{kind}")),
                    parent_id: Some(attempt_id.clone()),
                    kind: kind.into(),
                    name: kind.into(),
                    start: datetime(begin + i64::try_from(offset_us / 1000).unwrap_or(0)),
                    duration_ms: us as f64 / 1000.0,
                    // A failed attempt failed in the plugin's call (setup and instantiation
                    // failures end the attempt before invoke runs, and show there too).
                    status: if kind == "plugin.invoke" && attempt.error.is_some() { "failed" } else { "success" }
                        .into(),
                    attributes: if kind == "plugin.invoke" {
                        serde_json::json!({"error": attempt.error})
                    } else {
                        Value::Object(serde_json::Map::new())
                    },
                });
                offset_us += us;
            }
            windows.push((begin, begin + i64::try_from(attempt.duration_us / 1000).unwrap_or(0) + 1, attempt_id));
        }
        for call in self.calls.iter().filter(|c| c.step.as_deref() == Some(step.label.as_str())) {
            let parent = windows
                .iter()
                .find(|(from, to, _)| (*from..=*to).contains(&call.timestamp))
                .map_or(step_id.clone(), |w| w.2.clone());
            self.spans.push(Span {
                span_id: span_id(&call.id),
                parent_id: Some(parent),
                kind: "http".into(),
                name: format!("{} {}", call.method, call.url),
                start: datetime(call.timestamp),
                duration_ms: call.duration_ms as f64,
                status: call.status.as_str().into(),
                attributes: serde_json::json!({"api_call_id": call.id, "status_code": call.status_code, "error": call.error,
                                               "request_bytes": call.request_bytes, "response_bytes": call.response_bytes}),
            });
        }
        for mut line in detail.logs.iter().flatten().cloned() {
            let n = line["attempt"].as_u64().unwrap_or(1);
            line["step"] = Value::String(step.label.clone());
            line["span_id"] = Value::String(span_id(&format!("{}:{n}", step.seed)));
            self.logs.push(line);
        }
        // for_each iterations and parallel branches: their steps, under this one.
        for nested in detail.steps.iter().flatten() {
            let label = nested["label"].as_str().unwrap_or_default().to_owned();
            let record = StepRecord {
                seed: format!("{execution_id}:{label}"),
                status: nested["status"].as_str().unwrap_or_default().to_owned(),
                started_at: nested["started_at_ms"].as_i64().unwrap_or(step.started_at),
                duration_ms: nested["duration_ms"].as_i64().unwrap_or(0),
                attributes: serde_json::json!({"type": nested["type"], "system": nested["system"],
                    "operation": nested["operation"], "attempts": nested["attempts"], "error": nested["error"],
                    "stderr": nested["detail"]["stderr"]}),
                detail: TraceDetail::read(&nested["detail"]),
                label,
            };
            self.step(execution_id, &record, &step_id);
        }
    }
}

/// The trace of an execution, from its committed step results and API-call rows (what the
/// endpoint shows and the OTLP export sends).
pub async fn build(store: &Store, execution: ExecutionRow) -> sqlx::Result<TraceView> {
    let steps = store.step_results(&execution.id).await?;
    let filter = dibop_store::ApiCallFilter { execution_id: Some(execution.id.clone()), ..Default::default() };
    let (mut calls, _) =
        store.list_api_calls(&execution.enterprise_id, &filter, dibop_store::Page { limit: 10_000, offset: 0 }).await?;
    calls.reverse();
    let root = span_id(&execution.id);
    let start = execution.started_at.unwrap_or(execution.created_at);
    // A caller's traceparent makes its span the execution's parent.
    let remote_parent =
        execution.traceparent.as_deref().and_then(dibop_core::trace::TraceParent::parse).map(|p| p.span_id);
    let spans = vec![Span {
        span_id: root.clone(),
        parent_id: remote_parent,
        kind: "execution".into(),
        name: format!("execution {}", execution.id),
        start: datetime(start),
        duration_ms: execution.finished_at.zip(execution.started_at).map_or(0, |(f, s)| f - s) as f64,
        status: execution.status.to_string(),
        attributes: serde_json::json!({"orchestration_id": execution.orchestration_id, "orchestration_version": execution.orchestration_version,
                                       "triggered_by": execution.triggered_by, "error": execution.error,
                                       "error_code": execution.error_code}),
    }];
    let mut trace = TraceBuilder { calls: &calls, spans, logs: Vec::new() };
    for step in steps {
        let detail = step
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .map_or_else(TraceDetail::default, |d| TraceDetail::read(&d));
        let mut attributes = serde_json::json!({"type": step.kind, "system": step.system, "operation": step.operation,
            "attempts": step.attempts, "error": step.error,
            "input": capped(step.input.as_deref().and_then(|t| serde_json::from_str(t).ok())),
            "output": capped(step.output.as_deref().and_then(|t| serde_json::from_str(t).ok())),
            "stderr": detail.stderr});
        // A for_each: how its items ended, and how many have no spans of their own.
        if let Some(outcomes) = &detail.outcomes {
            attributes["items"] = detail.items.into();
            attributes["outcomes"] = serde_json::json!(outcomes);
            attributes["items_left_out"] = detail.items_left_out.unwrap_or(0).into();
        }
        let record = StepRecord {
            seed: format!("{}:{}", execution.id, step.position),
            label: step.name.clone(),
            status: step.status.to_string(),
            started_at: step.started_at,
            duration_ms: step.duration_ms,
            attributes,
            detail,
        };
        trace.step(&execution.id, &record, &root);
    }
    let TraceBuilder { spans, logs, .. } = trace;
    Ok(TraceView { trace_id: execution.trace_id(), execution_id: execution.id, spans, logs })
}

/// A time in unix milliseconds as a UTC instant.
fn datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
