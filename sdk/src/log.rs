//! Structured logging to the execution trace and the server log.
//!
//! Each line is tagged by the host with the plugin and the call it belongs to. Lines beyond a
//! per-call cap are dropped, so log what helps people follow a call, not every byte. Never
//! log credentials.
//!
//! ```no_run
//! use dibop_sdk::{json, log};
//!
//! log::info("decoding VIN");
//! log::write(log::Level::Warn, "slow upstream", &json!({"elapsed_ms": 2300}));
//! ```

use serde_json::Value;

use crate::wit::connector::dibop::plugin::log as wit_log;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Details useful when debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something unusual that did not stop the call.
    Warn,
    /// A failure.
    Error,
}

/// Writes one line with extra structured `fields` (a JSON object; anything else is logged
/// under the key `value`).
pub fn write(level: Level, message: &str, fields: &Value) {
    let level = match level {
        Level::Trace => wit_log::Level::Trace,
        Level::Debug => wit_log::Level::Debug,
        Level::Info => wit_log::Level::Info,
        Level::Warn => wit_log::Level::Warn,
        Level::Error => wit_log::Level::Error,
    };
    let fields = match fields {
        Value::Object(_) => fields.to_string(),
        Value::Null => "{}".to_string(),
        other => serde_json::json!({ "value": other }).to_string(),
    };
    wit_log::write(level, message, &fields);
}

/// Writes a trace line without fields.
pub fn trace(message: &str) {
    write(Level::Trace, message, &Value::Null);
}

/// Writes a debug line without fields.
pub fn debug(message: &str) {
    write(Level::Debug, message, &Value::Null);
}

/// Writes an info line without fields.
pub fn info(message: &str) {
    write(Level::Info, message, &Value::Null);
}

/// Writes a warning line without fields.
pub fn warn(message: &str) {
    write(Level::Warn, message, &Value::Null);
}

/// Writes an error line without fields.
pub fn error(message: &str) {
    write(Level::Error, message, &Value::Null);
}
