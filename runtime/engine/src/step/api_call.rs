//! `api_call`: an operation of a connection's connector, with retries.

use std::time::Duration;

use serde_json::{Value, json};

use dibop_core::now_ms;

use super::*;
use crate::Engine;
use crate::connections::{self, Caller};
use crate::definition::Step;
use crate::resilience::{self, Resilience};
use dibop_plugin_host::{CallError, Invocation};
use dibop_store::ExecutionRow;

pub(crate) async fn run_api_call(
    engine: &Engine,
    execution: &ExecutionRow,
    step: &Step,
    label: &str,
    input: Value,
) -> StepOutcome {
    let name = step.connection.clone().unwrap_or_default();
    let connection = match engine.store.find_connection(&execution.enterprise_id, &name).await {
        Ok(Some(row)) => row,
        Ok(None) => return StepOutcome::failed(None, Some(input), format!("connection {name:?} no longer exists"), 0),
        Err(e) => return StepOutcome::failed(None, Some(input), format!("loading connection: {e}"), 0),
    };
    let caller = Caller {
        orchestration_id: Some(execution.orchestration_id.clone()),
        execution_id: Some(execution.id.clone()),
        step: Some(label.to_owned()),
        trace_id: Some(execution.trace_id()),
        unsaved: false,
    };
    let mut prepared = match connections::prepare(engine, &connection, caller).await {
        Ok(p) => p,
        Err(e) => return StepOutcome::failed(Some(connection.system), Some(input), e.to_string(), 0),
    };
    if let Some(ms) = step.timeout_ms {
        prepared.spec.limits.timeout = Duration::from_millis(ms);
    }
    let operation = step.operation.clone().unwrap_or_default();
    let idempotency_key = format!("{}:{label}", execution.id);
    let policy = Resilience::of(&connection);
    let mut retrier = Retrier::new(step, engine.node.signal(&execution.id));
    let mut trace = Trace::default();
    let mut api_calls = Vec::new();
    let result = loop {
        let started_ms = now_ms();
        let invocation = Invocation {
            execution_id: Some(execution.id.clone()),
            step: Some(label.to_owned()),
            attempt: retrier.attempt,
            idempotency_key: idempotency_key.clone(),
        };
        let deadline = std::time::Instant::now() + prepared.spec.limits.timeout;
        if let Err(refused) = resilience::admit(engine, &connection, &policy, &prepared.spec.origin, deadline).await {
            trace.refused(retrier.attempt, started_ms, &refused.error);
            api_calls.push(refused.record);
            match retrier.again(&refused.error, None).await {
                true => continue,
                false => break Err(refused.error),
            }
        }
        // The attempt's window in the trace is the call's own (HTTP spans are placed by it).
        let started_ms = now_ms();
        let mut retry_after = None;
        let result = match prepared.invoke(engine, &operation, &input, invocation).await {
            Ok(mut report) => {
                let timed_out = report.result.as_ref().is_err_and(|e| e.code == "timeout");
                resilience::settle(engine, &connection, &policy, &report.api_calls, timed_out).await;
                retry_after = resilience::retry_after(&report.api_calls).filter(|_| report.result.is_err());
                trace.record(retrier.attempt, started_ms, &report, retry_after);
                let last = report.api_calls.last();
                let status = last.and_then(|c| c.status_code).unwrap_or(200);
                let headers: serde_json::Map<String, Value> = last
                    .map(|c| c.response_headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
                    .unwrap_or_default();
                let duration = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
                api_calls.append(&mut report.api_calls);
                report.result.map(|response| json!({"status_code": status, "headers": headers, "response": response, "duration_ms": duration}))
            }
            Err(e) => {
                Err(CallError { code: "internal".into(), message: e.to_string(), retryable: false, http_status: None })
            }
        };
        match result {
            Err(e) if retrier.again(&e, retry_after).await => continue,
            result => break result,
        }
    };
    StepOutcome { api_calls, ..StepOutcome::finish(result, Some(connection.system), input, trace) }
}
