//! The WebAssembly plugin host: one wasmtime engine, compiled components cached by sha256 (in
//! memory and as precompiled artifacts on disk), and calls that each get a fresh store (or a
//! warm instance of the same connection) with a memory limit, a deadline, captured
//! stdout/stderr and an outbound-HTTP policy.
//!
//! Invariant: a plugin sees only what its call hands it: the connection's config and decrypted
//! credentials, no filesystem, no environment, no sockets, and HTTP only through
//! [`outbound`]'s hook. Credential values are redacted from everything the call leaves behind.
//!
//! Map: `compile` (the engine, compiles, the component cache), `call` (one call's store,
//! limits and outcome; the export of each world), `conversions` (WIT <-> host values),
//! `bindings` (the one `bindgen!`), `host` (the store's state and the `log`, `config` and
//! `secrets` imports), [`outbound`] (the `wasi:http` hook) and [`egress`] (where connections may
//! go), `warm` (the warm-instance pool), [`registry`] (uploads, bundled plugins, versions).
//!
//! ```
//! use dibop_plugin_host::registry::BUNDLED;
//! use dibop_plugin_host::{CallSpec, Loaded, PluginHost};
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let data_dir = tempfile::tempdir()?;
//! let host = PluginHost::new(data_dir.path(), false, 0)?;
//! // Bundled plugins are our own bytes; an upload goes through `load`, bounded by the compile
//! // timeout, and is checked the same way.
//! let (_, bytes) = BUNDLED.iter().find(|(name, _)| *name == "vin-check").expect("bundled");
//! let loaded = host.load_bundled(&dibop_core::sha256_hex(bytes), bytes).await.map_err(anyhow::Error::msg)?;
//! assert!(matches!(loaded, Loaded::Transform(_)));
//! let spec = CallSpec { plugin: "vin-check".into(), ..CallSpec::default() };
//! let info = host.describe(&loaded, &spec).await.result?;
//! assert_eq!((info.world.as_str(), info.slug.as_str()), ("transform", "vin-check"));
//! # Ok::<(), anyhow::Error>(())
//! # })?;
//! # Ok::<(), anyhow::Error>(())
//! ```

mod bindings;
mod call;
pub mod capabilities;
mod compile;
mod conversions;
mod cpu;
pub mod egress;
pub mod host;
pub mod outbound;
pub mod pool;
pub mod redact;
pub mod registry;
mod warm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dibop_core::World;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use bindings::connector::ConnectorPre as ConnectorPreOf;
pub use bindings::transform::TransformPre as TransformPreOf;
pub use call::last_chars;

/// A pre-instantiated connector.
pub type ConnectorPre = ConnectorPreOf<State>;
/// A pre-instantiated transform.
pub type TransformPre = TransformPreOf<State>;
use host::{LogLine, State};
use outbound::{ApiCallRecord, CallOrigin};

/// Epoch ticks per second; deadlines are checked (and the executor is yielded to) at each tick.
const TICK: Duration = Duration::from_millis(10);
/// Bytes of stdout and of stderr kept per call.
const OUTPUT_CAPACITY: usize = 256 * 1024;
/// Calls with a live instance at once in the process; more wait for one to end instead of
/// failing. With the idle warm instances of one host (`warm::TOTAL`, 32) they stay within the
/// process-wide pooling allocator's 200 component instances, 200 stacks and 400 memories (two
/// per instance at most): a node runs up to `max_in_flight` executions, far more than the pool
/// holds.
pub const MAX_LIVE_CALLS: usize = 160;
/// Calls with a live instance one enterprise may hold at once: a tenant whose calls all wait
/// on a slow (or hostile) system leaves the other half of [`MAX_LIVE_CALLS`] to the others.
pub const MAX_LIVE_CALLS_PER_ENTERPRISE: usize = MAX_LIVE_CALLS / 2;
/// Calls with a live instance one connection may hold at once: a system that hangs holds at
/// most half of its enterprise's share, and the tenant's other systems keep the rest.
pub const MAX_LIVE_CALLS_PER_CONNECTION: usize = MAX_LIVE_CALLS_PER_ENTERPRISE / 2;
/// Largest memory any call may be given, whatever a connection asks for.
pub const MAX_MEMORY_BYTES: usize = 512 * 1024 * 1024;

/// A component ready to instantiate, by world.
#[derive(Clone)]
pub enum Loaded {
    Connector(ConnectorPre),
    Transform(TransformPre),
}

impl Loaded {
    pub fn world(&self) -> World {
        match self {
            Self::Connector(_) => World::Connector,
            Self::Transform(_) => World::Transform,
        }
    }
}

/// Limits of one call.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub max_requests: u32,
    pub max_response_bytes: u64,
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(30),
            max_requests: 20,
            max_response_bytes: 32 << 20,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything one call runs with.
#[derive(Debug, Clone, Default)]
pub struct CallSpec {
    pub plugin: String,
    pub origin: CallOrigin,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub secrets: HashMap<String, String>,
    pub allowed_hosts: Vec<String>,
    pub limits: Limits,
    /// Host-managed authentication of the connection's requests.
    pub auth: Option<outbound::AuthHandle>,
    /// The rate limit of the call's first request at the moment it leaves (a step's call on a
    /// permit of its connection's limit).
    pub pacer: Option<outbound::PaceHandle>,
    /// More values to redact from everything the call leaves (credentials the plugin does not
    /// get, such as host-managed ones).
    pub redact: Vec<String>,
}

/// Why a call failed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CallError {
    /// The plugin's own error code, or `timeout`, `memory_limit`, `trap`, `invalid_output`.
    pub code: String,
    pub message: String,
    /// Whether the engine may retry.
    pub retryable: bool,
    /// The upstream HTTP status, when the plugin reported one.
    pub http_status: Option<u16>,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

/// Longest error code and message of a plugin kept, in bytes.
pub(crate) const MAX_ERROR_CODE: usize = 64;
pub(crate) const MAX_ERROR_MESSAGE: usize = 4096;
/// Largest output (JSON text) a plugin may answer, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 32 * 1024 * 1024;

/// The outcome of one call, with everything it left behind.
#[derive(Debug)]
pub struct CallReport<T> {
    pub result: Result<T, CallError>,
    pub duration: Duration,
    /// Creating the store (WASI context, limits, hooks).
    pub setup: Duration,
    pub instantiate: Duration,
    /// Dropping the store (returning the instance to the pool).
    pub teardown: Duration,
    pub logs: Vec<LogLine>,
    pub api_calls: Vec<ApiCallRecord>,
    pub stdout: String,
    pub stderr: String,
    /// The call's first request could not leave on its rate-limit permit, so it sent nothing;
    /// its result says nothing about the system ([`outbound::Pacer`]).
    pub late: bool,
}

impl<T> CallReport<T> {
    /// The report of a call that never ran its plugin: `error`, after `waited`.
    pub fn not_run(error: CallError, waited: Duration) -> Self {
        Self {
            result: Err(error),
            duration: waited,
            setup: Duration::ZERO,
            instantiate: Duration::ZERO,
            teardown: Duration::ZERO,
            logs: Vec::new(),
            api_calls: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            late: false,
        }
    }
}

/// What a plugin says about itself (`describe()`), in one shape for every world.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginInfo {
    pub world: World,
    pub slug: String,
    pub name: String,
    pub version: String,
    pub description: String,
    /// Connector only: general, oem, dms, crm, finance, telematics, logistics.
    pub system_type: Option<String>,
    /// Connector only: none, api_key, basic, bearer, oauth2_client_credentials.
    pub auth: Option<String>,
    #[serde(default)]
    pub config: Vec<ConfigKeyInfo>,
    #[serde(default)]
    pub operations: Vec<OperationInfo>,
    /// Transform only: JSON Schema of the step parameters.
    pub params_schema: Option<serde_json::Value>,
    /// Connector only: what it declares it needs (components of the
    /// `connector-with-capabilities` world); `None` when it declares nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<capabilities::Capabilities>,
}

impl PluginInfo {
    /// The memory a call of this connector gets unless a connection says otherwise: what it
    /// declares it wants, else [`DEFAULT_MEMORY_MB`].
    pub fn wanted_memory_mb(&self) -> u32 {
        self.capabilities.as_ref().and_then(|c| c.memory_mb).unwrap_or(DEFAULT_MEMORY_MB)
    }
}

/// A connection's memory per call when neither it nor its connector names one, MiB.
pub const DEFAULT_MEMORY_MB: u32 = 64;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigKeyInfo {
    pub name: String,
    pub description: String,
    pub required: bool,
    /// Credentials are secret: set through `credentials`, never shown.
    pub secret: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationInfo {
    pub name: String,
    pub method: String,
    pub path: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub output_schema: serde_json::Value,
}

/// A connector's health answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// online, offline or auth_error.
    pub status: &'static str,
    pub message: Option<String>,
}

/// Compiles, caches and calls plugins.
pub struct PluginHost {
    engine: Engine,
    /// Permits for calls with a live instance per enterprise (see
    /// [`MAX_LIVE_CALLS_PER_ENTERPRISE`]; the process-wide ones are `compile::live_calls`).
    enterprise_calls: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Permits for calls with a live instance per connection (see
    /// [`MAX_LIVE_CALLS_PER_CONNECTION`]), by enterprise and connection.
    connection_calls: Mutex<HashMap<(String, String), Arc<tokio::sync::Semaphore>>>,
    linker: Linker<State>,
    artifacts: PathBuf,
    loaded: Mutex<HashMap<String, Loaded>>,
    pub allow_private_networks: bool,
    /// Longest the compile of an upload is waited for (`compile_timeout_ms`).
    compile_timeout: Duration,
    warm: warm::Pool,
    /// How plugin requests reach the network (resolver, connector, TLS roots).
    net: Arc<outbound::Net>,
    /// Told about every finished call; the host itself keeps no metrics.
    observer: Option<Observer>,
}

/// Told about each finished call: its instantiation time (zero for a warm instance) and the
/// outbound requests it made. The server counts them in its metrics.
pub type Observer = Arc<dyn Fn(Duration, &[ApiCallRecord]) + Send + Sync>;

impl PluginHost {
    /// A host keeping precompiled artifacts under `<data_dir>/plugins/artifacts`; a warm
    /// connector instance serves up to `warm_calls` calls (0: a fresh instance per call).
    pub fn new(data_dir: &Path, allow_private_networks: bool, warm_calls: u32) -> anyhow::Result<Self> {
        let engine = compile::engine().clone();
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        bindings::log::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        bindings::config::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        bindings::secrets::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        let artifacts = data_dir.join("plugins").join("artifacts");
        std::fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
        Ok(Self {
            engine,
            linker,
            artifacts,
            loaded: Mutex::default(),
            allow_private_networks,
            compile_timeout: Duration::from_secs(180),
            warm: warm::Pool::new(warm_calls),
            enterprise_calls: Mutex::default(),
            connection_calls: Mutex::default(),
            net: Arc::new(outbound::Net::new(crate::egress::tls_config(None)?)),
            observer: None,
        })
    }

    /// Tells `observer` about every finished call.
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe(&self, instantiate: Duration, api_calls: &[ApiCallRecord]) {
        if let Some(observer) = &self.observer {
            observer(instantiate, api_calls);
        }
    }

    /// How plugin requests reach the network; the host's own requests (token endpoints) take
    /// the same path.
    pub fn net(&self) -> Arc<outbound::Net> {
        self.net.clone()
    }

    /// The same host reaching the network through `net` (e.g. TLS roots with an extra CA).
    pub fn with_net(mut self, net: outbound::Net) -> Self {
        self.net = Arc::new(net);
        self
    }

    /// The same host waiting at most `timeout` for the compile of an upload.
    pub fn with_compile_timeout(mut self, timeout: Duration) -> Self {
        self.compile_timeout = timeout;
        self
    }
}

/// Where an invocation comes from (the WIT `call-context`).
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub execution_id: Option<String>,
    pub step: Option<String>,
    pub attempt: u32,
    pub idempotency_key: String,
}
