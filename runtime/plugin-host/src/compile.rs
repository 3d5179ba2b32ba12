//! Compiling components: the process-wide wasmtime engine (pooling allocator, epoch ticker),
//! compiles bounded in number and time, compiled components cached in memory and as
//! precompiled artifacts on disk, and the checks that a binary is a component of a world this
//! host runs.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::{ConnectorPreOf, Loaded, MAX_MEMORY_BYTES, PluginHost, TICK, TransformPreOf};

/// The process-wide engine, with the pooling allocator and epoch interruption, and the thread
/// that advances its epoch.
pub(crate) fn engine() -> &'static Engine {
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

/// One permit per call with a live instance, for the whole process: the instance pool it
/// guards is the process-wide engine's (see [`crate::MAX_LIVE_CALLS`]).
pub(crate) fn live_calls() -> &'static Arc<tokio::sync::Semaphore> {
    static PERMITS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(crate::MAX_LIVE_CALLS)))
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

impl PluginHost {
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_compile_waits_while_another_holds_the_one_permit() {
        let dir = std::env::temp_dir().join(format!("dibop-compile-{}", uuid::Uuid::new_v4()));
        let host = Arc::new(PluginHost::new(&dir, false, 0).expect("host"));
        let (_, bytes) = crate::registry::BUNDLED[3];
        // Keys no other test uses, so that each load compiles: first to see how long it takes.
        let started = std::time::Instant::now();
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
