//! The WebAssembly plugin host: one engine, compiled components cached by sha256 (in memory and
//! as precompiled artifacts on disk), and calls that each get a fresh store with a memory limit,
//! a deadline, captured stdout/stderr and an outbound-HTTP policy.
//!
//! Invariant: a plugin sees only what its call hands it: the connection's config and decrypted
//! credentials, no filesystem, no environment, no sockets, and HTTP only through
//! [`outbound`]'s hook. Credential values are redacted from everything the call leaves behind.

mod bindings;
pub mod egress;
pub mod host;
pub mod outbound;
pub mod redact;
pub mod registry;
mod warm;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::WasiHttpCtx;

use bindings::connector::Connector;
pub use bindings::connector::ConnectorPre as ConnectorPreOf;
use bindings::transform::Transform;
pub use bindings::transform::TransformPre as TransformPreOf;

/// A pre-instantiated connector.
pub type ConnectorPre = ConnectorPreOf<State>;
/// A pre-instantiated transform.
pub type TransformPre = TransformPreOf<State>;
use bindings::types;
use host::{CallData, LogLine, State};
use outbound::{ApiCallRecord, CallOrigin, NetworkPolicy, Outbound, Recorder, Redactor};

/// Epoch ticks per second; deadlines are checked (and the executor is yielded to) at each tick.
const TICK: Duration = Duration::from_millis(10);
/// Bytes of stdout and of stderr kept per call.
const OUTPUT_CAPACITY: usize = 256 * 1024;
/// Largest memory any call may be given, whatever a connection asks for.
pub const MAX_MEMORY_BYTES: usize = 512 * 1024 * 1024;

/// The process-wide engine, with the pooling allocator and epoch interruption, and the thread
/// that advances its epoch.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(200)
            .total_core_instances(2000)
            .total_memories(400)
            .total_tables(400)
            .total_stacks(200)
            .max_memory_size(MAX_MEMORY_BYTES)
            .table_elements(200_000)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            .max_tables_per_module(4)
            .max_memories_per_module(2)
            // Reset memories and tables by zeroing only the pages a call dirtied (found with
            // Linux's PAGEMAP_SCAN where available) instead of returning pages to the kernel
            // and faulting them in again: most calls touch a few pages of a MiB or more.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10);
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(err) => {
                // Pooling needs virtual address space; fall back rather than refuse to start.
                tracing::warn!(error = %format!("{err:#}"), "pooling allocator unavailable; using on-demand allocation");
                let mut config = Config::new();
                config.wasm_component_model(true).epoch_interruption(true);
                Engine::new(&config).expect("a default wasmtime engine")
            }
        };
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("dibop-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawning the epoch thread");
        engine
    })
}

/// Components compiled at once; more wait their turn.
const COMPILE_CONCURRENCY: usize = 1;

fn compile_permits() -> &'static Arc<tokio::sync::Semaphore> {
    static PERMITS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(COMPILE_CONCURRENCY)))
}

/// Components compiled in this process, by sha256 (shared by every server in the process).
fn compiled() -> &'static Mutex<HashMap<String, Component>> {
    static COMPILED: OnceLock<Mutex<HashMap<String, Component>>> = OnceLock::new();
    COMPILED.get_or_init(Mutex::default)
}

/// A component ready to instantiate, by world.
#[derive(Clone)]
pub enum Loaded {
    Connector(ConnectorPre),
    Transform(TransformPre),
}

impl Loaded {
    pub fn world(&self) -> &'static str {
        match self {
            Self::Connector(_) => "connector",
            Self::Transform(_) => "transform",
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
            max_response_bytes: 10 << 20,
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

/// Longest error code and message of a plugin kept, in bytes.
const MAX_ERROR_CODE: usize = 64;
const MAX_ERROR_MESSAGE: usize = 4096;
/// Largest output (JSON text) a plugin may answer, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

impl From<types::PluginError> for CallError {
    fn from(e: types::PluginError) -> Self {
        Self {
            code: dibop_core::bounded::clip(&e.code, MAX_ERROR_CODE).into_owned(),
            message: dibop_core::bounded::clip(&e.message, MAX_ERROR_MESSAGE).into_owned(),
            retryable: e.retryable,
            http_status: e.http_status,
        }
    }
}

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
}

/// What a plugin says about itself (`describe()`), in one shape for both worlds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginInfo {
    pub world: String,
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
}

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

/// What a call's body came to, as its caller sees it: the outer timeout and traps classified,
/// credentials redacted from the message.
fn settle<R>(
    outcome: Result<wasmtime::Result<Result<R, CallError>>, tokio::time::error::Elapsed>,
    spec: &CallSpec,
    stderr: &str,
    redactor: &Redactor,
) -> Result<R, CallError> {
    let result = match outcome {
        Err(_) => Err(timeout_error(spec.limits.timeout.as_millis())),
        Ok(Ok(result)) => result,
        Ok(Err(err)) => Err(classify_trap(&err, spec, stderr, redactor)),
    };
    result.map_err(|mut e| {
        e.message = redactor.redact(&e.message);
        e
    })
}

fn schema(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

fn snake(debug: impl std::fmt::Debug) -> String {
    let full = format!("{debug:?}");
    // The generated Debug may name the type (`AuthType::ApiKey`): keep the variant.
    let name = full.rsplit("::").next().unwrap_or(&full);
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl PluginHost {
    /// A host keeping precompiled artifacts under `<data_dir>/plugins/artifacts`; a warm
    /// connector instance serves up to `warm_calls` calls (0: a fresh instance per call).
    pub fn new(data_dir: &Path, allow_private_networks: bool, warm_calls: u32) -> anyhow::Result<Self> {
        let engine = engine().clone();
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

    /// Forgets a component that was loaded for an upload that was then refused: nothing of a
    /// rejected upload stays cached, in memory or on disk.
    pub fn forget(&self, sha256: &str) {
        if let Ok(mut map) = self.loaded.lock() {
            map.remove(sha256);
        }
        if let Ok(mut map) = compiled().lock() {
            map.remove(sha256);
        }
        if let Ok(entries) = std::fs::read_dir(&self.artifacts) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(sha256) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
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

    /// The component with these bytes, when this host has loaded it already.
    pub fn cached(&self, sha256: &str) -> Option<Loaded> {
        self.loaded.lock().ok().and_then(|l| l.get(sha256).cloned())
    }

    /// Compiles `bytes` (or finds them compiled) within the compile timeout and checks they are
    /// a component of a supported world. The error says why not, for a 422.
    pub async fn load(&self, sha256: &str, bytes: &[u8]) -> Result<Loaded, String> {
        self.load_within(sha256, bytes, Some(self.compile_timeout)).await
    }

    /// [`PluginHost::load`] for the bundled plugins: our own bytes, compiled at every start, are
    /// not bound by the compile timeout (a low one must not keep the server from starting).
    pub async fn load_bundled(&self, sha256: &str, bytes: &[u8]) -> Result<Loaded, String> {
        self.load_within(sha256, bytes, None).await
    }

    async fn load_within(&self, sha256: &str, bytes: &[u8], timeout: Option<Duration>) -> Result<Loaded, String> {
        if let Some(loaded) = self.cached(sha256) {
            return Ok(loaded);
        }
        check_header(bytes)?;
        let component =
            self.component(sha256, bytes, timeout).await.map_err(|e| match e.downcast_ref::<Abandoned>() {
                Some(abandoned) => abandoned.to_string(),
                None => format!("not a valid component: {e:#}"),
            })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("the component needs imports the sandbox does not provide: {e:#}"))?;
        let loaded = match ConnectorPreOf::new(pre.clone()) {
            Ok(connector) => Loaded::Connector(connector),
            Err(connector_err) => match TransformPreOf::new(pre) {
                Ok(transform) => Loaded::Transform(transform),
                Err(_) => {
                    return Err(format!(
                        "the component exports neither the dibop:plugin connector world (describe, invoke, ping) \
                         nor the transform world (describe, run): {connector_err:#}"
                    ));
                }
            },
        };
        if let Ok(mut map) = self.loaded.lock() {
            map.insert(sha256.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    /// The compiled component: from this process, from the on-disk artifact, or compiled now
    /// (off the async executor) and written as an artifact.
    async fn component(&self, sha256: &str, bytes: &[u8], timeout: Option<Duration>) -> anyhow::Result<Component> {
        if let Some(component) = compiled().lock().ok().and_then(|c| c.get(sha256).cloned()) {
            return Ok(component);
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        let artifact = self.artifacts.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
        let engine = self.engine.clone();
        let bytes = bytes.to_vec();
        // Compiling is the costly part: at most COMPILE_CONCURRENCY at once (the permit stays
        // with the compiling thread, even past the time limit), each waited for at most
        // `timeout`; an abandoned compile writes no artifact.
        let permit = compile_permits().clone().acquire_owned().await?;
        let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gave_up = abandoned.clone();
        let compiling = tokio::task::spawn_blocking(move || -> anyhow::Result<Component> {
            let _permit = permit;
            if artifact.exists() {
                match load_artifact(&engine, &artifact) {
                    Ok(component) => return Ok(component),
                    Err(err) => tracing::warn!(error = %format!("{err:#}"), "discarding unusable artifact"),
                }
            }
            let serialized = engine.precompile_component(&bytes)?;
            anyhow::ensure!(!gave_up.load(std::sync::atomic::Ordering::SeqCst), "compiling was abandoned");
            let temporary = artifact.with_extension("tmp");
            std::fs::write(&temporary, &serialized)?;
            std::fs::rename(&temporary, &artifact)?;
            load_artifact(&engine, &artifact)
        });
        let component = match timeout {
            None => compiling.await??,
            Some(timeout) => match tokio::time::timeout(timeout, compiling).await {
                Ok(joined) => joined??,
                Err(_) => {
                    abandoned.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Err(Abandoned(timeout).into());
                }
            },
        };
        if let Ok(mut map) = compiled().lock() {
            map.insert(sha256.to_owned(), component.clone());
        }
        Ok(component)
    }

    /// What one call hands its store: config, credentials, the network policy with the call's
    /// deadline, and a recorder for its requests.
    fn call_state(&self, spec: &CallSpec) -> (Arc<CallData>, Outbound, Arc<Recorder>, Instant) {
        let deadline = Instant::now() + spec.limits.timeout;
        let call = Arc::new(CallData {
            config: spec.config.clone(),
            redactor: Redactor::new(spec.secrets.values().cloned()),
            secrets: spec.secrets.clone(),
            logs: Mutex::default(),
            log_bytes: Default::default(),
            plugin: spec.plugin.clone(),
        });
        let recorder = Arc::new(Recorder::default());
        let policy = NetworkPolicy {
            allowed_hosts: spec.allowed_hosts.clone(),
            allow_private: self.allow_private_networks,
            max_requests: spec.limits.max_requests,
            max_response_bytes: spec.limits.max_response_bytes,
            connect_timeout: spec.limits.connect_timeout,
            deadline,
        };
        let outbound = Outbound {
            policy: Arc::new(policy),
            origin: Arc::new(spec.origin.clone()),
            recorder: recorder.clone(),
            net: self.net.clone(),
        };
        (call, outbound, recorder, deadline)
    }

    fn store(
        &self,
        spec: &CallSpec,
    ) -> (Store<State>, Arc<CallData>, Arc<Recorder>, MemoryOutputPipe, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let (call, outbound, recorder, deadline) = self.call_state(spec);
        let state = State {
            wasi,
            http: WasiHttpCtx::new(),
            table: Default::default(),
            limits: host::CallLimits::new(spec.limits.memory_bytes.min(MAX_MEMORY_BYTES)),
            outbound,
            call: call.clone(),
            deadline,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        (store, call, recorder, stdout, stderr)
    }

    /// Runs `body` in a fresh store under `spec`'s limits and collects what the call left.
    async fn call<R>(
        &self,
        spec: &CallSpec,
        body: impl AsyncFnOnce(&mut Store<State>, &mut Duration) -> wasmtime::Result<Result<R, CallError>>,
    ) -> CallReport<R> {
        let started = Instant::now();
        let (mut store, call, recorder, stdout, stderr) = self.store(spec);
        let setup = started.elapsed();
        let mut instantiate = Duration::ZERO;
        // The epoch deadline stops guest code; this outer bound also stops a stuck host call.
        let outer = spec.limits.timeout + Duration::from_millis(500);
        let outcome = tokio::time::timeout(outer, body(&mut store, &mut instantiate)).await;
        let dropping = Instant::now();
        drop(store);
        let teardown = dropping.elapsed();
        let duration = started.elapsed();
        let redactor = &call.redactor;
        let stderr_text = redactor.redact(&String::from_utf8_lossy(&stderr.contents()));
        let result = settle(outcome, spec, &stderr_text, redactor);
        let api_calls = recorder.snapshot(redactor);
        self.observe(instantiate, &api_calls);
        CallReport {
            result,
            duration,
            setup,
            instantiate,
            teardown,
            logs: call.logs.lock().map(|l| l.clone()).unwrap_or_default(),
            api_calls,
            stdout: redactor.redact(&String::from_utf8_lossy(&stdout.contents())),
            stderr: stderr_text,
        }
    }

    /// `describe()` of either world, under `spec`'s limits.
    pub async fn describe(&self, loaded: &Loaded, spec: &CallSpec) -> CallReport<PluginInfo> {
        match loaded {
            Loaded::Connector(pre) => {
                self.call(spec, async |store, instantiate| {
                    let t = Instant::now();
                    let instance: Connector = pre.instantiate_async(&mut *store).await?;
                    *instantiate = t.elapsed();
                    let info = instance.call_describe(&mut *store).await?;
                    Ok(Ok(PluginInfo {
                        world: "connector".into(),
                        system_type: Some(snake(info.system_type)),
                        auth: Some(snake(info.auth)),
                        config: info
                            .config
                            .into_iter()
                            .map(|k| ConfigKeyInfo {
                                name: k.name,
                                description: k.description,
                                required: k.required,
                                secret: k.secret,
                            })
                            .collect(),
                        operations: info
                            .operations
                            .into_iter()
                            .map(|o| OperationInfo {
                                input_schema: schema(&o.input_schema),
                                output_schema: schema(&o.output_schema),
                                name: o.name,
                                method: o.method,
                                path: o.path,
                                description: o.description,
                            })
                            .collect(),
                        slug: info.slug,
                        name: info.name,
                        version: info.version,
                        description: info.description,
                        params_schema: None,
                    }))
                })
                .await
            }
            Loaded::Transform(pre) => {
                self.call(spec, async |store, instantiate| {
                    let t = Instant::now();
                    let instance: Transform = pre.instantiate_async(&mut *store).await?;
                    *instantiate = t.elapsed();
                    let info = instance.call_describe(&mut *store).await?;
                    Ok(Ok(PluginInfo {
                        world: "transform".into(),
                        slug: info.slug,
                        name: info.name,
                        version: info.version,
                        description: info.description,
                        system_type: None,
                        auth: None,
                        config: Vec::new(),
                        operations: Vec::new(),
                        params_schema: Some(schema(&info.params_schema)),
                    }))
                })
                .await
            }
        }
    }

    /// `invoke(operation, input, context)` of a connector, on a warm instance of the same
    /// connection when one is idle (see [`warm`]), else on a fresh one.
    pub async fn invoke(
        &self,
        pre: &ConnectorPre,
        spec: &CallSpec,
        operation: &str,
        input: &serde_json::Value,
        context: Invocation,
    ) -> CallReport<serde_json::Value> {
        let input = input.to_string();
        let context = types::CallContext {
            execution_id: context.execution_id,
            step: context.step,
            attempt: context.attempt,
            idempotency_key: context.idempotency_key,
        };
        if self.warm.max_uses > 0 {
            return self.invoke_warm(pre, spec, operation, &input, &context).await;
        }
        self.call(spec, async |store, instantiate| {
            let t = Instant::now();
            let instance = pre.instantiate_async(&mut *store).await?;
            *instantiate = t.elapsed();
            let answer = instance.call_invoke(&mut *store, operation, &input, &context).await?;
            Ok(answer.map_err(CallError::from).and_then(|text| parse_output(&text)))
        })
        .await
    }

    #[allow(clippy::ptr_arg)] // the generated binding takes `&String`
    async fn invoke_warm(
        &self,
        pre: &ConnectorPre,
        spec: &CallSpec,
        operation: &str,
        input: &String,
        context: &types::CallContext,
    ) -> CallReport<serde_json::Value> {
        let started = Instant::now();
        let key = warm::key(spec);
        let mut instantiate = Duration::ZERO;
        let (mut w, call, recorder) = match self.warm.take(key) {
            Some(mut warm) => {
                let (call, outbound, recorder, deadline) = self.call_state(spec);
                let data = warm.store.data_mut();
                data.call = call.clone();
                data.outbound = outbound;
                data.deadline = deadline;
                warm.store.set_epoch_deadline(1);
                (warm, call, recorder)
            }
            None => {
                let (store, call, recorder, stdout, stderr) = self.store(spec);
                (warm::Warm::new(store, stdout, stderr), call, recorder)
            }
        };
        let setup = started.elapsed();
        let outer = spec.limits.timeout + Duration::from_millis(500);
        let (out_from, err_from) = (w.stdout.contents().len(), w.stderr.contents().len());
        let run = async {
            if w.instance.is_none() {
                let t = Instant::now();
                w.instance = Some(pre.instantiate_async(&mut w.store).await?);
                instantiate = t.elapsed();
            }
            let instance = w.instance.as_ref().ok_or_else(|| wasmtime::Error::msg("no instance"))?;
            let answer = instance.call_invoke(&mut w.store, operation, input, context).await?;
            Ok::<_, wasmtime::Error>(answer.map_err(CallError::from).and_then(|text| parse_output(&text)))
        };
        let outcome = tokio::time::timeout(outer, run).await;
        w.uses += 1;
        let redactor = &call.redactor;
        let tail = |pipe: &MemoryOutputPipe, from: usize| {
            let bytes = pipe.contents();
            redactor.redact(&String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()))
        };
        let (stdout_text, stderr_text) = (tail(&w.stdout, out_from), tail(&w.stderr, err_from));
        let result = settle(outcome, spec, &stderr_text, redactor);
        let dropping = Instant::now();
        // Only a clean call leaves an instance fit for another; its output pipes must have room.
        let roomy = w.stdout.contents().len() < OUTPUT_CAPACITY / 2 && w.stderr.contents().len() < OUTPUT_CAPACITY / 2;
        if result.is_ok() && roomy {
            self.warm.give_back(key, w);
        } else {
            drop(w);
        }
        let teardown = dropping.elapsed();
        let api_calls = recorder.snapshot(redactor);
        self.observe(instantiate, &api_calls);
        CallReport {
            result,
            duration: started.elapsed(),
            setup,
            instantiate,
            teardown,
            logs: call.logs.lock().map(|l| l.clone()).unwrap_or_default(),
            api_calls,
            stdout: stdout_text,
            stderr: stderr_text,
        }
    }

    /// `ping()` of a connector.
    pub async fn ping(&self, pre: &ConnectorPre, spec: &CallSpec) -> CallReport<HealthReport> {
        self.call(spec, async |store, instantiate| {
            let t = Instant::now();
            let instance = pre.instantiate_async(&mut *store).await?;
            *instantiate = t.elapsed();
            let health = instance.call_ping(&mut *store).await?;
            let status = match health.status {
                types::HealthStatus::Online => "online",
                types::HealthStatus::Offline => "offline",
                types::HealthStatus::AuthError => "auth_error",
            };
            Ok(Ok(HealthReport { status, message: health.message }))
        })
        .await
    }

    /// `run(input, params)` of a transform.
    pub async fn run_transform(
        &self,
        pre: &TransformPre,
        spec: &CallSpec,
        input: &serde_json::Value,
        params: &serde_json::Value,
    ) -> CallReport<serde_json::Value> {
        let (input, params) = (input.to_string(), params.to_string());
        self.call(spec, async |store, instantiate| {
            let t = Instant::now();
            let instance = pre.instantiate_async(&mut *store).await?;
            *instantiate = t.elapsed();
            let answer = instance.call_run(&mut *store, &input, &params).await?;
            Ok(answer.map_err(CallError::from).and_then(|text| parse_output(&text)))
        })
        .await
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

fn parse_output(text: &str) -> Result<serde_json::Value, CallError> {
    if text.len() > MAX_OUTPUT_BYTES {
        return Err(CallError {
            code: "output_too_large".into(),
            message: format!("the plugin answered {} bytes; at most {MAX_OUTPUT_BYTES} are accepted", text.len()),
            retryable: false,
            http_status: None,
        });
    }
    serde_json::from_str(text).map_err(|e| CallError {
        code: "invalid_output".into(),
        message: format!("the plugin answered text that is not JSON: {e}"),
        retryable: false,
        http_status: None,
    })
}

fn timeout_error(ms: u128) -> CallError {
    CallError {
        code: "timeout".into(),
        message: format!("the plugin did not finish within its deadline of {ms} ms"),
        retryable: true,
        http_status: None,
    }
}

/// Turns a trap into a clear error: deadline, memory limit, or the plugin's own crash with its
/// stderr (where a Rust panic message lands).
fn classify_trap(err: &wasmtime::Error, spec: &CallSpec, stderr: &str, redactor: &Redactor) -> CallError {
    let text = format!("{err:#}");
    if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return timeout_error(spec.limits.timeout.as_millis());
    }
    if text.contains("growing memory") || text.contains("memory.grow") {
        return CallError {
            code: "memory_limit".into(),
            message: format!(
                "the plugin exceeded its memory limit of {} MiB ({})",
                spec.limits.memory_bytes >> 20,
                text.lines().next().unwrap_or_default()
            ),
            retryable: false,
            http_status: None,
        };
    }
    let stderr = stderr.trim();
    let message = if stderr.is_empty() {
        format!("the plugin trapped: {}", redactor.redact(&text))
    } else {
        let tail = last_chars(stderr, 2000);
        format!("the plugin trapped: {}; stderr: {tail}", redactor.redact(text.lines().next().unwrap_or_default()))
    };
    CallError { code: "trap".into(), message, retryable: false, http_status: None }
}

/// The last `n` characters of `text` (the end of a plugin's stderr is where its crash is).
pub fn last_chars(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let start = text.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i);
    &text[start..]
}

/// A compile that took longer than the compile timeout (and was abandoned).
#[derive(Debug, thiserror::Error)]
#[error(
    "compiling the component took longer than this server allows ({} ms, DIBOP_COMPILE_TIMEOUT_MS)",
    .0.as_millis()
)]
struct Abandoned(Duration);

/// Accepts only WebAssembly components: never core modules and never precompiled native code.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(b"\x7fELF") || bytes.starts_with(b"\xcf\xfa\xed\xfe") {
        return Err("precompiled native code is never accepted; upload the .wasm component".into());
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly binary (no \\0asm header)".into());
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => {
            Err("a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`".into())
        }
        _ => Err("unsupported WebAssembly binary version".into()),
    }
}

/// Loads a precompiled artifact this server wrote itself.
#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: the file was produced by `Engine::precompile_component` of this process's engine
    // configuration, in the server's own data directory; bytes from users are never loaded here.
    Ok(unsafe { Component::deserialize_file(engine, path) }?)
}

#[cfg(test)]
mod text_tests {
    #[test]
    fn last_chars_keeps_the_end_on_char_boundaries() {
        assert_eq!(super::last_chars("héllo", 3), "llo");
        assert_eq!(super::last_chars("héllo", 4), "éllo");
        assert_eq!(super::last_chars("ab", 5), "ab");
        assert_eq!(super::last_chars("ab", 0), "");
    }
}

#[cfg(test)]
mod compile_tests {
    use super::*;

    #[tokio::test]
    async fn a_compile_waits_while_another_holds_the_one_permit() {
        let dir = std::env::temp_dir().join(format!("dibop-compile-{}", uuid::Uuid::new_v4()));
        let host = Arc::new(PluginHost::new(&dir, false, 0).expect("host"));
        let (_, bytes) = registry::BUNDLED[3];
        // Keys no other test uses, so that each load compiles: first to see how long it takes.
        let started = Instant::now();
        host.load(&format!("measure-{}", uuid::Uuid::new_v4()), bytes).await.expect("compiles");
        let once = started.elapsed();

        let taken = compile_permits().clone().acquire_owned().await.expect("the permit");
        let waiting = tokio::spawn({
            let host = host.clone();
            async move { host.load(&format!("wait-{}", uuid::Uuid::new_v4()), bytes).await.is_ok() }
        });
        tokio::time::sleep((once * 5).max(Duration::from_secs(1))).await;
        assert!(!waiting.is_finished(), "a second compile ran beside the first (one takes {once:?})");
        drop(taken);
        assert!(waiting.await.expect("task"), "it compiles once the permit is free");
        let _ = std::fs::remove_dir_all(dir);
    }
}
