//! The orchestration definition (the JSON of SPEC 12): its model here, and one file per job:
//! `order.rs` (the order steps run in: flattening, nesting, lookups), `validate.rs` (every
//! problem of a definition at save time, with its path) and `bind.rs` (a run's parameters
//! bound to the declaration).

mod bind;
mod order;
mod parsed;
mod validate;

pub use bind::bind_parameters;
pub use order::{
    FlatStep, MAX_STEP_NESTING, find_step, flatten, flatten_at, schedule_of, step_nesting, sub_orchestrations,
};
pub use parsed::{KEPT_VERSIONS, Parsed};
pub use validate::{Catalogue, validate};

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::mapping::{self, Reference};
use dibop_core::{FieldError, StepKind};

dibop_core::kinds! {
    /// What starts an orchestration's executions (`trigger.type`); execute always does.
    pub enum TriggerKind {
        /// Only execute.
        Manual = "manual",
        /// The slots of a cron expression.
        Schedule = "schedule",
        /// Webhook deliveries.
        Event = "event",
    }
}

dibop_core::kinds! {
    /// The type of a declared parameter.
    pub enum ParamType {
        /// A JSON string.
        String = "string",
        /// Any JSON number.
        Number = "number",
        /// A JSON number without a fraction.
        Integer = "integer",
        /// `true` or `false`.
        Boolean = "boolean",
        /// A JSON object.
        Object = "object",
        /// A JSON array.
        Array = "array",
    }
}

impl ParamType {
    /// Whether `value` is of this type (an unknown type, refused at save, holds anything).
    pub fn holds(&self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Boolean => value.is_boolean(),
            Self::Object => value.is_object(),
            Self::Array => value.is_array(),
            Self::Unknown(_) => true,
        }
    }
}

dibop_core::kinds! {
    /// What a failed step does to its block (`on_error`).
    pub enum OnError {
        /// The block fails (the default).
        Fail = "fail",
        /// The block goes on with a null output and ends `partial`.
        Continue = "continue",
    }
}

dibop_core::kinds! {
    /// What a step's failure after its last attempt does to the execution (`on_exhausted`).
    pub enum OnExhausted {
        /// What `on_error` says (the default).
        Fail = "fail",
        /// The execution is `paused`, keeping its completed steps, until it is resumed.
        Pause = "pause",
    }
}

/// What triggers an orchestration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// manual, schedule or event.
    #[serde(rename = "type", default = "manual")]
    #[schema(value_type = String)]
    pub kind: TriggerKind,
    /// For schedules: a cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// For schedules: an IANA time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

fn manual() -> TriggerKind {
    TriggerKind::Manual
}

impl Default for Trigger {
    fn default() -> Self {
        Self { kind: manual(), cron: None, timezone: None }
    }
}

/// A declared parameter.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub name: String,
    /// string, number, integer, boolean, object or array.
    #[serde(rename = "type", default = "string")]
    #[schema(value_type = String)]
    pub kind: ParamType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

fn string() -> ParamType {
    ParamType::String
}

/// How a step is retried.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    #[serde(default = "one")]
    pub max_attempts: u32,
    #[serde(default = "hundred")]
    pub initial_interval_ms: u64,
    #[serde(default = "two")]
    pub backoff_coefficient: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval_ms: Option<u64>,
    /// What to try again: error codes (`timeout`, `upstream_error`), HTTP statuses (`503`),
    /// status ranges (`500-599`, `5xx`) and `connection` (no answer, other than a timeout); at
    /// most 32. Empty: every error the connector marks retryable (its 5xx, 429, timeouts and
    /// transient connection errors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
    /// Never tried again, whatever `retry_on` or the connector says (e.g. `400`, `401`, `422`):
    /// entries of the same kinds, at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub never_retry: Vec<String>,
    /// Spread of each pause, 0 to 1 (default 0): a pause of d lasts between d × (1 − jitter)
    /// and d, so that retries of many executions do not arrive together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
}

/// Longest pause between attempts a policy may ask for (`initial_interval_ms`,
/// `max_interval_ms`): an hour.
pub const MAX_RETRY_INTERVAL_MS: u64 = 3_600_000;

/// Most entries in `retry_on` and in `never_retry`.
pub const MAX_RETRY_RULES: usize = 32;

/// One entry of `retry_on` or `never_retry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRule {
    /// The error's code.
    Code(String),
    /// An HTTP status the system answered, in this inclusive range.
    Status(u16, u16),
    /// The request got no answer (refused, reset, closed), other than by a timeout.
    Connection,
}

impl RetryRule {
    /// The rule an entry states, or why it states none.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let status = |text: &str| text.parse::<u16>().ok().filter(|n| (100..=599).contains(n));
        let wrong = || {
            format!(
                "{entry:?} is not an error code, an HTTP status (503), a range of them (500-599, 5xx) or `connection`"
            )
        };
        if entry == "connection" {
            return Ok(Self::Connection);
        }
        if let Some(class) = entry.strip_suffix("xx").filter(|c| c.len() == 1) {
            let first = status(&format!("{class}00")).ok_or_else(wrong)?;
            return Ok(Self::Status(first, first + 99));
        }
        if entry.bytes().any(|b| b.is_ascii_digit()) && entry.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return match entry.split_once('-') {
                None => status(entry).map(|s| Self::Status(s, s)).ok_or_else(wrong),
                Some((low, high)) => match (status(low), status(high)) {
                    (Some(low), Some(high)) if low <= high => Ok(Self::Status(low, high)),
                    _ => Err(wrong()),
                },
            };
        }
        let code = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
        if (1..=64).contains(&entry.len()) && entry.bytes().all(code) {
            return Ok(Self::Code(entry.to_owned()));
        }
        Err(wrong())
    }
}

fn one() -> u32 {
    1
}

fn hundred() -> u64 {
    100
}

fn two() -> f64 {
    2.0
}

/// One step. Which fields apply depends on `type`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// One of the step types (`api_call`, `transform`, `condition`, `error_handler`, `for_each`,
    /// `parallel`, `sub_orchestration`, `wait`, `canonical_upsert`).
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: StepKind,
    /// api_call: connection name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// api_call: the connector operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// api_call: the operation input (a mapping); transform plugins: their params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// transform: `map`, or the slug of a transform plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    /// transform map: the output (a mapping); transform plugins: their input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// fail (default) or continue (the execution ends `partial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub on_error: Option<OnError>,
    /// What happens when the step's attempts are over and it failed: `fail` (what `on_error`
    /// says) or `pause` (the execution is `paused`, keeping its completed steps, until
    /// `POST /executions/{id}/resume`). Default: the orchestration's `on_exhausted`, else
    /// `fail`. Not for steps inside `for_each` or `parallel` bodies (set it on the container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub on_exhausted: Option<OnExhausted>,
    /// A reference; the step runs only when it resolves to a truthy value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// condition: an expression such as `${decode.response.make} == 'HONDA'` or `${stock}`
    /// (truthy); operators ==, !=, >, >=, <, <=.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// condition: steps run when the expression holds.
    #[serde(default, rename = "then", skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub then_steps: Vec<Step>,
    /// condition: steps run when it does not.
    #[serde(default, rename = "else", skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub else_steps: Vec<Step>,
    /// for_each: the body run per item; error_handler: the steps run when an earlier step failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub steps: Vec<Step>,
    /// for_each: a reference to an array; the body sees `${item}` and `${index}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<String>,
    /// for_each: how many items run at once (1 to 32; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// parallel: branches run at once; the output maps each branch name to its last output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub branches: Vec<Branch>,
    /// sub_orchestration: the orchestration (name or id) to run; `parameters` are its parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestration: Option<String>,
    /// canonical_upsert: the canonical domain (`vehicle`, `customer`, ...); `mapping` is the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// canonical_upsert: the earlier `api_call` step the record comes from; its connection and
    /// system become the record's lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// wait: how long to pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// wait: pause until this instant (RFC 3339, or a reference to one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// error_handler: after its steps ran, go on with the following steps (the execution ends
    /// `partial`) instead of ending `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover: Option<bool>,
}

/// One branch of a `parallel` step.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    pub name: String,
    #[schema(no_recursion)]
    pub steps: Vec<Step>,
}

/// Longest `wait` (7 days).
pub const MAX_WAIT_MS: u64 = 7 * 24 * 3_600_000;

/// Most items one `for_each` runs.
pub const MAX_ITEMS: usize = 10_000;

/// Most branches of one `parallel` step.
pub const MAX_BRANCHES: usize = 64;

/// Most items of one `for_each` running at once.
pub const MAX_CONCURRENCY: u32 = 32;

/// An orchestration as sent and shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// draft, active (default), paused or archived.
    #[serde(default = "active")]
    pub status: String,
    #[serde(default)]
    pub trigger: Trigger,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    pub steps: Vec<Step>,
    /// The execution's output (a mapping); default: the last step's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub output: Option<Value>,
    /// Success-rate target in percent for `GET /observability/sla` (default 99.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_target: Option<f64>,
    /// The `on_exhausted` of every step that sets none: `fail` (default) or `pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub on_exhausted: Option<OnExhausted>,
}

impl Definition {
    /// Whether `step` (of the top-level block, condition branches and error handlers included)
    /// pauses the execution when it failed after its attempts: its `on_exhausted`, else the
    /// orchestration's, is `pause`, and it does not let failures through (`on_error: continue`).
    pub fn pauses(&self, step: &Step) -> bool {
        let choice = step.on_exhausted.as_ref().or(self.on_exhausted.as_ref());
        choice == Some(&OnExhausted::Pause) && step.on_error != Some(OnError::Continue)
    }
}

fn active() -> String {
    "active".into()
}

/// Names a step may not take: the roots of references that are not steps.
pub const RESERVED: [&str; 4] = ["parameters", "_context", "item", "index"];

/// `_context` members.
pub const CONTEXT_KEYS: [&str; 4] = ["timestamp", "execution_id", "orchestration_id", "enterprise_id"];

impl Definition {
    /// Steps an execution records (nested ones included).
    pub fn step_count(&self) -> i64 {
        i64::try_from(flatten(&self.steps).len()).unwrap_or(i64::MAX)
    }
}
