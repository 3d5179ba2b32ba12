//! [`PluginError`]: how a call fails in terms the DIBOP engine can act on.

use std::fmt;

/// Why a call failed.
///
/// Return one for every failure you expect (bad input, a missing record, an upstream error,
/// a timeout). The engine shows `code` and `message` in the execution trace and decides from
/// `retryable` (and the step's retry policy) whether to try again. Panics are for bugs: they
/// end the call as a trap, which the engine reports as an internal plugin failure.
///
/// Never put credentials in `message`.
///
/// ```
/// use dibop_sdk::PluginError;
///
/// let err = PluginError::upstream(503, "inventory service is down");
/// assert_eq!(err.code, "upstream_error");
/// assert!(err.retryable);
/// assert_eq!(err.http_status, Some(503));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// A stable, machine-readable code such as `invalid_input`, `not_found`, `unauthorized`,
    /// `upstream_error` or `timeout`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Whether trying the same call again may succeed.
    pub retryable: bool,
    /// The upstream HTTP status behind the error, if there was one.
    pub http_status: Option<u16>,
}

impl PluginError {
    /// An error with any code; not retryable and without an HTTP status.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError { code: code.into(), message: message.into(), retryable: false, http_status: None }
    }

    /// The input does not fit the operation (code `invalid_input`, not retryable).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    /// The requested record does not exist (code `not_found`, not retryable).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not_found", message)
    }

    /// The system refused the credentials (code `unauthorized`, not retryable).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new("unauthorized", message)
    }

    /// The system answered with an error status (code `upstream_error`). Retryable for 5xx
    /// and 429 (Too Many Requests), not for other statuses.
    pub fn upstream(status: u16, message: impl Into<String>) -> Self {
        PluginError {
            code: "upstream_error".into(),
            message: message.into(),
            retryable: status >= 500 || status == 429,
            http_status: Some(status),
        }
    }

    /// Maps an upstream error status the usual way: 404 is [`not_found`](Self::not_found),
    /// 401 and 403 are [`unauthorized`](Self::unauthorized), anything else is
    /// [`upstream`](Self::upstream). The status is kept in `http_status` in every case.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        let mut err = match status {
            404 => Self::not_found(message),
            401 | 403 => Self::unauthorized(message),
            _ => return Self::upstream(status, message),
        };
        err.http_status = Some(status);
        err
    }

    /// The call ran out of time waiting for the system (code `timeout`, retryable).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new("timeout", message).with_retryable(true)
    }

    /// A bug or an unexpected state in the plugin (code `internal`, not retryable).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", message)
    }

    /// Returns the error with `retryable` set as given.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Returns the error with `http_status` set.
    pub fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginError {}

/// JSON that does not parse or does not fit the expected shape is bad input
/// (`invalid_input`); an I/O failure while (de)serializing is `internal`.
impl From<serde_json::Error> for PluginError {
    fn from(err: serde_json::Error) -> Self {
        match err.classify() {
            serde_json::error::Category::Io => Self::internal(format!("JSON I/O error: {err}")),
            _ => Self::invalid_input(format!("invalid JSON: {err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(PluginError::from_status(404, "x").code, "not_found");
        assert_eq!(PluginError::from_status(404, "x").http_status, Some(404));
        assert_eq!(PluginError::from_status(403, "x").code, "unauthorized");
        let e = PluginError::from_status(429, "x");
        assert_eq!((e.code.as_str(), e.retryable), ("upstream_error", true));
        assert!(!PluginError::upstream(400, "x").retryable);
    }

    #[test]
    fn serde_errors() {
        let err: PluginError = serde_json::from_str::<serde_json::Value>("{").unwrap_err().into();
        assert_eq!(err.code, "invalid_input");
    }
}
