//! `dibop connector test FILE.wasm`: one call of a connector in the server's sandbox (the same
//! compile, limits, egress checks, input-schema check and trap messages), without a server or
//! a database. It prints what `POST /connections/{id}/test` answers: the output or error, the
//! logs, stdout/stderr and every HTTP request the call made (refused ones included).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use crate::api::api_calls::ApiCallView;
use crate::engine::schemas;
use crate::plugins::outbound::CallOrigin;
use crate::plugins::registry::describe_checked;
use crate::plugins::{CallSpec, Invocation, Limits, Loaded, MAX_MEMORY_BYTES, PluginHost, PluginInfo};

/// Largest component `connector test` loads (as an upload).
const MAX_COMPONENT_BYTES: u64 = 64 << 20;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component (.wasm) to run.
    pub file: PathBuf,
    /// The operation to invoke; without it (and without --ping) the describe() answer is shown.
    #[arg(long, short = 'o')]
    pub operation: Option<String>,
    /// The operation's input: JSON text, or @FILE to read it from a file.
    #[arg(long, short = 'i', default_value = "{}")]
    pub input: String,
    /// A connection setting as key=value (the value is read as JSON when it is JSON); repeatable.
    #[arg(long = "config", short = 'c')]
    pub config: Vec<String>,
    /// A connection credential as key=value; repeatable. Redacted from everything shown.
    #[arg(long = "secret", short = 's')]
    pub secrets: Vec<String>,
    /// A host (or host:port) the connector may reach besides its base_url host; repeatable.
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// Let the connector reach private and loopback addresses (a mock server on this machine).
    #[arg(long)]
    pub allow_private_networks: bool,
    /// Call ping() instead of an operation.
    #[arg(long, conflicts_with = "operation")]
    pub ping: bool,
    /// The call's deadline, ms.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// The call's memory limit, MiB (default: what the connector declares it wants, else 64,
    /// as a new connection on the server).
    #[arg(long)]
    pub memory_mb: Option<usize>,
}

/// `key=value` pairs as a map; values read as JSON when they are JSON (`secrets`: as text).
fn pairs(given: &[String], flag: &str, json_values: bool) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for pair in given {
        let Some((key, value)) = pair.split_once('=') else { bail!("--{flag} {pair:?}: expected key=value") };
        let value = match serde_json::from_str::<Value>(value) {
            Ok(parsed) if json_values => parsed,
            _ => Value::String(value.to_owned()),
        };
        map.insert(key.trim().to_owned(), value);
    }
    Ok(map)
}

/// Runs the call and prints its report as JSON; fails (exit status 1) when the call failed.
pub async fn run(args: TestArgs, cache_dir: &Path) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.file).with_context(|| format!("reading {}", args.file.display()))?.len();
    if size > MAX_COMPONENT_BYTES {
        bail!(
            "{} is {size} bytes; the server accepts components of at most {MAX_COMPONENT_BYTES}",
            args.file.display()
        );
    }
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let input: Value = match args.input.strip_prefix('@') {
        Some(path) => serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {path}"))?)
            .with_context(|| format!("{path} is not JSON"))?,
        None => serde_json::from_str(&args.input).context("--input is not JSON")?,
    };
    let config = pairs(&args.config, "config", true)?;
    let secrets: HashMap<String, String> = pairs(&args.secrets, "secret", false)?
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
        .collect();
    if args.memory_mb.is_some_and(|mb| !(1..=MAX_MEMORY_BYTES >> 20).contains(&mb)) {
        bail!("--memory-mb must be from 1 to {}", MAX_MEMORY_BYTES >> 20);
    }

    let host = PluginHost::new(cache_dir, args.allow_private_networks, 0)?;
    let sha256 = dibop_core::sha256_hex(&bytes);
    eprintln!("compiling {} ({} KiB; cached after the first time)", args.file.display(), bytes.len() / 1024);
    let loaded = host.load(&sha256, &bytes).await.map_err(anyhow::Error::msg).context("the component does not load")?;
    let info = describe_checked(&host, &loaded, &sha256).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let Loaded::Connector(connector) = &loaded else {
        if args.operation.is_some() || args.ping {
            bail!("{} is a transform, not a connector", info.slug);
        }
        return print(&json!({"describe": info}));
    };
    if args.operation.is_none() && !args.ping {
        return print(&json!({"describe": info}));
    }
    check_settings(&info, &config, &secrets)?;

    let mut allowed_hosts = args.allow_hosts.clone();
    if let Some(base) = config.get("base_url").and_then(Value::as_str).and_then(crate::connections::url_authority) {
        allowed_hosts.push(base);
    }
    // As on the server: a connector that declares the hosts it reaches gets no others.
    if let Some(declared) = &info.capabilities {
        let patterns = declared.host_patterns();
        if let Some(outside) = allowed_hosts.iter().find(|host| !patterns.admits(host)) {
            bail!(
                "{outside} is outside the hosts {} {} declares it reaches ({}); the server refuses a connection to it",
                info.slug,
                info.version,
                declared.hosts.join(", ")
            );
        }
    }
    let memory_mb = args.memory_mb.unwrap_or_else(|| usize::try_from(info.wanted_memory_mb()).unwrap_or(usize::MAX));
    if !(1..=MAX_MEMORY_BYTES >> 20).contains(&memory_mb) {
        bail!("{} declares {memory_mb} MiB; at most {} are allowed", info.slug, MAX_MEMORY_BYTES >> 20);
    }
    let spec = CallSpec {
        plugin: format!("{}@{}", info.slug, info.version),
        origin: CallOrigin {
            enterprise_id: "local".into(),
            system: info.slug.clone(),
            connection: Some("local".into()),
            step: Some("test".into()),
            ..CallOrigin::default()
        },
        config,
        secrets,
        allowed_hosts,
        limits: Limits {
            memory_bytes: memory_mb << 20,
            timeout: Duration::from_millis(args.timeout_ms.clamp(100, 600_000)),
            ..Limits::default()
        },
        auth: None,
        pacer: None,
        redact: Vec::new(),
    };
    let plugin_id = format!("local:{sha256}");
    let info_text = serde_json::to_string(&info)?;
    let (result, report) = if args.ping {
        let report = host.ping(connector, &spec).await;
        let result = report.result.clone().map(|h| json!({"status": h.status, "message": h.message}));
        (result, Report::of(&report))
    } else {
        let operation = args.operation.as_deref().unwrap_or_default();
        if !info.operations.iter().any(|o| o.name == operation) {
            let offered: Vec<&str> = info.operations.iter().map(|o| o.name.as_str()).collect();
            eprintln!("note: {} declares no operation {operation:?} (it offers {offered:?})", info.slug);
        }
        match schemas::check_input(&plugin_id, &info_text, operation, &input) {
            Err(refused) => (Err(refused), Report::default()),
            Ok(()) => {
                let invocation =
                    Invocation { attempt: 1, idempotency_key: dibop_core::new_id(), ..Invocation::default() };
                let report = host.invoke(connector, &spec, operation, &input, invocation).await;
                let mut result = report.result.clone();
                if let Ok(output) = &result
                    && let Err(refused) = schemas::check_output(&plugin_id, &info_text, operation, output)
                {
                    result = Err(refused);
                }
                (result, Report::of(&report))
            }
        }
    };
    let (status, output, error) = match result {
        Ok(output) => ("success", Some(output), None),
        Err(error) => ("error", None, Some(error)),
    };
    print(&json!({
        "status": status,
        "output": output,
        "error": error,
        "duration_ms": report.duration_ms,
        "api_calls": report.api_calls,
        "logs": report.logs,
        "stdout": report.stdout,
        "stderr": report.stderr,
    }))?;
    if status == "success" { Ok(()) } else { Err(Failed.into()) }
}

/// The call failed; the report says why (the command exits with status 1 and prints nothing
/// more).
#[derive(Debug, thiserror::Error)]
#[error("the call failed")]
pub struct Failed;

/// What a call left behind, as the connection test shows it.
#[derive(Default)]
struct Report {
    duration_ms: u64,
    api_calls: Vec<ApiCallView>,
    logs: Value,
    stdout: String,
    stderr: String,
}

impl Report {
    fn of<T>(report: &crate::plugins::CallReport<T>) -> Self {
        Self {
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            api_calls: report.api_calls.iter().cloned().map(ApiCallView::from).collect(),
            logs: serde_json::to_value(&report.logs).unwrap_or_default(),
            stdout: report.stdout.clone(),
            stderr: report.stderr.clone(),
        }
    }
}

/// Required settings and credentials must be given, and only declared ones (as a connection
/// is checked when it is saved).
fn check_settings(
    info: &PluginInfo,
    config: &Map<String, Value>,
    secrets: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for key in &info.config {
        let given = if key.secret { secrets.contains_key(&key.name) } else { config.contains_key(&key.name) };
        let flag = if key.secret { "--secret" } else { "--config" };
        if key.required && !given {
            problems.push(format!("{flag} {}=...: required by {} ({})", key.name, info.slug, key.description));
        }
    }
    for name in config.keys() {
        if !info.config.iter().any(|k| !k.secret && &k.name == name) {
            problems.push(format!("--config {name}: {} does not take this setting", info.slug));
        }
    }
    for name in secrets.keys() {
        if !info.config.iter().any(|k| k.secret && &k.name == name) {
            problems.push(format!("--secret {name}: {} does not take this credential", info.slug));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the settings do not fit the connector:\n  {}", problems.join("\n  "))
    }
}

fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
