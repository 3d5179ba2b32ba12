//! `dms`: a DIBOP connector for dealer management systems that speak the DMS REST dialect
//! described in this crate's `README.md`.
//!
//! Connection settings: `base_url` (required) and the credential `api_key` (sent as
//! `X-Api-Key`). Operations: `get_vehicle`, `list_inventory`, `get_customer`,
//! `create_customer`.

use dibop_sdk::{
    AuthType, CallContext, ConfigKey, Connector, ConnectorInfo, Health, Operation, PluginError, SystemType, Value,
    config, http, json, secrets,
};

/// The largest page `list_inventory` asks for.
const MAX_PAGE_SIZE: u64 = 200;

struct Dms;

impl Connector for Dms {
    fn describe() -> ConnectorInfo {
        let vehicle = json!({
            "type": "object",
            "properties": {
                "vin": {"type": "string"},
                "stock_number": {"type": "string"},
                "make": {"type": "string"},
                "model": {"type": "string"},
                "year": {"type": "integer"},
                "trim": {"type": ["string", "null"]},
                "status": {"type": "string", "enum": ["in_stock", "reserved", "sold", "in_transit"]},
                "list_price": {"type": "number"},
                "currency": {"type": "string"},
                "mileage_km": {"type": "integer"},
                "location": {"type": "string"}
            }
        });
        let customer = json!({
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "first_name": {"type": "string"},
                "last_name": {"type": "string"},
                "company_name": {"type": ["string", "null"]},
                "email": {"type": ["string", "null"]},
                "phone": {"type": ["string", "null"]},
                "address": {"type": ["object", "null"]}
            }
        });
        ConnectorInfo {
            slug: "dms".into(),
            name: "Dealer management system".into(),
            system_type: SystemType::Dms,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Reads vehicles, inventory and customers from a dealer management system and creates \
                          customers, over the DMS REST dialect."
                .into(),
            auth: AuthType::ApiKey,
            config: vec![
                ConfigKey::required("base_url", "Base URL of the DMS API, e.g. https://dms.example.com/api/v1"),
                ConfigKey::secret("api_key", "API key, sent as the X-Api-Key header", true),
            ],
            operations: vec![
                Operation::new("get_vehicle", "GET", "/vehicles/{vin}", "Reads one vehicle by VIN.")
                    .input_schema(json!({
                        "type": "object",
                        "required": ["vin"],
                        "properties": {"vin": {"type": "string", "minLength": 1}}
                    }))
                    .output_schema(vehicle.clone()),
                Operation::new("list_inventory", "GET", "/inventory", "Lists vehicles in stock, one page at a time.")
                    .input_schema(json!({
                        "type": "object",
                        "properties": {
                            "status": {"type": "string"},
                            "make": {"type": "string"},
                            "page": {"type": "integer", "minimum": 1, "default": 1},
                            "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 50}
                        }
                    }))
                    .output_schema(json!({
                        "type": "object",
                        "required": ["items", "total"],
                        "properties": {"items": {"type": "array", "items": vehicle}, "total": {"type": "integer"}}
                    })),
                Operation::new("get_customer", "GET", "/customers/{customer_id}", "Reads one customer.")
                    .input_schema(json!({
                        "type": "object",
                        "required": ["customer_id"],
                        "properties": {"customer_id": {"type": ["string", "integer"]}}
                    }))
                    .output_schema(customer.clone()),
                Operation::new(
                    "create_customer",
                    "POST",
                    "/customers",
                    "Creates a customer; retries with the same idempotency key never create a duplicate.",
                )
                .input_schema(customer.clone())
                .output_schema(customer),
            ],
        }
    }

    fn invoke(operation: &str, input: Value, ctx: &CallContext) -> Result<Value, PluginError> {
        let base = base_url()?;
        match operation {
            "get_vehicle" => {
                let vin = required_text(&input, "vin")?.to_ascii_uppercase();
                get(&format!("{base}/vehicles/{}", http::encode(&vin)))
            }
            "list_inventory" => list_inventory(&base, &input),
            "get_customer" => {
                let id = required_text(&input, "customer_id")?;
                get(&format!("{base}/customers/{}", http::encode(&id)))
            }
            "create_customer" => {
                if !input.is_object() {
                    return Err(PluginError::invalid_input("the input must be the customer as a JSON object"));
                }
                let mut request = authorized(http::Request::post(format!("{base}/customers")))?.json(&input);
                if !ctx.idempotency_key.is_empty() {
                    request = request.header("Idempotency-Key", ctx.idempotency_key.clone());
                }
                request.send()?.error_for_status()?.json()
            }
            other => Err(PluginError::invalid_input(format!(
                "unknown operation `{other}`; dms offers get_vehicle, list_inventory, get_customer, create_customer"
            ))),
        }
    }

    fn ping() -> Health {
        let base = match base_url() {
            Ok(base) => base,
            Err(err) => return Health::offline(err.message),
        };
        let request = match authorized(http::Request::get(format!("{base}/health"))) {
            Ok(request) => request,
            Err(err) => return Health::auth_error(err.message),
        };
        match request.send() {
            Ok(response) => Health::from_http_status(response.status),
            Err(err) => Health::offline(err.message),
        }
    }
}

fn base_url() -> Result<String, PluginError> {
    config::string("base_url")
        .map(|url| url.trim().trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty())
        .ok_or_else(|| PluginError::invalid_input("the connection has no `base_url`"))
}

fn authorized(request: http::Request) -> Result<http::Request, PluginError> {
    let key = secrets::get("api_key")
        .ok_or_else(|| PluginError::unauthorized("the connection has no `api_key` credential"))?;
    Ok(request.header("X-Api-Key", key).header("Accept", "application/json"))
}

fn get(url: &str) -> Result<Value, PluginError> {
    authorized(http::Request::get(url))?.send()?.error_for_status()?.json()
}

/// A string (or integer) input field that must be present and not blank.
fn required_text(input: &Value, name: &str) -> Result<String, PluginError> {
    match input.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        _ => Err(PluginError::invalid_input(format!("the input needs a non-empty string field `{name}`"))),
    }
}

/// The query of a `list_inventory` call, in order, validated.
fn inventory_query(input: &Value) -> Result<Vec<(&'static str, String)>, PluginError> {
    if !(input.is_object() || input.is_null()) {
        return Err(PluginError::invalid_input("the input must be an object"));
    }
    let mut query = Vec::new();
    for name in ["status", "make"] {
        match input.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !s.trim().is_empty() => query.push((name, s.trim().to_string())),
            Some(Value::String(_)) => {}
            Some(_) => return Err(PluginError::invalid_input(format!("`{name}` must be a string"))),
        }
    }
    for (name, max) in [("page", u64::MAX), ("page_size", MAX_PAGE_SIZE)] {
        match input.get(name) {
            None | Some(Value::Null) => {}
            Some(value) => match value.as_u64() {
                Some(n) if (1..=max).contains(&n) => query.push((name, n.to_string())),
                _ => {
                    return Err(PluginError::invalid_input(format!(
                        "`{name}` must be an integer from 1{}",
                        if max == u64::MAX { String::new() } else { format!(" to {max}") }
                    )));
                }
            },
        }
    }
    Ok(query)
}

fn list_inventory(base: &str, input: &Value) -> Result<Value, PluginError> {
    let mut request = http::Request::get(format!("{base}/inventory"));
    for (name, value) in inventory_query(input)? {
        request = request.query(name, &value);
    }
    let answer = authorized(request)?.send()?.error_for_status()?.json()?;
    page_of(answer)
}

/// Checks an inventory page and keeps its `items` and `total`.
fn page_of(answer: Value) -> Result<Value, PluginError> {
    let Value::Object(mut fields) = answer else {
        return Err(PluginError::new("upstream_error", "the DMS inventory answer is not an object"));
    };
    let Some(Value::Array(items)) = fields.remove("items") else {
        return Err(PluginError::new("upstream_error", "the DMS inventory answer has no `items` array"));
    };
    let total = fields.get("total").and_then(Value::as_u64).unwrap_or(items.len() as u64);
    Ok(json!({ "items": items, "total": total }))
}

dibop_sdk::export_connector!(Dms);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_inventory_queries() {
        let query =
            inventory_query(&json!({"status": "in_stock", "make": " Honda ", "page": 2, "page_size": 25})).unwrap();
        assert_eq!(
            query,
            vec![
                ("status", "in_stock".to_string()),
                ("make", "Honda".to_string()),
                ("page", "2".to_string()),
                ("page_size", "25".to_string())
            ]
        );
        assert!(inventory_query(&json!({})).unwrap().is_empty());
        assert!(inventory_query(&Value::Null).unwrap().is_empty());
        assert_eq!(inventory_query(&json!({"page": 0})).unwrap_err().code, "invalid_input");
        assert_eq!(inventory_query(&json!({"page_size": 1000})).unwrap_err().code, "invalid_input");
        assert_eq!(inventory_query(&json!({"make": 3})).unwrap_err().code, "invalid_input");
        assert_eq!(inventory_query(&json!([1])).unwrap_err().code, "invalid_input");
    }

    #[test]
    fn reads_pages() {
        assert_eq!(
            page_of(json!({"items": [{"vin": "X"}], "total": 9, "page": 1})).unwrap(),
            json!({"items": [{"vin": "X"}], "total": 9})
        );
        assert_eq!(page_of(json!({"items": []})).unwrap(), json!({"items": [], "total": 0}));
        assert_eq!(page_of(json!([])).unwrap_err().code, "upstream_error");
    }

    #[test]
    fn required_fields() {
        assert_eq!(required_text(&json!({"customer_id": 17}), "customer_id").unwrap(), "17");
        assert_eq!(required_text(&json!({"customer_id": " c-1 "}), "customer_id").unwrap(), "c-1");
        assert_eq!(required_text(&json!({"customer_id": ""}), "customer_id").unwrap_err().code, "invalid_input");
        assert_eq!(required_text(&json!({}), "vin").unwrap_err().code, "invalid_input");
    }
}
