//! TEST ONLY. `hostile`: a connector that misbehaves on request, so that the runtime's tests
//! can check the sandbox (deadlines, memory limits, traps, no ambient authority, host
//! allow-lists, log capture, secret handling). It is never bundled with the runtime.
//!
//! Operations (input is a JSON object):
//!
//! | operation | does |
//! | --- | --- |
//! | `echo` | returns the input as it is |
//! | `spin` | loops forever |
//! | `alloc` | allocates and touches `mib` MiB (default 200), returns `{"len": bytes}` |
//! | `panic` | panics with `hostile plugin panicked on purpose` |
//! | `env` | returns `{"env": ["K=V", ...], "args": [...], "file": <"/etc/passwd" or the error>, "dir": <names in "/" or the error>}` |
//! | `fetch` | `{"url", "method"?: "GET", "count"?: 1, "keep_going"?: false}`: sends `count` requests (past failures too with `keep_going`), returns `{"status", "bytes"}` of the last (and `failed`) |
//! | `log` | logs `hostile says hello` (info, fields `{"n": 1}`), prints `to stdout` and `to stderr`, returns `{}` |
//! | `secret` | returns `{"has_api_key": bool}`, never the value |
//! | `log_flood` | `{"lines"?: 40, "bytes"?: 4 MiB}`: logs `lines` lines, each with a message and a field of `bytes` bytes |
//! | `big_output` | `{"mib"?: 5}`: answers a string of `mib` MiB |
//! | `big_error` | `{"mib"?: 1}`: fails with a message of `mib` MiB |

use std::hint::black_box;

use dibop_sdk::{
    AuthType, CallContext, ConfigKey, Connector, ConnectorInfo, Health, Operation, PluginError, SystemType, Value,
    http, json, log, secrets,
};

struct Hostile;

impl Connector for Hostile {
    fn describe() -> ConnectorInfo {
        let op = |name: &str, description: &str| Operation::new(name, "NONE", "", description);
        ConnectorInfo {
            slug: "hostile".into(),
            name: "Hostile (test only)".into(),
            system_type: SystemType::General,
            version: "1.0.0".into(),
            description: "Test-only connector that misbehaves on request to exercise the sandbox.".into(),
            auth: AuthType::None,
            config: vec![ConfigKey::secret("api_key", "Only ever checked for presence", false)],
            operations: vec![
                op("echo", "Returns the input unchanged.").output_schema(json!({})),
                op("spin", "Loops forever."),
                op("alloc", "Allocates and touches `mib` MiB (default 200), then returns {\"len\": bytes}.")
                    .input_schema(json!({"type": "object", "properties": {"mib": {"type": "integer", "minimum": 0}}})),
                op("panic", "Panics."),
                op("env", "Reports environment variables, arguments, /etc/passwd and the root directory."),
                op(
                    "fetch",
                    "Computes for `spin_ms`, then sends `count` requests to `url` and reports the last status and body length.",
                )
                .input_schema(json!({
                    "type": "object",
                    "required": ["url"],
                    "properties": {
                        "url": {"type": "string"},
                        "method": {"type": "string"},
                        "count": {"type": "integer", "minimum": 1},
                        "spin_ms": {"type": "integer", "minimum": 0}
                    }
                })),
                op("log", "Writes a log line and prints to stdout and stderr."),
                op("secret", "Tells whether the api_key credential is set."),
                op("log_flood", "Logs `lines` lines with `bytes`-byte messages and fields."),
                op("big_output", "Answers a string of `mib` MiB."),
                op("big_error", "Fails with a message of `mib` MiB."),
            ],
        }
    }

    fn invoke(operation: &str, input: Value, _ctx: &CallContext) -> Result<Value, PluginError> {
        match operation {
            "echo" => Ok(input),
            "spin" => spin(),
            "alloc" => {
                let mib = input.get("mib").and_then(Value::as_u64).unwrap_or(200);
                Ok(json!({ "len": alloc(mib) }))
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "env" => Ok(env()),
            "fetch" => fetch(&input),
            "log" => {
                log::write(log::Level::Info, "hostile says hello", &json!({"n": 1}));
                println!("to stdout");
                eprintln!("to stderr");
                Ok(json!({}))
            }
            "secret" => Ok(json!({ "has_api_key": secrets::get("api_key").is_some() })),
            "log_flood" => {
                let lines = input.get("lines").and_then(Value::as_u64).unwrap_or(40);
                let bytes = usize::try_from(input.get("bytes").and_then(Value::as_u64).unwrap_or(4 << 20)).unwrap_or(0);
                let text = "x".repeat(bytes);
                for n in 0..lines {
                    log::write(log::Level::Info, &text, &json!({"n": n, "blob": text}));
                }
                Ok(json!({"lines": lines}))
            }
            "big_output" => {
                let mib = usize::try_from(input.get("mib").and_then(Value::as_u64).unwrap_or(5)).unwrap_or(0);
                Ok(Value::String("y".repeat(mib << 20)))
            }
            "big_error" => {
                let mib = usize::try_from(input.get("mib").and_then(Value::as_u64).unwrap_or(1)).unwrap_or(0);
                Err(PluginError::invalid_input("z".repeat(mib << 20)))
            }
            other => Err(PluginError::invalid_input(format!("unknown operation `{other}`"))),
        }
    }

    fn ping() -> Health {
        Health::online()
    }
}

/// Never returns; `black_box` keeps the optimizer from reasoning the loop away.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter).wrapping_add(1);
    }
}

/// Allocates `mib` MiB and writes to every 4 KiB of it, so the memory is really used.
fn alloc(mib: u64) -> usize {
    let len = usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
    let mut buffer = vec![0u8; len];
    for i in (0..len).step_by(4096) {
        buffer[i] = black_box(1);
    }
    black_box(&buffer).len()
}

fn env() -> Value {
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let args: Vec<String> = std::env::args().collect();
    let file = match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => text,
        Err(e) => e.to_string(),
    };
    let dir = match std::fs::read_dir("/") {
        Ok(entries) => {
            let names: Vec<String> = entries
                .map(|entry| match entry {
                    Ok(entry) => entry.file_name().to_string_lossy().into_owned(),
                    Err(e) => e.to_string(),
                })
                .collect();
            json!(names)
        }
        Err(e) => json!(e.to_string()),
    };
    json!({ "env": env, "args": args, "file": file, "dir": dir })
}

fn fetch(input: &Value) -> Result<Value, PluginError> {
    let url =
        input.get("url").and_then(Value::as_str).ok_or_else(|| PluginError::invalid_input("`url` must be a string"))?;
    let method = input.get("method").and_then(Value::as_str).unwrap_or("GET");
    let count = input.get("count").and_then(Value::as_u64).unwrap_or(1).max(1);
    let keep_going = input.get("keep_going").and_then(Value::as_bool).unwrap_or(false);
    // A connector that computes before its first request (it reaches the network late).
    let spin = std::time::Duration::from_millis(input.get("spin_ms").and_then(Value::as_u64).unwrap_or(0));
    let started = std::time::Instant::now();
    while started.elapsed() < spin {
        black_box(started);
    }
    let mut last = json!({});
    let mut failed = 0;
    for _ in 0..count {
        match http::Request::new(method, url).send() {
            Ok(response) => last = json!({ "status": response.status, "bytes": response.body.len() }),
            Err(_) if keep_going => failed += 1,
            Err(e) => return Err(e),
        }
    }
    if keep_going {
        last["failed"] = json!(failed);
    }
    Ok(last)
}

dibop_sdk::export_connector!(Hostile);
