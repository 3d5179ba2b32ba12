//! Settings of one `dibop serve` process: flags, `DIBOP_*` environment variables and an optional
//! TOML file, in that order of precedence, with defaults for everything but secrets.
//!
//! Each setting is written in three places: its field of [`Config`] (what it means), its default
//! in [`Config::default`], and its flag in [`ConfigArgs`] (which the TOML file shares, key for
//! key). [`ConfigArgs::resolve`] lays the flags over the file and both over the defaults by
//! name; [`Config::normalized`] then applies the few bounds and "empty means unset" rules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// When SQLite makes a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// In WAL mode a commit survives a crash of the process, and may be lost only when the
    /// machine loses power before the next checkpoint; much cheaper.
    #[default]
    Normal,
    /// Every commit is flushed to the disk before it is acknowledged.
    Full,
}

/// The effective configuration of a server. Secrets are [`SecretString`]s, so a `{:?}` of this
/// struct never prints them. Deserialized from the layers of [`ConfigArgs::resolve`]; a setting
/// no layer names keeps its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Directory for the SQLite database, the generated JWT secret and (later) plugin artifacts.
    pub data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL, `sqlite://...` for another SQLite file; `None` means
    /// `sqlite://<data_dir>/dibop.db`.
    pub database_url: Option<SecretString>,
    /// HS256 secret for access tokens; generated and kept in `<data_dir>/jwt-secret` when unset.
    pub jwt_secret: Option<SecretString>,
    /// Key sealing connection credentials (32 bytes, base64); kept in `<data_dir>/secret-key`
    /// when unset. Nodes sharing a database must share it.
    pub secret_key: Option<SecretString>,
    /// Email of the first user, created on the first start against an empty database.
    pub admin_email: Option<String>,
    /// Password of the first user; generated and printed once when unset.
    pub admin_password: Option<SecretString>,
    /// Whether plugins and alert webhooks may reach private, loopback, link-local and other
    /// special-purpose addresses (see `egress::is_blocked`).
    pub allow_private_networks: bool,
    /// PEM file of extra CA certificates trusted (besides the webpki roots) by outbound TLS:
    /// alert webhooks and plugin requests; for receivers behind a private CA.
    pub extra_ca_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Size of the database connection pool.
    pub db_max_connections: u32,
    /// Executions this node runs at once. An execution waiting on a plugin's HTTP call, a
    /// `wait` or a child holds one of these and nothing scarcer: each runs as its own task.
    pub max_in_flight: usize,
    /// How long a node keeps a claimed execution without renewing its lease; after that another
    /// node (or this one after a restart) resumes it.
    pub lease_ms: u64,
    /// How long `POST /orchestrations/{id}/execute` waits for the result before answering 202.
    pub execute_wait_ms: u64,
    /// How many calls a warm connector instance serves before it is dropped (0: a fresh
    /// instance for every call).
    pub warm_instance_calls: u32,
    /// Longest the compile of an uploaded plugin may take: a slower upload is refused and leaves
    /// nothing behind (a node compiling a stored plugin it has no artifact for is bound too).
    /// Bundled plugins are compiled without it.
    pub compile_timeout_ms: u64,
    /// How often executions, traces and API-call rows past their enterprise's retention are purged.
    pub retention_sweep_ms: u64,
    /// When set, `/metrics` asks for it as a bearer token; unset, `/metrics` is open (it holds
    /// process-wide counts only, no tenant data beyond system slugs).
    pub metrics_token: Option<SecretString>,
    /// How often the periodic alert rules (sla_breach, system_down, error_rate_spike) are evaluated.
    pub alert_eval_ms: u64,
    /// Alerts waiting for delivery (beyond the ones being delivered); when the queue is full, a
    /// new alert's notifications are recorded as `dropped` instead of waiting.
    pub alert_queue: usize,
    /// OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318`) that finished executions are exported
    /// to as traces; unset, nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// Whether exported spans carry step inputs, outputs, plugin stderr and error texts (tenant
    /// payloads; without it an error goes out as its code); off by default: a collector is
    /// often shared.
    pub otlp_payloads: bool,
    /// How long a stopping node (SIGTERM/SIGINT) lets requests and executions finish before it
    /// hands the unfinished executions back to the queue and exits.
    pub shutdown_grace_ms: u64,
    /// Most executions of one enterprise a node runs at once (fair share); unset: half of
    /// `max_in_flight` (at least 1), so one tenant never holds every slot.
    pub enterprise_slots: Option<usize>,
    /// Most items one `for_each` step takes (at most 10,000).
    pub max_for_each_items: usize,
    /// Most branches one `parallel` step runs (at most 64).
    pub max_parallel_branches: usize,
    /// Shortest interval between two slots of a schedule, in seconds (a platform setting: it
    /// applies to every enterprise).
    pub min_cron_interval_secs: u64,
    /// Password checks (Argon2id, ~19 MiB each) this node runs at once; a login beyond them is
    /// answered 503 with `Retry-After` at once. 0 turns password login off.
    pub login_concurrency: usize,
    /// Failed logins one client address may make per 15 minutes, across accounts, before its
    /// logins get 429. The address is the TCP peer: behind a reverse proxy, the proxy's.
    pub login_failures_per_address: u64,
    /// SQLite only (PostgreSQL keeps the counters in the database): the most rate-limit
    /// counters kept in memory in each of the two tables (logins', tenants'); see
    /// `dibop_store::limiter`.
    pub limiter_buckets: usize,
    pub log_format: LogFormat,
    /// SQLite only: `PRAGMA synchronous`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// SQLite only: the largest the database file may grow to, in MiB (unset: as large as the
    /// disk allows). At the cap, writes that need more room are answered 503 with
    /// `Retry-After` and `/readyz` answers 503, as on a full disk, while the disk still has
    /// room for the write-ahead log, the logs and the plugin cache; deleting data (or a shorter
    /// retention) makes room again without a restart.
    pub sqlite_max_size_mb: Option<u64>,
}

impl Default for Config {
    /// The defaults: a server on 127.0.0.1:8080 keeping its state in `dibop-data`.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("dibop-data"),
            database_url: None,
            jwt_secret: None,
            secret_key: None,
            admin_email: None,
            admin_password: None,
            allow_private_networks: false,
            extra_ca_file: None,
            max_body_bytes: 2 * 1024 * 1024,
            db_max_connections: 10,
            max_in_flight: 1024,
            lease_ms: 30_000,
            warm_instance_calls: 100,
            compile_timeout_ms: 180_000,
            retention_sweep_ms: 3_600_000,
            metrics_token: None,
            alert_eval_ms: 60_000,
            alert_queue: 256,
            otlp_endpoint: None,
            otlp_payloads: false,
            login_concurrency: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            login_failures_per_address: 50,
            limiter_buckets: crate::store::limiter::MAX_LOCAL_BUCKETS,
            execute_wait_ms: 30_000,
            shutdown_grace_ms: 10_000,
            enterprise_slots: None,
            max_for_each_items: 10_000,
            max_parallel_branches: 16,
            min_cron_interval_secs: 60,
            log_format: LogFormat::Pretty,
            sqlite_synchronous: SqliteSynchronous::Normal,
            sqlite_max_size_mb: None,
        }
    }
}

impl Config {
    /// Defaults for a server keeping its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into(), ..Self::default() }
    }

    /// The settings with their bounds applied, and empty texts (an unset variable in a
    /// container's environment is often an empty one) taken as unset.
    fn normalized(self) -> Self {
        let secret = |s: Option<SecretString>| {
            use secrecy::ExposeSecret;
            s.filter(|s| !s.expose_secret().is_empty())
        };
        Self {
            database_url: secret(self.database_url),
            jwt_secret: secret(self.jwt_secret),
            secret_key: secret(self.secret_key),
            admin_password: secret(self.admin_password),
            metrics_token: secret(self.metrics_token),
            admin_email: self.admin_email.filter(|s| !s.is_empty()),
            extra_ca_file: self.extra_ca_file.filter(|p| !p.as_os_str().is_empty()),
            otlp_endpoint: self.otlp_endpoint.filter(|e| !e.trim().is_empty()),
            sqlite_max_size_mb: self.sqlite_max_size_mb.filter(|mb| *mb > 0),
            max_in_flight: self.max_in_flight.max(1),
            lease_ms: self.lease_ms.max(1000),
            compile_timeout_ms: self.compile_timeout_ms.max(1),
            retention_sweep_ms: self.retention_sweep_ms.max(100),
            alert_eval_ms: self.alert_eval_ms.max(100),
            alert_queue: self.alert_queue.max(1),
            login_failures_per_address: self.login_failures_per_address.max(1),
            limiter_buckets: self.limiter_buckets.max(8),
            ..self
        }
    }
}

/// Flags of `dibop serve` and `dibop migrate`. Each also reads its environment variable. The
/// TOML file is one more layer of the same settings, under the same (snake_case) names.
#[derive(Debug, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "DIBOP_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "DIBOP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, env = "DIBOP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (default: a SQLite file in the data directory).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// JWT signing secret.
    #[arg(long, env = "DIBOP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Key sealing connection credentials (32 bytes, base64).
    #[arg(long, env = "DIBOP_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Email of the first admin (first start only).
    #[arg(long, env = "DIBOP_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of the first admin (first start only).
    #[arg(long, env = "DIBOP_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Let plugins and alert webhooks reach private, loopback and other special-purpose addresses.
    #[arg(long, env = "DIBOP_ALLOW_PRIVATE_NETWORKS", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_networks: Option<bool>,
    /// PEM file of extra CA certificates trusted by outbound TLS (alert webhooks, plugins).
    #[arg(long, env = "DIBOP_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "DIBOP_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Database connection pool size.
    #[arg(long, env = "DIBOP_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Executions this node runs at once.
    #[arg(long, env = "DIBOP_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// The former name of `--max-in-flight` (used when that is not given).
    #[arg(long, env = "DIBOP_WORKERS", hide = true)]
    pub workers: Option<usize>,
    /// Execution lease in ms (a dead node's executions resume after it).
    #[arg(long, env = "DIBOP_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// How long execute waits for the result before answering 202, in ms.
    #[arg(long, env = "DIBOP_EXECUTE_WAIT_MS")]
    pub execute_wait_ms: Option<u64>,
    /// Calls a warm connector instance serves before it is dropped (0 disables reuse).
    #[arg(long, env = "DIBOP_WARM_INSTANCE_CALLS")]
    pub warm_instance_calls: Option<u32>,
    /// Longest compile of an uploaded plugin, in ms (slower uploads are refused).
    #[arg(long, env = "DIBOP_COMPILE_TIMEOUT_MS")]
    pub compile_timeout_ms: Option<u64>,
    /// How often data past its retention is purged, in ms.
    #[arg(long, env = "DIBOP_RETENTION_SWEEP_MS")]
    pub retention_sweep_ms: Option<u64>,
    /// Bearer token `/metrics` requires (unset: open).
    #[arg(long, env = "DIBOP_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// How often periodic alert rules are evaluated, in ms.
    #[arg(long, env = "DIBOP_ALERT_EVAL_MS")]
    pub alert_eval_ms: Option<u64>,
    /// Alerts waiting for delivery before new ones are recorded as dropped.
    #[arg(long, env = "DIBOP_ALERT_QUEUE")]
    pub alert_queue: Option<usize>,
    /// OTLP/HTTP endpoint finished executions are exported to as traces.
    #[arg(long, env = "DIBOP_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Export step inputs, outputs, stderr and error texts with the spans.
    #[arg(long, env = "DIBOP_OTLP_PAYLOADS", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub otlp_payloads: Option<bool>,
    /// Grace period on shutdown, in ms.
    #[arg(long, env = "DIBOP_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Most executions of one enterprise running at once on this node.
    #[arg(long, env = "DIBOP_ENTERPRISE_SLOTS")]
    pub enterprise_slots: Option<usize>,
    /// Most items of one for_each step.
    #[arg(long, env = "DIBOP_MAX_FOR_EACH_ITEMS")]
    pub max_for_each_items: Option<usize>,
    /// Most branches of one parallel step.
    #[arg(long, env = "DIBOP_MAX_PARALLEL_BRANCHES")]
    pub max_parallel_branches: Option<usize>,
    /// Shortest interval between schedule slots, in seconds.
    #[arg(long, env = "DIBOP_MIN_CRON_INTERVAL_SECS")]
    pub min_cron_interval_secs: Option<u64>,
    /// Password checks run at once (default: the number of cores); more logins get 503.
    #[arg(long, env = "DIBOP_LOGIN_CONCURRENCY")]
    pub login_concurrency: Option<usize>,
    /// Failed logins per client address and 15 minutes before 429.
    #[arg(long, env = "DIBOP_LOGIN_FAILURES_PER_ADDRESS")]
    pub login_failures_per_address: Option<u64>,
    /// SQLite only: rate-limit counters kept in memory per table (logins', tenants').
    #[arg(long, env = "DIBOP_LIMITER_BUCKETS")]
    pub limiter_buckets: Option<usize>,
    /// Log format.
    #[arg(long, env = "DIBOP_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// SQLite only: when a commit is durable (normal or full).
    #[arg(long, env = "DIBOP_SQLITE_SYNCHRONOUS", value_enum)]
    pub sqlite_synchronous: Option<SqliteSynchronous>,
    /// SQLite only: cap on the database file, in MiB (writes beyond it get 503).
    #[arg(long, env = "DIBOP_SQLITE_MAX_SIZE_MB")]
    pub sqlite_max_size_mb: Option<u64>,
}

impl ConfigArgs {
    /// Lays the flags (and their environment variables) over the TOML file over the defaults.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => ConfigArgs::default(),
        };
        let mut layers = Map::new();
        for layer in [file, self] {
            if let Value::Object(named) = serde_json::to_value(layer)? {
                layers.extend(named.into_iter().filter(|(_, value)| !value.is_null()));
            }
        }
        // `workers` is the former name of `max_in_flight`, read when neither layer names that.
        if let Some(workers) = layers.remove("workers") {
            layers.entry("max_in_flight").or_insert(workers);
        }
        let config: Config = serde_json::from_value(Value::Object(layers)).context("reading the settings")?;
        Ok(config.normalized())
    }
}

fn read_file(path: &Path) -> anyhow::Result<ConfigArgs> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn flags_win_over_the_file_and_secrets_do_not_print() {
        let dir = tempfile_dir();
        let path = dir.join("dibop.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\njwt_secret = \"from-file\"\nmax_body_bytes = 10\n")
            .expect("write config");
        let args = ConfigArgs {
            config: Some(path),
            listen: Some("127.0.0.1:7000".parse().expect("addr")),
            ..Default::default()
        };
        let config = args.resolve().expect("resolve");
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.max_body_bytes, 10);
        assert_eq!(config.jwt_secret.as_ref().map(|s| s.expose_secret().to_owned()).as_deref(), Some("from-file"));
        assert!(!format!("{config:?}").contains("from-file"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let dir = tempfile_dir();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "lisen = \"x\"\n").expect("write config");
        let err = ConfigArgs { config: Some(path), ..Default::default() }.resolve().expect_err("must fail");
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
    }

    #[test]
    fn unnamed_settings_keep_their_defaults_and_bounds_and_empty_texts_apply() {
        let config = ConfigArgs {
            lease_ms: Some(5),
            alert_queue: Some(0),
            jwt_secret: Some(String::new()),
            otlp_endpoint: Some("  ".into()),
            sqlite_max_size_mb: Some(0),
            log_format: Some(LogFormat::Json),
            ..Default::default()
        }
        .resolve()
        .expect("resolve");
        let defaults = Config::default();
        assert_eq!((config.lease_ms, config.alert_queue), (1000, 1));
        assert!(config.jwt_secret.is_none() && config.otlp_endpoint.is_none() && config.sqlite_max_size_mb.is_none());
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!((config.listen, config.data_dir), (defaults.listen, defaults.data_dir));
        assert_eq!((config.max_in_flight, config.execute_wait_ms), (defaults.max_in_flight, defaults.execute_wait_ms));
    }

    #[test]
    fn workers_is_read_only_when_no_layer_names_max_in_flight() {
        let dir = tempfile_dir();
        let path = dir.join("dibop.toml");
        std::fs::write(&path, "workers = 3\nlog_format = \"json\"\nsqlite_synchronous = \"full\"\n").expect("write");
        let file_only = ConfigArgs { config: Some(path.clone()), ..Default::default() }.resolve().expect("resolve");
        assert_eq!(file_only.max_in_flight, 3);
        assert_eq!((file_only.log_format, file_only.sqlite_synchronous), (LogFormat::Json, SqliteSynchronous::Full));
        let flag = ConfigArgs { config: Some(path.clone()), workers: Some(5), ..Default::default() };
        assert_eq!(flag.resolve().expect("resolve").max_in_flight, 5);
        std::fs::write(&path, "workers = 3\nmax_in_flight = 7\n").expect("write");
        let named = ConfigArgs { config: Some(path), workers: Some(5), ..Default::default() };
        assert_eq!(named.resolve().expect("resolve").max_in_flight, 7);
    }

    #[test]
    fn every_key_of_the_file_reaches_its_setting() {
        let dir = tempfile_dir();
        let path = dir.join("all.toml");
        let every = r#"
            listen = "127.0.0.1:9100"
            data_dir = "/srv/dibop"
            database_url = "postgres://db/dibop"
            jwt_secret = "j"
            secret_key = "k"
            admin_email = "a@example.com"
            admin_password = "p"
            allow_private_networks = true
            extra_ca_file = "/etc/ca.pem"
            max_body_bytes = 11
            db_max_connections = 12
            max_in_flight = 13
            workers = 99
            lease_ms = 14000
            execute_wait_ms = 15
            warm_instance_calls = 16
            compile_timeout_ms = 17
            retention_sweep_ms = 1800
            metrics_token = "m"
            alert_eval_ms = 1900
            alert_queue = 20
            otlp_endpoint = "http://127.0.0.1:4318"
            otlp_payloads = true
            shutdown_grace_ms = 21
            enterprise_slots = 22
            max_for_each_items = 23
            max_parallel_branches = 24
            min_cron_interval_secs = 25
            login_concurrency = 26
            login_failures_per_address = 27
            limiter_buckets = 28
            log_format = "json"
            sqlite_synchronous = "full"
            sqlite_max_size_mb = 29
        "#;
        std::fs::write(&path, every).expect("write config");
        let c = ConfigArgs { config: Some(path), ..Default::default() }.resolve().expect("every key is a setting");
        let shown = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned()).unwrap_or_default();
        assert_eq!((c.listen.port(), c.data_dir.as_path()), (9100, Path::new("/srv/dibop")));
        assert_eq!(
            [
                shown(&c.database_url),
                shown(&c.jwt_secret),
                shown(&c.secret_key),
                shown(&c.admin_password),
                shown(&c.metrics_token)
            ],
            ["postgres://db/dibop", "j", "k", "p", "m"]
        );
        assert_eq!(c.admin_email.as_deref(), Some("a@example.com"));
        assert!(c.allow_private_networks && c.otlp_payloads);
        assert_eq!(c.extra_ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(
            [c.max_body_bytes, c.max_in_flight, c.alert_queue, c.max_for_each_items, c.max_parallel_branches],
            [11, 13, 20, 23, 24]
        );
        assert_eq!([c.login_concurrency, c.limiter_buckets, c.enterprise_slots.unwrap_or(0)], [26, 28, 22]);
        assert_eq!((c.db_max_connections, c.warm_instance_calls), (12, 16));
        assert_eq!(
            [
                c.lease_ms,
                c.execute_wait_ms,
                c.compile_timeout_ms,
                c.retention_sweep_ms,
                c.alert_eval_ms,
                c.shutdown_grace_ms
            ],
            [14_000, 15, 17, 1_800, 1_900, 21]
        );
        assert_eq!(
            [c.min_cron_interval_secs, c.login_failures_per_address, c.sqlite_max_size_mb.unwrap_or(0)],
            [25, 27, 29]
        );
        assert_eq!((c.log_format, c.sqlite_synchronous), (LogFormat::Json, SqliteSynchronous::Full));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dibop-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
