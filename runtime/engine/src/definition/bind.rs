//! A run's parameters bound to the definition's declaration: defaults filled, types checked,
//! required ones present.

use super::*;

/// Checks `given` parameters against the declaration and fills defaults.
pub fn bind_parameters(def: &Definition, given: &serde_json::Map<String, Value>) -> Result<Value, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut bound = serde_json::Map::new();
    for p in &def.parameters {
        let path = format!("parameters.{}", p.name);
        match given.get(&p.name).filter(|v| !v.is_null()).or(p.default.as_ref()) {
            None if p.required => errors.push(FieldError { path, message: "is required".into() }),
            None => {}
            Some(value) => {
                if p.kind.holds(value) {
                    bound.insert(p.name.clone(), value.clone());
                } else {
                    errors.push(FieldError { path, message: format!("must be of type {}", p.kind) });
                }
            }
        }
    }
    for name in given.keys() {
        if !def.parameters.iter().any(|p| &p.name == name) {
            errors
                .push(FieldError { path: format!("parameters.{name}"), message: "is not a declared parameter".into() });
        }
    }
    if errors.is_empty() { Ok(Value::Object(bound)) } else { Err(errors) }
}
