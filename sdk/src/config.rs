//! The non-secret configuration of the connection a call runs under.
//!
//! A connection's configuration is a JSON object set by whoever created the connection,
//! for the keys your connector declares in [`ConnectorInfo::config`](crate::ConnectorInfo).
//! Only connectors have a configuration: a transform that calls these functions fails to
//! load.
//!
//! ```no_run
//! use dibop_sdk::config;
//!
//! let base_url = config::string("base_url").unwrap_or_else(|| "https://api.example.com".into());
//! ```

use serde_json::Value;

use crate::wit::connector::dibop::plugin::config as wit_config;

/// One configuration value, or `None` when the key is not set.
pub fn get(key: &str) -> Option<Value> {
    wit_config::get(key).map(|text| parse_lenient(&text))
}

/// One configuration value as a string: a JSON string as it is, a number or boolean in its
/// JSON spelling; `None` when the key is unset, `null`, an object or an array.
pub fn string(key: &str) -> Option<String> {
    match get(key)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The whole configuration object (an empty object when there is none).
pub fn all() -> Value {
    match parse_lenient(&wit_config::all()) {
        Value::Null => Value::Object(Default::default()),
        other => other,
    }
}

/// The host sends JSON text; should a value ever not parse, it is kept as a string.
fn parse_lenient(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}
