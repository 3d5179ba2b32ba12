//! Per-call overhead of plugins: a fresh store + instantiate + invoke of a trivial Rust connector
//! (the `echo` operation of the `hostile` test guest) and of `vpic` against a loopback mock.
//!
//! Then fresh against warm (a reused instance, see `plugins::warm`) for the `echo` operation of
//! the Rust, Python and JavaScript connectors (the latter two built by
//! `scripts/build-connectors.sh`; skipped with a note when missing).
//!
//! Run: `scripts/build-connectors.sh && cargo bench -p dibop --bench plugin_call` (prints
//! p50/p90/p99 per case).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dibop::plugins::registry::{GUEST_DIR, sha256_hex};
use dibop::plugins::{CallSpec, Invocation, Loaded, PluginHost};
use serde_json::json;

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    format!("p50 {:>8.1?}  p90 {:>8.1?}  p99 {:>8.1?}  (n={})", at(0.50), at(0.90), at(0.99), samples.len())
}

async fn measure(
    host: &PluginHost,
    loaded: &Loaded,
    spec: &CallSpec,
    operation: &str,
    input: serde_json::Value,
    n: usize,
) {
    let Loaded::Connector(pre) = loaded else { panic!("not a connector") };
    let (mut total, mut instantiate) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut setup, mut teardown) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + n / 10 {
        let started = Instant::now();
        let report = host.invoke(pre, spec, operation, &input, Invocation::default()).await;
        let elapsed = started.elapsed();
        assert!(report.result.is_ok(), "{:?}", report.result);
        if i >= n / 10 {
            total.push(elapsed);
            instantiate.push(report.instantiate);
            setup.push(report.setup);
            teardown.push(report.teardown);
        }
    }
    println!("{operation:<12} total       {}", percentiles(total));
    println!("{operation:<12} setup       {}", percentiles(setup));
    println!("{operation:<12} instantiate {}", percentiles(instantiate));
    println!("{operation:<12} teardown    {}", percentiles(teardown));
}

async fn load(host: &PluginHost, name: &str) -> Loaded {
    let bytes = std::fs::read(format!("{GUEST_DIR}/{name}.wasm")).expect("guest built");
    host.load(&sha256_hex(&bytes), &bytes).await.expect("loads")
}

/// The Python and JavaScript connectors, from `<target>/polyglot/`.
fn polyglot(name: &str) -> Option<Vec<u8>> {
    let guests = std::path::Path::new(GUEST_DIR);
    let target = guests.ancestors().find(|p| p.ends_with("wasm-plugins")).and_then(|p| p.parent())?;
    std::fs::read(target.join("polyglot").join(format!("{name}.wasm"))).ok()
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("dibop-bench-{}", std::process::id()));
    let host = Arc::new(PluginHost::new(&dir, true, 0).expect("host"));

    println!("trivial Rust connector: fresh store + instantiate + invoke");
    let trivial = load(&host, "hostile").await;
    measure(&host, &trivial, &CallSpec::default(), "echo", json!({"vin": "1HGCM82633A004352"}), 5000).await;

    println!("vpic decode_vin against a loopback mock (includes the HTTP round trip)");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let authority = listener.local_addr().expect("addr").to_string();
    let app = axum::Router::new().route(
        "/vpic/vehicles/DecodeVinValues/{vin}",
        axum::routing::get(|| async {
            axum::Json(json!({"Count": 1, "Message": "ok", "SearchCriteria": "VIN", "Results": [{
                "Make": "HONDA", "Model": "Accord", "ModelYear": "2003", "Trim": "EX", "BodyClass": "Coupe",
                "FuelTypePrimary": "Gasoline", "EngineModel": "J30A4", "ErrorCode": "0"}]}))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let vpic = load(&host, "vpic").await;
    let mut spec = CallSpec { allowed_hosts: vec![authority.clone()], ..CallSpec::default() };
    spec.config.insert("base_url".into(), json!(format!("http://{authority}/vpic")));
    measure(&host, &vpic, &spec, "decode_vin", json!({"vin": "1HGCM82633A004352"}), 2000).await;

    // Fresh against warm instances, per language.
    let warm = PluginHost::new(&dir, true, u32::MAX).expect("host");
    let input = json!({"vin": "1HGCM82633A004352"});
    let rust = std::fs::read(format!("{GUEST_DIR}/hostile.wasm")).ok();
    for (language, bytes, fresh_n) in
        [("Rust", rust, 2000), ("Python", polyglot("vpic_py"), 200), ("JavaScript", polyglot("vpic_js"), 200)]
    {
        let Some(bytes) = bytes else {
            println!("{language}: not built (run scripts/build-connectors.sh); skipped");
            continue;
        };
        let started = Instant::now();
        let loaded = warm.load(&sha256_hex(&bytes), &bytes).await.expect("loads");
        println!("{language}: loaded in {:.1?} ({} bytes)", started.elapsed(), bytes.len());
        let spec = CallSpec { plugin: language.into(), ..CallSpec::default() };
        println!("{language} fresh instance per call");
        measure(&host, &loaded, &spec, "echo", input.clone(), fresh_n).await;
        println!("{language} warm instance");
        measure(&warm, &loaded, &spec, "echo", input.clone(), 5000).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}
