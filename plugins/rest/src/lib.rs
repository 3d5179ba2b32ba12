//! `rest`: a DIBOP connector for any JSON REST API, configured entirely by its connection.
//!
//! Connection settings (non-secret):
//!
//! - `base_url` (required): e.g. `https://api.example.com/v2`.
//! - `auth` (optional, default none): `{"type": "none" | "api_key" | "basic" | "bearer" | "oauth2", ...}`.
//!   - `api_key`: the credential `api_key` is sent in the header `header` (default
//!     `X-Api-Key`), or as the query parameter `query_param` when that is set.
//!   - `basic`: credentials `username` and `password`.
//!   - `bearer`: credential `token`.
//!   - `oauth2` (client credentials): `token_url` (absolute, or a path under `base_url`),
//!     optional `scope`, optional `client_auth` (`"basic"`, the default, sends `client_id`
//!     and `client_secret` as HTTP Basic; `"form"` sends them in the form). The access
//!     token is fetched once per call.
//! - `operations` (optional): named operations, each
//!   `{"method"?: "GET", "path": "/customers/{id}", "query"?: {...}, "headers"?: {...}, "body"?: ...,
//!   "content_type"?: "application/json"}` with templates as described in [`template`]. With an
//!   XML `content_type` (`application/xml`, `text/xml`, `application/*+xml`) the body is a
//!   string template of the document whose references are XML-escaped, sent with that type.
//! - `headers` (optional): headers sent with every request.
//! - `ping_path` (optional, default `/`): what [`ping`](Connector::ping) GETs.
//!
//! Operations: the built-in `request` (`{"method"?, "path", "query"?, "headers"?, "body"?}`,
//! taken literally) and every operation named in `operations` (which wins over `request` if
//! it defines one). The output is the answer's body as JSON; an XML answer (by its
//! `Content-Type`, or a body that starts with `<`) as JSON by the rule of `dibop_sdk::xml`;
//! `{"text": ...}` when it is neither, or `null` when it is empty. Error statuses become errors: 404 `not_found`, 401 and
//! 403 `unauthorized`, others `upstream_error` (retryable for 5xx and 429). Non-GET requests
//! carry the call's idempotency key as `Idempotency-Key`.

pub mod plan;
pub mod template;

use dibop_sdk::{
    AuthType, CallContext, ConfigKey, Connector, ConnectorInfo, Health, Operation, PluginError, SystemType, Value,
    config, http, json, secrets, serde_json,
};

use crate::plan::{Planned, plan_configured, plan_generic};

struct Rest;

impl Connector for Rest {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            slug: "rest".into(),
            name: "Generic REST".into(),
            system_type: SystemType::General,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Calls any JSON REST API; authentication and named operations come from the connection's \
                          configuration."
                .into(),
            auth: AuthType::None,
            config: vec![
                ConfigKey::required("base_url", "Base URL of the API, e.g. https://api.example.com/v2"),
                ConfigKey::optional(
                    "auth",
                    "Authentication: {\"type\": \"none|api_key|basic|bearer|oauth2\", \"header\", \"query_param\", \
                     \"token_url\", \"scope\", \"client_auth\"}",
                ),
                ConfigKey::optional(
                    "operations",
                    "Named operations: {name: {\"method\", \"path\", \"query\", \"headers\", \"body\"}} with {field} \
                     path placeholders and ${input.field} templates",
                ),
                ConfigKey::optional("headers", "Headers sent with every request"),
                ConfigKey::optional("ping_path", "Path the health check GETs (default /)"),
                ConfigKey::secret("api_key", "API key (auth type api_key)", false),
                ConfigKey::secret("username", "User name (auth type basic)", false),
                ConfigKey::secret("password", "Password (auth type basic)", false),
                ConfigKey::secret("token", "Bearer token (auth type bearer)", false),
                ConfigKey::secret("client_id", "OAuth 2.0 client id (auth type oauth2)", false),
                ConfigKey::secret("client_secret", "OAuth 2.0 client secret (auth type oauth2)", false),
            ],
            operations: vec![
                Operation::new(
                    "request",
                    "ANY",
                    "{path}",
                    "Sends one request under base_url. Operations named in the connection's `operations` setting \
                     can be invoked too.",
                )
                .input_schema(json!({
                    "type": "object",
                    "required": ["path"],
                    "properties": {
                        "method": {"type": "string", "default": "GET"},
                        "path": {"type": "string", "description": "Relative to base_url; may include a query"},
                        "query": {"type": "object", "additionalProperties": {}},
                        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                        "body": {"description": "Sent as JSON"}
                    }
                }))
                .output_schema(json!({"description": "The answer's JSON body, or {\"text\": ...}"})),
            ],
        }
    }

    fn invoke(operation: &str, input: Value, ctx: &CallContext) -> Result<Value, PluginError> {
        let base = base_url()?;
        let configured = config::get("operations");
        let planned = match configured.as_ref().and_then(|ops| ops.get(operation)) {
            Some(spec) => plan_configured(operation, spec, &input)?,
            None if operation == "request" => plan_generic(&input)?,
            None => {
                let mut known: Vec<String> = vec!["request".into()];
                if let Some(Value::Object(ops)) = &configured {
                    known.extend(ops.keys().cloned());
                }
                return Err(PluginError::invalid_input(format!(
                    "unknown operation `{operation}`; this connection offers: {}",
                    known.join(", ")
                )));
            }
        };
        let response = send(&base, &planned, ctx)?.error_for_status()?;
        Ok(output(&response))
    }

    fn ping() -> Health {
        let base = match base_url() {
            Ok(base) => base,
            Err(err) => return Health::offline(err.message),
        };
        let path = config::string("ping_path").filter(|p| !p.trim().is_empty()).unwrap_or_else(|| "/".into());
        let planned = match plan_generic(&json!({"method": "GET", "path": path})) {
            Ok(planned) => planned,
            Err(err) => return Health::offline(err.message),
        };
        match send(&base, &planned, &CallContext::default()) {
            Ok(response) => Health::from_http_status(response.status),
            Err(err) if err.code == "unauthorized" => Health::auth_error(err.message),
            Err(err) => Health::offline(err.message),
        }
    }
}

fn base_url() -> Result<String, PluginError> {
    let url = config::string("base_url")
        .map(|url| url.trim().trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty())
        .ok_or_else(|| PluginError::invalid_input("the connection has no `base_url`"))?;
    Ok(url)
}

/// Sends a planned request with the connection's default headers, authentication and the
/// idempotency key.
fn send(base: &str, planned: &Planned, ctx: &CallContext) -> Result<http::Response, PluginError> {
    let auth = Auth::from_config(config::get("auth"))?;
    let accept = if planned.xml.is_some() { "application/xml, application/json" } else { "application/json" };
    let mut request = http::Request::new(planned.method.clone(), planned.url(base)).header("Accept", accept);
    if let Some(Value::Object(headers)) = config::get("headers") {
        for (name, value) in headers.iter().filter(|(_, v)| !v.is_null()) {
            request = request.header(name.clone(), template::to_text(value));
        }
    }
    for (name, value) in &planned.headers {
        request = request.header(name.clone(), value.clone());
    }
    let has_key = planned.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"));
    if !matches!(planned.method.as_str(), "GET" | "HEAD") && !ctx.idempotency_key.is_empty() && !has_key {
        request = request.header("Idempotency-Key", ctx.idempotency_key.clone());
    }
    match (&planned.body, &planned.xml) {
        (Some(Value::String(document)), Some(content_type)) => {
            request = request.header("Content-Type", content_type.clone()).body(document.clone().into_bytes());
        }
        (Some(body), _) => request = request.json(body),
        (None, _) => {}
    }
    auth.apply(request, base)?.send()
}

/// The answer's body as the operation's output: JSON, XML read as JSON, or the text.
fn output(response: &http::Response) -> Value {
    let text = response.text();
    if text.trim().is_empty() {
        return Value::Null;
    }
    let xml = response.header("content-type").is_some_and(dibop_sdk::xml::is_xml);
    if !xml && let Ok(json) = serde_json::from_str(&text) {
        return json;
    }
    if (xml || text.trim_start().starts_with('<'))
        && let Ok(json) = dibop_sdk::xml::to_json(&response.body)
    {
        return json;
    }
    json!({ "text": text })
}

/// The connection's `auth` setting.
#[derive(Debug, Clone, PartialEq)]
enum Auth {
    None,
    ApiKey { header: String, query_param: Option<String> },
    Basic,
    Bearer,
    OAuth2 { token_url: String, scope: Option<String>, form_credentials: bool },
}

impl Auth {
    fn from_config(auth: Option<Value>) -> Result<Self, PluginError> {
        let Some(auth) = auth.filter(|a| !a.is_null()) else { return Ok(Auth::None) };
        let misconfigured = |why: String| PluginError::invalid_input(format!("the connection's `auth` setting {why}"));
        let fields = auth.as_object().ok_or_else(|| misconfigured("must be an object".into()))?;
        let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        Ok(match text("type").unwrap_or("none") {
            "none" => Auth::None,
            "api_key" => Auth::ApiKey {
                header: text("header").unwrap_or("X-Api-Key").to_string(),
                query_param: text("query_param").map(String::from),
            },
            "basic" => Auth::Basic,
            "bearer" => Auth::Bearer,
            "oauth2" | "oauth2_client_credentials" => Auth::OAuth2 {
                token_url: text("token_url")
                    .ok_or_else(|| misconfigured("needs `token_url` for oauth2".into()))?
                    .to_string(),
                scope: text("scope").map(String::from),
                form_credentials: text("client_auth") == Some("form"),
            },
            other => return Err(misconfigured(format!("has an unsupported type `{other}`"))),
        })
    }

    fn apply(&self, request: http::Request, base: &str) -> Result<http::Request, PluginError> {
        Ok(match self {
            Auth::None => request,
            Auth::ApiKey { header, query_param } => {
                let key = credential("api_key")?;
                match query_param {
                    Some(param) => request.query(param, &key),
                    None => request.header(header.clone(), key),
                }
            }
            Auth::Basic => {
                request.header("Authorization", http::basic_auth(&credential("username")?, &credential("password")?))
            }
            Auth::Bearer => request.header("Authorization", format!("Bearer {}", credential("token")?)),
            Auth::OAuth2 { token_url, scope, form_credentials } => {
                let token = fetch_token(base, token_url, scope.as_deref(), *form_credentials)?;
                request.header("Authorization", format!("Bearer {token}"))
            }
        })
    }
}

fn credential(name: &str) -> Result<String, PluginError> {
    secrets::get(name).ok_or_else(|| PluginError::unauthorized(format!("the connection has no `{name}` credential")))
}

/// Gets an access token with the OAuth 2.0 client credentials grant.
fn fetch_token(
    base: &str,
    token_url: &str,
    scope: Option<&str>,
    form_credentials: bool,
) -> Result<String, PluginError> {
    let url = if token_url.starts_with('/') { format!("{base}{token_url}") } else { token_url.to_string() };
    let client_id = credential("client_id")?;
    let client_secret = credential("client_secret")?;
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let mut request = http::Request::post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json");
    if form_credentials {
        form.push(("client_id", &client_id));
        form.push(("client_secret", &client_secret));
    } else {
        request = request.header("Authorization", http::basic_auth(&client_id, &client_secret));
    }
    let response = request.body(http::form_encode(&form)).send()?;
    match response.status {
        200..=299 => {}
        400 | 401 | 403 => {
            return Err(PluginError::unauthorized(format!(
                "the token endpoint refused the client credentials (HTTP {})",
                response.status
            ))
            .with_http_status(response.status));
        }
        status => return Err(PluginError::upstream(status, format!("the token endpoint answered HTTP {status}"))),
    }
    response
        .json()?
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .ok_or_else(|| PluginError::new("upstream_error", "the token endpoint's answer has no `access_token`"))
}

dibop_sdk::export_connector!(Rest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auth_settings() {
        assert_eq!(Auth::from_config(None).unwrap(), Auth::None);
        assert_eq!(
            Auth::from_config(Some(json!({"type": "api_key"}))).unwrap(),
            Auth::ApiKey { header: "X-Api-Key".into(), query_param: None }
        );
        assert_eq!(
            Auth::from_config(Some(json!({"type": "api_key", "header": "Api-Key", "query_param": "key"}))).unwrap(),
            Auth::ApiKey { header: "Api-Key".into(), query_param: Some("key".into()) }
        );
        assert_eq!(
            Auth::from_config(Some(json!({"type": "oauth2", "token_url": "/oauth/token", "client_auth": "form"})))
                .unwrap(),
            Auth::OAuth2 { token_url: "/oauth/token".into(), scope: None, form_credentials: true }
        );
        assert_eq!(Auth::from_config(Some(json!({"type": "oauth2"}))).unwrap_err().code, "invalid_input");
        assert_eq!(Auth::from_config(Some(json!({"type": "magic"}))).unwrap_err().code, "invalid_input");
    }

    #[test]
    fn output_falls_back_to_text() {
        let response = |body: &str| http::Response { status: 200, headers: vec![], body: body.as_bytes().to_vec() };
        assert_eq!(output(&response("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(output(&response("plain")), json!({"text": "plain"}));
        assert_eq!(output(&response("")), Value::Null);
    }
}
