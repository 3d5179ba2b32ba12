//! # dibop-sdk
//!
//! Write DIBOP plugins in Rust. A plugin is a WebAssembly component that the DIBOP runtime
//! loads and runs in a sandbox, with a memory limit and a deadline for every call (the host
//! may reuse a warm instance for later calls of the same connection). There are two kinds:
//!
//! - a **connector** ([`Connector`], exported with [`export_connector!`]) bridges DIBOP and
//!   one kind of business system. It reads its connection's settings through [`config`] and
//!   [`secrets`] and reaches the system through the blocking [`http`] client, which may only
//!   contact the hosts its connection allows; it may declare the hosts it needs and the memory
//!   it wants ([`Connector::capabilities`]);
//! - a **transform** ([`Transform`], exported with [`export_transform!`]) is custom step
//!   logic that computes an output from an input, with no I/O at all (only [`log`]).
//!
//! JSON travels as [`Value`]s. Expected failures are [`PluginError`]s with a stable code;
//! panics are for bugs.
//!
//! ## Building
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`, whose output is already a
//! component:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! dibop-sdk = { path = "../sdk" }
//! ```
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! Upload `target/wasm32-wasip2/release/<crate_name>.wasm` to the runtime's `/plugins`
//! endpoint. `dibop connector new NAME --lang rust` writes a ready-made starting point
//! (`sdk/templates/rust/`), `dibop connector build` builds it and `dibop connector test` runs
//! one call in the server's sandbox.
//!
//! ## A complete connector
//!
//! ```no_run
//! use dibop_sdk::{
//!     AuthType, CallContext, ConfigKey, Connector, ConnectorInfo, Health, Operation, PluginError, SystemType,
//!     Value, config, http, json, log, secrets,
//! };
//!
//! struct Parts;
//!
//! impl Connector for Parts {
//!     fn describe() -> ConnectorInfo {
//!         ConnectorInfo {
//!             slug: "parts".into(),
//!             name: "Parts catalogue".into(),
//!             system_type: SystemType::Oem,
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             description: "Looks up spare parts in a manufacturer's catalogue.".into(),
//!             auth: AuthType::ApiKey,
//!             config: vec![
//!                 ConfigKey::required("base_url", "Base URL of the catalogue API"),
//!                 ConfigKey::secret("api_key", "API key, sent as X-Api-Key", true),
//!             ],
//!             operations: vec![
//!                 Operation::new("get_part", "GET", "/parts/{number}", "Reads one part.")
//!                     .input_schema(json!({
//!                         "type": "object",
//!                         "required": ["number"],
//!                         "properties": {"number": {"type": "string"}}
//!                     })),
//!             ],
//!         }
//!     }
//!
//!     fn invoke(operation: &str, input: Value, _ctx: &CallContext) -> Result<Value, PluginError> {
//!         match operation {
//!             "get_part" => {
//!                 let number = input["number"]
//!                     .as_str()
//!                     .ok_or_else(|| PluginError::invalid_input("`number` must be a string"))?;
//!                 log::write(log::Level::Info, "reading part", &json!({"number": number}));
//!                 let url = format!("{}/parts/{}", base_url()?, http::encode(number));
//!                 authorized(http::Request::get(url)).send()?.error_for_status()?.json()
//!             }
//!             other => Err(PluginError::invalid_input(format!("unknown operation `{other}`"))),
//!         }
//!     }
//!
//!     fn ping() -> Health {
//!         let Ok(base) = base_url() else { return Health::offline("base_url is not set") };
//!         match authorized(http::Request::get(format!("{base}/health"))).send() {
//!             Ok(response) => Health::from_http_status(response.status),
//!             Err(err) => Health::offline(err.message),
//!         }
//!     }
//! }
//!
//! fn base_url() -> Result<String, PluginError> {
//!     let url = config::string("base_url").ok_or_else(|| PluginError::invalid_input("base_url is not set"))?;
//!     Ok(url.trim_end_matches('/').to_string())
//! }
//!
//! fn authorized(request: http::Request) -> http::Request {
//!     match secrets::get("api_key") {
//!         Some(key) => request.header("X-Api-Key", key),
//!         None => request,
//!     }
//! }
//!
//! dibop_sdk::export_connector!(Parts);
//! ```
//!
//! ## A transform
//!
//! ```no_run
//! use dibop_sdk::{PluginError, Transform, TransformInfo, Value, json};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn describe() -> TransformInfo {
//!         TransformInfo {
//!             slug: "upper".into(),
//!             name: "Upper case".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             description: "Upper-cases a string.".into(),
//!             params_schema: json!({"type": "object"}),
//!         }
//!     }
//!
//!     fn run(input: Value, _params: Value) -> Result<Value, PluginError> {
//!         let text = input.as_str().ok_or_else(|| PluginError::invalid_input("expected a string"))?;
//!         Ok(json!(text.to_uppercase()))
//!     }
//! }
//!
//! dibop_sdk::export_transform!(Upper);
//! ```

#![warn(missing_docs)]

pub mod config;
mod error;
pub mod http;
pub mod log;
pub mod secrets;
mod types;
#[doc(hidden)]
pub mod wit;

/// XML documents as JSON by DIBOP's one rule, and escaping for XML templates.
pub use dibop_xml as xml;
pub use error::PluginError;
pub use serde_json;
pub use serde_json::{Value, json};
pub use types::{
    AuthType, CallContext, Capabilities, ConfigKey, ConnectorInfo, Health, HealthStatus, Operation, SystemType,
    TransformInfo,
};

/// A connector: the bridge between DIBOP and one kind of business system.
///
/// Implement it on a unit struct and export that with [`export_connector!`]. All its
/// functions may run in a fresh or a reused (warm) instance, so keep no state between calls.
pub trait Connector {
    /// Describes the connector: identity, the settings a connection needs, the operations
    /// it offers. Called once at upload, under the same limits as any call.
    fn describe() -> ConnectorInfo;

    /// Runs `operation` with `input` (usually a JSON object) and returns its output.
    ///
    /// Answer an unknown operation or bad input with [`PluginError::invalid_input`].
    fn invoke(operation: &str, input: Value, ctx: &CallContext) -> Result<Value, PluginError>;

    /// Checks that the system is reachable with the connection's settings and credentials.
    fn ping() -> Health;

    /// What the connector needs from the host: the hosts it reaches and the memory a call
    /// wants. A connection's `allowed_hosts` and `base_url` host must fit the hosts, and a new
    /// version that declares more than the one before it waits for an admin's approval.
    /// `None` (the default) declares nothing.
    fn capabilities() -> Option<Capabilities> {
        None
    }
}

/// A transform: custom step logic that computes an output from its input, with no I/O.
///
/// Implement it on a unit struct and export that with [`export_transform!`].
pub trait Transform {
    /// Describes the transform.
    fn describe() -> TransformInfo;

    /// Computes the step's output from its `input` and the step's `params` (`null` when the
    /// step has none).
    fn run(input: Value, params: Value) -> Result<Value, PluginError>;
}

/// Exports a [`Connector`] implementation as the plugin's `connector-with-capabilities` world (a
/// `connector` that also answers [`Connector::capabilities`]).
///
/// Use it once, at the top level of a `cdylib` crate:
///
/// ```no_run
/// # use dibop_sdk::*;
/// struct MyConnector;
/// # impl Connector for MyConnector {
/// #     fn describe() -> ConnectorInfo { unimplemented!() }
/// #     fn invoke(_: &str, _: Value, _: &CallContext) -> Result<Value, PluginError> { unimplemented!() }
/// #     fn ping() -> Health { Health::online() }
/// # }
/// dibop_sdk::export_connector!(MyConnector);
/// ```
///
/// Input that is not valid JSON is answered with an `invalid_input` error before your
/// [`Connector::invoke`] runs.
#[macro_export]
macro_rules! export_connector {
    ($ty:ty) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        struct __DibopConnectorExport;

        impl $crate::wit::connector::Guest for __DibopConnectorExport {
            fn describe() -> $crate::wit::connector::ConnectorInfo {
                $crate::__private::connector_describe::<$ty>()
            }

            fn invoke(
                operation: ::std::string::String,
                input: $crate::wit::connector::Json,
                context: $crate::wit::connector::CallContext,
            ) -> ::core::result::Result<$crate::wit::connector::Json, $crate::wit::connector::PluginError> {
                $crate::__private::connector_invoke::<$ty>(operation, input, context)
            }

            fn ping() -> $crate::wit::connector::Health {
                $crate::__private::connector_ping::<$ty>()
            }

            fn capabilities() -> ::std::string::String {
                $crate::__private::connector_capabilities::<$ty>()
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::wit::connector::export_connector_world!(__DibopConnectorExport with_types_in $crate::wit::connector);

        // Outside WebAssembly (unit tests on the build machine) nothing is exported; this keeps
        // the connector from being reported as dead code there.
        #[cfg(not(target_arch = "wasm32"))]
        #[allow(dead_code)]
        fn __dibop_connector_is_used() {
            let _ = <__DibopConnectorExport as $crate::wit::connector::Guest>::describe;
            let _ = <__DibopConnectorExport as $crate::wit::connector::Guest>::invoke;
            let _ = <__DibopConnectorExport as $crate::wit::connector::Guest>::ping;
            let _ = <__DibopConnectorExport as $crate::wit::connector::Guest>::capabilities;
        }
    };
}

/// Exports a [`Transform`] implementation as the plugin's `transform` world.
///
/// Use it once, at the top level of a `cdylib` crate:
///
/// ```no_run
/// # use dibop_sdk::*;
/// struct MyTransform;
/// # impl Transform for MyTransform {
/// #     fn describe() -> TransformInfo { unimplemented!() }
/// #     fn run(input: Value, _: Value) -> Result<Value, PluginError> { Ok(input) }
/// # }
/// dibop_sdk::export_transform!(MyTransform);
/// ```
///
/// Input or parameters that are not valid JSON are answered with an `invalid_input` error
/// before your [`Transform::run`] runs.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        struct __DibopTransformExport;

        impl $crate::wit::transform::Guest for __DibopTransformExport {
            fn describe() -> $crate::wit::transform::TransformInfo {
                $crate::__private::transform_describe::<$ty>()
            }

            fn run(
                input: $crate::wit::transform::Json,
                params: $crate::wit::transform::Json,
            ) -> ::core::result::Result<$crate::wit::transform::Json, $crate::wit::transform::PluginError> {
                $crate::__private::transform_run::<$ty>(input, params)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::wit::transform::export_transform_world!(__DibopTransformExport with_types_in $crate::wit::transform);

        // Outside WebAssembly (unit tests on the build machine) nothing is exported; this keeps
        // the transform from being reported as dead code there.
        #[cfg(not(target_arch = "wasm32"))]
        #[allow(dead_code)]
        fn __dibop_transform_is_used() {
            let _ = <__DibopTransformExport as $crate::wit::transform::Guest>::describe;
            let _ = <__DibopTransformExport as $crate::wit::transform::Guest>::run;
        }
    };
}

/// Conversions between the SDK's types and the generated bindings, used by the export
/// macros. Not part of the API.
#[doc(hidden)]
pub mod __private {
    use crate::wit::connector::dibop::plugin::types as ct;
    use crate::wit::transform::dibop::plugin::types as tt;
    use crate::{AuthType, CallContext, Connector, HealthStatus, PluginError, SystemType, Transform, Value};

    /// Parses JSON text from the host; empty text is `null`.
    fn parse(text: &str, what: &str) -> Result<Value, PluginError> {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text).map_err(|e| PluginError::invalid_input(format!("{what} is not valid JSON: {e}")))
    }

    fn connector_error(e: PluginError) -> ct::PluginError {
        ct::PluginError { code: e.code, message: e.message, retryable: e.retryable, http_status: e.http_status }
    }

    fn transform_error(e: PluginError) -> tt::PluginError {
        tt::PluginError { code: e.code, message: e.message, retryable: e.retryable, http_status: e.http_status }
    }

    pub fn connector_describe<C: Connector>() -> ct::ConnectorInfo {
        let info = C::describe();
        ct::ConnectorInfo {
            slug: info.slug,
            name: info.name,
            system_type: match info.system_type {
                SystemType::General => ct::SystemType::General,
                SystemType::Oem => ct::SystemType::Oem,
                SystemType::Dms => ct::SystemType::Dms,
                SystemType::Crm => ct::SystemType::Crm,
                SystemType::Finance => ct::SystemType::Finance,
                SystemType::Telematics => ct::SystemType::Telematics,
                SystemType::Logistics => ct::SystemType::Logistics,
            },
            version: info.version,
            description: info.description,
            auth: match info.auth {
                AuthType::None => ct::AuthType::None,
                AuthType::ApiKey => ct::AuthType::ApiKey,
                AuthType::Basic => ct::AuthType::Basic,
                AuthType::Bearer => ct::AuthType::Bearer,
                AuthType::Oauth2ClientCredentials => ct::AuthType::Oauth2ClientCredentials,
            },
            config: info
                .config
                .into_iter()
                .map(|k| ct::ConfigKey {
                    name: k.name,
                    description: k.description,
                    required: k.required,
                    secret: k.secret,
                })
                .collect(),
            operations: info
                .operations
                .into_iter()
                .map(|op| ct::Operation {
                    name: op.name,
                    method: op.method,
                    path: op.path,
                    description: op.description,
                    input_schema: op.input_schema.to_string(),
                    output_schema: op.output_schema.to_string(),
                })
                .collect(),
        }
    }

    pub fn connector_invoke<C: Connector>(
        operation: String,
        input: String,
        context: ct::CallContext,
    ) -> Result<String, ct::PluginError> {
        let ctx = CallContext {
            execution_id: context.execution_id,
            step: context.step,
            attempt: context.attempt,
            idempotency_key: context.idempotency_key,
        };
        let input = parse(&input, "the input").map_err(connector_error)?;
        C::invoke(&operation, input, &ctx).map(|output| output.to_string()).map_err(connector_error)
    }

    pub fn connector_capabilities<C: Connector>() -> String {
        match C::capabilities() {
            None => "null".into(),
            Some(c) => serde_json::json!({"hosts": c.hosts, "memory_mb": c.memory_mb}).to_string(),
        }
    }

    pub fn connector_ping<C: Connector>() -> ct::Health {
        let health = C::ping();
        ct::Health {
            status: match health.status {
                HealthStatus::Online => ct::HealthStatus::Online,
                HealthStatus::Offline => ct::HealthStatus::Offline,
                HealthStatus::AuthError => ct::HealthStatus::AuthError,
            },
            message: health.message,
        }
    }

    pub fn transform_describe<T: Transform>() -> tt::TransformInfo {
        let info = T::describe();
        tt::TransformInfo {
            slug: info.slug,
            name: info.name,
            version: info.version,
            description: info.description,
            params_schema: info.params_schema.to_string(),
        }
    }

    pub fn transform_run<T: Transform>(input: String, params: String) -> Result<String, tt::PluginError> {
        let input = parse(&input, "the input").map_err(transform_error)?;
        let params = parse(&params, "the parameters").map_err(transform_error)?;
        T::run(input, params).map(|output| output.to_string()).map_err(transform_error)
    }
}
