//! Conversions between the WIT types of `dibop:plugin` and the host's own: what a plugin says
//! (its description, its errors, its health) becomes host values, and an invocation's context
//! becomes the WIT `call-context`. Text a plugin sends is bounded here.

use dibop_core::World;

use crate::bindings::types;
use crate::{
    CallError, ConfigKeyInfo, HealthReport, Invocation, MAX_ERROR_CODE, MAX_ERROR_MESSAGE, OperationInfo, PluginInfo,
};

impl From<types::PluginError> for CallError {
    fn from(e: types::PluginError) -> Self {
        Self {
            code: dibop_core::bounded::clip(&e.code, MAX_ERROR_CODE).into_owned(),
            message: dibop_core::bounded::clip(&e.message, MAX_ERROR_MESSAGE).into_owned(),
            retryable: e.retryable,
            http_status: e.http_status,
        }
    }
}

/// A declared schema; `null` (refused at upload) when it is not JSON or nests deeper than
/// `dibop_core::nesting::MAX_VALUE_DEPTH` (schemas are compiled and walked recursively).
fn schema(text: &str) -> serde_json::Value {
    if dibop_core::nesting::check_json_text(text.as_bytes(), "the schema").is_err() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// A system type's name, as the API shows it.
fn system_type(kind: types::SystemType) -> &'static str {
    match kind {
        types::SystemType::General => "general",
        types::SystemType::Oem => "oem",
        types::SystemType::Dms => "dms",
        types::SystemType::Crm => "crm",
        types::SystemType::Finance => "finance",
        types::SystemType::Telematics => "telematics",
        types::SystemType::Logistics => "logistics",
    }
}

/// An auth type's name, as the API shows it and connections' `auth` names it.
fn auth_type(kind: types::AuthType) -> &'static str {
    match kind {
        types::AuthType::None => "none",
        types::AuthType::ApiKey => "api_key",
        types::AuthType::Basic => "basic",
        types::AuthType::Bearer => "bearer",
        types::AuthType::Oauth2ClientCredentials => "oauth2_client_credentials",
    }
}

impl From<types::ConnectorInfo> for PluginInfo {
    fn from(info: types::ConnectorInfo) -> Self {
        Self {
            world: World::Connector,
            system_type: Some(system_type(info.system_type).to_owned()),
            auth: Some(auth_type(info.auth).to_owned()),
            config: info.config.into_iter().map(ConfigKeyInfo::from).collect(),
            operations: info.operations.into_iter().map(OperationInfo::from).collect(),
            slug: info.slug,
            name: info.name,
            version: info.version,
            description: info.description,
            params_schema: None,
            capabilities: None,
        }
    }
}

impl From<types::TransformInfo> for PluginInfo {
    fn from(info: types::TransformInfo) -> Self {
        Self {
            world: World::Transform,
            slug: info.slug,
            name: info.name,
            version: info.version,
            description: info.description,
            system_type: None,
            auth: None,
            config: Vec::new(),
            operations: Vec::new(),
            params_schema: Some(schema(&info.params_schema)),
            capabilities: None,
        }
    }
}

impl From<types::ConfigKey> for ConfigKeyInfo {
    fn from(key: types::ConfigKey) -> Self {
        Self { name: key.name, description: key.description, required: key.required, secret: key.secret }
    }
}

impl From<types::Operation> for OperationInfo {
    fn from(operation: types::Operation) -> Self {
        Self {
            input_schema: schema(&operation.input_schema),
            output_schema: schema(&operation.output_schema),
            name: operation.name,
            method: operation.method,
            path: operation.path,
            description: operation.description,
        }
    }
}

impl From<types::Health> for HealthReport {
    fn from(health: types::Health) -> Self {
        let status = match health.status {
            types::HealthStatus::Online => "online",
            types::HealthStatus::Offline => "offline",
            types::HealthStatus::AuthError => "auth_error",
        };
        Self { status, message: health.message }
    }
}

impl From<Invocation> for types::CallContext {
    fn from(context: Invocation) -> Self {
        Self {
            execution_id: context.execution_id,
            step: context.step,
            attempt: context.attempt,
            idempotency_key: context.idempotency_key,
        }
    }
}
