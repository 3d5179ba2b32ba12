//! `api_call`: an operation of a connection's connector, with retries. A call whose permit of
//! the connection's rate limit is far away parks the execution ([`Held`] keeps the permit and
//! the attempt for when it resumes). A call whose first request could not leave on its permit
//! (it reached the network late, see [`resilience::StepPacer`]) sent nothing: the same attempt
//! goes again on the next permit.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use dibop_core::now_ms;

use super::retry::{Failure, Retrier};
use super::*;
use crate::connections::{self, Caller};
use crate::definition::Step;
use crate::resilience::{
    self, BODY_PERMIT_MS, INLINE_PERMIT_MS, PARK_LEAD_MS, Permit, Resilience, StepPacer, Throttled,
};
use crate::{Engine, INLINE_WAIT_MS};
use dibop_plugin_host::outbound::{PaceHandle, Pacer};
use dibop_plugin_host::{CallError, Invocation};
use dibop_store::{BodyStepRow, ExecutionRow};

/// The status of the kept row of a step parked for a permit (it has no result yet).
pub(crate) const PERMIT: &str = "permit";

/// Tries of one attempt whose first request reached the network after its permit's window;
/// past them the request is sent late rather than never (a connector that takes longer than a
/// window before its first request would otherwise never send it).
const MAX_LATE: u32 = 3;

/// What a step parked for a permit (or for a long pause between attempts) holds until its
/// execution resumes: the permit, if it took one, and the attempt it was about to make
/// (attempts already made are not made again).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Held {
    #[serde(default)]
    pub(crate) permit: Option<Permit>,
    pub(crate) attempt: u32,
    /// Tries of this attempt whose first request was late ([`MAX_LATE`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) late: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Held {
    /// The kept row of the step `label` holding it.
    fn row(&self, label: &str) -> BodyStepRow {
        BodyStepRow {
            label: label.to_owned(),
            status: PERMIT.into(),
            output: Some(json!(self).to_string()),
            error: None,
            partial: 0,
            record: json!({"label": label, "type": "api_call", "status": "throttled"}).to_string(),
        }
    }

    /// What a kept row holds, if it is a held permit.
    pub(crate) fn of(row: &BodyStepRow) -> Option<Self> {
        (row.status == PERMIT).then(|| serde_json::from_str(row.output.as_deref()?).ok()).flatten()
    }
}

pub(crate) async fn run_api_call(
    engine: &Engine,
    execution: &ExecutionRow,
    step: &Step,
    label: &str,
    input: Value,
    held: Option<Held>,
    top: bool,
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
    // Shared with each attempt's pacer without copying them.
    let policy = Arc::new(Resilience::of(&connection));
    let connection = Arc::new(connection);
    let mut retrier = Retrier::new(step, engine.node.signal(&execution.id));
    let mut late = held.as_ref().map_or(0, |held| held.late);
    let mut permit = held.and_then(|held| {
        retrier.resume_at(held.attempt);
        held.permit
    });
    // The step has no result yet: it parks the execution and, when that resumes, goes on with
    // `attempt` (and the permit, if it took one).
    let park = |attempt: u32, late: u32, due_ms: i64, permit: Option<Permit>, api_calls: Vec<_>| {
        let held = Held { permit, attempt, late };
        StepOutcome::parked(Parked { due_ms, steps: vec![held.row(label)] }, api_calls)
    };
    let mut trace = Trace::default();
    let mut api_calls = Vec::new();
    let result = loop {
        let started_ms = now_ms();
        // This attempt's requests (or its refusal) are those after it.
        let made = api_calls.len();
        let invocation = Invocation {
            execution_id: Some(execution.id.clone()),
            step: Some(label.to_owned()),
            attempt: retrier.attempt,
            idempotency_key: idempotency_key.clone(),
        };
        let mut retry_after = None;
        let inline_ms = if top { INLINE_PERMIT_MS } else { BODY_PERMIT_MS };
        let admitted = resilience::admit(engine, &connection, &policy, &prepared.spec.origin, permit.take(), inline_ms);
        let result = match admitted.await {
            Err(Throttled::Park(permit)) => {
                engine.node.horizons.throttled(
                    &execution.enterprise_id,
                    &execution.orchestration_id,
                    permit.starts_at(),
                );
                let due_ms = permit.starts_at() - PARK_LEAD_MS;
                return park(retrier.attempt, late, due_ms, Some(permit), api_calls);
            }
            Err(Throttled::Refused(refused)) => {
                trace.refused(retrier.attempt, started_ms, &refused.error);
                api_calls.push(refused.record);
                Err(refused.error)
            }
            Ok(admitted) => {
                // The first request leaves on this permit's window, or not at all.
                let pacer = admitted
                    .permit
                    .filter(|_| late < MAX_LATE)
                    .map(|permit| StepPacer::new(engine, &connection, &policy, permit, inline_ms));
                prepared.spec.pacer = pacer.clone().map(|p| PaceHandle(p as Arc<dyn Pacer>));
                // The attempt's window in the trace is the call's own (HTTP spans are placed by it).
                let started_ms = now_ms();
                match prepared.invoke(engine, &operation, &input, invocation).await {
                    Ok(report) if report.late => {
                        // Nothing was sent: the same attempt goes again on the permit the late
                        // request took (or the next one), and the circuit heard nothing.
                        if admitted.trial {
                            resilience::release_trial(engine, &connection).await;
                        }
                        late += 1;
                        permit = pacer.and_then(|p| p.kept());
                        tracing::debug!(execution = %execution.id, step = label, late, "first request late for its permit");
                        continue;
                    }
                    Ok(mut report) => {
                        let timed_out = report.result.as_ref().is_err_and(|e| e.code == "timeout");
                        resilience::settle(engine, &connection, &policy, &report.api_calls, timed_out).await;
                        retry_after = resilience::retry_after(&report.api_calls).filter(|_| report.result.is_err());
                        trace.record(retrier.attempt, started_ms, &report, retry_after);
                        let last = report.api_calls.last();
                        let status = last.and_then(|c| c.status_code).unwrap_or(200);
                        let headers: serde_json::Map<String, Value> = last
                            .map(|c| {
                                c.response_headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()
                            })
                            .unwrap_or_default();
                        let duration = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
                        api_calls.append(&mut report.api_calls);
                        report.result.map(|response| json!({"status_code": status, "headers": headers, "response": response, "duration_ms": duration}))
                    }
                    Err(e) => Err(CallError {
                        code: "internal".into(),
                        message: e.to_string(),
                        retryable: false,
                        http_status: None,
                    }),
                }
            }
        };
        let Err(e) = result else { break result };
        // A pause of up to INLINE_WAIT_MS is slept here; a longer one parks the execution
        // instead of holding its slot.
        match retrier.next_pause(&Failure::of(&e, &api_calls[made..]), retry_after) {
            Some(pause) if pause_ms(pause) > INLINE_WAIT_MS => {
                return park(retrier.attempt, 0, now_ms() + pause_ms(pause), None, api_calls);
            }
            Some(pause) if retrier.sleep(pause).await => late = 0,
            _ => break Err(e),
        }
    };
    let outcome = StepOutcome::finish(result, Some(connection.system.clone()), input, trace);
    // Attempts made before the execution parked count too.
    StepOutcome { api_calls, attempts: outcome.attempts.max(retrier.attempt), ..outcome }
}

fn pause_ms(pause: Duration) -> i64 {
    i64::try_from(pause.as_millis()).unwrap_or(i64::MAX / 2)
}
