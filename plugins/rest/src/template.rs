//! Templates that build requests from an operation's input.
//!
//! - In a path, `{name}` is replaced by the input field `name` (a dotted path such as
//!   `{customer.id}` reaches into objects), percent-encoded. `${input.x}` works too.
//! - Anywhere else (query values, headers, body) a template is a JSON value whose strings
//!   may hold references: `"${input}"` is the whole input, `"${input.customer.name}"` one
//!   field (array elements by index: `${input.items.0}`). A string that is exactly one
//!   reference becomes the referenced value with its JSON type (a missing field is `null`);
//!   references inside longer strings are replaced by their text.

use dibop_sdk::{PluginError, Value, http};

/// Renders a template (see the module docs) against `input`.
pub fn render(template: &Value, input: &Value) -> Result<Value, PluginError> {
    Ok(match template {
        Value::String(s) => render_str(s, input)?,
        Value::Array(items) => Value::Array(items.iter().map(|t| render(t, input)).collect::<Result<_, _>>()?),
        Value::Object(fields) => Value::Object(
            fields.iter().map(|(k, t)| Ok((k.clone(), render(t, input)?))).collect::<Result<_, PluginError>>()?,
        ),
        other => other.clone(),
    })
}

/// Renders one template string: a lone reference keeps its JSON type, otherwise references
/// are interpolated as text.
fn render_str(template: &str, input: &Value) -> Result<Value, PluginError> {
    if let Some(expr) = template.strip_prefix("${").and_then(|rest| rest.strip_suffix('}'))
        && !expr.contains('}')
    {
        return resolve(expr, input);
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&to_text(&resolve(&rest[start + 2..start + 2 + len], input)?));
        rest = &rest[start + 2 + len + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// Renders an XML body template: references are replaced by their text, XML-escaped (so an
/// input value can never add markup).
pub fn render_xml(template: &str, input: &Value) -> Result<String, PluginError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&dibop_sdk::xml::escape(&to_text(&resolve(&rest[start + 2..start + 2 + len], input)?)));
        rest = &rest[start + 2 + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves `input` or `input.a.b.0` against the input; missing fields are `null`.
fn resolve(expr: &str, input: &Value) -> Result<Value, PluginError> {
    let expr = expr.trim();
    let path = match expr.strip_prefix("input") {
        Some("") => return Ok(input.clone()),
        Some(path) if path.starts_with('.') => &path[1..],
        _ => {
            return Err(PluginError::invalid_input(format!(
                "unsupported reference `${{{expr}}}` in the connection's operation template: references start with `input`"
            )));
        }
    };
    Ok(lookup(input, path).cloned().unwrap_or(Value::Null))
}

/// Follows a dotted path (`a.b.0`) into a value.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |current, segment| match current {
        Value::Object(fields) => fields.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The text of a value in a string context: strings as they are, `null` as nothing, other
/// values as JSON.
pub fn to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Fills `{name}` and `${input.name}` placeholders of a path template with percent-encoded
/// input fields. A missing, `null`, object or array field is an `invalid_input` error.
pub fn fill_path(template: &str, input: &Value) -> Result<String, PluginError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open + 1..].find('}') else { break };
        let name = rest[open + 1..open + 1 + len].trim();
        let dollar = rest[..open].ends_with('$');
        out.push_str(&rest[..if dollar { open - 1 } else { open }]);
        let value = if dollar { resolve(name, input)? } else { lookup(input, name).cloned().unwrap_or(Value::Null) };
        match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => out.push_str(&http::encode(&to_text(&value))),
            Value::Null => {
                return Err(PluginError::invalid_input(format!("the input needs the field `{name}` for the path")));
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(PluginError::invalid_input(format!(
                    "the input field `{name}` must be a string or a number to be used in the path"
                )));
            }
        }
        rest = &rest[open + 1 + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dibop_sdk::json;

    fn input() -> Value {
        json!({"id": "a b/1", "n": 7, "customer": {"name": "Ada", "tags": ["x", "y"]}, "flag": true})
    }

    #[test]
    fn whole_references_keep_their_type() {
        assert_eq!(render(&json!("${input}"), &input()).unwrap(), input());
        assert_eq!(render(&json!("${input.n}"), &input()).unwrap(), json!(7));
        assert_eq!(render(&json!("${ input.customer }"), &input()).unwrap(), input()["customer"]);
        assert_eq!(render(&json!("${input.customer.tags.1}"), &input()).unwrap(), json!("y"));
        assert_eq!(render(&json!("${input.missing.deep}"), &input()).unwrap(), Value::Null);
    }

    #[test]
    fn interpolates_inside_strings() {
        assert_eq!(render(&json!("Hi ${input.customer.name}, #${input.n}!"), &input()).unwrap(), json!("Hi Ada, #7!"));
        assert_eq!(render(&json!("${input.n}-${input.flag}"), &input()).unwrap(), json!("7-true"));
        assert_eq!(render(&json!("no refs ${ unterminated"), &input()).unwrap(), json!("no refs ${ unterminated"));
        assert_eq!(render(&json!("x${input.missing}y"), &input()).unwrap(), json!("xy"));
    }

    #[test]
    fn renders_nested_templates() {
        let template = json!({"name": "${input.customer.name}", "meta": {"n": "${input.n}", "fixed": 1},
                              "list": ["${input.flag}", "id=${input.id}"]});
        assert_eq!(
            render(&template, &input()).unwrap(),
            json!({"name": "Ada", "meta": {"n": 7, "fixed": 1}, "list": [true, "id=a b/1"]})
        );
    }

    #[test]
    fn rejects_foreign_references() {
        assert_eq!(render(&json!("${secrets.api_key}"), &input()).unwrap_err().code, "invalid_input");
        assert_eq!(render(&json!("${inputs}"), &input()).unwrap_err().code, "invalid_input");
    }

    #[test]
    fn xml_templates_escape_what_they_interpolate() {
        let input = json!({"name": "Tom & <Jerry>", "n": 7});
        let xml = render_xml("<lead><name>${input.name}</name><n>${input.n}</n><x>${input.none}</x></lead>", &input);
        assert_eq!(xml.unwrap(), "<lead><name>Tom &amp; &lt;Jerry&gt;</name><n>7</n><x></x></lead>");
        assert_eq!(render_xml("${secrets.x}", &input).unwrap_err().code, "invalid_input");
    }

    #[test]
    fn fills_paths() {
        assert_eq!(fill_path("/items/{id}/n/{n}", &input()).unwrap(), "/items/a%20b%2F1/n/7");
        assert_eq!(fill_path("/c/{customer.name}", &input()).unwrap(), "/c/Ada");
        assert_eq!(fill_path("/c/${input.customer.name}/x", &input()).unwrap(), "/c/Ada/x");
        assert_eq!(fill_path("/plain", &input()).unwrap(), "/plain");
        assert_eq!(fill_path("/x/{missing}", &input()).unwrap_err().code, "invalid_input");
        assert_eq!(fill_path("/x/{customer}", &input()).unwrap_err().code, "invalid_input");
    }
}
