//! `vpic`: a DIBOP connector for the NHTSA vPIC API (Vehicle Product Information Catalog),
//! the US public service that decodes VINs.
//!
//! Connection settings: `base_url` (optional, default `https://vpic.nhtsa.dot.gov/api`) and
//! the optional credential `api_key`, sent as `X-Api-Key` when set (for proxies or mirrors
//! that want one; the public service needs none).
//!
//! Operation `decode_vin` (`{"vin": "..."}`) calls
//! `GET {base_url}/vehicles/DecodeVinValues/{vin}?format=json` and answers
//! `{"vin", "make", "model", "year", "trim", "body_class", "engine_type", "fuel_type"}`.

use dibop_sdk::{
    AuthType, CallContext, ConfigKey, Connector, ConnectorInfo, Health, Operation, PluginError, SystemType, Value,
    config, http, json, secrets,
};

/// The public vPIC service.
const DEFAULT_BASE_URL: &str = "https://vpic.nhtsa.dot.gov/api";

struct Vpic;

impl Connector for Vpic {
    fn describe() -> ConnectorInfo {
        let nullable_string = json!({"type": ["string", "null"]});
        ConnectorInfo {
            slug: "vpic".into(),
            name: "NHTSA vPIC".into(),
            system_type: SystemType::General,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Decodes VINs with the US National Highway Traffic Safety Administration's public vPIC API."
                .into(),
            auth: AuthType::None,
            config: vec![
                ConfigKey::optional("base_url", format!("Base URL of the vPIC API (default {DEFAULT_BASE_URL})")),
                ConfigKey::secret("api_key", "Optional key sent as the X-Api-Key header", false),
            ],
            operations: vec![
                Operation::new(
                    "decode_vin",
                    "GET",
                    "/vehicles/DecodeVinValues/{vin}",
                    "Decodes a 17-character VIN into make, model, model year, trim, body, engine and fuel.",
                )
                .input_schema(json!({
                    "type": "object",
                    "required": ["vin"],
                    "properties": {
                        "vin": {"type": "string", "pattern": "^[A-HJ-NPR-Za-hj-npr-z0-9]{17}$"}
                    }
                }))
                .output_schema(json!({
                    "type": "object",
                    "properties": {
                        "vin": {"type": "string"},
                        "make": nullable_string,
                        "model": nullable_string,
                        "year": {"type": ["integer", "string", "null"]},
                        "trim": nullable_string,
                        "body_class": nullable_string,
                        "engine_type": nullable_string,
                        "fuel_type": nullable_string
                    }
                })),
            ],
        }
    }

    fn invoke(operation: &str, input: Value, _ctx: &CallContext) -> Result<Value, PluginError> {
        match operation {
            "decode_vin" => decode_vin(&input),
            other => Err(PluginError::invalid_input(format!("unknown operation `{other}`; vpic offers `decode_vin`"))),
        }
    }

    fn ping() -> Health {
        let url = format!("{}/vehicles/GetMakesForVehicleType/car?format=json", base_url());
        match request(&url).send() {
            Ok(response) => Health::from_http_status(response.status),
            Err(err) => Health::offline(err.message),
        }
    }
}

fn base_url() -> String {
    config::string("base_url")
        .map(|url| url.trim().trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
}

fn request(url: &str) -> http::Request {
    let request = http::Request::get(url).header("Accept", "application/json");
    match secrets::get("api_key") {
        Some(key) => request.header("X-Api-Key", key),
        None => request,
    }
}

fn decode_vin(input: &Value) -> Result<Value, PluginError> {
    let vin = input
        .get("vin")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::invalid_input("the input needs a string field `vin`"))?;
    let vin = normalize_vin(vin)?;
    let url = format!("{}/vehicles/DecodeVinValues/{vin}?format=json", base_url());
    let response = request(&url).send()?;
    if !response.is_success() {
        return Err(PluginError::upstream(
            response.status,
            format!("vPIC answered HTTP {} for VIN {vin}", response.status),
        ));
    }
    summarize(&vin, &response.json()?)
}

/// Trims and upper-cases a VIN and checks that it has 17 letters or digits other than
/// I, O and Q.
fn normalize_vin(vin: &str) -> Result<String, PluginError> {
    let vin = vin.trim().to_ascii_uppercase();
    if vin.len() != 17 || !vin.bytes().all(|b| b.is_ascii_alphanumeric() && !matches!(b, b'I' | b'O' | b'Q')) {
        return Err(PluginError::invalid_input(format!(
            "{vin:?} is not a VIN: expected 17 letters or digits, without I, O or Q"
        )));
    }
    Ok(vin)
}

/// Turns a `DecodeVinValues` answer into the connector's output.
fn summarize(vin: &str, answer: &Value) -> Result<Value, PluginError> {
    let not_found = || PluginError::not_found(format!("vPIC knows no vehicle for VIN {vin}"));
    let result = answer.get("Results").and_then(Value::as_array).and_then(|r| r.first()).ok_or_else(not_found)?;
    let field = |name: &str| -> Option<String> {
        match result.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    let make = field("Make").ok_or_else(not_found)?;
    let year = field("ModelYear").map(|y| match y.parse::<u32>() {
        Ok(n) => json!(n),
        Err(_) => json!(y),
    });
    let engine_type = field("EngineModel").or_else(|| engine_summary(&field));
    Ok(json!({
        "vin": vin,
        "make": make,
        "model": field("Model"),
        "year": year,
        "trim": field("Trim"),
        "body_class": field("BodyClass"),
        "engine_type": engine_type,
        "fuel_type": field("FuelTypePrimary"),
    }))
}

/// Describes the engine from its parts, e.g. `2.4L In-Line 4-cyl`; `None` when vPIC has
/// none of them.
fn engine_summary(field: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(litres) = field("DisplacementL") {
        match litres.parse::<f64>() {
            Ok(l) => parts.push(format!("{l:.1}L")),
            Err(_) => parts.push(format!("{litres}L")),
        }
    }
    if let Some(configuration) = field("EngineConfiguration") {
        parts.push(configuration);
    }
    if let Some(cylinders) = field("EngineCylinders") {
        parts.push(format!("{cylinders}-cyl"));
    }
    if parts.is_empty() { None } else { Some(parts.join(" ")) }
}

dibop_sdk::export_connector!(Vpic);

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(result: Value) -> Value {
        json!({"Count": 1, "Message": "Results returned successfully", "SearchCriteria": "VIN:1HGCM82633A004352",
               "Results": [result]})
    }

    #[test]
    fn validates_vins() {
        assert_eq!(normalize_vin(" 1hgcm82633a004352 ").unwrap(), "1HGCM82633A004352");
        assert_eq!(normalize_vin("1HGCM82633A00435").unwrap_err().code, "invalid_input");
        assert_eq!(normalize_vin("1HGCM82633A00435O").unwrap_err().code, "invalid_input");
        assert_eq!(normalize_vin("1HGCM82633A00435-").unwrap_err().code, "invalid_input");
    }

    #[test]
    fn summarizes_a_decoded_vin() {
        let out = summarize(
            "1HGCM82633A004352",
            &answer(json!({
                "Make": "HONDA", "Model": "Accord", "ModelYear": "2003", "Trim": "EX", "BodyClass": "Coupe",
                "FuelTypePrimary": "Gasoline", "EngineModel": "", "EngineConfiguration": "In-Line",
                "EngineCylinders": "4", "DisplacementL": "2.354935", "ErrorCode": "0"
            })),
        );
        let out = out.unwrap();
        assert_eq!(out["year"], json!(2003));
        assert_eq!(out["make"], json!("HONDA"));
        assert_eq!(out["engine_type"], json!("2.4L In-Line 4-cyl"));
        assert_eq!(out["trim"], json!("EX"));
    }

    #[test]
    fn prefers_engine_model_and_nulls_empty_fields() {
        let out = summarize(
            "1HGCM82633A004352",
            &answer(json!({"Make": "HONDA", "Model": "", "ModelYear": "", "EngineModel": "K24A4"})),
        )
        .unwrap();
        assert_eq!(out["engine_type"], json!("K24A4"));
        assert_eq!(out["model"], Value::Null);
        assert_eq!(out["year"], Value::Null);
        assert_eq!(out["fuel_type"], Value::Null);
    }

    #[test]
    fn unknown_vehicles_are_not_found() {
        let err = summarize("1HGCM82633A004352", &answer(json!({"Make": "", "ErrorCode": "1"}))).unwrap_err();
        assert_eq!(err.code, "not_found");
        let err = summarize("1HGCM82633A004352", &json!({"Count": 0, "Results": []})).unwrap_err();
        assert_eq!(err.code, "not_found");
    }
}
