//! Bindings generated from `wit/plugin.wit`, one module per world. Internal: the SDK's API
//! and export macros wrap them. Each module also carries the `wasi:http`, `wasi:io` and
//! `wasi:clocks` bindings its world needs (the connector's are what [`crate::http`] uses).

#![allow(missing_docs, clippy::all)]

/// Bindings of the `connector-with-capabilities` world (a `connector` that also declares what
/// it needs; the host loads both).
pub mod connector {
    wit_bindgen::generate!({
        path: "../wit",
        world: "dibop:plugin/connector-with-capabilities",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_connector_world",
        default_bindings_module: "::dibop_sdk::wit::connector",
    });
}

/// Bindings of the `transform` world.
pub mod transform {
    wit_bindgen::generate!({
        path: "../wit",
        world: "dibop:plugin/transform",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
        default_bindings_module: "::dibop_sdk::wit::transform",
    });
}
