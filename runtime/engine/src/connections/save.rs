//! The rule of a connection's save: what an input may be, given what the connector declares
//! (its configuration keys, credentials, hosts, memory and authentication), the plugin version
//! its pin admits (deprecated and pending versions, signed-only enterprises), the enterprise's
//! outbound quota, and what the connection had stored (credentials bound to the component they
//! were given with). One function answers the fields to store, sealed, or every problem.

use std::collections::{BTreeMap, HashMap};

use dibop_core::{FieldError, PluginStatus, Validator, World};
use dibop_plugin_host::registry::VersionPin;
use dibop_plugin_host::{MAX_MEMORY_BYTES, PluginInfo};
use dibop_store::ConnectionFields;
use serde_json::{Map, Value};

use super::{sealing_context, url_authority};
use crate::Engine;
use crate::host_auth::{self, HostAuth};
use crate::resilience::Resilience;

/// What a save asks to store (a `PUT`'s input already laid over what it leaves out).
pub struct Proposed {
    pub name: String,
    pub system: String,
    pub config: Map<String, Value>,
    /// `None` removes a stored credential; omitted ones are kept.
    pub credentials: BTreeMap<String, Option<String>>,
    pub allowed_hosts: Vec<String>,
    pub memory_limit_mb: Option<i64>,
    pub timeout_ms: Option<i64>,
    pub resilience: Resilience,
    /// `None`: keep the stored one; `Some(null)`: remove it.
    pub auth: Option<Value>,
    pub headers: BTreeMap<String, String>,
    pub plugin_version: Option<String>,
    pub validate_output: Option<bool>,
}

/// Why a save stores nothing.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Every problem of the input, with its path.
    #[error("the connection is not valid")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SaveError {
    fn from(err: sqlx::Error) -> Self {
        Self::Failed(err.into())
    }
}

impl From<Vec<FieldError>> for SaveError {
    fn from(problems: Vec<FieldError>) -> Self {
        Self::Invalid(problems)
    }
}

/// What a connection has stored that an input may keep (nothing, for a new one).
pub struct Stored<'a> {
    /// Credentials kept unless the input changes them.
    pub credentials: HashMap<String, String>,
    pub auth: HostAuth,
    pub pin: &'a str,
    pub validate_output: bool,
    /// The component the stored credentials were given with (sha256; `''` for none).
    pub credentials_for: &'a str,
    /// The stored outbound limit (calls a minute): kept unchanged, it is not checked against a
    /// quota lowered since (calls take the lower of the two anyway).
    pub rate_limit: Option<u64>,
}

impl Stored<'_> {
    /// What a new connection has stored: nothing.
    pub fn nothing() -> Self {
        Self {
            credentials: HashMap::new(),
            auth: HostAuth::None,
            pin: "",
            validate_output: false,
            credentials_for: "",
            rate_limit: None,
        }
    }
}

/// Checks `input` for connection `id` of the enterprise against what its connector declares
/// and the enterprise allows, and answers the fields to store (credentials and auth sealed
/// for this connection), or every problem with its path.
pub async fn validate(
    engine: &Engine,
    enterprise_id: &str,
    id: &str,
    mut input: Proposed,
    stored: Stored<'_>,
) -> Result<ConnectionFields, SaveError> {
    let Stored {
        mut credentials,
        auth: stored_auth,
        pin: stored_pin,
        validate_output: stored_validate_output,
        credentials_for: stored_for,
        rate_limit: stored_rate,
    } = stored;
    let mut v = Validator::new();
    v.check_name("name", &input.name);
    let refused = |path: &str, message: String| SaveError::Invalid(vec![FieldError::new(path, message)]);
    let given_pin = input.plugin_version.take();
    let new_pin = stored_pin.is_empty() || given_pin.as_deref().is_some_and(|given| given.trim() != stored_pin);
    let pin_text = given_pin.unwrap_or_else(|| stored_pin.to_owned());
    let pin = VersionPin::parse(&pin_text).map_err(|m| refused("plugin_version", m))?;
    let registry = &engine.registry;
    let Some(plugin) = registry.resolve_pinned(enterprise_id, World::Connector, &input.system, &pin).await? else {
        let pending = engine.store.versions_in_status(enterprise_id, &input.system, PluginStatus::Pending).await?;
        if let Some(waiting) = pending.iter().find(|v| pin.admits(v)) {
            return Err(refused(
                "plugin_version",
                format!(
                    "{} {waiting} declares more hosts or memory than the version before it and waits for an \
                     admin's approval (PATCH /plugins/{{id}} with status active)",
                    input.system
                ),
            ));
        }
        return Err(match registry.resolve(enterprise_id, World::Connector, &input.system).await? {
            Some(newest) => refused(
                "plugin_version",
                format!(
                    "no active version of {} matches {pin_text:?} (the newest is {})",
                    input.system, newest.version
                ),
            ),
            None => refused("system", format!("no connector {:?} in the catalogue; see GET /systems", input.system)),
        });
    };
    // A deprecated version serves the connections that pin it already, and no others.
    if plugin.status == PluginStatus::Deprecated && new_pin {
        let newest = registry.resolve(enterprise_id, World::Connector, &input.system).await?;
        let hint = match newest.filter(|p| p.status == PluginStatus::Active) {
            Some(active) => format!("; the newest active version is {}", active.version),
            None => String::new(),
        };
        return Err(refused(
            "plugin_version",
            format!("{} {} is deprecated: no connection may newly pin it{hint}", plugin.slug, plugin.version),
        ));
    }
    // An enterprise that accepts signed plugins only connects to none unsigned, the global
    // catalogue's included (the plugins shipped with DIBOP are part of the runtime).
    if new_pin && plugin.enterprise_id.is_none() && plugin.signed_by.is_none() && plugin.bundled == 0 {
        let enterprise = engine
            .store
            .get_enterprise(enterprise_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("enterprise {enterprise_id} no longer exists"))?;
        if enterprise.require_signed_plugins != 0 {
            return Err(refused(
                "plugin_version",
                format!(
                    "{} {} is an unsigned plugin of the global catalogue and this enterprise accepts signed plugins \
                     only (require_signed_plugins)",
                    plugin.slug, plugin.version
                ),
            ));
        }
    }
    // Without a pin, the connection pins the version it gets now.
    let plugin_version = if pin == VersionPin::Newest { plugin.version.clone() } else { pin_text.trim().to_owned() };
    let info: PluginInfo = serde_json::from_str(&plugin.info).map_err(anyhow::Error::from)?;
    let sent_credentials = input.credentials.values().any(Option::is_some);
    for (key, value) in input.credentials {
        match value {
            Some(value) => {
                credentials.insert(key, value);
            }
            None => {
                credentials.remove(&key);
            }
        }
    }
    for key in &info.config {
        let present = if key.secret {
            credentials.contains_key(&key.name)
        } else {
            input.config.get(&key.name).is_some_and(|v| !v.is_null())
        };
        let path = if key.secret { format!("credentials.{}", key.name) } else { format!("config.{}", key.name) };
        v.check(!key.required || present, &path, format!("required by {}: {}", info.slug, key.description));
    }
    for name in input.config.keys() {
        let declared = info.config.iter().any(|k| !k.secret && &k.name == name);
        v.check(declared, &format!("config.{name}"), format!("{} does not take this setting", info.slug));
    }
    for name in credentials.keys() {
        let declared = info.config.iter().any(|k| k.secret && &k.name == name);
        v.check(declared, &format!("credentials.{name}"), format!("{} does not take this credential", info.slug));
    }
    if let Some(base) = input.config.get("base_url") {
        let ok = base
            .as_str()
            .is_some_and(|u| (u.starts_with("http://") || u.starts_with("https://")) && url_authority(u).is_some());
        v.check(ok, "config.base_url", "must be an http:// or https:// URL");
    }
    for (i, host) in input.allowed_hosts.iter().enumerate() {
        let ok = !host.is_empty() && !host.contains('/') && !host.contains(' ') && !host.contains('*');
        v.check(ok, &format!("allowed_hosts[{i}]"), "must be host or host:port, without scheme, path or wildcards");
    }
    // A connector that declares the hosts it reaches gets no connection to others.
    if let Some(declared) = &info.capabilities {
        let patterns = declared.host_patterns();
        let outside = |host: &str| {
            format!(
                "{host} is outside the hosts {} {} declares it reaches ({})",
                plugin.slug,
                plugin.version,
                declared.hosts.join(", ")
            )
        };
        let base = input.config.get("base_url").and_then(|u| u.as_str()).and_then(url_authority);
        if let Some(base) = base {
            v.check(patterns.admits(&base), "config.base_url", outside(&base));
        }
        for (i, host) in input.allowed_hosts.iter().enumerate() {
            v.check(patterns.admits(host), &format!("allowed_hosts[{i}]"), outside(host));
        }
    }
    let memory = input.memory_limit_mb.unwrap_or_else(|| i64::from(info.wanted_memory_mb()));
    v.check((1..=(MAX_MEMORY_BYTES >> 20) as i64).contains(&memory), "memory_limit_mb", "must be from 1 to 512");
    let timeout = input.timeout_ms.unwrap_or(30_000);
    v.check((100..=600_000).contains(&timeout), "timeout_ms", "must be from 100 to 600000");
    for problem in input.resilience.problems() {
        v.check(false, &problem.path, problem.message);
    }
    // A connection's new rate limit stays within the enterprise's outbound quota, which only
    // platform rights set; one saved before the quota dropped may stay (calls take the lower
    // of the two), so an unchanged save still goes through.
    if let Some(rate) =
        input.resilience.rate_limit.as_ref().filter(|r| r.per_minute().is_some_and(|m| Some(m) != stored_rate))
    {
        let quota = engine.store.outbound_limit(enterprise_id).await?;
        let per_minute = rate.per_minute().unwrap_or(0);
        v.check(
            i64::try_from(per_minute).is_ok_and(|m| m <= quota),
            rate.field(),
            format!(
                "must be at most the enterprise's outbound quota of {quota} calls a minute \
                 (rate_limits.outbound_requests_per_minute of /settings, set with platform rights); \
                 this limit is {per_minute} calls a minute"
            ),
        );
    }
    let auth = match input.auth.take() {
        None => Some(stored_auth),
        Some(serde_json::Value::Null) => Some(HostAuth::None),
        Some(given) => v.parse(serde_json::from_value::<HostAuth>(with_stored_secrets(given, &stored_auth)), "auth"),
    };
    if let Some(auth) = &auth {
        let allow_http = engine.plugins().allow_private_networks;
        for problem in auth.problems(allow_http) {
            v.check(false, &problem.path, problem.message);
        }
        let declared = info.auth.as_deref().unwrap_or("none");
        v.check(
            auth.kind() == "none" || declared == "none" || declared == auth.kind(),
            "auth.type",
            format!("{} authenticates with {declared} itself; it takes no host-managed {}", info.slug, auth.kind()),
        );
    }
    for problem in host_auth::header_problems(&input.headers) {
        v.check(false, &problem.path, problem.message);
    }
    let auth = v.finish_with(auth)?;
    // Credentials are bound to the component they were given with: calls run it while the pin
    // admits it, and a new pin keeps them only when it admits that component.
    let credentials_for = if credentials.is_empty() {
        String::new()
    } else if sent_credentials || stored_for.is_empty() {
        plugin.sha256.clone()
    } else if !new_pin {
        stored_for.to_owned()
    } else {
        let usable = engine.store.usable_plugins(enterprise_id).await?;
        if dibop_plugin_host::registry::pick_build(&usable, &plugin.slug, &pin, stored_for).is_none() {
            return Err(refused(
                "credentials",
                format!(
                    "the credentials were given to another build of {} than {pin_text:?} admits: send them again \
                     with the new plugin_version",
                    plugin.slug
                ),
            ));
        }
        stored_for.to_owned()
    };
    let plain = serde_json::to_vec(&credentials).map_err(anyhow::Error::from)?;
    let sealed = engine.sealer.seal_bound(&plain, &sealing_context(enterprise_id, id)).map_err(anyhow::Error::from)?;
    Ok(ConnectionFields {
        name: input.name.trim().to_owned(),
        system: input.system,
        config: serde_json::Value::Object(input.config).to_string(),
        credentials: sealed,
        allowed_hosts: serde_json::to_string(&input.allowed_hosts).map_err(anyhow::Error::from)?,
        memory_limit_mb: memory,
        timeout_ms: timeout,
        resilience: serde_json::to_string(&input.resilience).map_err(anyhow::Error::from)?,
        auth: match auth {
            HostAuth::None => String::new(),
            auth => {
                let plain = serde_json::to_vec(&auth).map_err(anyhow::Error::from)?;
                engine
                    .sealer
                    .seal_bound(&plain, &host_auth::sealing_context(enterprise_id, id))
                    .map_err(anyhow::Error::from)?
            }
        },
        headers: serde_json::to_string(&input.headers).map_err(anyhow::Error::from)?,
        plugin_version,
        validate_output: input.validate_output.unwrap_or(stored_validate_output),
        credentials_for,
    })
}

/// `given` with the secrets it leaves out taken from `stored`, when both are the same type
/// (and, for OAuth2, the same token URL: a secret never goes to an endpoint it was not sent
/// for).
fn with_stored_secrets(mut given: serde_json::Value, stored: &HostAuth) -> serde_json::Value {
    let stored = serde_json::to_value(stored).unwrap_or_default();
    let same = given.get("type") == stored.get("type") && given.get("token_url") == stored.get("token_url");
    if let (true, Some(fields)) = (same, given.as_object_mut()) {
        for field in host_auth::SECRET_FIELDS {
            if let (false, Some(secret)) = (fields.contains_key(field), stored.get(field)) {
                fields.insert(field.to_owned(), secret.clone());
            }
        }
    }
    given
}
