//! The leaf steps (plugin calls with retries, transforms, canonical upserts) and what any step
//! answers ([`StepOutcome`]) and leaves for the trace. Steps of every kind are dispatched by
//! `blocks::run_step`, next to the containers that run bodies of steps through it again.
//!
//! One file per leaf step: `api_call`, `transform`, `canonical_upsert`; `retry` holds the retry
//! policies both plugin steps apply.

mod api_call;
mod canonical_upsert;
pub mod retry;
mod transform;

use std::time::Duration;

use serde_json::{Value, json};

use dibop_core::StepStatus;

use super::definition::Step;
use super::{MAX_STORED_DETAIL, MAX_STORED_ERROR, stored};
use crate::trace::{Attempt, TraceDetail};
use dibop_plugin_host::outbound::ApiCallRecord;
use dibop_plugin_host::{CallError, CallReport};
use dibop_store::{BodyStepRow, StepResultRow};

pub(super) struct StepOutcome {
    pub(super) status: StepStatus,
    pub(super) system: Option<String>,
    pub(super) input: Option<Value>,
    pub(super) output: Option<Value>,
    pub(super) error: Option<String>,
    pub(super) attempts: u32,
    /// Trace material: attempts with plugin timings, log lines, stderr, nested steps.
    pub(super) detail: Option<TraceDetail>,
    /// Something inside the step failed and was let through (the execution ends `partial`).
    pub(super) partial: bool,
    /// The outbound requests it made, committed with its result.
    pub(super) api_calls: Vec<ApiCallRecord>,
    /// A long wait inside it parks the execution: it has no result yet and runs again (replaying
    /// what finished) when the execution resumes.
    pub(super) parked: Option<Parked>,
}

/// A container (or a `sub_orchestration` whose child is parked) that parks the execution.
pub(super) struct Parked {
    /// When the earliest wait in it is due (ms since the epoch).
    pub due_ms: i64,
    /// Body steps that finished since the execution last resumed, to be kept.
    pub steps: Vec<BodyStepRow>,
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
    pub(super) fn parked(parked: Parked, api_calls: Vec<ApiCallRecord>) -> Self {
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
            status: self.status,
            system: self.system.clone(),
            operation: step.operation.clone(),
            input: self.input.as_ref().map(|v| stored(v, MAX_STORED_DETAIL, "input")),
            output: self.output.as_ref().map(Value::to_string),
            error: self.error.as_deref().map(|e| dibop_core::bounded::clip(e, MAX_STORED_ERROR).into_owned()),
            attempts: i64::from(self.attempts),
            started_at,
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            detail: self.detail.as_ref().map(|d| stored(&d.to_value(), MAX_STORED_DETAIL, "trace detail")),
        }
    }

    fn finish(result: Result<Value, CallError>, system: Option<String>, input: Value, trace: Trace) -> Self {
        let attempts = u32::try_from(trace.attempts.len()).unwrap_or(u32::MAX);
        let detail = Some(TraceDetail {
            attempts: Some(trace.attempts),
            logs: Some(trace.logs),
            stderr: Some(trace.stderr),
            ..TraceDetail::default()
        });
        match result {
            Ok(output) => Self { system, input: Some(input), attempts, detail, ..Self::success(output) },
            Err(e) => Self { detail, ..Self::failed(system, Some(input), e.to_string(), attempts) },
        }
    }
}

/// What the attempts of one step left for its trace.
#[derive(Default)]
struct Trace {
    attempts: Vec<Attempt>,
    logs: Vec<Value>,
    stderr: String,
}

impl Trace {
    /// An attempt refused before it ran (open circuit, no rate permit).
    fn refused(&mut self, attempt: u32, started_ms: i64, error: &CallError) {
        let duration_us = u64::try_from((dibop_core::now_ms() - started_ms).max(0)).unwrap_or(0) * 1000;
        self.attempts.push(Attempt {
            attempt,
            started_at_ms: started_ms,
            duration_us,
            error: Some(error.to_string()),
            ..Attempt::default()
        });
    }

    /// `retry_after`: how long the upstream asked to wait before the next attempt.
    fn record<T>(&mut self, attempt: u32, started_ms: i64, report: &CallReport<T>, retry_after: Option<Duration>) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let invoke = report.duration.saturating_sub(report.setup + report.instantiate + report.teardown);
        self.attempts.push(Attempt {
            attempt,
            started_at_ms: started_ms,
            duration_us: micros(report.duration),
            setup_us: micros(report.setup),
            instantiate_us: micros(report.instantiate),
            invoke_us: micros(invoke),
            teardown_us: micros(report.teardown),
            error: report.result.as_ref().err().map(ToString::to_string),
            retry_after_ms: retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        });
        for line in &report.logs {
            let mut line = serde_json::to_value(line).unwrap_or(Value::Null);
            line["attempt"] = json!(attempt);
            self.logs.push(line);
        }
        self.stderr = dibop_plugin_host::last_chars(&report.stderr, 4096).to_owned();
    }
}

pub(crate) use api_call::{Held, PERMIT, run_api_call};
pub(crate) use canonical_upsert::canonical_upsert;
pub(crate) use transform::run_transform;
