//! The one error type of the HTTP API and its JSON shape.
//!
//! Every failure the API answers, whether raised by a handler, an extractor, a layer (405, 413)
//! or a panic, leaves the server as `{"error":{"code","message","details","request_id"}}`. Handlers
//! return [`AppError`]; it puts an [`ErrorBody`] into the response extensions and the
//! `error_shape` middleware in [`crate::api`] renders it with the request id, so nothing else
//! needs to know the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub use dibop_core::{FieldError, Validator};

/// What went wrong in a request. Each variant maps to one status and one error code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// 503 with `Retry-After` ([`UNAVAILABLE_RETRY_AFTER_SECS`]): something the server needs
    /// (the database, the disk under it) cannot serve now.
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: the server is at a capacity bound (e.g. password checks) and
    /// refuses rather than queues.
    #[error("{message}")]
    Overloaded { message: String, retry_after_secs: u64 },
    /// Anything unexpected. The message is logged with the request id and never sent. One
    /// whose cause is the database being unavailable (`dibop_store::unavailable_in`: down,
    /// refusing or dropping connections, out of space, slow past the pool's bound) is answered
    /// like [`AppError::Unavailable`] instead, wherever it was raised.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The `Retry-After` of a 503 for an unavailable database: a little longer than the pool's
/// acquire bound, so a retry does not queue behind the failing attempts.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// What a client is told when the database cannot serve its request.
const DATABASE_UNAVAILABLE: &str = "the database is unavailable; retry after the Retry-After seconds";

pub type AppResult<T> = Result<T, AppError>;

/// `Option` of a looked-up row to the row or a 404: `store.get_x(..).await?.or_not_found("x")?`.
/// Another enterprise's row reads as missing, so the answer is the same for both.
pub trait OrNotFound<T> {
    /// The value, or a 404 saying `<what> not found`.
    fn or_not_found(self, what: impl std::fmt::Display) -> AppResult<T>;
}

/// A write's result with a unique violation answered as a 409 in the caller's words and every
/// other database error as a 500: `store.create_x(..).await.or_conflict(|| "x exists".into())?`.
pub trait OrConflict<T> {
    /// The value, or `409 CONFLICT` with `message()` when a unique constraint refused the write.
    fn or_conflict(self, message: impl FnOnce() -> String) -> AppResult<T>;
}

impl<T> OrConflict<T> for Result<T, sqlx::Error> {
    fn or_conflict(self, message: impl FnOnce() -> String) -> AppResult<T> {
        self.map_err(
            |err| {
                if crate::store::is_unique_violation(&err) { AppError::Conflict(message()) } else { err.into() }
            },
        )
    }
}

impl<T> OrNotFound<T> for Option<T> {
    fn or_not_found(self, what: impl std::fmt::Display) -> AppResult<T> {
        self.ok_or_else(|| AppError::not_found(what))
    }
}

impl AppError {
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    /// A 422 for a single field.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError { path: path.into(), message: message.into() }])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(err) if crate::store::unavailable_in(err) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

/// The error code the API uses for a status: the SPEC's list, plus a generic one for the rest.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        414 => "URI_TOO_LONG",
        431 => "HEADERS_TOO_LARGE",
        422 => "VALIDATION_ERROR",
        429 => "RATE_LIMIT",
        503 => "SERVICE_UNAVAILABLE",
        s if s >= 500 => "INTERNAL_ERROR",
        _ => "BAD_REQUEST",
    }
}

/// The error as it travels from a handler to the `error_shape` middleware.
#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    pub details: Option<Vec<FieldError>>,
    /// Logged with the request id, never sent to the client.
    pub internal: Option<String>,
    /// The `internal` cause is a fault that passes (the database is unavailable): logged as a
    /// warning, not as an error of the server.
    pub transient: bool,
}

impl ErrorBody {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { code: code_for(status), message: message.into(), details: None, internal: None, transient: false }
    }

    /// The JSON document sent to the client.
    pub fn render(&self, request_id: &str) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
                "request_id": request_id,
            }
        })
    }
}

/// The documented shape of every error answer (for OpenAPI).
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorObject,
}

/// The `error` member of [`ErrorResponse`].
#[derive(Serialize, ToSchema)]
pub struct ErrorObject {
    /// Machine-readable code: BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT,
    /// PAYLOAD_TOO_LARGE, VALIDATION_ERROR, RATE_LIMIT, INTERNAL_ERROR, SERVICE_UNAVAILABLE.
    #[schema(example = "NOT_FOUND")]
    pub code: String,
    #[schema(example = "user 0194c3b2-... not found")]
    pub message: String,
    /// For VALIDATION_ERROR: each invalid field.
    pub details: Option<Vec<FieldError>>,
    /// The `X-Request-Id` of the request, to find it in the server log.
    pub request_id: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = ErrorBody::new(status, self.to_string());
        let mut retry_after = None;
        match self {
            Self::Validation(details) => body.details = Some(details),
            Self::Unavailable(_) => retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS),
            Self::Internal(err) if crate::store::unavailable_in(&err) => {
                body.message = DATABASE_UNAVAILABLE.into();
                body.internal = Some(format!("{err:#}"));
                body.transient = true;
                retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
            }
            Self::Internal(err) => {
                body.message = "internal server error".into();
                body.internal = Some(format!("{err:#}"));
            }
            Self::RateLimited { retry_after_secs, .. } => {
                crate::metrics::get().rate_limited.inc();
                retry_after = Some(retry_after_secs);
            }
            Self::Overloaded { retry_after_secs, .. } => retry_after = Some(retry_after_secs),
            _ => {}
        }
        let mut response = status.into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response.extensions_mut().insert(body);
        response
    }
}

/// Every problem of a request body, collected before one 422 answers them all: `finish()?` in
/// a handler turns them into [`AppError::Validation`].
impl From<Vec<FieldError>> for AppError {
    fn from(problems: Vec<FieldError>) -> Self {
        Self::Validation(problems)
    }
}

/// A stored status no status has: the row was not written by this server.
impl From<dibop_core::UnknownStatus> for AppError {
    fn from(err: dibop_core::UnknownStatus) -> Self {
        Self::Internal(anyhow::anyhow!("stored {err}"))
    }
}

impl From<dibop_core::crypto::SealError> for AppError {
    fn from(err: dibop_core::crypto::SealError) -> Self {
        Self::Internal(err.into())
    }
}

impl From<crate::connections::ConnectionError> for AppError {
    fn from(err: crate::connections::ConnectionError) -> Self {
        match err {
            crate::connections::ConnectionError::Unusable(message) => Self::Conflict(message),
            err @ crate::connections::ConnectionError::Disabled(_) => Self::Conflict(err.to_string()),
            crate::connections::ConnectionError::Internal(err) => Self::Internal(err),
        }
    }
}

impl From<crate::connections::SaveError> for AppError {
    fn from(err: crate::connections::SaveError) -> Self {
        match err {
            crate::connections::SaveError::Invalid(problems) => Self::Validation(problems),
            crate::connections::SaveError::Failed(err) => Self::from(err),
        }
    }
}

impl From<crate::plugins::registry::UploadError> for AppError {
    fn from(err: crate::plugins::registry::UploadError) -> Self {
        use crate::plugins::registry::UploadError;
        match err {
            UploadError::Invalid(problems) => Self::Validation(problems),
            UploadError::Conflict(message) => Self::Conflict(message),
            UploadError::Internal(err) => Self::Internal(err),
        }
    }
}

impl From<crate::engine::executions::ExecutionError> for AppError {
    fn from(err: crate::engine::executions::ExecutionError) -> Self {
        use crate::engine::executions::ExecutionError;
        match err {
            ExecutionError::NotFound(what) => Self::not_found(what),
            ExecutionError::Conflict(message) => Self::Conflict(message),
            ExecutionError::BadRequest(message) => Self::BadRequest(message),
            ExecutionError::Invalid(problems) => Self::Validation(problems),
            ExecutionError::Refused(refusal) => refusal.into(),
            ExecutionError::Failed(err) => Self::from(err),
        }
    }
}

impl From<crate::engine::admission::Refusal> for AppError {
    fn from(refusal: crate::engine::admission::Refusal) -> Self {
        match refusal {
            crate::engine::admission::Refusal::RateLimited { limit, retry_after_secs } => Self::RateLimited {
                message: format!("execution rate limit of {limit} per minute exceeded"),
                retry_after_secs,
            },
            crate::engine::admission::Refusal::QueueFull { bound, retry_after_secs } => Self::RateLimited {
                message: format!(
                    "{bound} executions are queued, the enterprise's max_queued_executions; nothing was started, \
                     retry after the Retry-After seconds"
                ),
                retry_after_secs,
            },
            crate::engine::admission::Refusal::Failed(err) => Self::from(err),
        }
    }
}
