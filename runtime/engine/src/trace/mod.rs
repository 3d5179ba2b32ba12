//! What a step leaves for its trace: one typed shape for every kind, stored as JSON with the
//! step's result and read by [`build`], which assembles an execution's trace. Fields a kind
//! does not produce are left out of the JSON.

mod assemble;

pub use assemble::{Span, TraceView, build};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The trace material of one step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceDetail {
    /// Microseconds spent resolving the step's mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_us: Option<u64>,
    /// Plugin steps: one entry per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<Attempt>>,
    /// Plugin steps: the log lines of every attempt, each with its `attempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<Value>>,
    /// Plugin steps: the end of the last attempt's stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// `for_each`: how many items, and how many ran at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// `parallel`: how many branches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<usize>,
    /// `for_each` and `parallel`: one record per body step (label, name, type, status, system,
    /// operation, error, attempts, timing and its own `detail`); a record
    /// kept while the execution was parked is replayed as it was stored. A `for_each` keeps
    /// the records of its first items and of its first failed items only (see `outcomes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Value>>,
    /// `for_each`: how many items ended each way (`success`, `partial`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<std::collections::BTreeMap<String, usize>>,
    /// `for_each`: how many items' records were left out of `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_left_out: Option<usize>,
    /// `sub_orchestration`: the child execution and how it stood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_status: Option<String>,
}

/// One attempt of a plugin step, with the phases of its call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attempt {
    pub attempt: u32,
    pub started_at_ms: i64,
    pub duration_us: u64,
    /// Creating the store (WASI context, limits, hooks).
    pub setup_us: u64,
    /// Instantiating the component (zero on a warm instance).
    pub instantiate_us: u64,
    /// Running the export.
    pub invoke_us: u64,
    /// Dropping the store.
    pub teardown_us: u64,
    pub error: Option<String>,
    /// How long the upstream asked to wait (`Retry-After` of a 429 or 503) before the next
    /// attempt, ms; the next attempt waited at least that long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl TraceDetail {
    /// The detail as stored JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The detail stored as `value`; nothing for a value of another shape (a note that the
    /// detail was too large to keep, or none at all).
    pub fn read(value: &Value) -> Self {
        Self::deserialize(value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_fields_a_kind_produces_are_written_and_they_read_back() {
        let plugin = TraceDetail {
            mapping_us: Some(12),
            attempts: Some(vec![Attempt { attempt: 1, duration_us: 900, ..Attempt::default() }]),
            logs: Some(Vec::new()),
            stderr: Some(String::new()),
            ..TraceDetail::default()
        };
        let value = plugin.to_value();
        assert_eq!(
            value,
            json!({"mapping_us": 12, "logs": [], "stderr": "", "attempts": [{"attempt": 1, "started_at_ms": 0,
                   "duration_us": 900, "setup_us": 0, "instantiate_us": 0, "invoke_us": 0, "teardown_us": 0,
                   "error": null}]})
        );
        assert_eq!(TraceDetail::read(&value), plugin);
        assert_eq!(
            TraceDetail::read(&json!({"_truncated": "2000000 bytes of trace detail left out"})),
            TraceDetail::default()
        );
        let child = TraceDetail {
            child_execution_id: Some("c1".into()),
            child_status: Some("success".into()),
            ..TraceDetail::default()
        };
        assert_eq!(child.to_value(), json!({"child_execution_id": "c1", "child_status": "success"}));
    }
}
