//! {{name}}: a DIBOP connector with one operation, `get_item`, reading
//! `GET {base_url}/items/{id}` with an optional API key. Replace the settings and operations
//! with your system's.

use dibop_sdk::{
    AuthType, CallContext, Capabilities, ConfigKey, Connector, ConnectorInfo, Health, Operation, PluginError,
    SystemType, Value, config, http, json, log, secrets,
};

/// The connector. It keeps no state: a call may run in a fresh or a reused (warm) instance.
struct MyConnector;

impl Connector for MyConnector {
    /// What the catalogue shows, the settings a connection needs and the operations offered.
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            // Lowercase letters, digits and dashes; with `version` it identifies the upload.
            slug: "{{slug}}".into(),
            name: "{{name}}".into(),
            system_type: SystemType::General,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Reads items from the Example API.".into(),
            auth: AuthType::ApiKey,
            config: vec![
                ConfigKey::required("base_url", "Base URL of the API, e.g. https://api.example.com"),
                ConfigKey::secret("api_key", "API key, sent as X-Api-Key", false),
            ],
            operations: vec![
                Operation::new("get_item", "GET", "/items/{id}", "Reads one item by id.")
                    .input_schema(json!({
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string"}}
                    }))
                    .output_schema(json!({"type": "object"})),
            ],
        }
    }

    /// Runs one operation. Expected failures are `PluginError`s; panics are bugs.
    fn invoke(operation: &str, input: Value, _ctx: &CallContext) -> Result<Value, PluginError> {
        match operation {
            "get_item" => {
                let id = input
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| PluginError::invalid_input("the input needs a string field `id`"))?;
                log::info("reading an item");
                let url = item_url(&base_url()?, id);
                // `error_for_status` turns 404 into not_found, 401/403 into unauthorized and
                // other error statuses into upstream_error (retryable for 5xx and 429).
                with_key(http::Request::get(url)).send()?.error_for_status()?.json()
            }
            other => Err(PluginError::invalid_input(format!("unknown operation `{other}`"))),
        }
    }

    /// The hosts it reaches (`api.example.com`, `*.example.com`) and the memory a call wants: a
    /// connection's hosts must fit them, and a version that declares more waits for an admin's
    /// approval. `*` leaves the hosts to each connection's `allowed_hosts`.
    fn capabilities() -> Option<Capabilities> {
        Some(Capabilities::hosts(["*"]).memory_mb(64))
    }

    /// Tells whether the system answers with this connection's settings.
    fn ping() -> Health {
        let base = match base_url() {
            Ok(base) => base,
            Err(err) => return Health::offline(err.message),
        };
        match with_key(http::Request::get(format!("{base}/health"))).send() {
            Ok(response) => Health::from_http_status(response.status),
            Err(err) => Health::offline(err.message),
        }
    }
}

/// The connection's `base_url`, without a trailing slash.
fn base_url() -> Result<String, PluginError> {
    config::string("base_url")
        .map(|url| url.trim_end_matches('/').to_string())
        .ok_or_else(|| PluginError::invalid_input("the connection has no `base_url`"))
}

/// The URL of one item: the id is percent-encoded, so it cannot change the path.
fn item_url(base: &str, id: &str) -> String {
    format!("{base}/items/{}", http::encode(id))
}

/// Adds the API key, when the connection has one.
fn with_key(request: http::Request) -> http::Request {
    match secrets::get("api_key") {
        Some(key) => request.header("X-Api-Key", key),
        None => request,
    }
}

// Generates the component's exports from `MyConnector`.
dibop_sdk::export_connector!(MyConnector);

#[cfg(test)]
mod tests {
    #[test]
    fn an_id_cannot_leave_the_items_path() {
        assert_eq!(super::item_url("https://api.example.com", "42"), "https://api.example.com/items/42");
        assert_eq!(super::item_url("https://x", "../admin?a=1"), "https://x/items/..%2Fadmin%3Fa%3D1");
    }
}
