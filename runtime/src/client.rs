//! Client subcommands for automation: `dibop orchestration apply -f FILE`,
//! `dibop execute NAME_OR_ID --param k=v`, `dibop plugin push FILE`; and `dibop plugin keygen`
//! and `sign`, which work locally (see [`crate::signing`]). The others talk to a running
//! server at `DIBOP_URL` with `DIBOP_TOKEN` (a JWT or an API key), over http or https (rustls
//! with the webpki roots, plus `DIBOP_EXTRA_CA_FILE` for a server behind a private CA).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

/// Where the server is and how to authenticate.
#[derive(Debug, Args)]
pub struct Remote {
    /// Base URL of the server.
    #[arg(long, env = "DIBOP_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Access token or API key.
    #[arg(long, env = "DIBOP_TOKEN", hide_env_values = true)]
    pub token: String,
    /// PEM file of extra CA certificates to trust for an https server.
    #[arg(long, env = "DIBOP_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(remote: &Remote) -> anyhow::Result<Self> {
        let tls = crate::egress::tls_config(remote.extra_ca_file.as_deref())?;
        Ok(Self {
            base: format!("{}/api/v1", remote.url.trim_end_matches('/')),
            token: remote.token.clone(),
            http: reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build()?,
        })
    }

    /// Sends a request and turns an error answer into a readable error.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response =
            request.bearer_auth(&self.token).send().await.with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        let mut message = format!(
            "{} {}: {}",
            status.as_u16(),
            error["code"].as_str().unwrap_or("ERROR"),
            error["message"].as_str().unwrap_or("request failed")
        );
        for detail in error["details"].as_array().into_iter().flatten() {
            message.push_str(&format!(
                "\n  {}: {}",
                detail["path"].as_str().unwrap_or(""),
                detail["message"].as_str().unwrap_or("")
            ));
        }
        bail!(message)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    /// Every orchestration (following pagination).
    async fn orchestrations(&self) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        for page in 1.. {
            let body = self.send(self.get(&format!("/orchestrations?page={page}&page_size=200"))).await?;
            let data = body["data"].as_array().cloned().unwrap_or_default();
            all.extend(data);
            if page >= body["pagination"]["total_pages"].as_i64().unwrap_or(0) {
                break;
            }
        }
        Ok(all)
    }

    async fn resolve(&self, name_or_id: &str) -> anyhow::Result<String> {
        let all = self.orchestrations().await?;
        let found = all.iter().find(|o| o["id"] == name_or_id).or_else(|| all.iter().find(|o| o["name"] == name_or_id));
        found
            .and_then(|o| o["id"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no orchestration named or with id {name_or_id:?}"))
    }
}

/// Creates the orchestration in `file` (JSON), or replaces the one with the same name.
pub async fn apply(remote: &Remote, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let definition: Value = if file.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        serde_norway::from_str(&text).with_context(|| format!("{} is not valid YAML", file.display()))?
    } else {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))?
    };
    let name = definition["name"].as_str().with_context(|| format!("{} has no \"name\"", file.display()))?;
    let api = Api::new(remote)?;
    let existing = api.orchestrations().await?.into_iter().find(|o| o["name"] == name);
    let saved = match existing {
        Some(stored) => {
            let id = stored["id"].as_str().context("an orchestration without an id")?;
            let whole = replacing(definition, &stored);
            api.send(api.http.put(format!("{}/orchestrations/{id}", api.base)).json(&whole)).await?
        }
        None => api.send(api.post("/orchestrations").json(&definition)).await?,
    };
    println!(
        "{} {} version {}",
        saved["id"].as_str().unwrap_or_default(),
        saved["name"].as_str().unwrap_or_default(),
        saved["version"]
    );
    Ok(())
}

/// The file's `definition` as a whole replacement of `stored` (an orchestration as the API shows
/// it): a `PUT` keeps the fields it leaves out, so each one the file no longer has is sent as
/// `null`, which resets it.
fn replacing(mut definition: Value, stored: &Value) -> Value {
    const NOT_DEFINITION: [&str; 7] =
        ["id", "enterprise_id", "version", "created_at", "updated_at", "schedule_error", "schedule_error_at"];
    if let (Some(fields), Some(stored)) = (definition.as_object_mut(), stored.as_object()) {
        for key in stored.keys().filter(|k| !NOT_DEFINITION.contains(&k.as_str())) {
            fields.entry(key.clone()).or_insert(Value::Null);
        }
    }
    definition
}

/// `k=v` pairs as a parameters object; each value is JSON when it parses, else a string, and
/// always the text as given for the names in `text_params` (parameters declared `string`, so
/// `--param id=42` passes "42").
pub fn parameters(pairs: &[String], text_params: &[String]) -> anyhow::Result<Value> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let (key, value) =
            pair.split_once('=').with_context(|| format!("--param {pair:?} must look like name=value"))?;
        let value = if text_params.iter().any(|name| name == key) {
            Value::String(value.to_owned())
        } else {
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()))
        };
        map.insert(key.to_owned(), value);
    }
    Ok(Value::Object(map))
}

/// Executes an orchestration and prints the summary; fails when the execution failed.
pub async fn execute(remote: &Remote, name_or_id: &str, params: &[String], run_async: bool) -> anyhow::Result<()> {
    let api = Api::new(remote)?;
    let id = api.resolve(name_or_id).await?;
    let orchestration = api.send(api.get(&format!("/orchestrations/{id}"))).await?;
    let declared = orchestration["parameters"].as_array().cloned().unwrap_or_default();
    let text_params: Vec<String> = declared
        .iter()
        .filter(|p| p["type"] == "string")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let body = json!({"parameters": parameters(params, &text_params)?, "async": run_async});
    let summary = api.send(api.post(&format!("/orchestrations/{id}/execute")).json(&body)).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if summary["status"] == "failed" {
        bail!(
            "execution {} failed: {}",
            summary["execution_id"].as_str().unwrap_or_default(),
            summary["error"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// `FILE.sig` next to `file`.
fn signature_file(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Uploads a component, with its signature from `signature` (or `FILE.sig` when it exists).
pub async fn push(remote: &Remote, file: &Path, scope: &str, signature: Option<&Path>) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let signature_path = signature.map(Path::to_path_buf).unwrap_or_else(|| signature_file(file));
    let signature = match std::fs::read_to_string(&signature_path) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(_) if signature.is_none() => None,
        Err(e) => bail!("reading {}: {e}", signature_path.display()),
    };
    let api = Api::new(remote)?;
    let mut request = api.post(&format!("/plugins?scope={scope}")).header("content-type", "application/wasm");
    if let Some(signature) = &signature {
        request = request.header(crate::signing::HEADER, signature);
    }
    let plugin = api.send(request.body(bytes)).await?;
    println!(
        "{} {} {} ({}, sha256 {})",
        plugin["id"].as_str().unwrap_or_default(),
        plugin["slug"].as_str().unwrap_or_default(),
        plugin["version"].as_str().unwrap_or_default(),
        plugin["world"].as_str().unwrap_or_default(),
        plugin["sha256"].as_str().unwrap_or_default()
    );
    if let Some(signer) = plugin["signed_by"].as_str() {
        println!("signed by {signer}");
    }
    Ok(())
}

/// Writes a new private key to `out` (readable by its owner only) and prints the public key.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (private, public) = crate::signing::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {} (an existing key is never overwritten)", out.display()))?;
    writeln!(file, "{private}")?;
    println!("{public}");
    eprintln!(
        "private key in {}; a platform admin trusts the public key above with POST /plugin-signers",
        out.display()
    );
    Ok(())
}

/// Signs `file` with the private key in `key`; writes `FILE.sig` and prints the signature.
pub fn sign(file: &Path, key: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let private = std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let (signature, public) = crate::signing::sign(&private, &dibop_core::sha256_hex(&bytes))?;
    let out = signature_file(file);
    std::fs::write(&out, format!("{signature}\n")).with_context(|| format!("writing {}", out.display()))?;
    println!("{signature}");
    eprintln!("wrote {} (key {public}); dibop plugin push sends it", out.display());
    Ok(())
}
