//! `sub_orchestration`: another orchestration run as a child execution.

use std::time::Duration;

use dibop_core::now_ms;
use serde_json::{Value, json};

use super::*;
use crate::Engine;
use crate::admission::Refusal;
use crate::definition::Step;
use crate::executions::{self, ExecutionError, Start, Started, Target, Trigger};
use crate::step::{Parked, StepOutcome};
use crate::{INLINE_WAIT_MS, Stop};
use dibop_store::ExecutionRow;

/// Starts the child execution (once: its idempotency key is this step's), runs it on this
/// worker unless another node has it, and answers its output.
pub(super) async fn sub_orchestration(
    engine: &Engine,
    execution: &ExecutionRow,
    step: &Step,
    label: &str,
    input: Value,
) -> StepOutcome {
    let fail = |message: String| StepOutcome::failed(None, Some(input.clone()), message, 1);
    let name = step.orchestration.clone().unwrap_or_default();
    let Value::Object(given) = &input else {
        return fail("parameters must be an object".into());
    };
    let start = Start {
        enterprise_id: &execution.enterprise_id,
        orchestration: Target::Name(&name),
        trigger: Trigger::Child { parent: execution, label },
        parameters: given,
        idempotency_key: None,
        traceparent: None,
        per_minute: None,
    };
    // The executions-per-minute limit counts the child; past it the parent waits, parked, for
    // the limit's next window instead of failing.
    let Started { execution: child, parameters, .. } = match executions::start(engine, start).await {
        Ok(started) => started,
        Err(ExecutionError::Refused(Refusal::RateLimited { retry_after_secs, .. })) => {
            let due_ms = now_ms() + i64::try_from(retry_after_secs.max(1)).unwrap_or(60) * 1000;
            return StepOutcome::parked(Parked { due_ms, steps: Vec::new() }, Vec::new());
        }
        Err(ExecutionError::NotFound(what)) => return fail(format!("{what} no longer exists")),
        // Nested too deep, or its orchestration is paused or archived.
        Err(ExecutionError::Conflict(why)) => return fail(why),
        Err(ExecutionError::Invalid(errors)) => {
            let list: Vec<String> = errors.iter().map(|e| format!("{} {}", e.path, e.message)).collect();
            return fail(format!("orchestration {name:?}: {}", list.join("; ")));
        }
        Err(e) => return fail(format!("starting orchestration {name:?}: {e}")),
    };
    let lease = i64::try_from(engine.settings.lease_ms).unwrap_or(30_000);
    let mut signal = engine.node.signal(&execution.id);
    let child = loop {
        match engine.store.get_execution(&execution.enterprise_id, &child.id).await {
            Ok(Some(current)) if current.is_final() => break current,
            Ok(_) => {}
            Err(e) => return fail(format!("reading execution {}: {e}", child.id)),
        }
        if let Some(why) = signal.get() {
            // The parent stops: a cancelled parent cancels its child; at shutdown the child
            // is handed back on its own and the parent finds it again when it resumes.
            if why == Stop::Cancel {
                let _ = engine.store.cancel_execution(&execution.enterprise_id, &child.id).await;
            }
            return fail(format!("{} while orchestration {name:?} ran", why.message()));
        }
        match engine.store.claim_execution_by_id(&child.id, &engine.node.node_id, lease).await {
            Ok(Some(claimed)) => {
                let mut child_run = (engine.run_child)(engine.clone(), claimed);
                tokio::select! {
                    () = &mut child_run => {}
                    why = signal.stopped() => {
                        engine.node.stop(&child.id, why);
                        if why == Stop::Cancel {
                            let _ = engine.store.cancel_execution(&execution.enterprise_id, &child.id).await;
                        }
                        child_run.await;
                    }
                }
            }
            Ok(None) => {
                // The child is parked by a long wait: so is this execution, until it is due.
                if let Ok(Some(due_ms)) = engine.store.parked_until(&child.id).await
                    && due_ms - now_ms() > INLINE_WAIT_MS
                {
                    return StepOutcome::parked(Parked { due_ms, steps: Vec::new() }, Vec::new());
                }
                // Another worker has it (or it waits briefly): look again shortly.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = signal.stopped() => {}
                }
            }
            Err(e) => return fail(format!("claiming execution {}: {e}", child.id)),
        }
    };
    let detail = Some(TraceDetail {
        child_execution_id: Some(child.id.clone()),
        child_status: Some(child.status.to_string()),
        ..TraceDetail::default()
    });
    let input =
        Some(json!({"orchestration_id": child.orchestration_id, "execution_id": child.id, "parameters": parameters}));
    match child.status.as_str() {
        "success" | "partial" => {
            let output = child.output.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
            StepOutcome {
                input,
                detail,
                partial: child.status == dibop_core::ExecutionStatus::Partial,
                ..StepOutcome::success(output)
            }
        }
        status => {
            let error = format!(
                "orchestration {name:?} ({}) ended {status}: {}",
                child.id,
                child.error.as_deref().unwrap_or("no error given")
            );
            StepOutcome { detail, ..StepOutcome::failed(None, input, error, 1) }
        }
    }
}
