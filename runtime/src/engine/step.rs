//! One step: mapping its input, running it by type (plugin calls with retries, transforms,
//! canonical upserts, containers), bounding its output, and what it leaves for the trace.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use dibop_core::{StepStatus, now_ms};

use super::definition::{self, Definition, Step};
use super::{MAX_STEP_OUTPUT, MAX_STORED_DETAIL, MAX_STORED_ERROR, StopSignal, blocks, mapping, stored};
use crate::connections::{self, Caller};
use crate::plugins::outbound::ApiCallRecord;
use crate::plugins::{CallError, CallReport, CallSpec, Invocation, Loaded};
use crate::state::AppState;
use crate::store::{ExecutionRow, StepResultRow};

pub(super) struct StepOutcome {
    pub(super) status: StepStatus,
    pub(super) system: Option<String>,
    pub(super) input: Option<Value>,
    pub(super) output: Option<Value>,
    pub(super) error: Option<String>,
    pub(super) attempts: u32,
    /// Trace material: attempts with plugin timings, log lines, stderr, nested steps.
    pub(super) detail: Option<Value>,
    /// Something inside the step failed and was let through (the execution ends `partial`).
    pub(super) partial: bool,
    /// The outbound requests it made, committed with its result.
    pub(super) api_calls: Vec<ApiCallRecord>,
    /// A long wait inside it parks the execution: it has no result yet and runs again (replaying
    /// what finished) when the execution resumes.
    pub(super) parked: Option<blocks::Parked>,
}

impl StepOutcome {
    pub(super) fn skipped() -> Self {
        Self {
            status: StepStatus::Skipped,
            system: None,
            input: None,
            output: None,
            error: None,
            attempts: 0,
            detail: None,
            partial: false,
            api_calls: Vec::new(),
            parked: None,
        }
    }

    /// A container that parks the execution; `api_calls` were made by its kept body steps.
    pub(super) fn parked(parked: blocks::Parked, api_calls: Vec<ApiCallRecord>) -> Self {
        Self { parked: Some(parked), api_calls, ..Self::skipped() }
    }

    pub(super) fn success(output: Value) -> Self {
        Self { status: StepStatus::Success, output: Some(output), attempts: 1, ..Self::skipped() }
    }

    pub(super) fn failed(system: Option<String>, input: Option<Value>, error: String, attempts: u32) -> Self {
        Self { status: StepStatus::Failed, system, input, error: Some(error), attempts, ..Self::skipped() }
    }

    /// The committed form.
    pub(super) fn row(&self, step: &Step, position: i64, started_at: i64, took: Duration) -> StepResultRow {
        StepResultRow {
            position,
            name: step.name.clone(),
            kind: step.kind.clone(),
            status: self.status.as_str().into(),
            system: self.system.clone(),
            operation: step.operation.clone(),
            input: self.input.as_ref().map(|v| stored(v, MAX_STORED_DETAIL, "input")),
            output: self.output.as_ref().map(Value::to_string),
            error: self.error.as_deref().map(|e| crate::bounded::clip(e, MAX_STORED_ERROR).into_owned()),
            attempts: i64::from(self.attempts),
            started_at,
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            detail: self.detail.as_ref().map(|v| stored(v, MAX_STORED_DETAIL, "trace detail")),
        }
    }

    fn finish(result: Result<Value, CallError>, system: Option<String>, input: Value, trace: Trace) -> Self {
        let attempts = u32::try_from(trace.attempts.len()).unwrap_or(u32::MAX);
        let detail = Some(json!({
            "attempts": Value::Array(trace.attempts),
            "logs": Value::Array(trace.logs),
            "stderr": Value::String(trace.stderr),
        }));
        match result {
            Ok(output) => Self { system, input: Some(input), attempts, detail, ..Self::success(output) },
            Err(e) => Self { detail, ..Self::failed(system, Some(input), e.to_string(), attempts) },
        }
    }
}

/// What the attempts of one step left for its trace.
#[derive(Default)]
struct Trace {
    attempts: Vec<Value>,
    logs: Vec<Value>,
    stderr: String,
}

impl Trace {
    fn record<T>(&mut self, attempt: u32, started_ms: i64, report: &CallReport<T>) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let invoke = report.duration.saturating_sub(report.setup + report.instantiate + report.teardown);
        self.attempts.push(json!({
            "attempt": attempt,
            "started_at_ms": started_ms,
            "duration_us": micros(report.duration),
            "setup_us": micros(report.setup),
            "instantiate_us": micros(report.instantiate),
            "invoke_us": micros(invoke),
            "teardown_us": micros(report.teardown),
            "error": report.result.as_ref().err().map(ToString::to_string),
        }));
        for line in &report.logs {
            let mut line = serde_json::to_value(line).unwrap_or(Value::Null);
            line["attempt"] = json!(attempt);
            self.logs.push(line);
        }
        self.stderr = crate::plugins::last_chars(&report.stderr, 4096).to_owned();
    }
}

/// Runs one step against `scope`. `label` names it in API-call rows and idempotency keys
/// (`decode`, or `each[3].decode` inside a for_each); `top` is false inside for_each and parallel
/// bodies, whose steps kept from before the execution parked are in `kept`.
pub(super) fn run_step<'a>(
    state: &'a AppState,
    execution: &'a ExecutionRow,
    kept: &'a blocks::Kept,
    step: &'a Step,
    scope: &'a Value,
    label: &'a str,
    top: bool,
) -> BoxFuture<'a, StepOutcome> {
    Box::pin(async move {
        let clock = Instant::now();
        let input_template = match step.kind.as_str() {
            "api_call" | "sub_orchestration" => step.parameters.clone().unwrap_or_else(|| json!({})),
            _ => step.mapping.clone().unwrap_or_else(|| json!({})),
        };
        let input = match mapping::resolve(&input_template, scope) {
            Ok(input) => input,
            Err(e) => return StepOutcome::failed(None, None, format!("mapping: {e}"), 0),
        };
        let mapping_us = u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX);
        let container = ["for_each", "parallel", "sub_orchestration", "wait"].contains(&step.kind.as_str());
        let work = async {
            match (step.kind.as_str(), step.transform.as_deref()) {
                ("condition", _) => match mapping::condition(step.condition.as_deref().unwrap_or("false"), scope) {
                    Ok(holds) => {
                        StepOutcome::success(json!({"result": holds, "branch": if holds { "then" } else { "else" }}))
                    }
                    Err(e) => StepOutcome::failed(None, None, format!("condition: {e}"), 1),
                },
                ("transform", Some("map")) => StepOutcome::success(input),
                ("transform", Some(slug)) => {
                    let params = match step.parameters.as_ref().map(|p| mapping::resolve(p, scope)).transpose() {
                        Ok(p) => p.unwrap_or_else(|| json!({})),
                        Err(e) => return StepOutcome::failed(None, Some(input), format!("mapping: {e}"), 0),
                    };
                    run_transform(state, execution, step, slug, input, params).await
                }
                ("api_call", _) => run_api_call(state, execution, step, label, input).await,
                ("for_each", _) => blocks::for_each(state, execution, kept, step, scope, label).await,
                ("parallel", _) => blocks::parallel(state, execution, kept, step, scope, label).await,
                ("sub_orchestration", _) => blocks::sub_orchestration(state, execution, step, label, input).await,
                ("wait", _) => blocks::wait(state, execution, step, scope, top).await,
                ("canonical_upsert", _) => canonical_upsert(state, execution, step, input).await,
                (kind, _) => StepOutcome::failed(None, Some(input), format!("step type {kind} is not supported"), 0),
            }
        };
        // Plugin steps apply their timeout to each attempt; the others to the whole step.
        let timed = async {
            match step.timeout_ms.filter(|_| container) {
                Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), work).await {
                    Ok(outcome) => outcome,
                    Err(_) => StepOutcome::failed(None, None, format!("timed out after {ms} ms"), 1),
                },
                None => work.await,
            }
        };
        // A bug of ours fails this step, not the worker that runs it.
        let mut outcome = match crate::guard::catch(timed).await {
            Ok(outcome) => outcome,
            Err(panic) => {
                tracing::error!(execution = %execution.id, step = %label, panic = %panic, "a step panicked");
                let error =
                    format!("INTERNAL: the engine panicked in this step: {}", crate::bounded::clip(&panic, 500));
                StepOutcome::failed(None, None, error, 1)
            }
        };
        if let Some(size) = outcome.output.as_ref().map(|o| o.to_string().len()).filter(|n| *n > MAX_STEP_OUTPUT) {
            let error = format!("the step's output is {size} bytes; at most {MAX_STEP_OUTPUT} are kept");
            outcome = StepOutcome {
                detail: outcome.detail.take(),
                ..StepOutcome::failed(outcome.system.take(), None, error, outcome.attempts)
            };
        }
        let detail = outcome.detail.get_or_insert_with(|| json!({}));
        detail["mapping_us"] = json!(mapping_us);
        outcome
    })
}

/// Writes the mapped record to its canonical domain by natural key, with the execution as lineage.
async fn canonical_upsert(state: &AppState, execution: &ExecutionRow, step: &Step, record: Value) -> StepOutcome {
    let name = step.domain.clone().unwrap_or_default();
    let Some(domain) = crate::canonical::domain(&name) else {
        return StepOutcome::failed(None, Some(record), format!("{name:?} is not a canonical domain"), 1);
    };
    let errors = domain.validate(&record);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        return StepOutcome::failed(None, Some(record), format!("invalid {name} record: {}", list.join("; ")), 1);
    }
    let Some(key) = domain.key_of(&record) else {
        return StepOutcome::failed(None, Some(record), format!("the record has no {}", domain.natural_key), 1);
    };
    let (connection, system) = match &step.source {
        Some(source) => source_connection(state, execution, source).await.unzip(),
        None => (None, None),
    };
    let lineage = crate::store::Lineage {
        kind: "execution",
        execution_id: Some(execution.id.clone()),
        connection,
        system,
        created_by: None,
    };
    match state.store.upsert_canonical(&execution.enterprise_id, &name, &key, &record.to_string(), lineage).await {
        Ok(row) => StepOutcome {
            input: Some(record),
            ..StepOutcome::success(json!({"id": row.id, "domain": name, "natural_key": key}))
        },
        Err(e) => StepOutcome::failed(None, Some(record), format!("storing the {name} record: {e}"), 1),
    }
}

/// The (connection name, system) of the `api_call` step named `source` in the execution's
/// orchestration version.
async fn source_connection(state: &AppState, execution: &ExecutionRow, source: &str) -> Option<(String, String)> {
    let text = state
        .store
        .orchestration_version(&execution.orchestration_id, execution.orchestration_version)
        .await
        .ok()
        .flatten()?;
    let def: Definition = serde_json::from_str(&text).ok()?;
    let connection = definition::find_step(&def.steps, source)?.connection.clone()?;
    let row = state.store.find_connection(&execution.enterprise_id, &connection).await.ok().flatten()?;
    Some((row.name, row.system))
}

/// A step's retry policy in motion: which attempt this is and how long to wait before the next.
struct Retrier {
    policy: Option<definition::Retry>,
    attempt: u32,
    delay_ms: f64,
    /// A stopped execution makes no further attempt.
    signal: StopSignal,
}

impl Retrier {
    fn new(step: &Step, signal: StopSignal) -> Self {
        let delay_ms = step.retry.as_ref().map_or(0, |r| r.initial_interval_ms) as f64;
        Self { policy: step.retry.clone(), attempt: 1, delay_ms, signal }
    }

    /// After a failed attempt: waits and answers true when another attempt is due.
    async fn again(&mut self, error: &CallError) -> bool {
        let Some(policy) = &self.policy else { return false };
        let retryable =
            if policy.retry_on.is_empty() { error.retryable } else { policy.retry_on.contains(&error.code) };
        if !retryable || self.attempt >= policy.max_attempts {
            return false;
        }
        let cap = policy.max_interval_ms.unwrap_or(60_000) as f64;
        let pause = Duration::from_millis(self.delay_ms.min(cap) as u64);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = self.signal.stopped() => return false,
        }
        self.delay_ms *= policy.backoff_coefficient;
        self.attempt += 1;
        true
    }
}

async fn run_api_call(
    state: &AppState,
    execution: &ExecutionRow,
    step: &Step,
    label: &str,
    input: Value,
) -> StepOutcome {
    let name = step.connection.clone().unwrap_or_default();
    let connection = match state.store.find_connection(&execution.enterprise_id, &name).await {
        Ok(Some(row)) => row,
        Ok(None) => return StepOutcome::failed(None, Some(input), format!("connection {name:?} no longer exists"), 0),
        Err(e) => return StepOutcome::failed(None, Some(input), format!("loading connection: {e}"), 0),
    };
    let caller = Caller {
        orchestration_id: Some(execution.orchestration_id.clone()),
        execution_id: Some(execution.id.clone()),
        step: Some(label.to_owned()),
    };
    let mut prepared = match connections::prepare(state, &connection, caller).await {
        Ok(p) => p,
        Err(e) => return StepOutcome::failed(Some(connection.system), Some(input), e.to_string(), 0),
    };
    if let Some(ms) = step.timeout_ms {
        prepared.spec.limits.timeout = Duration::from_millis(ms);
    }
    let operation = step.operation.clone().unwrap_or_default();
    let idempotency_key = format!("{}:{label}", execution.id);
    let mut retrier = Retrier::new(step, state.engine.signal(&execution.id));
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
        let result = match prepared.invoke(state, &operation, &input, invocation).await {
            Ok(mut report) => {
                trace.record(retrier.attempt, started_ms, &report);
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
            Err(e) if retrier.again(&e).await => continue,
            result => break result,
        }
    };
    StepOutcome { api_calls, ..StepOutcome::finish(result, Some(connection.system), input, trace) }
}

async fn run_transform(
    state: &AppState,
    execution: &ExecutionRow,
    step: &Step,
    slug: &str,
    input: Value,
    params: Value,
) -> StepOutcome {
    let loaded = match state.registry.resolve(&execution.enterprise_id, "transform", slug).await {
        Ok(Some(row)) => state.registry.loaded(&row).await,
        Ok(None) => Err(anyhow::anyhow!("no transform plugin {slug:?}")),
        Err(e) => Err(e.into()),
    };
    let pre = match loaded {
        Ok(Loaded::Transform(pre)) => pre,
        Ok(Loaded::Connector(_)) => {
            return StepOutcome::failed(None, Some(input), format!("{slug} is not a transform"), 0);
        }
        Err(e) => return StepOutcome::failed(None, Some(input), format!("{e:#}"), 0),
    };
    let mut spec = CallSpec { plugin: slug.to_owned(), ..CallSpec::default() };
    spec.origin.enterprise_id = execution.enterprise_id.clone();
    if let Some(ms) = step.timeout_ms {
        spec.limits.timeout = Duration::from_millis(ms);
    }
    let mut retrier = Retrier::new(step, state.engine.signal(&execution.id));
    let mut trace = Trace::default();
    let result = loop {
        let started_ms = now_ms();
        let report = state.plugins().run_transform(&pre, &spec, &input, &params).await;
        trace.record(retrier.attempt, started_ms, &report);
        match report.result {
            Err(e) if retrier.again(&e).await => continue,
            result => break result,
        }
    };
    StepOutcome::finish(result, None, input, trace)
}
