//! Host-managed authentication of a connection: the host, not the plugin, holds the
//! credentials and adds them (and the connection's static `headers`) to every request that goes
//! to one of the connection's hosts. For `oauth2_client_credentials` it asks the token endpoint
//! for a token, keeps it sealed in the database for every node (one node refreshes it before it
//! expires, the others wait for that token instead of asking too; in a node one request at a time
//! does), and on a 401 refreshes it once and sends the request again. Plugins never see these
//! secrets; they are redacted from everything a call leaves.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Engine;
use dibop_core::crypto::Sealer;
use dibop_core::{FieldError, now_ms};
use dibop_plugin_host::outbound::{self, ApiCallRecord, Authenticator, CallOrigin, Credentials, NetworkPolicy, Origin};
use dibop_store::{ConnectionRow, Store};

/// A connection's `auth`. Secret fields: `key`, `password`, `token`, `client_secret`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostAuth {
    None,
    /// The key in a header of the connection's choice.
    ApiKey {
        header: String,
        key: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    /// RFC 6749 4.4: the host gets a token from `token_url` and sends it as a bearer token.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default)]
        scopes: Vec<String>,
        /// Extra form parameters of the token request (e.g. `audience`).
        #[serde(default)]
        token_params: BTreeMap<String, String>,
        /// `basic` (default: HTTP Basic with the client id and secret) or `body` (both as form
        /// parameters).
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Body,
}

/// The fields of an `auth` that are secret (write-only, masked when shown).
pub const SECRET_FIELDS: [&str; 4] = ["key", "password", "token", "client_secret"];
/// Most static headers and token scopes or parameters of a connection.
pub const MAX_HEADERS: usize = 32;
/// Longest header value, secret or setting.
pub const MAX_VALUE: usize = 4096;

/// Headers a connection may not set: they belong to the HTTP exchange itself.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
];

impl HostAuth {
    /// Its `type`, as the API and `describe()` name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey { .. } => "api_key",
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
            Self::OAuth2 { .. } => "oauth2_client_credentials",
        }
    }

    /// The secret values in it.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::ApiKey { key, .. } => vec![key.clone()],
            Self::Basic { username, password } => {
                let pair = format!("{username}:{password}");
                vec![password.clone(), base64::engine::general_purpose::STANDARD.encode(pair)]
            }
            Self::Bearer { token } => vec![token.clone()],
            Self::OAuth2 { client_secret, .. } => vec![client_secret.clone()],
        }
    }

    /// What is wrong with it, as field errors under `auth`.
    pub fn problems(&self, allow_http: bool) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &str, message: &str| {
            if !ok {
                errors.push(FieldError::new(format!("auth.{field}"), message));
            }
        };
        let value_ok = |v: &str| !v.is_empty() && v.len() <= MAX_VALUE && HeaderValue::from_str(v).is_ok();
        match self {
            Self::None => {}
            Self::ApiKey { header, key } => {
                check(header_name_ok(header), "header", "must be an HTTP header name the connection may set");
                check(value_ok(key), "key", "must be 1 to 4096 characters valid in a header");
            }
            Self::Basic { username, password } => {
                check(
                    value_ok(username) && !username.contains(':'),
                    "username",
                    "must be 1 to 4096 characters without ':'",
                );
                check(password.len() <= MAX_VALUE, "password", "must be at most 4096 characters");
            }
            Self::Bearer { token } => check(value_ok(token), "token", "must be 1 to 4096 characters valid in a header"),
            Self::OAuth2 { token_url, client_id, client_secret, scopes, token_params, .. } => {
                let scheme_ok = token_url.starts_with("https://") || (allow_http && token_url.starts_with("http://"));
                let url_ok = scheme_ok && token_url.len() <= 2048 && crate::urls::url_authority(token_url).is_some();
                let message = if allow_http { "must be an http:// or https:// URL" } else { "must be an https:// URL" };
                check(url_ok, "token_url", message);
                check(
                    !client_id.is_empty() && client_id.len() <= MAX_VALUE,
                    "client_id",
                    "must be 1 to 4096 characters",
                );
                check(
                    !client_secret.is_empty() && client_secret.len() <= MAX_VALUE,
                    "client_secret",
                    "must be 1 to 4096 characters",
                );
                let scopes_ok = scopes.len() <= MAX_HEADERS
                    && scopes.iter().all(|s| !s.is_empty() && s.len() <= 256 && !s.contains(char::is_whitespace));
                check(scopes_ok, "scopes", "at most 32 scopes of 1 to 256 characters without spaces");
                let reserved = ["grant_type", "client_id", "client_secret", "scope"];
                let params_ok = token_params.len() <= 16
                    && token_params.iter().all(|(k, v)| {
                        !k.is_empty() && k.len() <= 256 && v.len() <= 1024 && !reserved.contains(&k.as_str())
                    });
                check(
                    params_ok,
                    "token_params",
                    "at most 16 parameters (not grant_type, client_id, client_secret or scope)",
                );
            }
        }
        errors
    }

    /// Itself with every secret masked, as shown.
    pub fn masked(&self, mask: fn(&str) -> String) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(fields) = value.as_object_mut() {
            for field in SECRET_FIELDS {
                if let Some(Value::String(secret)) = fields.get_mut(field) {
                    *secret = mask(secret);
                }
            }
        }
        value
    }
}

/// Whether a connection may set the header `name` (static headers, the API key's header).
pub fn header_name_ok(name: &str) -> bool {
    HeaderName::from_bytes(name.as_bytes()).is_ok() && !RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

/// What the static `headers` of a connection break, as field errors.
pub fn header_problems(headers: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if headers.len() > MAX_HEADERS {
        errors.push(FieldError::new("headers", format!("at most {MAX_HEADERS} headers")));
    }
    for (name, value) in headers {
        if !header_name_ok(name) {
            errors.push(FieldError::new(format!("headers.{name}"), "not a header name a connection may set"));
        } else if value.len() > MAX_VALUE || HeaderValue::from_str(value).is_err() {
            errors
                .push(FieldError::new(format!("headers.{name}"), "must be at most 4096 characters valid in a header"));
        }
    }
    errors
}

/// What a connection's credentials and token are sealed for.
pub fn sealing_context(enterprise_id: &str, connection_id: &str) -> String {
    format!("connection-auth:{enterprise_id}:{connection_id}")
}

fn token_context(enterprise_id: &str, connection_id: &str) -> String {
    format!("connection-token:{enterprise_id}:{connection_id}")
}

/// The stored `auth` of a connection (`None` for none).
pub fn stored(engine: &Engine, row: &ConnectionRow) -> anyhow::Result<HostAuth> {
    if row.auth.is_empty() {
        return Ok(HostAuth::None);
    }
    let plain = engine.sealer.open_bound(&row.auth, &sealing_context(&row.enterprise_id, &row.id))?;
    Ok(serde_json::from_slice(&plain)?)
}

/// The [`Authenticator`] of a connection's calls, if it has auth or headers.
/// `unsaved`: the row is a connection as it would be stored (a test before a save): its
/// OAuth2 tokens are fetched for this call only, and the stored connection's are never read.
pub fn authenticator(
    engine: &Engine,
    row: &ConnectionRow,
    origin: &CallOrigin,
    unsaved: bool,
) -> anyhow::Result<Option<Arc<ConnectionAuth>>> {
    let auth = stored(engine, row)?;
    let configured: BTreeMap<String, String> = serde_json::from_str(&row.headers).unwrap_or_default();
    if auth == HostAuth::None && configured.is_empty() {
        return Ok(None);
    }
    let headers = configured
        .iter()
        .filter_map(|(k, v)| Some((HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?)))
        .collect();
    Ok(Some(Arc::new(ConnectionAuth {
        store: engine.store.clone(),
        sealer: engine.sealer.clone(),
        allow_private: engine.plugins().allow_private_networks,
        net: engine.plugins().net(),
        connection_id: row.id.clone(),
        enterprise_id: row.enterprise_id.clone(),
        origin: origin.clone(),
        origins: origins(row),
        auth,
        headers,
        unsaved,
    })))
}

/// Host-managed credentials of one connection, for the calls of one step or test.
#[derive(Clone)]
pub struct ConnectionAuth {
    /// Where OAuth2 tokens are kept, sealed, for every node.
    store: Store,
    sealer: Arc<Sealer>,
    /// The token endpoint may be on a private network (the plugin host's setting).
    allow_private: bool,
    /// The plugin host's client, which the token request shares.
    net: Arc<outbound::Net>,
    connection_id: String,
    enterprise_id: String,
    origin: CallOrigin,
    /// Where the credentials and headers go (see [`origins`]).
    origins: Vec<Origin>,
    auth: HostAuth,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Tokens are neither read from nor written to `connection_tokens` (see [`authenticator`]).
    unsaved: bool,
}

impl ConnectionAuth {
    /// The secrets to redact from the call besides the tokens (those are added per request):
    /// the auth's and the values of credential-named static headers.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = self.auth.secrets();
        for (name, value) in &self.headers {
            if dibop_plugin_host::redact::is_sensitive_name(name.as_str())
                && let Ok(value) = value.to_str()
            {
                secrets.push(value.to_owned());
            }
        }
        secrets
    }

    async fn credentials_now(&self, stale: Option<String>) -> Credentials {
        let mut headers = self.headers.clone();
        let mut credentials = Credentials { secrets: self.secrets(), ..Credentials::default() };
        let header = |name: &str, value: &str| -> Result<(HeaderName, HeaderValue), String> {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let mut value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            Ok((name, value))
        };
        let added = match &self.auth {
            HostAuth::None => Ok(None),
            HostAuth::ApiKey { header: name, key } => header(name, key).map(Some),
            HostAuth::Basic { username, password } => {
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                header("authorization", &format!("Basic {pair}")).map(Some)
            }
            HostAuth::Bearer { token } => header("authorization", &format!("Bearer {token}")).map(Some),
            HostAuth::OAuth2 { .. } => {
                let (token, records) = self.token(stale).await;
                credentials.records = records;
                token.and_then(|token| {
                    credentials.secrets.push(token.clone());
                    credentials.token = Some(token.clone());
                    header("authorization", &format!("Bearer {token}")).map(Some)
                })
            }
        };
        credentials.headers = added.map(|added| {
            headers.extend(added);
            headers
        });
        credentials
    }

    /// A token that is not `stale` and not due for refresh: the stored one, or a new one from
    /// the token endpoint (this node's, or another node's that was refreshing it).
    async fn token(&self, stale: Option<String>) -> (Result<String, String>, Vec<ApiCallRecord>) {
        if self.unsaved {
            let (fetched, records) = self.fetch().await;
            return (fetched.map(|(token, _)| token), records);
        }
        let flight = flight(&self.connection_id);
        let _one_at_a_time = flight.lock().await;
        let store = &self.store;
        let context = token_context(&self.enterprise_id, &self.connection_id);
        let open = |sealed: &str| {
            self.sealer.open_bound(sealed, &context).ok().and_then(|plain| String::from_utf8(plain).ok())
        };
        let waited_until = Instant::now() + Duration::from_secs(10);
        loop {
            let now = now_ms();
            let current = match store.connection_token(&self.connection_id).await {
                Ok(row) => row.and_then(|row| open(&row.token).map(|token| (token, row))),
                Err(e) => return (Err(format!("reading the stored token: {e}")), Vec::new()),
            };
            let usable = current.filter(|(token, _)| Some(token) != stale.as_ref());
            if let Some((token, row)) = &usable
                && row.refresh_at > now
            {
                return (Ok(token.clone()), Vec::new());
            }
            match store.claim_token_refresh(&self.enterprise_id, &self.connection_id, now, now + 15_000).await {
                Ok(true) => {
                    let (fetched, records) = self.fetch().await;
                    let outcome = match fetched {
                        Ok((token, lifetime_ms)) => {
                            let sealed = self.sealer.seal_bound(token.as_bytes(), &context);
                            let now = now_ms();
                            let refresh_at = now + lifetime_ms - (lifetime_ms / 2).min(60_000);
                            let stored = match sealed {
                                Ok(sealed) => store
                                    .put_connection_token(&self.connection_id, &sealed, now + lifetime_ms, refresh_at)
                                    .await
                                    .map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            };
                            if let Err(e) = stored {
                                tracing::warn!(connection = %self.connection_id, error = %e, "storing a token");
                            }
                            Ok(token)
                        }
                        Err(why) => {
                            let _ = store.release_token_refresh(&self.connection_id).await;
                            Err(why)
                        }
                    };
                    return (outcome, records);
                }
                Ok(false) => {}
                Err(e) => return (Err(format!("claiming the token refresh: {e}")), Vec::new()),
            }
            // Another node refreshes: a token still valid serves meanwhile, else wait for its.
            if let Some((token, row)) = usable
                && row.expires_at > now
            {
                return (Ok(token), Vec::new());
            }
            if Instant::now() >= waited_until {
                return (Err("another node's token refresh did not finish within 10 s".into()), Vec::new());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks the token endpoint; answers the token and its lifetime in ms.
    async fn fetch(&self) -> (Result<(String, i64), String>, Vec<ApiCallRecord>) {
        let HostAuth::OAuth2 { token_url, .. } = &self.auth else {
            return (Err("not an OAuth2 connection".into()), Vec::new());
        };
        let request = match token_request(&self.auth) {
            Ok(request) => request,
            Err(why) => return (Err(why), Vec::new()),
        };
        let policy = NetworkPolicy {
            allowed_hosts: crate::urls::url_authority(token_url).into_iter().collect(),
            allow_private: self.allow_private,
            max_requests: 1,
            max_response_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            deadline: Instant::now() + Duration::from_secs(15),
        };
        let (answer, records) = outbound::host_request(self.net.clone(), policy, self.origin.clone(), request).await;
        let outcome = answer.and_then(|(status, body)| {
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !status.is_success() {
                let text = |k: &str| json.get(k).and_then(Value::as_str).unwrap_or_default();
                let detail =
                    dibop_core::bounded::clip(&format!("{} {}", text("error"), text("error_description")), 300)
                        .trim()
                        .to_owned();
                return Err(format!(
                    "the token endpoint answered {}{}",
                    status.as_u16(),
                    if detail.is_empty() { String::new() } else { format!(": {detail}") }
                ));
            }
            let token = json.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty() && t.len() <= 16_384);
            let token = token.ok_or("the token endpoint's answer has no access_token")?;
            // RFC 6749 5.1: expires_in is recommended; an hour when it is missing.
            let lifetime_s = json.get("expires_in").and_then(Value::as_i64).unwrap_or(3600).clamp(1, 31 * 86_400);
            Ok((token.to_owned(), lifetime_s * 1000))
        });
        (outcome, records)
    }
}

/// The token request of an OAuth2 `auth` (RFC 6749 4.4.2).
fn token_request(auth: &HostAuth) -> Result<http::Request<bytes::Bytes>, String> {
    let HostAuth::OAuth2 { token_url, client_id, client_secret, scopes, token_params, client_auth } = auth else {
        return Err("not an OAuth2 connection".into());
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if !scopes.is_empty() {
        form.append_pair("scope", &scopes.join(" "));
    }
    for (name, value) in token_params {
        form.append_pair(name, value);
    }
    let mut request = http::Request::post(token_url.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    match client_auth {
        ClientAuth::Basic => {
            // RFC 6749 2.3.1: each part form-encoded, then Basic.
            let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(client_id), encode(client_secret));
            let basic = base64::engine::general_purpose::STANDARD.encode(pair);
            request = request.header("authorization", format!("Basic {basic}"));
        }
        ClientAuth::Body => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", client_secret);
        }
    }
    request
        .body(bytes::Bytes::from(form.finish()))
        .map_err(|_| format!("token_url {token_url:?} does not make a request"))
}

impl Authenticator for ConnectionAuth {
    fn credentials(&self, stale: Option<String>) -> BoxFuture<'static, Credentials> {
        let this = self.clone();
        Box::pin(async move { this.credentials_now(stale).await })
    }

    fn refreshes(&self) -> bool {
        matches!(self.auth, HostAuth::OAuth2 { .. })
    }

    fn sends_to(&self, origin: &Origin) -> bool {
        self.origins.contains(origin)
    }
}

/// The origins a connection's credentials and static headers go to: its `base_url`'s exactly,
/// and each of its `allowed_hosts` with the same scheme (`https` without a `base_url`) and the
/// port it names, else that scheme's default port. An entry without a port admits the host on
/// any port for the plugin's requests; credentials go to one port only.
pub fn origins(row: &ConnectionRow) -> Vec<Origin> {
    let config: serde_json::Map<String, Value> = serde_json::from_str(&row.config).unwrap_or_default();
    let base = config.get("base_url").and_then(Value::as_str).and_then(|u| u.parse::<http::Uri>().ok());
    let base = base.as_ref().and_then(Origin::of);
    let scheme = base.as_ref().map_or("https", |b| b.scheme.as_str()).to_owned();
    let default = if scheme == "https" { 443 } else { 80 };
    let hosts: Vec<String> = serde_json::from_str(&row.allowed_hosts).unwrap_or_default();
    let mut origins: Vec<Origin> = base.into_iter().collect();
    for entry in hosts {
        let (host, port) = outbound::allow_list_entry(&entry);
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if let Some(port) = port.unwrap_or(Some(default)) {
            origins.push(Origin { scheme: scheme.clone(), host, port });
        }
    }
    origins
}

/// The lock that lets one request of this node at a time get a connection's token.
fn flight(connection_id: &str) -> Arc<tokio::sync::Mutex<()>> {
    static FLIGHTS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Mutex::default);
    let mut flights = FLIGHTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if flights.len() > 4096 {
        flights.retain(|_, lock| Arc::strong_count(lock) > 1);
    }
    flights.entry(connection_id.to_owned()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_reads_each_type_and_refuses_unknown_fields() {
        let oauth: HostAuth = serde_json::from_value(serde_json::json!({
            "type": "oauth2_client_credentials", "token_url": "https://id.example/token",
            "client_id": "c", "client_secret": "s", "scopes": ["read"], "token_params": {"audience": "dms"}}))
        .expect("oauth2");
        assert_eq!(oauth.kind(), "oauth2_client_credentials");
        assert!(oauth.problems(false).is_empty());
        assert_eq!(oauth.masked(|_| "****".into())["client_secret"], "****");
        let key: HostAuth =
            serde_json::from_value(serde_json::json!({"type": "api_key", "header": "X-Api-Key", "key": "k"}))
                .expect("key");
        assert!(key.problems(false).is_empty());
        assert!(
            serde_json::from_value::<HostAuth>(serde_json::json!({"type": "bearer", "token": "t", "x": 1})).is_err()
        );
        let bad = HostAuth::ApiKey { header: "Host".into(), key: String::new() };
        let paths: Vec<String> = bad.problems(false).into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["auth.header", "auth.key"]);
        let http = HostAuth::OAuth2 {
            token_url: "http://127.0.0.1:9/token".into(),
            client_id: "c".into(),
            client_secret: "s".into(),
            scopes: vec!["a b".into()],
            token_params: BTreeMap::from([("scope".into(), "x".into())]),
            client_auth: ClientAuth::Body,
        };
        let paths: Vec<String> = http.problems(false).into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["auth.token_url", "auth.scopes", "auth.token_params"]);
        assert_eq!(http.problems(true).len(), 2);
    }
}
