//! The one place that generates host bindings for the `dibop:plugin` WIT package (`wit/`).
//!
//! The `connector` world imports `wasi:http/outgoing-handler`; its WASI types come from
//! wasmtime-wasi and wasmtime-wasi-http, which the linker provides. The `transform` world reuses
//! the interfaces generated for `connector`, so one host implementation serves both.

#![allow(missing_docs, clippy::all)]

pub mod connector {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "dibop:plugin/connector",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "dibop:plugin/transform",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "dibop:plugin/types": super::connector::dibop::plugin::types,
            "dibop:plugin/log": super::connector::dibop::plugin::log,
        },
    });
}

pub use connector::dibop::plugin::types;
pub use connector::dibop::plugin::{config, log, secrets};
