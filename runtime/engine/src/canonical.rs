//! The canonical data model: 22 automotive domains as JSON Schemas (`canonical/*.json`,
//! embedded), validated with the `jsonschema` crate. Each property carries its PII class
//! (`x-pii`: none, pii, sensitive); each schema names its natural key (`x-natural-key`).

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use dibop_core::FieldError;

/// The schema files, by domain name.
const SCHEMAS: [(&str, &str); 22] = [
    ("appointment", include_str!("../../../canonical/appointment.json")),
    ("auction_transaction", include_str!("../../../canonical/auction_transaction.json")),
    ("compliance_check", include_str!("../../../canonical/compliance_check.json")),
    ("customer", include_str!("../../../canonical/customer.json")),
    ("deal", include_str!("../../../canonical/deal.json")),
    ("depollution_record", include_str!("../../../canonical/depollution_record.json")),
    ("employee", include_str!("../../../canonical/employee.json")),
    ("eol_vehicle", include_str!("../../../canonical/eol_vehicle.json")),
    ("finance_agreement", include_str!("../../../canonical/finance_agreement.json")),
    ("lead", include_str!("../../../canonical/lead.json")),
    ("location", include_str!("../../../canonical/location.json")),
    ("order", include_str!("../../../canonical/order.json")),
    ("parking_event", include_str!("../../../canonical/parking_event.json")),
    ("part", include_str!("../../../canonical/part.json")),
    ("payroll_run", include_str!("../../../canonical/payroll_run.json")),
    ("recycler_part", include_str!("../../../canonical/recycler_part.json")),
    ("shipment", include_str!("../../../canonical/shipment.json")),
    ("title_record", include_str!("../../../canonical/title_record.json")),
    ("vehicle", include_str!("../../../canonical/vehicle.json")),
    ("vehicle_inspection", include_str!("../../../canonical/vehicle_inspection.json")),
    ("vehicle_location", include_str!("../../../canonical/vehicle_location.json")),
    ("workshop_job", include_str!("../../../canonical/workshop_job.json")),
];

/// One field of a domain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Field {
    pub name: String,
    /// string, integer, number, boolean, date, date-time or enum.
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    /// none, pii or sensitive.
    pub pii: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// One domain: its schema and what the API shows of it.
pub struct Domain {
    pub name: String,
    pub group: String,
    pub description: String,
    pub natural_key: String,
    pub fields: Vec<Field>,
    pub schema: Value,
    validator: jsonschema::Validator,
}

/// Every domain, in name order.
pub fn domains() -> &'static [Domain] {
    static DOMAINS: OnceLock<Vec<Domain>> = OnceLock::new();
    DOMAINS.get_or_init(|| SCHEMAS.iter().map(|(name, text)| load(name, text)).collect())
}

pub fn domain(name: &str) -> Option<&'static Domain> {
    domains().iter().find(|d| d.name == name)
}

fn load(name: &str, text: &str) -> Domain {
    let schema: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("canonical/{name}.json: {e}"));
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("canonical/{name}.json is not a valid schema: {e}"));
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let fields = schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(field, p)| {
            let kind = match (p["type"].as_str(), p["format"].as_str(), p.get("enum")) {
                (_, _, Some(_)) => "enum",
                (_, Some("date"), _) => "date",
                (_, Some("date-time"), _) => "date-time",
                (Some(t), _, _) => t,
                _ => "string",
            };
            Field {
                name: field.clone(),
                kind: kind.into(),
                required: required.contains(&field.as_str()),
                pii: p["x-pii"].as_str().unwrap_or("none").into(),
                description: p["description"].as_str().unwrap_or_default().into(),
                values: p["enum"].as_array().map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()),
            }
        })
        .collect();
    Domain {
        name: name.into(),
        group: schema["x-group"].as_str().unwrap_or_default().into(),
        description: schema["description"].as_str().unwrap_or_default().into(),
        natural_key: schema["x-natural-key"].as_str().unwrap_or_default().into(),
        fields,
        validator,
        schema,
    }
}

/// The first quoted name in a message (`"vin" is a required property`, `('colour' was unexpected)`).
fn quoted(message: &str) -> &str {
    let start = message.find(['"', '\'']).map_or(0, |i| i + 1);
    let rest = &message[start..];
    &rest[..rest.find(['"', '\'']).unwrap_or(rest.len())]
}

impl Domain {
    /// Every problem of `record`, by field path (`vin`, `year`, ...).
    pub fn validate(&self, record: &Value) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = self
            .validator
            .iter_errors(record)
            .map(|e| {
                let pointer = e.instance_path.to_string();
                let message = e.to_string();
                // `required` and `additionalProperties` report at the object: name the field.
                let path = match pointer.trim_start_matches('/') {
                    "" => quoted(&message).to_owned(),
                    inner => inner.replace('/', "."),
                };
                FieldError { path, message }
            })
            .collect();
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        errors
    }

    /// The record's natural key as text, when present.
    pub fn key_of(&self, record: &Value) -> Option<String> {
        match &record[&self.natural_key] {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    /// Replaces the values of pii and sensitive fields with `****` (what viewers see).
    pub fn mask(&self, record: &mut Value) {
        for field in self.fields.iter().filter(|f| f.pii != "none") {
            if let Some(value) = record.get_mut(&field.name).filter(|v| !v.is_null()) {
                *value = Value::String("****".into());
            }
        }
    }
}

/// Keys whose values are credentials wherever they appear in a payload.
const SECRET_KEYS: [&str; 13] = [
    "password",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "api_key",
    "apikey",
    "authorization",
    "credentials",
    "private_key",
    "x-api-key",
];

/// Every field name any domain classes as pii or sensitive, and the credential keys.
fn masked_keys() -> &'static std::collections::HashSet<String> {
    static KEYS: OnceLock<std::collections::HashSet<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys: std::collections::HashSet<String> = domains()
            .iter()
            .flat_map(|d| d.fields.iter().filter(|f| f.pii != "none").map(|f| f.name.to_ascii_lowercase()))
            .collect();
        keys.extend(SECRET_KEYS.iter().map(|k| (*k).to_owned()));
        keys
    })
}

/// What a viewer may see of an execution payload, a trace or an API-call preview: the values
/// of personal fields (by the canonical schemas' classes) and of credential keys become
/// `****` at any depth, also inside strings that hold JSON or form-encoded text.
pub fn mask_for_viewer(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if masked_keys().contains(&key.to_ascii_lowercase()) && !inner.is_null() {
                    *inner = Value::String("****".into());
                } else {
                    mask_for_viewer(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_for_viewer),
        Value::String(text) => {
            if let Some(masked) = mask_text(text) {
                *text = masked;
            }
        }
        _ => {}
    }
}

/// `text` with personal and credential values masked, when it is JSON or form-encoded text
/// that has any; `None` when nothing changes.
fn mask_text(text: &str) -> Option<String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut parsed: Value = serde_json::from_str(text).ok()?;
        let before = parsed.clone();
        mask_for_viewer(&mut parsed);
        return (parsed != before).then(|| parsed.to_string());
    }
    if !text.contains('=') || text.contains(char::is_whitespace) {
        return None;
    }
    let mut changed = false;
    let pairs: Vec<String> = text
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if masked_keys().contains(&key.to_ascii_lowercase()) => {
                changed = true;
                format!("{key}=****")
            }
            _ => pair.to_owned(),
        })
        .collect();
    changed.then(|| pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn viewers_see_no_personal_or_credential_values_at_any_depth() {
        let mut payload = json!({
            "parameters": {"email": "ann@example.com", "vin": "1HGCM82633A004352"},
            "steps": [{"output": {"customer": {"first_name": "Ann", "phone": "555"}, "make": "HONDA"}}],
            "preview": "{\"access_token\":\"abc\",\"n\":1}",
            "form": "grant_type=client_credentials&client_secret=s3cret",
        });
        super::mask_for_viewer(&mut payload);
        assert_eq!(payload["parameters"], json!({"email": "****", "vin": "1HGCM82633A004352"}));
        assert_eq!(payload["steps"][0]["output"]["customer"], json!({"first_name": "****", "phone": "****"}));
        assert_eq!(payload["steps"][0]["output"]["make"], "HONDA");
        assert_eq!(payload["preview"], "{\"access_token\":\"****\",\"n\":1}");
        assert_eq!(payload["form"], "grant_type=client_credentials&client_secret=****");
    }

    #[test]
    fn every_schema_loads_with_a_natural_key_and_pii_classes() {
        let domains = super::domains();
        assert_eq!(domains.len(), 22);
        for d in domains {
            assert!(d.fields.iter().any(|f| f.name == d.natural_key && f.required), "{}", d.name);
            assert!(d.fields.iter().all(|f| ["none", "pii", "sensitive"].contains(&f.pii.as_str())), "{}", d.name);
        }
        let vehicle = super::domain("vehicle").expect("vehicle");
        assert!(vehicle.validate(&json!({"vin": "1HGCM82633A004352", "year": 2003})).is_empty());
        let errors = vehicle.validate(&json!({"year": "old", "colour": "red", "first_registration_date": "yesterday"}));
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["colour", "first_registration_date", "vin", "year"], "{errors:?}");
    }
}
