//! Where an execution, each of its steps and each outbound request stand. Rows store the
//! lowercase names and the API answers with them; these enums are the one list of what the
//! names can be, and rows are converted to them once, in the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The status of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Waiting for a worker (also a parked execution waiting for its due time).
    Queued,
    /// Held by a worker under a lease.
    Running,
    /// Every step that ran succeeded.
    Success,
    /// A step failed with no handler to recover, or the execution could not go on.
    Failed,
    /// Ended, but a step with `on_error: continue` failed or an error handler recovered.
    Partial,
    /// Stopped on request.
    Cancelled,
    /// A step ran out of attempts and its `on_exhausted` is `pause`: it holds no slot and no
    /// lease, keeps its committed steps, and waits for `POST /executions/{id}/resume` (or a
    /// cancel). Not final: no worker claims it, and it is not purged as finished.
    Paused,
}

impl ExecutionStatus {
    /// Every status, in the order the API lists them.
    pub const ALL: [Self; 7] =
        [Self::Queued, Self::Running, Self::Success, Self::Failed, Self::Partial, Self::Cancelled, Self::Paused];

    /// The status's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Partial => "partial",
            Self::Cancelled => "cancelled",
            Self::Paused => "paused",
        }
    }

    /// Whether the execution has ended: nothing will change its status again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Partial | Self::Cancelled)
    }
}

/// The status of one step of an execution, as its committed result records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// The step ran and produced its output.
    Success,
    /// The step ran out of attempts or could not run.
    Failed,
    /// The step did not run: a `when` or condition branch passed it by, or an earlier failure
    /// skipped it on the way to an error handler.
    Skipped,
}

impl StepStatus {
    /// Every status.
    pub const ALL: [Self; 3] = [Self::Success, Self::Failed, Self::Skipped];

    /// The status's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Whether the step has ended. Every recorded step status is final: a step's result is
    /// committed once, when the step is over.
    pub fn is_final(self) -> bool {
        match self {
            Self::Success | Self::Failed | Self::Skipped => true,
        }
    }
}

/// How one outbound request ended, as its API-call row records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApiCallStatus {
    /// The system answered with a success (or a status the plugin accepted).
    Success,
    /// The request failed: refused by the egress policy, unreachable, or answered with an error.
    Error,
    /// No answer within the call's deadline.
    Timeout,
    /// Not sent: the connection's circuit breaker is open.
    CircuitOpen,
    /// Not sent: the connection's outbound rate limit had no permit in time.
    RateLimited,
}

impl ApiCallStatus {
    /// Every status, in the order the API lists them.
    pub const ALL: [Self; 5] = [Self::Success, Self::Error, Self::Timeout, Self::CircuitOpen, Self::RateLimited];

    /// The status's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::RateLimited => "rate_limited",
        }
    }

    /// Whether the call did not get what it asked for: every status but `success`. The one
    /// answer to "did this call fail" for system health, metrics, alert rules and traces.
    pub fn is_failure(self) -> bool {
        self != Self::Success
    }

    /// Whether the request went out to the system (a refusal by the circuit breaker or the
    /// rate limit did not): system health and latency count only these.
    pub fn reached_system(self) -> bool {
        matches!(self, Self::Success | Self::Error | Self::Timeout)
    }
}

/// How a connection's circuit breaker stands (no stored row: `Closed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    #[default]
    Closed,
    /// Calls fail at once with `circuit_open` until the open time has passed.
    Open,
    /// One trial call is running; the others fail at once.
    HalfOpen,
}

impl CircuitState {
    /// Every state, in the order the API lists them.
    pub const ALL: [Self; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    /// The state's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Where a plugin version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PluginStatus {
    /// Declares more than the version before it: serves nothing until someone other than its
    /// uploader (or with platform rights) approves it.
    Pending,
    /// Serves the connections whose pin admits it.
    Active,
    /// Serves the connections that pin it; refused to new pins.
    Deprecated,
    /// Serves nothing: calls of connections whose pin admits no other version fail.
    Disabled,
}

impl PluginStatus {
    /// Every status, in the order the API lists them.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Active, Self::Deprecated, Self::Disabled];

    /// The status's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Deprecated => "deprecated",
            Self::Disabled => "disabled",
        }
    }
}

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Signs in and calls the API.
    Active,
    /// Signs in no more; deactivating ends the user's access tokens.
    Deactivated,
}

impl UserStatus {
    /// Every status, in the order the API lists them.
    pub const ALL: [Self; 2] = [Self::Active, Self::Deactivated];

    /// The status's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
        }
    }
}

/// `FromStr` (exact names only), `TryFrom<String>` (rows) and `Display` for a status with
/// `ALL` and `as_str`.
macro_rules! named_status {
    ($($name:ident),+) => {$(
        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| UnknownStatus(text.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownStatus;

            fn try_from(text: String) -> Result<Self, UnknownStatus> {
                text.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

named_status!(ExecutionStatus, StepStatus, ApiCallStatus, CircuitState, PluginStatus, UserStatus);

/// A text that names no status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown status {:?}", self.0)
    }
}

impl std::error::Error for UnknownStatus {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_statuses_round_trip_through_text_and_json() {
        let names: Vec<_> = ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["queued", "running", "success", "failed", "partial", "cancelled", "paused"]);
        for status in ExecutionStatus::ALL {
            assert_eq!(status.as_str().parse::<ExecutionStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
            let json = serde_json::to_string(&status).expect("serializes");
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(serde_json::from_str::<ExecutionStatus>(&json).expect("deserializes"), status);
        }
    }

    #[test]
    fn step_statuses_round_trip_through_text_and_json() {
        let names: Vec<_> = StepStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["success", "failed", "skipped"]);
        for status in StepStatus::ALL {
            assert_eq!(status.as_str().parse::<StepStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
            let json = serde_json::to_string(&status).expect("serializes");
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(serde_json::from_str::<StepStatus>(&json).expect("deserializes"), status);
        }
    }

    #[test]
    fn api_call_statuses_round_trip_and_only_success_is_not_a_failure() {
        let names: Vec<_> = ApiCallStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["success", "error", "timeout", "circuit_open", "rate_limited"]);
        for status in ApiCallStatus::ALL {
            assert_eq!(status.as_str().parse::<ApiCallStatus>(), Ok(status));
            assert_eq!(ApiCallStatus::try_from(status.as_str().to_owned()), Ok(status));
            let json = serde_json::to_string(&status).expect("serializes");
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(serde_json::from_str::<ApiCallStatus>(&json).expect("deserializes"), status);
        }
        let failures: Vec<_> = ApiCallStatus::ALL.into_iter().filter(|s| s.is_failure()).collect();
        use ApiCallStatus::*;
        assert_eq!(failures, [Error, Timeout, CircuitOpen, RateLimited]);
        let sent: Vec<_> = ApiCallStatus::ALL.into_iter().filter(|s| s.reached_system()).collect();
        assert_eq!(sent, [Success, Error, Timeout]);
        assert!("failed".parse::<ApiCallStatus>().is_err());
    }

    #[test]
    fn circuit_states_round_trip_as_stored_and_answered() {
        let names: Vec<_> = CircuitState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["closed", "open", "half_open"]);
        for state in CircuitState::ALL {
            assert_eq!(CircuitState::try_from(state.as_str().to_owned()), Ok(state));
            let json = serde_json::to_string(&state).expect("serializes");
            assert_eq!(json, format!("\"{state}\""));
        }
        assert_eq!(CircuitState::default(), CircuitState::Closed);
        assert!("halfopen".parse::<CircuitState>().is_err());
    }

    #[test]
    fn plugin_and_user_statuses_round_trip() {
        let names: Vec<_> = PluginStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["pending", "active", "deprecated", "disabled"]);
        for status in PluginStatus::ALL {
            assert_eq!(PluginStatus::try_from(status.as_str().to_owned()), Ok(status));
            assert_eq!(serde_json::to_string(&status).expect("serializes"), format!("\"{status}\""));
        }
        let users: Vec<_> = UserStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(users, ["active", "deactivated"]);
        for status in UserStatus::ALL {
            assert_eq!(UserStatus::try_from(status.as_str().to_owned()), Ok(status));
        }
    }

    #[test]
    fn only_exact_names_parse() {
        for text in ["", "Success", "SUCCESS", " success", "canceled", "done", "error"] {
            assert_eq!(text.parse::<ExecutionStatus>(), Err(UnknownStatus(text.to_owned())));
            assert!(text.parse::<StepStatus>().is_err(), "{text:?}");
        }
        assert!("queued".parse::<StepStatus>().is_err());
        assert!("skipped".parse::<ExecutionStatus>().is_err());
        assert_eq!(
            "bogus".parse::<ExecutionStatus>().map_err(|e| e.to_string()),
            Err("unknown status \"bogus\"".into())
        );
    }

    #[test]
    fn an_execution_ends_in_success_failed_partial_or_cancelled_and_a_paused_one_has_not_ended() {
        let ended: Vec<_> = ExecutionStatus::ALL.into_iter().filter(|s| s.is_final()).collect();
        use ExecutionStatus::*;
        assert_eq!(ended, [Success, Failed, Partial, Cancelled]);
        assert!(!Paused.is_final());
        assert!(StepStatus::ALL.iter().all(|s| s.is_final()));
    }
}
