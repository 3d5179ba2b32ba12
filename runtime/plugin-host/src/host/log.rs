//! The `log` import: a plugin's log lines, redacted and bounded, kept with its call.

use std::sync::atomic::Ordering;

use super::{LogLine, State};
use crate::bindings::log;

/// Lines one call may log; more are dropped.
const MAX_LOG_LINES: usize = 500;
/// Longest logged message kept, in bytes.
const MAX_LOG_MESSAGE: usize = 4096;
/// Largest `fields` document of one log line kept, in bytes (larger ones are replaced by a
/// note saying how large they were).
const MAX_LOG_FIELDS: usize = 4096;
/// Bytes of log messages and fields one call may keep in all; later lines are dropped.
const MAX_LOG_BYTES: usize = 256 * 1024;

impl log::Host for State {
    async fn write(&mut self, level: log::Level, message: String, fields: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        // Cut before redacting: a guest's multi-MiB message costs nothing beyond the bound.
        let message = self.call.redactor.redact(&dibop_core::bounded::clip(&message, MAX_LOG_MESSAGE * 2));
        let message = dibop_core::bounded::clip(&message, MAX_LOG_MESSAGE).into_owned();
        let fields = if fields.len() > MAX_LOG_FIELDS {
            serde_json::json!({"_truncated": format!("{} bytes of fields left out (at most {MAX_LOG_FIELDS})", fields.len())})
        } else {
            serde_json::from_str(&self.call.redactor.redact(&fields))
                .ok()
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| serde_json::json!({}))
        };
        tracing::debug!(plugin = %self.call.plugin, level, %message, "plugin log");
        let size = message.len() + dibop_core::bounded::json_len(&fields);
        if self.call.log_bytes.load(Ordering::Relaxed) + size > MAX_LOG_BYTES {
            return Ok(());
        }
        if let Ok(mut logs) = self.call.logs.lock()
            && logs.len() < MAX_LOG_LINES
        {
            self.call.log_bytes.fetch_add(size, Ordering::Relaxed);
            logs.push(LogLine { timestamp_ms: dibop_core::now_ms(), level, message, fields });
        }
        Ok(())
    }
}
