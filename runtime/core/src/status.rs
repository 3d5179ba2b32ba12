//! Where an execution and each of its steps stand. Rows store the lowercase names and the API
//! answers with them; these enums are the one list of what the names can be.

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

impl FromStr for ExecutionStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| UnknownStatus(text.to_owned()))
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

impl FromStr for StepStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| UnknownStatus(text.to_owned()))
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
