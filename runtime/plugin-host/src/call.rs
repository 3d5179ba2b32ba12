//! One call: a fresh store (or a warm instance of the same connection) with the call's limits,
//! deadline, captured output and outbound policy; the call of an export of either world; and
//! what the call left behind, with traps and timeouts turned into clear errors and credentials
//! redacted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings::connector::Connector;
use crate::bindings::transform::Transform;
use crate::bindings::types;
use crate::host::{self, CallData, State};
use crate::outbound::{NetworkPolicy, Outbound, Recorder, Redactor};
use crate::{
    CallError, CallReport, CallSpec, ConnectorPre, HealthReport, Invocation, Loaded, MAX_LIVE_CALLS_PER_CONNECTION,
    MAX_LIVE_CALLS_PER_ENTERPRISE, MAX_MEMORY_BYTES, MAX_OUTPUT_BYTES, OUTPUT_CAPACITY, PluginHost, PluginInfo,
    TransformPre, warm,
};

/// An instance whose memories grew past this is dropped after its call instead of kept warm.
const WARM_MEMORY_BYTES: usize = 64 << 20;

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

/// What a call answers, with credential values redacted from it.
trait Redacted {
    fn redacted(self, redactor: &Redactor) -> Self;
}

impl Redacted for serde_json::Value {
    fn redacted(mut self, redactor: &Redactor) -> Self {
        redactor.redact_value(&mut self);
        self
    }
}

impl Redacted for HealthReport {
    fn redacted(mut self, redactor: &Redactor) -> Self {
        self.message = self.message.map(|m| redactor.redact(&m));
        self
    }
}

impl Redacted for PluginInfo {
    /// `describe()` runs without a connection's credentials.
    fn redacted(self, _: &Redactor) -> Self {
        self
    }
}

/// The call's redactor with the credentials the host added meanwhile (an OAuth2 token), and
/// its log lines redacted again with them.
fn final_redactor(call: &CallData, recorder: &Recorder) -> (Redactor, Vec<crate::host::LogLine>) {
    let added = recorder.added_secrets();
    let mut logs = call.logs.lock().map(|l| l.clone()).unwrap_or_default();
    if added.is_empty() {
        return (call.redactor.clone(), logs);
    }
    let redactor = call.redactor.with(added);
    for line in &mut logs {
        line.message = redactor.redact(&line.message);
        redactor.redact_value(&mut line.fields);
    }
    (redactor, logs)
}

/// The permits of one call with a live instance: its connection's, its enterprise's and the
/// node's.
struct LivePermits {
    _all: Option<OwnedSemaphorePermit>,
    _share: Option<OwnedSemaphorePermit>,
    _connection: Option<OwnedSemaphorePermit>,
}

/// The permit of `key` in `map` (made with `cap` permits when missing); maps of more than 1024
/// keys forget those with no call in flight first.
async fn permit_of<K: Clone + Eq + std::hash::Hash>(
    map: &Mutex<HashMap<K, Arc<Semaphore>>>,
    key: &K,
    cap: usize,
) -> Option<OwnedSemaphorePermit> {
    let semaphore = {
        let mut map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 1024 {
            map.retain(|_, s| s.available_permits() < cap);
        }
        map.entry(key.clone()).or_insert_with(|| Arc::new(Semaphore::new(cap))).clone()
    };
    semaphore.acquire_owned().await.ok()
}

/// The answer of a call that found no live instance free within its timeout: it made no request.
fn no_live_call<R>(spec: &CallSpec, waited: Duration) -> CallReport<R> {
    let scope =
        if spec.origin.connection_id.is_some() { "its connection's and enterprise's" } else { "its enterprise's" };
    let error = CallError {
        code: "timeout".into(),
        message: format!(
            "waited {} ms for a live call and none of {scope} freed within the deadline of {} ms \
             (their other calls hold them all: a system that does not answer?)",
            waited.as_millis(),
            spec.limits.timeout.as_millis()
        ),
        retryable: true,
        http_status: None,
    };
    CallReport::not_run(error, waited)
}

impl PluginHost {
    /// What one call hands its store: config, credentials, the network policy with the call's
    /// deadline, and a recorder for its requests.
    fn call_state(&self, spec: &CallSpec) -> (Arc<CallData>, Outbound, Arc<Recorder>, Instant) {
        let deadline = Instant::now() + spec.limits.timeout;
        let call = Arc::new(CallData {
            config: spec.config.clone(),
            redactor: Redactor::new(spec.secrets.values().chain(&spec.redact).cloned()),
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
            auth: spec.auth.clone(),
            pacer: spec.pacer.clone(),
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

    /// Waits until the call may hold an instance: within its connection's share of the live
    /// calls, then its enterprise's, then all of them, for at most the call's timeout (the wait
    /// is part of it). Answers the permits (they go back when dropped) and the spec with the
    /// time that is left, or the report of a call that waited out its timeout.
    async fn live_permits<R>(&self, spec: &CallSpec) -> Result<(LivePermits, Option<CallSpec>), CallReport<R>> {
        let waiting = Instant::now();
        let acquire = async {
            let connection = match &spec.origin.connection_id {
                Some(id) => {
                    let key = (spec.origin.enterprise_id.clone(), id.clone());
                    permit_of(&self.connection_calls, &key, MAX_LIVE_CALLS_PER_CONNECTION).await
                }
                None => None,
            };
            let share =
                permit_of(&self.enterprise_calls, &spec.origin.enterprise_id, MAX_LIVE_CALLS_PER_ENTERPRISE).await;
            let all = crate::compile::live_calls().clone().acquire_owned().await.ok();
            LivePermits { _all: all, _share: share, _connection: connection }
        };
        let Ok(permits) = tokio::time::timeout(spec.limits.timeout, acquire).await else {
            return Err(no_live_call(spec, waiting.elapsed()));
        };
        // A wait long enough to matter shortens the call's own deadline.
        let waited = waiting.elapsed();
        let narrowed = (waited >= Duration::from_millis(5)).then(|| {
            let mut narrowed = spec.clone();
            narrowed.limits.timeout = spec.limits.timeout.saturating_sub(waited).max(Duration::from_millis(1));
            narrowed
        });
        Ok((permits, narrowed))
    }

    /// Runs `body` in a fresh store under `spec`'s limits and collects what the call left.
    async fn call<R: Redacted>(
        &self,
        spec: &CallSpec,
        body: impl AsyncFnOnce(&mut Store<State>, &mut Duration) -> wasmtime::Result<Result<R, CallError>>,
    ) -> CallReport<R> {
        // Held until the store is dropped: its instance goes back to the pool first.
        let (_live, narrowed) = match self.live_permits(spec).await {
            Ok(live) => live,
            Err(report) => return report,
        };
        let spec = narrowed.as_ref().unwrap_or(spec);
        let started = Instant::now();
        let (mut store, call, recorder, stdout, stderr) = self.store(spec);
        let setup = started.elapsed();
        let mut instantiate = Duration::ZERO;
        // The epoch deadline stops guest code; this outer bound also stops a stuck host call.
        let outer = spec.limits.timeout + Duration::from_millis(500);
        let run = crate::cpu::OnCpu::new(body(&mut store, &mut instantiate), crate::cpu::permits());
        let outcome = tokio::time::timeout(outer, run).await;
        let dropping = Instant::now();
        drop(store);
        let teardown = dropping.elapsed();
        let duration = started.elapsed();
        let (redactor, logs) = final_redactor(&call, &recorder);
        let redactor = &redactor;
        let stderr_text = redactor.redact(&String::from_utf8_lossy(&stderr.contents()));
        let result = settle(outcome, spec, &stderr_text, redactor).map(|r| r.redacted(redactor));
        let api_calls = recorder.snapshot(redactor);
        self.observe(instantiate, &api_calls);
        CallReport {
            result,
            duration,
            setup,
            instantiate,
            teardown,
            logs,
            api_calls,
            stdout: redactor.redact(&String::from_utf8_lossy(&stdout.contents())),
            stderr: stderr_text,
            late: recorder.late(),
        }
    }

    /// `describe()` of either world, under `spec`'s limits.
    pub async fn describe(&self, loaded: &Loaded, spec: &CallSpec) -> CallReport<PluginInfo> {
        match loaded {
            Loaded::Connector(pre) => {
                self.call(spec, async |store, instantiate| {
                    let t = Instant::now();
                    let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
                    *instantiate = t.elapsed();
                    let connector = Connector::new(&mut *store, &instance)?;
                    let mut info = PluginInfo::from(connector.call_describe(&mut *store).await?);
                    // A component of the `connector-with-capabilities` world also says what it
                    // needs; one of the plain `connector` world declares nothing.
                    if let Ok(capabilities) = instance.get_typed_func::<(), (String,)>(&mut *store, "capabilities") {
                        let (text,) = capabilities.call_async(&mut *store, ()).await?;
                        match serde_json::from_str::<Option<crate::capabilities::Capabilities>>(&text) {
                            Ok(declared) => info.capabilities = declared,
                            Err(e) => {
                                return Ok(Err(CallError {
                                    code: "invalid_output".into(),
                                    message: format!(
                                        "capabilities: expected null or {{\"hosts\": [...], \"memory_mb\": N}}: {e}"
                                    ),
                                    retryable: false,
                                    http_status: None,
                                }));
                            }
                        }
                    }
                    Ok(Ok(info))
                })
                .await
            }
            Loaded::Transform(pre) => {
                self.call(spec, async |store, instantiate| {
                    let t = Instant::now();
                    let instance: Transform = pre.instantiate_async(&mut *store).await?;
                    *instantiate = t.elapsed();
                    Ok(Ok(PluginInfo::from(instance.call_describe(&mut *store).await?)))
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
        let context = types::CallContext::from(context);
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
        // Held until the instance is back in the warm pool or dropped.
        let (_live, narrowed) = match self.live_permits(spec).await {
            Ok(live) => live,
            Err(report) => return report,
        };
        let spec = narrowed.as_ref().unwrap_or(spec);
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
        let outcome = tokio::time::timeout(outer, crate::cpu::OnCpu::new(run, crate::cpu::permits())).await;
        w.uses += 1;
        let (redactor, logs) = final_redactor(&call, &recorder);
        let redactor = &redactor;
        let tail = |pipe: &MemoryOutputPipe, from: usize| {
            let bytes = pipe.contents();
            redactor.redact(&String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()))
        };
        let (stdout_text, stderr_text) = (tail(&w.stdout, out_from), tail(&w.stderr, err_from));
        let result = settle(outcome, spec, &stderr_text, redactor).map(|r| r.redacted(redactor));
        let dropping = Instant::now();
        // Only a clean call leaves an instance fit for another; its output pipes must have room,
        // and an instance whose memory grew large (a call that read a large answer) is not kept
        // (the pool would hold that memory while idle).
        let roomy = w.stdout.contents().len() < OUTPUT_CAPACITY / 2
            && w.stderr.contents().len() < OUTPUT_CAPACITY / 2
            && w.store.data().limits.memory_used() <= WARM_MEMORY_BYTES;
        if result.is_ok() && roomy {
            // An idle instance keeps no hooks of its last call: the engine's authenticator and
            // pacer hold parts of the engine, which owns this pool (a circle would keep every
            // pooled instance alive); the next call sets its own.
            let outbound = &mut w.store.data_mut().outbound;
            outbound.auth = None;
            outbound.pacer = None;
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
            logs,
            api_calls,
            stdout: stdout_text,
            stderr: stderr_text,
            late: recorder.late(),
        }
    }

    /// `ping()` of a connector.
    pub async fn ping(&self, pre: &ConnectorPre, spec: &CallSpec) -> CallReport<HealthReport> {
        self.call(spec, async |store, instantiate| {
            let t = Instant::now();
            let instance = pre.instantiate_async(&mut *store).await?;
            *instantiate = t.elapsed();
            Ok(Ok(HealthReport::from(instance.call_ping(&mut *store).await?)))
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

fn parse_output(text: &str) -> Result<serde_json::Value, CallError> {
    if text.len() > MAX_OUTPUT_BYTES {
        return Err(CallError {
            code: "output_too_large".into(),
            message: format!("the plugin answered {} bytes; at most {MAX_OUTPUT_BYTES} are accepted", text.len()),
            retryable: false,
            http_status: None,
        });
    }
    let invalid =
        |message: String| CallError { code: "invalid_output".into(), message, retryable: false, http_status: None };
    // Measured before the parser recurses (see `dibop_core::nesting`).
    dibop_core::nesting::check_json_text(text.as_bytes(), "the plugin's answer").map_err(invalid)?;
    serde_json::from_str(text).map_err(|e| invalid(format!("the plugin answered text that is not JSON: {e}")))
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
    // An uncaught Python exception comes first: componentize-py's runtime (Rust) panics after it
    // with "Python function threw an unexpected exception", which says nothing.
    let message = match (python_exception(stderr), rust_panic(stderr)) {
        // An uncaught Python exception: its last line and the author's frames.
        (Some(raised), _) => format!("the plugin raised {raised}"),
        // A Rust panic: once, with its place and message, without the backtrace hint.
        (None, Some((place, said))) => format!("the plugin panicked at {place}: {said}"),
        (None, None) => {
            // The trap's own reason (`wasm \`unreachable\` instruction executed`), not the
            // empty "wasm backtrace:" header around it.
            let reason = err.downcast_ref::<Trap>().map_or_else(
                || err.root_cause().to_string().lines().next().unwrap_or_default().to_owned(),
                ToString::to_string,
            );
            let stderr = stderr.trim();
            if stderr.is_empty() {
                format!("the plugin trapped: {reason}")
            } else {
                format!("the plugin trapped: {reason}; stderr: {}", last_chars(stderr, 2000))
            }
        }
    };
    CallError { code: "trap".into(), message: redactor.redact(&message), retryable: false, http_status: None }
}

/// The last uncaught Python exception in a plugin's stderr, as `Type: message (at file:line in
/// function, ...)` with the frames of the author's files (not the runtime's or the bindings').
fn python_exception(stderr: &str) -> Option<String> {
    let (_, trace) = stderr.rsplit_once("Traceback (most recent call last):")?;
    // What the runtime printed after the traceback (its panic) is not part of it.
    let trace = trace.split("\nthread '").next().unwrap_or(trace);
    let lines: Vec<&str> = trace.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let raised = lines.iter().rev().find(|l| !l.starts_with(' '))?.trim();
    let frames: Vec<String> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("File \""))
        .filter_map(|l| {
            let (file, rest) = l.split_once("\", line ")?;
            let (line, function) = rest.split_once(", in ").unwrap_or((rest, "?"));
            let runtime = file.starts_with('<') || file.contains("componentize_py") || file.contains("/lib/python");
            // componentize-py mounts each Python path folder as `/0/`, `/1/`, ...: the author's
            // own path is what follows.
            let file = file
                .strip_prefix('/')
                .and_then(|rest| rest.split_once('/'))
                .filter(|(mount, _)| !mount.is_empty() && mount.bytes().all(|b| b.is_ascii_digit()))
                .map_or(file, |(_, own)| own);
            (!runtime && !file.ends_with("wit_world/__init__.py")).then(|| format!("{file}:{line} in {function}"))
        })
        .collect();
    let raised = last_chars(raised, 1000);
    Some(if frames.is_empty() { raised.to_owned() } else { format!("{raised} (at {})", frames.join(", ")) })
}

/// The place (`src/lib.rs:42:9`) and message of the last Rust panic in a plugin's stderr.
fn rust_panic(stderr: &str) -> Option<(String, String)> {
    let (_, rest) = stderr.rsplit_once(" panicked at ")?;
    let (place, message) = rest.split_once(":\n")?;
    let said: Vec<&str> = message
        .lines()
        .take_while(|line| !line.starts_with("note: run with `RUST_BACKTRACE") && !line.starts_with("stack backtrace:"))
        .collect();
    let said = said.join("\n");
    let said = said.trim();
    (!place.contains('\n')).then(|| (place.trim().to_owned(), last_chars(said, 2000).to_owned()))
}

/// The last `n` characters of `text` (the end of a plugin's stderr is where its crash is).
pub fn last_chars(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let start = text.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i);
    &text[start..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rust_panic_is_read_once_with_its_place() {
        let stderr = "\nthread '<unnamed>' (1) panicked at src/lib.rs:75:24:\nno stock for VIN\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(super::rust_panic(stderr), Some(("src/lib.rs:75:24".into(), "no stock for VIN".into())));
        let two = "thread 'a' panicked at a.rs:1:1:\nfirst\nthread 'b' panicked at b.rs:2:2:\nsecond\nline two\n";
        assert_eq!(super::rust_panic(two), Some(("b.rs:2:2".into(), "second\nline two".into())));
        assert_eq!(super::rust_panic("Traceback (most recent call last):\n  ValueError: x"), None);
    }

    #[test]
    fn a_python_exception_keeps_its_message_and_the_authors_frames() {
        let stderr = "Traceback (most recent call last):\n  File \"/lib/python3.12/componentize_py_runtime.py\", line 9, in call\n    x()\n  File \"app.py\", line 42, in invoke\n    return decode(input)\n  File \"app.py\", line 17, in decode\n    raise ValueError(f\"bad vin {vin}\")\nValueError: bad vin 123\n";
        assert_eq!(
            super::python_exception(stderr).as_deref(),
            Some("ValueError: bad vin 123 (at app.py:42 in invoke, app.py:17 in decode)")
        );
        assert_eq!(super::python_exception("thread 'a' panicked at a.rs:1:1:\nx"), None);
        // As componentize-py 0.25 writes it: its runtime's panic follows the traceback, and the
        // author's folder is mounted as /0/.
        let real = "Traceback (most recent call last):\n  File \"/0/app.py\", line 78, in invoke\n  File \"/0/app.py\", line 40, in explode\nKeyError: 'missing'\n\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            super::python_exception(real).as_deref(),
            Some("KeyError: 'missing' (at app.py:78 in invoke, app.py:40 in explode)")
        );
    }

    /// A pacer that only holds `marker` (as the engine's hold the engine's parts).
    struct Holding(#[allow(dead_code)] std::sync::Arc<()>);

    impl crate::outbound::Pacer for Holding {
        fn send_by(&self) -> i64 {
            i64::MAX
        }

        fn repace(
            &self,
            _: std::time::Duration,
        ) -> futures_util::future::BoxFuture<'static, Option<std::time::Duration>> {
            Box::pin(async { None })
        }
    }

    #[tokio::test]
    async fn a_pooled_instance_keeps_no_hooks_of_its_last_call() {
        let dir = tempfile::tempdir().expect("dir");
        let host = crate::PluginHost::new(dir.path(), true, u32::MAX).expect("host");
        let bytes = std::fs::read(format!("{}/hostile.wasm", crate::registry::GUEST_DIR)).expect("guest");
        let loaded = host.load(&dibop_core::sha256_hex(&bytes), &bytes).await.expect("loads");
        let crate::Loaded::Connector(connector) = loaded else { panic!("a connector") };
        let marker = std::sync::Arc::new(());
        let pacer = crate::outbound::PaceHandle(std::sync::Arc::new(Holding(marker.clone())));
        let spec = crate::CallSpec { plugin: "hostile".into(), pacer: Some(pacer), ..crate::CallSpec::default() };
        let input = serde_json::json!({"still": "here"});
        let report = host.invoke(&connector, &spec, "echo", &input, crate::Invocation::default()).await;
        assert_eq!(report.result.expect("echo"), input);
        drop(spec);
        // The instance went back to the pool (a clean call); it must not keep the pacer, or a
        // pacer holding the engine that owns the pool would keep both alive for ever.
        assert_eq!(std::sync::Arc::strong_count(&marker), 1, "the pooled instance holds its last call's pacer");
    }

    #[test]
    fn last_chars_keeps_the_end_on_char_boundaries() {
        assert_eq!(super::last_chars("héllo", 3), "llo");
        assert_eq!(super::last_chars("héllo", 4), "éllo");
        assert_eq!(super::last_chars("ab", 5), "ab");
        assert_eq!(super::last_chars("ab", 0), "");
    }
}
