//! The per-call store state (`State`: WASI, `wasi:http` through the outbound hook, limits, the
//! call's data) and one file per `dibop:plugin` host capability: `log`, `config`, `secrets`.
//! Outbound HTTP is [`crate::outbound`]'s.

mod config;
mod log;
mod secrets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::types;
use crate::outbound::{Outbound, Redactor};

/// Most instances, tables and memories one call's store may create.
const MAX_INSTANCES: usize = 50;
const MAX_TABLES: usize = 20;
const MAX_MEMORIES: usize = 10;
/// Most elements of any one table.
const MAX_TABLE_ELEMENTS: usize = 200_000;

/// The resource limits of one call's store. Memory is limited per call across all linear
/// memories of all instances (a component may have several), not per memory.
pub struct CallLimits {
    memory_max: usize,
    memory_used: usize,
}

impl CallLimits {
    pub fn new(memory_max: usize) -> Self {
        Self { memory_max, memory_used: 0 }
    }

    /// Bytes the call's memories have grown to.
    pub fn memory_used(&self) -> usize {
        self.memory_used
    }
}

impl wasmtime::ResourceLimiter for CallLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_used.saturating_add(desired.saturating_sub(current));
        if total > self.memory_max {
            // A trap, worded so that the call is classified as `memory_limit`.
            return Err(wasmtime::Error::msg(format!(
                "forcing trap when growing memory to {desired} bytes: the call's memories would use {total} bytes in all, over its limit of {} bytes",
                self.memory_max
            )));
        }
        self.memory_used = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::msg(format!(
                "forcing trap when growing a table to {desired} elements (at most {MAX_TABLE_ELEMENTS})"
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

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
    /// Bytes of messages and fields kept in `logs`.
    pub log_bytes: std::sync::atomic::AtomicUsize,
    pub plugin: String,
}

/// The data of one store: everything one plugin call can reach.
pub struct State {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub limits: CallLimits,
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

#[cfg(test)]
mod tests {
    use wasmtime::{Instance, Module, Store, TypedFunc};

    use super::*;

    const PAGE: usize = 64 * 1024;

    /// A core module with two linear memories of one page each and a function growing each by
    /// its argument (in pages), answering the old size or -1.
    const TWO_MEMORIES: &str = r#"
        (module
          (memory $a 1)
          (memory $b 1)
          (func (export "grow_a") (param i32) (result i32) (memory.grow $a (local.get 0)))
          (func (export "grow_b") (param i32) (result i32) (memory.grow $b (local.get 0))))
    "#;

    /// An instance of [`TWO_MEMORIES`] in a store limited like a call's, on the plugins' engine,
    /// with its two grow functions.
    fn two_memories(limit: usize) -> (Store<CallLimits>, TypedFunc<i32, i32>, TypedFunc<i32, i32>) {
        let engine = crate::compile::engine();
        let module = Module::new(engine, TWO_MEMORIES).expect("a valid module");
        let mut store = Store::new(engine, CallLimits::new(limit));
        store.limiter(|limits| limits);
        store.set_epoch_deadline(100_000);
        let instance = Instance::new(&mut store, &module, &[]).expect("two pages fit the limit");
        let grow_a = instance.get_typed_func(&mut store, "grow_a").expect("grow_a");
        let grow_b = instance.get_typed_func(&mut store, "grow_b").expect("grow_b");
        (store, grow_a, grow_b)
    }

    #[test]
    fn a_calls_memories_count_together_against_its_limit() {
        // Five pages for the call: each memory may reach four pages alone...
        let (mut store, _, grow_b) = two_memories(5 * PAGE);
        assert_eq!(grow_b.call(&mut store, 3).expect("b alone grows to four pages"), 1);

        // ...but two memories of three pages each are six: the second growth traps.
        let (mut store, grow_a, grow_b) = two_memories(5 * PAGE);
        assert_eq!(grow_a.call(&mut store, 2).expect("a grows to three pages"), 1);
        let trap = grow_b.call(&mut store, 2).expect_err("b growing to three pages makes six in all");
        let message = format!("{trap:#}");
        assert!(message.contains(&format!("{} bytes in all", 6 * PAGE)), "{message}");
        assert!(message.contains("forcing trap when growing memory"), "classified as memory_limit: {message}");
    }
}
