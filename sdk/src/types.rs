//! The descriptions a plugin gives of itself, the call context and health results.

use serde_json::{Value, json};

/// The kind of business system a connector talks to; the systems catalogue groups by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SystemType {
    /// Anything else, including public data services and generic REST APIs.
    #[default]
    General,
    /// A vehicle manufacturer's system.
    Oem,
    /// A dealer management system.
    Dms,
    /// A customer relationship management system.
    Crm,
    /// A finance or leasing system.
    Finance,
    /// A vehicle telematics platform.
    Telematics,
    /// A logistics or transport system.
    Logistics,
}

/// How a connector authenticates against its system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthType {
    /// No credentials.
    #[default]
    None,
    /// An API key, usually sent in a header.
    ApiKey,
    /// HTTP Basic authentication with a user name and password.
    Basic,
    /// A static bearer token.
    Bearer,
    /// OAuth 2.0 client credentials exchanged for an access token.
    Oauth2ClientCredentials,
}

/// One setting that a connection of a connector provides.
///
/// Non-secret settings are read with [`config`](crate::config), secret ones (credentials)
/// with [`secrets`](crate::secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// The key, e.g. `base_url` or `api_key`.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Whether a connection must set it.
    pub required: bool,
    /// Whether it is a credential (stored encrypted, never shown, read through `secrets`).
    pub secret: bool,
}

impl ConfigKey {
    /// A non-secret setting that every connection must set.
    pub fn required(name: impl Into<String>, description: impl Into<String>) -> Self {
        ConfigKey { name: name.into(), description: description.into(), required: true, secret: false }
    }

    /// A non-secret setting that a connection may leave unset.
    pub fn optional(name: impl Into<String>, description: impl Into<String>) -> Self {
        ConfigKey { name: name.into(), description: description.into(), required: false, secret: false }
    }

    /// A credential; `required` says whether every connection must set it.
    pub fn secret(name: impl Into<String>, description: impl Into<String>, required: bool) -> Self {
        ConfigKey { name: name.into(), description: description.into(), required, secret: true }
    }
}

/// One operation a connector offers (an "API" in the systems catalogue).
///
/// ```
/// use dibop_sdk::{Operation, json};
///
/// let op = Operation::new("get_vehicle", "GET", "/vehicles/{vin}", "Reads one vehicle.")
///     .input_schema(json!({"type": "object", "required": ["vin"],
///                          "properties": {"vin": {"type": "string"}}}));
/// assert_eq!(op.output_schema, json!({"type": "object"}));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Name used by orchestration steps, e.g. `decode_vin`.
    pub name: String,
    /// HTTP method it uses upstream, e.g. `GET`.
    pub method: String,
    /// Path template upstream, e.g. `/vehicles/DecodeVinValues/{vin}`.
    pub path: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: Value,
    /// JSON Schema of the output.
    pub output_schema: Value,
}

impl Operation {
    /// An operation whose input and output schemas are both `{"type": "object"}` until set
    /// with [`input_schema`](Self::input_schema) and [`output_schema`](Self::output_schema).
    pub fn new(
        name: impl Into<String>,
        method: impl Into<String>,
        path: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Operation {
            name: name.into(),
            method: method.into(),
            path: path.into(),
            description: description.into(),
            input_schema: json!({"type": "object"}),
            output_schema: json!({"type": "object"}),
        }
    }

    /// Sets the JSON Schema of the input.
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.input_schema = schema;
        self
    }

    /// Sets the JSON Schema of the output.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = schema;
        self
    }
}

/// What a connector needs from the host; returned by
/// [`Connector::capabilities`](crate::Connector::capabilities).
///
/// ```
/// let needs = dibop_sdk::Capabilities::hosts(["api.example.com", "*.example.com"]).memory_mb(32);
/// assert_eq!(needs.memory_mb, Some(32));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Outbound host patterns: `host`, `*.domain` or `*` (any host), each with an optional
    /// `:port`.
    pub hosts: Vec<String>,
    /// The memory a call wants, MiB (a connection's default; at most 512).
    pub memory_mb: Option<u32>,
}

impl Capabilities {
    /// Declares the hosts the connector reaches.
    pub fn hosts<I: IntoIterator<Item = S>, S: Into<String>>(hosts: I) -> Self {
        Self { hosts: hosts.into_iter().map(Into::into).collect(), memory_mb: None }
    }

    /// Declares the memory a call wants, MiB.
    #[must_use]
    pub fn memory_mb(mut self, mib: u32) -> Self {
        self.memory_mb = Some(mib);
        self
    }
}

/// What a connector says about itself; returned by [`Connector::describe`](crate::Connector::describe).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorInfo {
    /// Catalogue identifier: lowercase letters, digits and dashes, e.g. `vpic`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Kind of system.
    pub system_type: SystemType,
    /// Semantic version of this build; a slug and version pair is immutable once uploaded.
    /// `env!("CARGO_PKG_VERSION").into()` keeps it in step with `Cargo.toml`.
    pub version: String,
    /// One or two sentences for the catalogue.
    pub description: String,
    /// How it authenticates.
    pub auth: AuthType,
    /// Settings a connection provides.
    pub config: Vec<ConfigKey>,
    /// Operations it offers.
    pub operations: Vec<Operation>,
}

/// What a transform says about itself; returned by [`Transform::describe`](crate::Transform::describe).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformInfo {
    /// Identifier used by `transform` steps, e.g. `vin-check`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Semantic version of this build.
    pub version: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of the step parameters.
    pub params_schema: Value,
}

/// Where a call comes from; passed to [`Connector::invoke`](crate::Connector::invoke).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallContext {
    /// The execution this call belongs to; `None` for connection tests and pings.
    pub execution_id: Option<String>,
    /// The orchestration step; `None` outside orchestrations.
    pub step: Option<String>,
    /// 1 for the first attempt, then 2, 3, ... on retries.
    pub attempt: u32,
    /// Stable across retries and restarts of the same step: send it upstream (for example as
    /// an `Idempotency-Key` header) so that a repeated write is not applied twice.
    pub idempotency_key: String,
}

/// Health as the connector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// The system answered as expected.
    Online,
    /// The system could not be reached or answered with an error.
    Offline,
    /// The system answered but refused the credentials.
    AuthError,
}

/// The result of [`Connector::ping`](crate::Connector::ping).
///
/// ```
/// use dibop_sdk::{Health, HealthStatus};
///
/// assert_eq!(Health::from_http_status(200).status, HealthStatus::Online);
/// assert_eq!(Health::from_http_status(401).status, HealthStatus::AuthError);
/// assert_eq!(Health::from_http_status(502).message.as_deref(), Some("upstream answered HTTP 502"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Details for people, e.g. the upstream status.
    pub message: Option<String>,
}

impl Health {
    /// The system answered as expected.
    pub fn online() -> Self {
        Health { status: HealthStatus::Online, message: None }
    }

    /// The system could not be reached or answered with an error.
    pub fn offline(message: impl Into<String>) -> Self {
        Health { status: HealthStatus::Offline, message: Some(message.into()) }
    }

    /// The system refused the credentials.
    pub fn auth_error(message: impl Into<String>) -> Self {
        Health { status: HealthStatus::AuthError, message: Some(message.into()) }
    }

    /// Returns the result with `message` set.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The usual reading of a health-check answer: 2xx is online, 401 and 403 are an
    /// authentication error, anything else is offline; the message names the status.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            200..=299 => Self::online(),
            401 | 403 => Self::auth_error(format!("upstream refused the credentials (HTTP {status})")),
            _ => Self::offline(format!("upstream answered HTTP {status}")),
        }
    }
}
