//! `PUT` keeps what it does not mention: the fields a body omits keep their stored values, so a
//! client that shows only some of a resource's fields (a console form, a script that knows a
//! few) cannot reset the others by saving. `null` resets a field to its default.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::extract::parse_json;
use crate::error::AppResult;

/// `given` (a `PUT` body) completed with each field of `stored` it omits; a field of `stored` it
/// sends as `null` is left out, so it takes its default (or, when required, answers the usual
/// 422). Fields `stored` does not hold pass as sent. Parsed as `T`, errors in the API's shape.
pub fn over_stored<T: DeserializeOwned>(stored: Map<String, Value>, mut given: Map<String, Value>) -> AppResult<T> {
    for (key, value) in stored {
        match given.get(&key) {
            None => {
                given.insert(key, value);
            }
            Some(Value::Null) => {
                given.remove(&key);
            }
            Some(_) => {}
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(given)).map_err(anyhow::Error::from)?;
    parse_json(&bytes)
}

/// A stored JSON object (a definition as text); nothing when it does not read as one.
pub fn object(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
        #[serde(default)]
        tags: Vec<String>,
        limit: Option<u32>,
        extra: Option<Value>,
    }

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(fields) => fields,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn omitted_fields_keep_their_stored_values_and_null_resets_them() {
        let stored = map(json!({"name": "a", "tags": ["x"], "limit": 3}));
        let kept: Body = over_stored(stored.clone(), map(json!({"name": "b"}))).expect("parses");
        assert_eq!(kept, Body { name: "b".into(), tags: vec!["x".into()], limit: Some(3), extra: None });
        let reset: Body = over_stored(stored.clone(), map(json!({"tags": null, "limit": null}))).expect("parses");
        assert_eq!(reset, Body { name: "a".into(), tags: vec![], limit: None, extra: None });
        // A field the stored object does not hold passes as sent, null included.
        let passed: Body = over_stored(stored, map(json!({"extra": null}))).expect("parses");
        assert_eq!(passed.extra, None);
    }

    #[test]
    fn a_required_field_sent_as_null_is_refused_at_its_path() {
        let stored = map(json!({"name": "a"}));
        let Err(crate::error::AppError::Validation(details)) = over_stored::<Body>(stored, map(json!({"name": null})))
        else {
            panic!("not refused");
        };
        assert_eq!(details[0].path, "name");
    }
}
