//! The per-call store state and the host side of the `log`, `config` and `secrets` interfaces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{config, log, secrets, types};
use super::outbound::{Outbound, Redactor};

/// Lines one call may log; more are dropped (and counted).
const MAX_LOG_LINES: usize = 500;
/// Longest logged message kept, in bytes.
const MAX_LOG_MESSAGE: usize = 4096;

/// One line a plugin logged.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub timestamp_ms: i64,
    pub level: &'static str,
    pub message: String,
    pub fields: serde_json::Value,
}

/// What a call's imports read and write, shared with the caller after the call.
pub struct CallData {
    /// The connection's non-secret configuration (a JSON object).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The connection's decrypted credentials.
    pub secrets: HashMap<String, String>,
    pub redactor: Redactor,
    pub logs: Mutex<Vec<LogLine>>,
    pub plugin: String,
}

/// The data of one store: everything one plugin call can reach.
pub struct State {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub outbound: Outbound,
    pub call: Arc<CallData>,
    pub deadline: Instant,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

impl types::Host for State {}

impl log::Host for State {
    async fn write(&mut self, level: log::Level, message: String, fields: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        let mut message = self.call.redactor.redact(&message);
        if message.len() > MAX_LOG_MESSAGE {
            let mut end = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...[truncated]");
        }
        let fields = serde_json::from_str(&self.call.redactor.redact(&fields))
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}));
        tracing::debug!(plugin = %self.call.plugin, level, %message, "plugin log");
        if let Ok(mut logs) = self.call.logs.lock()
            && logs.len() < MAX_LOG_LINES
        {
            logs.push(LogLine { timestamp_ms: crate::store::now_ms(), level, message, fields });
        }
        Ok(())
    }
}

impl config::Host for State {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.call.config.get(&key).map(serde_json::Value::to_string))
    }

    async fn all(&mut self) -> wasmtime::Result<String> {
        Ok(serde_json::Value::Object(self.call.config.clone()).to_string())
    }
}

impl secrets::Host for State {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.call.secrets.get(&name).cloned())
    }
}
