//! Turning an operation and its input into a concrete request, without any I/O.

use dibop_sdk::{PluginError, Value};

use crate::template::{fill_path, render, render_xml, to_text};

/// A request ready to be authenticated and sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Upper-case method.
    pub method: String,
    /// Path (with leading `/`) relative to the base URL, without query.
    pub path: String,
    /// Query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// JSON body, if any (for an XML operation, the rendered document as a string).
    pub body: Option<Value>,
    /// The XML content type of an operation with `content_type` set to one.
    pub xml: Option<String>,
}

impl Planned {
    /// The full URL under `base_url` (which has no trailing slash), query included.
    pub fn url(&self, base_url: &str) -> String {
        let mut url = format!("{base_url}{}", self.path);
        for (i, (name, value)) in self.query.iter().enumerate() {
            url.push(if i == 0 && !self.path.contains('?') { '?' } else { '&' });
            url.push_str(&dibop_sdk::http::encode(name));
            url.push('=');
            url.push_str(&dibop_sdk::http::encode(value));
        }
        url
    }
}

/// Plans the built-in `request` operation: `{"method"?, "path", "query"?, "headers"?, "body"?}`,
/// taken literally (no templates).
pub fn plan_generic(input: &Value) -> Result<Planned, PluginError> {
    let method = match input.get("method") {
        None | Some(Value::Null) => "GET".to_string(),
        Some(Value::String(m)) => method(m)?,
        Some(_) => return Err(PluginError::invalid_input("`method` must be a string")),
    };
    let path = input
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::invalid_input("the `request` operation needs a string field `path`"))?;
    let mut query = Vec::new();
    match input.get("query") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (name, value) in fields {
                push_query(&mut query, name, value);
            }
        }
        Some(_) => return Err(PluginError::invalid_input("`query` must be an object")),
    }
    let headers = match input.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(fields)) => {
            fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), to_text(v))).collect()
        }
        Some(_) => return Err(PluginError::invalid_input("`headers` must be an object")),
    };
    let body = input.get("body").filter(|b| !b.is_null()).cloned();
    Ok(Planned { method, path: relative_path(path)?, query, headers, body, xml: None })
}

/// Plans an operation defined in the connection's `operations` setting:
/// `{"method"?, "path", "query"?, "headers"?, "body"?}` with templates (see [`crate::template`]).
pub fn plan_configured(name: &str, spec: &Value, input: &Value) -> Result<Planned, PluginError> {
    let misconfigured = |why: &str| PluginError::invalid_input(format!("operation `{name}` is misconfigured: {why}"));
    let spec = spec.as_object().ok_or_else(|| misconfigured("it must be an object"))?;
    let method = match spec.get("method") {
        None | Some(Value::Null) => "GET".to_string(),
        Some(Value::String(m)) => method(m)?,
        Some(_) => return Err(misconfigured("`method` must be a string")),
    };
    let path_template = spec.get("path").and_then(Value::as_str).ok_or_else(|| misconfigured("`path` is required"))?;
    let path = relative_path(&fill_path(path_template, input)?)?;

    let mut query = Vec::new();
    match spec.get("query") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (name, template) in fields {
                push_query(&mut query, name, &render(template, input)?);
            }
        }
        Some(_) => return Err(misconfigured("`query` must be an object")),
    }
    let mut headers = Vec::new();
    match spec.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (name, template) in fields {
                let value = render(template, input)?;
                if !value.is_null() {
                    headers.push((name.clone(), to_text(&value)));
                }
            }
        }
        Some(_) => return Err(misconfigured("`headers` must be an object")),
    }
    let xml = match spec.get("content_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if dibop_sdk::xml::is_xml(t) => Some(t.clone()),
        Some(Value::String(t))
            if t.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json")) =>
        {
            None
        }
        Some(_) => return Err(misconfigured("`content_type` must be application/json or an XML type")),
    };
    let body = match (spec.get("body"), &xml) {
        (None | Some(Value::Null), _) => None,
        (Some(Value::String(template)), Some(_)) => Some(Value::String(render_xml(template, input)?)),
        (Some(_), Some(_)) => return Err(misconfigured("an XML `body` must be a string template")),
        (Some(template), None) => Some(render(template, input)?),
    };
    Ok(Planned { method, path, query, headers, body, xml })
}

/// Adds a query parameter: `null` is left out, arrays repeat the parameter.
fn push_query(query: &mut Vec<(String, String)>, name: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items.iter().filter(|i| !i.is_null()) {
                query.push((name.to_string(), to_text(item)));
            }
        }
        other => query.push((name.to_string(), to_text(other))),
    }
}

fn method(method: &str) -> Result<String, PluginError> {
    let method = method.trim().to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(PluginError::invalid_input(format!("{method:?} is not an HTTP method")));
    }
    Ok(method)
}

/// A path relative to the base URL, with a leading slash; absolute URLs are refused so a
/// call cannot leave the configured system.
fn relative_path(path: &str) -> Result<String, PluginError> {
    let path = path.trim();
    if path.contains("://") || path.starts_with("//") {
        return Err(PluginError::invalid_input("`path` must be relative to the connection's base_url"));
    }
    Ok(if path.starts_with('/') { path.to_string() } else { format!("/{path}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dibop_sdk::json;

    #[test]
    fn generic_requests() {
        let p = plan_generic(&json!({"path": "orders", "query": {"q": "a b", "n": 2, "skip": null, "t": ["x", "y"]}}))
            .unwrap();
        assert_eq!(p.method, "GET");
        // Objects keep their keys sorted, so parameters come in name order.
        assert_eq!(p.url("https://h/api"), "https://h/api/orders?n=2&q=a%20b&t=x&t=y");
        assert_eq!(p.body, None);

        let p = plan_generic(&json!({"method": "post", "path": "/o?x=1", "query": {"y": 2}, "body": {"a": 1},
                                     "headers": {"X-A": "1", "X-N": 5}}))
        .unwrap();
        assert_eq!(p.method, "POST");
        assert_eq!(p.url("https://h"), "https://h/o?x=1&y=2");
        assert_eq!(p.body, Some(json!({"a": 1})));
        assert_eq!(p.headers, vec![("X-A".to_string(), "1".to_string()), ("X-N".to_string(), "5".to_string())]);

        assert_eq!(plan_generic(&json!({})).unwrap_err().code, "invalid_input");
        assert_eq!(plan_generic(&json!({"path": "https://evil/x"})).unwrap_err().code, "invalid_input");
        assert_eq!(plan_generic(&json!({"path": "/x", "method": "G T"})).unwrap_err().code, "invalid_input");
    }

    #[test]
    fn xml_operations_render_an_escaped_document() {
        let spec = json!({"method": "POST", "path": "/bods", "content_type": "application/xml",
                          "body": "<Lead><Name>${input.name}</Name></Lead>"});
        let p = plan_configured("lead", &spec, &json!({"name": "A & B"})).unwrap();
        assert_eq!(p.xml.as_deref(), Some("application/xml"));
        assert_eq!(p.body, Some(json!("<Lead><Name>A &amp; B</Name></Lead>")));
        let object_body = json!({"path": "/x", "content_type": "text/xml", "body": {"a": 1}});
        assert_eq!(plan_configured("x", &object_body, &json!({})).unwrap_err().code, "invalid_input");
        let unknown = json!({"path": "/x", "content_type": "text/csv"});
        assert_eq!(plan_configured("x", &unknown, &json!({})).unwrap_err().code, "invalid_input");
        let json_type = json!({"path": "/x", "content_type": "application/json", "body": {"a": 1}});
        assert_eq!(plan_configured("x", &json_type, &json!({})).unwrap().xml, None);
    }

    #[test]
    fn configured_operations() {
        let spec = json!({
            "method": "PUT",
            "path": "/customers/{id}",
            "query": {"notify": "${input.notify}", "source": "dibop"},
            "headers": {"X-Customer": "${input.customer.name}"},
            "body": {"name": "${input.customer.name}", "age": "${input.customer.age}", "raw": "${input}"}
        });
        let input = json!({"id": 42, "notify": true, "customer": {"name": "Ada", "age": 36}});
        let p = plan_configured("update", &spec, &input).unwrap();
        assert_eq!(p.method, "PUT");
        assert_eq!(p.url("http://h"), "http://h/customers/42?notify=true&source=dibop");
        assert_eq!(p.headers, vec![("X-Customer".to_string(), "Ada".to_string())]);
        assert_eq!(p.body, Some(json!({"name": "Ada", "age": 36, "raw": input})));

        let p = plan_configured("list", &json!({"path": "/things"}), &json!({})).unwrap();
        assert_eq!((p.method.as_str(), p.path.as_str(), p.body), ("GET", "/things", None));

        assert_eq!(plan_configured("x", &json!("nope"), &json!({})).unwrap_err().code, "invalid_input");
        assert_eq!(plan_configured("x", &json!({"method": "GET"}), &json!({})).unwrap_err().code, "invalid_input");
        assert!(plan_configured("x", &json!({"path": "/a/{id}"}), &json!({})).unwrap_err().message.contains("id"));
    }
}
