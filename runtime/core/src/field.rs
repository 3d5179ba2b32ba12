//! A problem with one field of an input, the unit of every "what is wrong" list.

use serde::Serialize;

/// One invalid field of a request, reported in `details` of a 422 answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Where the problem is, as a dotted path into the request body (`rate_limits.api_requests_per_minute`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}
