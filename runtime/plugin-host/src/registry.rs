//! The plugin registry: uploads (checked, described, stored by sha256), the bundled plugins
//! registered at start, and the choice of which version serves a system.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use dibop_core::{PluginStatus, Slug, World};

use super::{CallSpec, Limits, Loaded, PluginHost, PluginInfo};
use dibop_core::FieldError;
use dibop_store::{NewPlugin, PluginRow, Store, is_unique_violation};

/// Directory of the guest builds (bundled plugins and test guests), set by the build script.
pub const GUEST_DIR: &str = env!("DIBOP_GUEST_DIR");

/// The plugins every install has, built from `plugins/` and embedded in the binary.
pub const BUNDLED: [(&str, &[u8]); 4] = [
    ("rest", include_bytes!(concat!(env!("DIBOP_GUEST_DIR"), "/rest.wasm"))),
    ("vpic", include_bytes!(concat!(env!("DIBOP_GUEST_DIR"), "/vpic.wasm"))),
    ("dms", include_bytes!(concat!(env!("DIBOP_GUEST_DIR"), "/dms.wasm"))),
    ("vin-check", include_bytes!(concat!(env!("DIBOP_GUEST_DIR"), "/vin_check.wasm"))),
];

/// The result of an upload.
pub enum Upload {
    Created(PluginRow),
    /// The same bytes were uploaded before (to the same scope).
    Existing(PluginRow),
}

/// Stores, compiles and finds plugins.
pub struct Registry {
    pub host: Arc<PluginHost>,
    store: Store,
    blobs: Dir,
}

pub use dibop_core::sha256_hex;

/// Why an upload was refused (the HTTP API maps it to 422, 409 or 500).
#[derive(Debug)]
pub enum UploadError {
    /// Not a usable component, or its `describe()` answer breaks a rule: every problem found.
    Invalid(Vec<FieldError>),
    /// The slug and version are registered with other bytes (versions are immutable).
    Conflict(String),
    /// Storing it failed.
    Internal(anyhow::Error),
}

impl UploadError {
    fn invalid(path: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(path, message)])
    }
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(problems) => {
                let list: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
                write!(f, "invalid plugin: {}", list.join("; "))
            }
            Self::Conflict(message) => f.write_str(message),
            Self::Internal(err) => write!(f, "{err:#}"),
        }
    }
}

impl From<sqlx::Error> for UploadError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<anyhow::Error> for UploadError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl Registry {
    pub fn new(host: Arc<PluginHost>, store: Store, data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("plugins").join("blobs");
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        let blobs =
            Dir::open_ambient_dir(&path, ambient_authority()).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { host, store, blobs })
    }

    /// Checks, describes and stores an uploaded component in a scope (`None` = global);
    /// `signed_by`: the trusted signer whose key verified it (the caller checked).
    pub async fn upload(
        &self,
        enterprise_id: Option<&str>,
        bytes: Vec<u8>,
        bundled: bool,
        signed_by: Option<String>,
    ) -> Result<Upload, UploadError> {
        let sha256 = sha256_hex(&bytes);
        if let Some(row) = self.store.find_plugin_by_sha(enterprise_id, &sha256).await? {
            return Ok(Upload::Existing(row));
        }
        let loaded =
            if bundled { self.host.load_bundled(&sha256, &bytes).await } else { self.host.load(&sha256, &bytes).await };
        let registered = match loaded {
            Ok(loaded) => self.register(enterprise_id, &bytes, sha256.clone(), &loaded, (bundled, signed_by)).await,
            Err(message) => Err(UploadError::invalid("body", message)),
        };
        // A refused upload leaves nothing cached, unless the same bytes serve another scope.
        if registered.is_err() && !self.store.plugin_sha_registered(&sha256).await.unwrap_or(true) {
            self.host.forget(&sha256);
        }
        registered
    }

    /// Describes a loaded upload, checks it and stores it.
    async fn register(
        &self,
        enterprise_id: Option<&str>,
        bytes: &[u8],
        sha256: String,
        loaded: &Loaded,
        (bundled, signed_by): (bool, Option<String>),
    ) -> Result<Upload, UploadError> {
        let info = describe_checked(&self.host, loaded, &sha256).await?;
        if let Some(existing) = self.store.find_plugin_version(enterprise_id, &info.slug, &info.version).await? {
            // The same bytes, stored meanwhile by another request or node (nodes starting
            // together all register the bundled plugins).
            if existing.sha256 == sha256 {
                return Ok(Upload::Existing(existing));
            }
            return Err(UploadError::Conflict(format!(
                "{} {} is already registered with different bytes (sha256 {}); versions are immutable, bump the version",
                info.slug, info.version, existing.sha256
            )));
        }
        // A version that declares more than the newest one in use waits for an admin's approval
        // (`pending`): no connection moves to it, and none may pin it, until then.
        let before = self.newest_approved(enterprise_id, &info.slug).await?;
        let before = before.and_then(|row| serde_json::from_str::<PluginInfo>(&row.info).ok());
        let wants_more = info.world == World::Connector
            && before.as_ref().is_some_and(|before| {
                crate::capabilities::Capabilities::exceeds(info.capabilities.as_ref(), before.capabilities.as_ref())
            });
        let new = NewPlugin {
            status: if wants_more && !bundled { PluginStatus::Pending } else { PluginStatus::Active },
            enterprise_id: enterprise_id.map(str::to_owned),
            slug: info.slug.clone(),
            version: info.version.clone(),
            world: info.world.as_str().to_owned(),
            sha256,
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            name: info.name.clone(),
            description: info.description.clone(),
            info: serde_json::to_string(&info).context("serializing plugin info")?,
            bundled,
            signed_by,
        };
        let sha256 = new.sha256.clone();
        match self.store.insert_plugin(new, bytes).await {
            Ok(row) => {
                self.cache_bytes(&row.sha256, bytes);
                Ok(Upload::Created(row))
            }
            Err(err) if is_unique_violation(&err) => {
                match self.store.find_plugin_version(enterprise_id, &info.slug, &info.version).await? {
                    Some(existing) if existing.sha256 == sha256 => Ok(Upload::Existing(existing)),
                    _ => Err(UploadError::Conflict(format!(
                        "{} {} was registered concurrently with different bytes",
                        info.slug, info.version
                    ))),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Registers the bundled plugins in the global catalogue (a no-op when already there).
    pub async fn register_bundled(&self) -> anyhow::Result<()> {
        for (name, bytes) in BUNDLED {
            match self.upload(None, bytes.to_vec(), true, None).await {
                Ok(Upload::Created(row)) => {
                    tracing::info!(plugin = name, version = %row.version, "registered bundled plugin")
                }
                Ok(Upload::Existing(_)) => {}
                Err(err) => anyhow::bail!("registering bundled plugin {name}: {err}"),
            }
        }
        Ok(())
    }

    /// Stores in the database the bytes of components registered before the database kept
    /// them (from this node's data directory): run at start, so that other nodes can run them.
    /// Components whose bytes this node does not have either are reported and left alone.
    pub async fn keep_bytes_in_database(&self) -> anyhow::Result<()> {
        for sha256 in self.store.plugins_without_bytes().await? {
            match self.blobs.read(format!("{sha256}.wasm")) {
                Ok(bytes) if sha256_hex(&bytes) == sha256 => self.store.keep_plugin_bytes(&sha256, &bytes).await?,
                Ok(_) => tracing::warn!(plugin = %sha256, "the cached bytes of this plugin do not match its sha256"),
                Err(_) => {
                    tracing::warn!(plugin = %sha256, "no node has stored this plugin's bytes in the database yet")
                }
            }
        }
        Ok(())
    }

    /// The compiled component of a stored plugin: compiled already, from this node's cache of
    /// its bytes, or from the database (whichever node stored it), checked against its sha256.
    pub async fn loaded(&self, row: &PluginRow) -> anyhow::Result<Loaded> {
        if let Some(loaded) = self.host.cached(&row.sha256) {
            return Ok(loaded);
        }
        let cached = self.blobs.read(format!("{}.wasm", row.sha256)).ok().filter(|b| sha256_hex(b) == row.sha256);
        let bytes = match cached {
            Some(bytes) => bytes,
            None => {
                let bytes = self
                    .store
                    .plugin_bytes(&row.sha256)
                    .await?
                    .with_context(|| format!("plugin {} has no stored bytes", row.sha256))?;
                anyhow::ensure!(
                    sha256_hex(&bytes) == row.sha256,
                    "the stored bytes of plugin {} are damaged",
                    row.sha256
                );
                self.cache_bytes(&row.sha256, &bytes);
                bytes
            }
        };
        self.host.load(&row.sha256, &bytes).await.map_err(|m| anyhow::anyhow!(m))
    }

    /// The version an upload to `enterprise_id`'s scope is compared with to tell whether it
    /// declares more: the newest one the enterprise sees that is not itself waiting for approval
    /// (disabled and deprecated ones included, so that disabling the last narrow version does
    /// not let a wider one in unapproved).
    async fn newest_approved(&self, enterprise_id: Option<&str>, slug: &str) -> sqlx::Result<Option<PluginRow>> {
        // No enterprise has the id "": that reads the global catalogue alone.
        let mut rows = self.store.visible_versions(enterprise_id.unwrap_or(""), slug).await?;
        rows.retain(|row| row.status != PluginStatus::Pending);
        Ok(pick(&rows, World::Connector, slug, &VersionPin::Newest).cloned())
    }

    /// Keeps a copy of a component's bytes in this node's data directory (a cache: the database
    /// has them); a failure only costs a database read later.
    fn cache_bytes(&self, sha256: &str, bytes: &[u8]) {
        if let Err(err) = self.blobs.write(format!("{sha256}.wasm"), bytes) {
            tracing::warn!(plugin = %sha256, error = %err, "caching plugin bytes in the data directory failed");
        }
    }

    /// The newest active version of each slug of `world` the enterprise may use (the newest
    /// deprecated one when a slug has no active version); its own plugins win over global ones
    /// of the same version.
    pub async fn newest(&self, enterprise_id: &str, world: World) -> sqlx::Result<Vec<PluginRow>> {
        let mut best: Vec<PluginRow> = Vec::new();
        for row in self.store.usable_plugins(enterprise_id).await? {
            if row.world != world.as_str() {
                continue;
            }
            match best.iter_mut().find(|b| b.slug == row.slug) {
                Some(current) => {
                    if better(&row, current) {
                        *current = row;
                    }
                }
                None => best.push(row),
            }
        }
        best.sort_by(|a, b| a.slug.cmp(&b.slug));
        Ok(best)
    }

    /// Pins every connection stored before pinning existed to the version it uses now, so a
    /// later upload moves none of them. Idempotent; any node may run it at start.
    pub async fn pin_unpinned_connections(&self) -> sqlx::Result<()> {
        for row in self.store.unpinned_connections().await? {
            if let Some(plugin) = self.resolve(&row.enterprise_id, World::Connector, &row.system).await? {
                self.store.pin_connection(&row.id, &plugin.version).await?;
            }
        }
        Ok(())
    }

    /// The version of `slug` that serves new calls.
    pub async fn resolve(&self, enterprise_id: &str, world: World, slug: &str) -> sqlx::Result<Option<PluginRow>> {
        self.resolve_pinned(enterprise_id, world, slug, &VersionPin::Newest).await
    }

    /// The newest usable version of `slug` that `pin` admits (see [`VersionPin`] and [`pick`]);
    /// the newest of all for an empty pin.
    pub async fn resolve_pinned(
        &self,
        enterprise_id: &str,
        world: World,
        slug: &str,
        pin: &VersionPin,
    ) -> sqlx::Result<Option<PluginRow>> {
        Ok(pick(&self.store.usable_plugins(enterprise_id).await?, world, slug, pin).cloned())
    }
}

/// Among `rows` (an enterprise's usable plugins, as `Store::usable_plugins` answers them), the
/// newest active version of `slug` that `pin` admits, else the newest deprecated one (a
/// connection pinned to a deprecated version keeps working; new ones are refused at save);
/// its own plugin wins over a global one of the same version. For callers that pick for many
/// connections from one read.
pub fn pick<'a>(rows: &'a [PluginRow], world: World, slug: &str, pin: &VersionPin) -> Option<&'a PluginRow> {
    let mut best: Option<&PluginRow> = None;
    for row in rows {
        if row.world != world.as_str() || row.slug != slug || !pin.admits(&row.version) {
            continue;
        }
        if best.is_none_or(|current| better(row, current)) {
            best = Some(row);
        }
    }
    best
}

/// Among `rows` (as for [`pick`]), a connector version of `slug` built from the bytes `sha256`
/// that `pin` admits: the component a connection's credentials were given with, if it still
/// serves the connection. The same bytes describe the same version, so any such row will do.
pub fn pick_build<'a>(rows: &'a [PluginRow], slug: &str, pin: &VersionPin, sha256: &str) -> Option<&'a PluginRow> {
    rows.iter().find(|row| {
        row.world == World::Connector.as_str() && row.slug == slug && row.sha256 == sha256 && pin.admits(&row.version)
    })
}

/// Which versions of its plugin a connection uses: an exact version (`1.2.0`), a semver range
/// (`^1.2`, `~1.2.3`, `>=1.0, <2.0`, `1.*`), or nothing (the newest; connections stored
/// before pinning existed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPin {
    Newest,
    Exact(semver::Version),
    Range(semver::VersionReq),
}

impl VersionPin {
    /// Longest pin accepted, in bytes.
    pub const MAX_LEN: usize = 100;

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::Newest);
        }
        if text.len() > Self::MAX_LEN {
            return Err(format!("at most {} bytes", Self::MAX_LEN));
        }
        if let Ok(exact) = semver::Version::parse(text) {
            return Ok(Self::Exact(exact));
        }
        semver::VersionReq::parse(text)
            .map(Self::Range)
            .map_err(|e| format!("{text:?} is neither a version such as 1.2.0 nor a range such as ^1.2 ({e})"))
    }

    pub fn admits(&self, version: &str) -> bool {
        let Ok(version) = semver::Version::parse(version) else { return matches!(self, Self::Newest) };
        match self {
            Self::Newest => true,
            Self::Exact(exact) => *exact == version,
            Self::Range(range) => range.matches(&version),
        }
    }
}

/// Whether `candidate` serves before `current`: active before deprecated, then [`newer`].
fn better(candidate: &PluginRow, current: &PluginRow) -> bool {
    let active = |row: &PluginRow| row.status == PluginStatus::Active;
    match (active(candidate), active(current)) {
        (true, false) => true,
        (false, true) => false,
        _ => newer(candidate, current),
    }
}

fn newer(candidate: &PluginRow, current: &PluginRow) -> bool {
    let version = |v: &str| semver::Version::parse(v).ok();
    match (version(&candidate.version), version(&current.version)) {
        (Some(a), Some(b)) if a != b => a > b,
        _ => candidate.enterprise_id.is_some() && current.enterprise_id.is_none(),
    }
}

/// `describe()` of a loaded upload, under the limits of an upload (10 s, no requests), checked
/// as an upload is: what `dibop connector test` reports too.
pub async fn describe_checked(host: &PluginHost, loaded: &Loaded, sha256: &str) -> Result<PluginInfo, UploadError> {
    let spec = CallSpec {
        plugin: format!("upload {sha256}"),
        limits: Limits { timeout: Duration::from_secs(10), max_requests: 0, ..Limits::default() },
        ..CallSpec::default()
    };
    let info = host
        .describe(loaded, &spec)
        .await
        .result
        .map_err(|e| UploadError::invalid("body", format!("describe() failed: {e}")))?;
    check_info(&info)?;
    Ok(info)
}

/// What `describe()` answered must be usable: a slug, a semantic version, unique operations.
fn check_info(info: &PluginInfo) -> Result<(), UploadError> {
    let mut problems = Vec::new();
    let mut problem = |path: &str, message: String| problems.push(FieldError::new(path, message));
    if let Err(invalid) = Slug::parse_plugin(&info.slug) {
        problem("describe.slug", invalid.to_string());
    }
    if semver::Version::parse(&info.version).is_err() {
        problem("describe.version", format!("{:?} is not a semantic version such as 1.2.0", info.version));
    }
    if info.name.trim().is_empty() {
        problem("describe.name", "must not be empty".into());
    }
    for (path, message) in info.capabilities.as_ref().map(|c| c.problems()).unwrap_or_default() {
        problem(&format!("describe.capabilities.{path}"), message);
    }
    let mut seen = std::collections::HashSet::new();
    for (i, op) in info.operations.iter().enumerate() {
        if op.name.trim().is_empty() || !seen.insert(op.name.as_str()) {
            problem("describe.operations", format!("operation names must be unique and non-empty ({:?})", op.name));
        }
        // Input schemas are enforced before every call, so each must be a schema.
        for (field, schema) in [("input_schema", &op.input_schema), ("output_schema", &op.output_schema)] {
            let path = format!("describe.operations[{i}].{field}");
            if schema.is_null() {
                problem(
                    &path,
                    "expected JSON text of a JSON Schema nested at most 100 levels (`{}` accepts anything)".into(),
                );
            } else if let Err(err) = jsonschema::validator_for(schema) {
                problem(&path, format!("not a valid JSON Schema: {err}"));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(UploadError::Invalid(problems)) }
}

#[cfg(test)]
mod tests {
    use dibop_core::World;
    use serde_json::json;

    use super::{PluginInfo, UploadError, check_info};
    use crate::OperationInfo;

    fn info(input_schema: serde_json::Value) -> PluginInfo {
        PluginInfo {
            world: World::Connector,
            slug: "lookup".into(),
            name: "Lookup".into(),
            version: "1.0.0".into(),
            description: String::new(),
            system_type: None,
            auth: None,
            config: Vec::new(),
            operations: vec![OperationInfo {
                name: "find".into(),
                method: "GET".into(),
                path: "/".into(),
                description: String::new(),
                input_schema,
                output_schema: json!({}),
            }],
            params_schema: None,
            capabilities: None,
        }
    }

    fn paths(result: Result<(), UploadError>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(UploadError::Invalid(problems)) => {
                problems.into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect()
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn pins_are_exact_versions_or_ranges() {
        use super::VersionPin;
        let exact = VersionPin::parse("1.2.0").expect("exact");
        assert!(exact.admits("1.2.0") && !exact.admits("1.2.1"));
        let caret = VersionPin::parse("^1.2").expect("range");
        assert!(caret.admits("1.2.0") && caret.admits("1.9.3") && !caret.admits("2.0.0") && !caret.admits("1.1.9"));
        assert!(VersionPin::parse("").expect("newest").admits("9.9.9"));
        assert!(VersionPin::parse("latest please").is_err());
        assert!(VersionPin::parse(&"1".repeat(200)).is_err());
    }

    #[test]
    fn schemas_that_are_not_schemas_are_named_by_their_path() {
        assert!(paths(check_info(&info(json!({"type": "object"})))).is_empty());
        let missing = paths(check_info(&info(serde_json::Value::Null)));
        assert_eq!(missing.len(), 1);
        assert!(missing[0].starts_with("describe.operations[0].input_schema: expected JSON text"), "{missing:?}");
        let wrong = paths(check_info(&info(json!({"type": "no-such-type"}))));
        assert!(wrong[0].starts_with("describe.operations[0].input_schema: not a valid JSON Schema"), "{wrong:?}");
    }
}
