//! `wait`: a pause for a duration or until an instant; a long one parks the execution.

use std::time::Duration;

use dibop_core::now_ms;
use serde_json::{Value, json};

use crate::Engine;
use crate::INLINE_WAIT_MS;
use crate::definition::Step;
use crate::mapping::{self, Scope};
use crate::step::{Parked, StepOutcome};
use dibop_store::ExecutionRow;

/// Sleeps `ms` (nothing when it is not positive), ending early with the reason when the
/// execution is cancelled or the node shuts down.
pub(super) async fn pause(engine: &Engine, execution: &ExecutionRow, ms: i64) -> Result<(), String> {
    if ms <= 0 {
        return Ok(());
    }
    let mut signal = engine.node.signal(&execution.id);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(u64::try_from(ms).unwrap_or(0))) => Ok(()),
        why = signal.stopped() => Err(format!("wait {}", why.message())),
    }
}

/// When a `wait` step whose output is `output` is due (ms since the epoch): the `until` its
/// output names.
pub(crate) fn wait_due(output: &Value) -> Option<i64> {
    Some(chrono::DateTime::parse_from_rfc3339(output["until"].as_str()?).ok()?.timestamp_millis())
}

/// Pauses for `duration_ms` or until `until`. A wait longer than [`INLINE_WAIT_MS`] answers
/// at once with its due time and parks the execution until then (at the top level the engine
/// does it; in a body the container does). Shorter ones sleep here and end early when the
/// execution is cancelled or the node shuts down.
pub(crate) async fn wait(
    engine: &Engine,
    execution: &ExecutionRow,
    step: &Step,
    scope: &Scope<'_>,
    top: bool,
) -> StepOutcome {
    let now = now_ms();
    let until_ms = match (&step.duration_ms, &step.until) {
        (Some(ms), _) => now + i64::try_from(*ms).unwrap_or(i64::MAX / 2),
        (None, Some(until)) => match mapping::resolve(&Value::String(until.clone()), scope) {
            Ok(Value::String(text)) => match chrono::DateTime::parse_from_rfc3339(&text) {
                Ok(at) => at.timestamp_millis(),
                Err(_) => {
                    return StepOutcome::failed(None, None, format!("until {text:?} is not an RFC 3339 instant"), 1);
                }
            },
            Ok(other) => {
                return StepOutcome::failed(None, None, format!("until resolved to {other}, not an instant"), 1);
            }
            Err(e) => return StepOutcome::failed(None, None, format!("until: {e}"), 1),
        },
        (None, None) => now,
    };
    let remaining = until_ms - now;
    if remaining <= INLINE_WAIT_MS
        && let Err(error) = pause(engine, execution, remaining).await
    {
        return StepOutcome::failed(None, None, error, 1);
    }
    let until = chrono::DateTime::from_timestamp_millis(until_ms).unwrap_or_default();
    let outcome = StepOutcome::success(json!({
        "until": until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "wait_ms": remaining.max(0),
    }));
    if !top && remaining > INLINE_WAIT_MS {
        return StepOutcome { parked: Some(Parked { due_ms: until_ms, steps: Vec::new() }), ..outcome };
    }
    outcome
}
