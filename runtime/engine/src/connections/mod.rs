//! Running a connection's connector: decrypting its credentials for one call, deriving the
//! network policy from its configuration, and storing the API-call rows the call produced.
//! What a connection may be saved as is `save.rs`.

mod save;

pub use save::{Proposed, SaveError, Stored, validate};

use dibop_core::{PluginStatus, World};
use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;

use crate::Engine;
use std::sync::Arc;

use dibop_plugin_host::outbound::{AuthHandle, Authenticator, CallOrigin};
use dibop_plugin_host::registry::VersionPin;
use dibop_plugin_host::{CallReport, CallSpec, HealthReport, Invocation, Limits, Loaded};
use dibop_store::{ConnectionRow, PluginRow};

/// Where a call is made from (for its API-call rows).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub orchestration_id: Option<String>,
    pub execution_id: Option<String>,
    pub step: Option<String>,
    /// The execution's trace (outbound requests carry it).
    pub trace_id: Option<String>,
    /// The connection is not stored as given (a test before a save): nothing stored for the
    /// connection (its OAuth2 token) is read or written.
    pub unsaved: bool,
}

/// A connection ready to call: its connector and the spec every call of it runs with.
pub struct Prepared {
    pub plugin: PluginRow,
    pub loaded: Loaded,
    pub spec: CallSpec,
    /// Check each output against the operation's `output_schema` (the connection's
    /// `validate_output`).
    pub validate_output: bool,
}

pub use crate::urls::url_authority;

/// The decrypted credentials of a connection.
pub fn credentials(engine: &Engine, row: &ConnectionRow) -> anyhow::Result<HashMap<String, String>> {
    let plain = engine.sealer.open_bound(&row.credentials, &sealing_context(&row.enterprise_id, &row.id))?;
    let map: HashMap<String, String> = serde_json::from_slice(&plain).context("credentials are not a JSON object")?;
    Ok(map)
}

/// Why a connection cannot be called now.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Nothing can serve it as it stands (no connector for its system, credentials that no
    /// longer open, a transform where a connector is needed): the HTTP API answers 409.
    #[error("{0}")]
    Unusable(String),
    /// The only versions its pin admits are disabled: calls fail `plugin_disabled` (the HTTP
    /// API answers 409) until the connection pins another version or an admin enables one.
    #[error("plugin_disabled: {0}")]
    Disabled(String),
    /// Anything unexpected (storage, a stored value that does not read).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ConnectionError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

/// What a connection's credentials are sealed for: they open for this connection only.
pub fn sealing_context(enterprise_id: &str, connection_id: &str) -> String {
    format!("connection:{enterprise_id}:{connection_id}")
}

/// The component that runs a connection's calls: the one its credentials were given with while
/// its pin admits it (a range pin does not carry them to a newer upload), else `newest` when
/// the credentials are not bound (none, or saved before the binding). A connection whose
/// credentials' component its pin no longer admits fails its calls until they are sent again.
async fn bound_component(
    engine: &Engine,
    row: &ConnectionRow,
    pin: &VersionPin,
    newest: PluginRow,
) -> Result<PluginRow, ConnectionError> {
    if row.credentials_for.is_empty() || newest.sha256 == row.credentials_for {
        return Ok(newest);
    }
    let usable = engine.store.usable_plugins(&row.enterprise_id).await?;
    dibop_plugin_host::registry::pick_build(&usable, &row.system, pin, &row.credentials_for).cloned().ok_or_else(|| {
        ConnectionError::Unusable(format!(
            "connection {}: its credentials were given to a build of connector {:?} that its plugin_version {:?} \
             no longer admits; send them again with PUT /connections/{}",
            row.name, row.system, row.plugin_version, row.id
        ))
    })
}

/// Loads the connector serving `row.system` and builds the call spec of the connection.
pub async fn prepare(engine: &Engine, row: &ConnectionRow, caller: Caller) -> Result<Prepared, ConnectionError> {
    // The connection's pinned versions: a new upload moves no connection.
    let pin = VersionPin::parse(&row.plugin_version).unwrap_or(VersionPin::Newest);
    let Some(plugin) = engine.registry.resolve_pinned(&row.enterprise_id, World::Connector, &row.system, &pin).await?
    else {
        let disabled = engine.store.versions_in_status(&row.enterprise_id, &row.system, PluginStatus::Disabled).await?;
        if let Some(version) = disabled.iter().find(|v| pin.admits(v)) {
            return Err(ConnectionError::Disabled(format!(
                "version {version} of connector {:?} is disabled; pin another version on connection {} (PUT \
                 /connections/{}) or ask an admin to enable it",
                row.system, row.name, row.id
            )));
        }
        return Err(ConnectionError::Unusable(format!(
            "no active version of connector {:?} matches the connection's plugin_version {:?}",
            row.system, row.plugin_version
        )));
    };
    let plugin = bound_component(engine, row, &pin, plugin).await?;
    let loaded = engine.registry.loaded(&plugin).await?;
    let config: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.config).context("stored connection config is not an object")?;
    let mut allowed_hosts: Vec<String> = serde_json::from_str(&row.allowed_hosts).unwrap_or_default();
    if let Some(base) = config.get("base_url").and_then(|v| v.as_str()).and_then(url_authority) {
        allowed_hosts.push(base);
    }
    // Saving checked the hosts against the version pinned then; a range pin may have moved the
    // connection to a version that declares fewer, and only the declared ones are reachable.
    if let Some(declared) = dibop_plugin_host::capabilities::declared(&plugin.id, &plugin.info) {
        let listed = allowed_hosts.len();
        allowed_hosts.retain(|host| declared.admits(host));
        if allowed_hosts.len() < listed {
            tracing::warn!(connection = %row.id, plugin = %plugin.id, "hosts outside the connector's declared capabilities are not reachable");
        }
    }
    let origin = CallOrigin {
        enterprise_id: row.enterprise_id.clone(),
        system: row.system.clone(),
        connection_id: Some(row.id.clone()),
        connection: Some(row.name.clone()),
        orchestration_id: caller.orchestration_id,
        execution_id: caller.execution_id,
        step: caller.step,
        trace_id: caller.trace_id,
    };
    let auth = crate::host_auth::authenticator(engine, row, &origin, caller.unsaved).map_err(|e| {
        ConnectionError::Unusable(format!(
            "connection {}: its auth does not open ({e:#}); send it again with PUT",
            row.name
        ))
    })?;
    let spec = CallSpec {
        plugin: format!("{}@{}", plugin.slug, plugin.version),
        origin,
        config,
        secrets: credentials(engine, row).map_err(|e| {
            ConnectionError::Unusable(format!("connection {}: {e:#}; send its credentials again with PUT", row.name))
        })?,
        allowed_hosts,
        limits: Limits {
            memory_bytes: usize::try_from(row.memory_limit_mb.max(1)).unwrap_or(64) << 20,
            timeout: Duration::from_millis(u64::try_from(row.timeout_ms.max(1)).unwrap_or(30_000)),
            ..Limits::default()
        },
        redact: auth.as_ref().map(|a| a.secrets()).unwrap_or_default(),
        auth: auth.map(|a| AuthHandle(a as Arc<dyn Authenticator>)),
        pacer: None,
    };
    Ok(Prepared { plugin, loaded, spec, validate_output: row.validate_output != 0 })
}

impl Prepared {
    fn connector(&self) -> Result<&dibop_plugin_host::ConnectorPre, ConnectionError> {
        match &self.loaded {
            Loaded::Connector(pre) => Ok(pre),
            Loaded::Transform(_) => Err(ConnectionError::Unusable(format!("{} is not a connector", self.plugin.slug))),
        }
    }

    /// Runs one operation, after checking its input against the operation's `input_schema`
    /// (and, when the connection asks, its output against the `output_schema`; see
    /// [`crate::schemas`]). The caller stores the API calls it made (the engine commits them with
    /// the step's result).
    pub async fn invoke(
        &self,
        engine: &Engine,
        operation: &str,
        input: &serde_json::Value,
        invocation: Invocation,
    ) -> Result<CallReport<serde_json::Value>, ConnectionError> {
        let connector = self.connector()?;
        // An input the operation's declared schema refuses never reaches the plugin.
        if let Err(refused) = crate::schemas::check_input(&self.plugin.id, &self.plugin.info, operation, input) {
            return Ok(CallReport::not_run(refused, Duration::ZERO));
        }
        let mut report = engine.plugins().invoke(connector, &self.spec, operation, input, invocation).await;
        if let (true, Ok(output)) = (self.validate_output, &report.result)
            && let Err(refused) = crate::schemas::check_output(&self.plugin.id, &self.plugin.info, operation, output)
        {
            report.result = Err(refused);
        }
        Ok(report)
    }

    /// Pings the system and stores the API calls it made.
    pub async fn ping(&self, engine: &Engine) -> Result<CallReport<HealthReport>, ConnectionError> {
        let report = engine.plugins().ping(self.connector()?, &self.spec).await;
        engine.store.insert_api_calls(&report.api_calls).await?;
        Ok(report)
    }
}
