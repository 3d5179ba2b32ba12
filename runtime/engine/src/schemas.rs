//! Operation schemas. Input schemas are enforced before a connector is called: an input that
//! does not match the `input_schema` its plugin declared fails the call `invalid_input`, listing
//! each field, and the plugin never sees it. Output schemas are enforced after the call on
//! connections that ask for it (`validate_output`): an output that does not match fails the call
//! `invalid_output`. Operations a plugin does not declare (the generic REST connector takes its
//! operations from the connection) and schemas that constrain nothing are passed through.
//! Compiled validators are kept per plugin version and operation (versions never change).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use dibop_plugin_host::{CallError, PluginInfo};
use serde_json::Value;

/// Most compiled validators kept; the map starts over when full.
const MAX_KEPT: usize = 2048;
/// Most problems listed in one error.
const MAX_LISTED: usize = 20;

/// Validators by plugin version id, then operation (None: nothing to enforce). Read on every
/// call without allocating; written once per plugin version and operation.
#[derive(Default)]
struct Kept {
    by_plugin: HashMap<String, HashMap<String, Option<Arc<jsonschema::Validator>>>>,
    entries: usize,
}

/// Which of an operation's schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Input,
    Output,
}

fn kept(side: Side) -> &'static RwLock<Kept> {
    static INPUT: OnceLock<RwLock<Kept>> = OnceLock::new();
    static OUTPUT: OnceLock<RwLock<Kept>> = OnceLock::new();
    match side {
        Side::Input => &INPUT,
        Side::Output => &OUTPUT,
    }
    .get_or_init(|| RwLock::new(Kept::default()))
}

/// The validator of one schema of `operation` of the plugin version `plugin_id` described by
/// `info` (its `describe()` answer as stored), or None when there is nothing to enforce.
fn validator(plugin_id: &str, info: &str, operation: &str, side: Side) -> Option<Arc<jsonschema::Validator>> {
    let found = kept(side)
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .by_plugin
        .get(plugin_id)
        .and_then(|ops| ops.get(operation).cloned());
    if let Some(found) = found {
        return found;
    }
    let compiled = serde_json::from_str::<PluginInfo>(info)
        .ok()
        .and_then(|info| info.operations.into_iter().find(|o| o.name == operation))
        .map(|o| if side == Side::Input { o.input_schema } else { o.output_schema })
        .filter(constrains)
        .and_then(|schema| match jsonschema::validator_for(&schema) {
            Ok(v) => Some(Arc::new(v)),
            Err(err) => {
                // Uploads refuse such schemas; one stored before that check is not enforced.
                tracing::warn!(plugin_id, operation, ?side, %err, "schema does not compile; not enforced");
                None
            }
        });
    let mut kept = kept(side).write().unwrap_or_else(|e| e.into_inner());
    if kept.entries >= MAX_KEPT {
        *kept = Kept::default();
    }
    kept.entries += 1;
    kept.by_plugin.entry(plugin_id.to_owned()).or_default().insert(operation.to_owned(), compiled.clone());
    compiled
}

/// Whether a schema constrains anything (`{}`, `true` and null accept every input).
fn constrains(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => !map.is_empty(),
        Value::Bool(accepts) => !accepts,
        _ => false,
    }
}

/// Checks `input` against the operation's declared input schema.
pub fn check_input(plugin_id: &str, info: &str, operation: &str, input: &Value) -> Result<(), CallError> {
    check(plugin_id, info, operation, input, Side::Input)
}

/// Checks a call's `output` against the operation's declared output schema.
pub fn check_output(plugin_id: &str, info: &str, operation: &str, output: &Value) -> Result<(), CallError> {
    check(plugin_id, info, operation, output, Side::Output)
}

fn check(plugin_id: &str, info: &str, operation: &str, value: &Value, side: Side) -> Result<(), CallError> {
    let Some(validator) = validator(plugin_id, info, operation, side) else { return Ok(()) };
    let problems: Vec<String> = validator
        .iter_errors(value)
        .take(MAX_LISTED + 1)
        .map(|e| {
            let at = e.instance_path.to_string();
            let whole = if side == Side::Input { "(input)" } else { "(output)" };
            let field = if at.is_empty() { whole.to_owned() } else { at.trim_start_matches('/').replace('/', ".") };
            format!("{field}: {e}")
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    let more = if problems.len() > MAX_LISTED { " (and more)" } else { "" };
    let listed = problems.iter().take(MAX_LISTED).cloned().collect::<Vec<_>>().join("; ");
    let (code, what) = match side {
        Side::Input => ("invalid_input", "input"),
        Side::Output => ("invalid_output", "output"),
    };
    Err(CallError {
        code: code.into(),
        message: format!("the {what} does not match the {what}_schema of {operation}: {listed}{more}"),
        retryable: false,
        http_status: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn info(schema: &Value) -> String {
        json!({"world": "connector", "slug": "s", "name": "S", "version": "1.0.0", "description": "",
               "config": [], "operations": [{"name": "op", "method": "GET", "path": "/", "description": "",
               "input_schema": schema, "output_schema": {"type": "object", "required": ["make"]}}]})
        .to_string()
    }

    #[test]
    fn outputs_are_checked_against_the_output_schema() {
        let info = info(&json!({}));
        assert!(check_output("p4", &info, "op", &json!({"make": "HONDA"})).is_ok());
        let err = check_output("p4", &info, "op", &json!({"model": "Civic"})).expect_err("invalid");
        assert_eq!(err.code, "invalid_output");
        assert!(err.message.contains("(output): \"make\" is a required property"), "{}", err.message);
        // The input side of the same operation constrains nothing.
        assert!(check_input("p4", &info, "op", &json!({"model": "Civic"})).is_ok());
    }

    use super::*;

    #[test]
    fn every_problem_is_listed_by_field_and_the_plugin_is_not_called() {
        let info = info(&json!({"type": "object", "required": ["vin"],
            "properties": {"vin": {"type": "string", "pattern": "^[A-Z0-9]{17}$"}, "year": {"type": "integer"}}}));
        assert!(check_input("p1", &info, "op", &json!({"vin": "1HGCM82633A004352"})).is_ok());
        let err = check_input("p1", &info, "op", &json!({"vin": "short", "year": "x"})).expect_err("invalid");
        assert_eq!(err.code, "invalid_input");
        assert!(err.message.contains("vin: ") && err.message.contains("year: "), "{}", err.message);
        let missing = check_input("p1", &info, "op", &json!({})).expect_err("missing");
        assert!(missing.message.contains("(input): \"vin\" is a required property"), "{}", missing.message);
    }

    #[test]
    fn undeclared_operations_and_open_schemas_pass() {
        let open = info(&json!({}));
        assert!(check_input("p2", &open, "op", &json!(42)).is_ok());
        assert!(check_input("p2", &open, "other", &json!(42)).is_ok());
        assert!(check_input("p3", "not json", "op", &json!(1)).is_ok());
    }
}
