//! Process metrics in the Prometheus text format (with `prometheus-client`), served at
//! `/metrics`, and the figures `GET /observability/metrics` adds to the database's.
//!
//! The counters live for the process: every server in one process shares them (tests start
//! several). Executions are counted where they end (the store's final write), API calls where
//! the plugin host records them, rate-limit rejections where a 429 is rendered.

use std::sync::OnceLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::ApiCallRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiCallLabels {
    pub system: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SystemLabel {
    pub system: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    /// Everything, for a protected `/metrics`.
    registry: Registry,
    /// Without labels that tenants choose (system slugs of their own plugins), for an open one.
    public: Registry,
    api_calls_by_outcome: Family<OutcomeLabel, Counter>,
    pub executions: Family<StatusLabel, Counter>,
    pub execution_seconds: Histogram,
    pub api_calls: Family<ApiCallLabels, Counter>,
    pub api_call_seconds: HistogramFamily<SystemLabel>,
    pub instantiate_seconds: Histogram,
    instantiations: Counter,
    instantiate_micros: Counter,
    pub rate_limited: Counter,
    /// Trace exports to the OTLP endpoint, by outcome: sent, failed, dropped (queue full).
    pub otlp_exports: Family<OutcomeLabel, Counter>,
    pub queue_depth: Gauge,
    pub workers_busy: Gauge,
    pub started: Instant,
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("dibop");
        let mut public = Registry::with_prefix("dibop");
        let executions = Family::<StatusLabel, Counter>::default();
        let execution_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        let instantiate_seconds = Histogram::new(exponential_buckets(0.000_005, 2.0, 20));
        let rate_limited = Counter::default();
        let queue_depth = Gauge::default();
        let workers_busy = Gauge::default();
        let api_calls_by_outcome = Family::<OutcomeLabel, Counter>::default();
        let otlp_exports = Family::<OutcomeLabel, Counter>::default();
        for r in [&mut registry, &mut public] {
            r.register("otlp_exports", "Execution traces exported over OTLP, by outcome", otlp_exports.clone());
            r.register("executions", "Executions that ended, by status", executions.clone());
            r.register("execution_duration_seconds", "Execution duration", execution_seconds.clone());
            r.register(
                "plugin_instantiate_seconds",
                "Time to instantiate a plugin for a call (warm instances skip it)",
                instantiate_seconds.clone(),
            );
            r.register("rate_limit_rejections", "Requests answered 429 RATE_LIMIT", rate_limited.clone());
            r.register("queue_depth", "Executions waiting for a worker (all nodes)", queue_depth.clone());
            r.register("workers_busy", "Execution slots of this node in use", workers_busy.clone());
        }
        public.register("api_calls", "Outbound requests of plugins, by outcome", api_calls_by_outcome.clone());
        let api_calls = Family::<ApiCallLabels, Counter>::default();
        registry.register("api_calls", "Outbound requests of plugins, by system and outcome", api_calls.clone());
        let api_call_seconds: HistogramFamily<SystemLabel> = Family::new_with_constructor(latency_buckets);
        registry.register("api_call_duration_seconds", "Outbound request latency, by system", api_call_seconds.clone());
        Self {
            registry,
            public,
            api_calls_by_outcome,
            executions,
            execution_seconds,
            api_calls,
            api_call_seconds,
            instantiate_seconds,
            instantiations: Counter::default(),
            instantiate_micros: Counter::default(),
            rate_limited,
            otlp_exports,
            queue_depth,
            workers_busy,
            started: Instant::now(),
        }
    }

    /// Counts one trace export with `outcome` (sent, failed or dropped).
    pub fn otlp_export(&self, outcome: &str) {
        self.otlp_exports.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
    }

    /// An execution ended with `status` after running since `started_at_ms`.
    pub fn execution_ended(&self, status: &str, started_at_ms: Option<i64>) {
        self.executions.get_or_create(&StatusLabel { status: status.to_owned() }).inc();
        if let Some(started) = started_at_ms {
            let ms = (dibop_core::now_ms() - started).max(0);
            self.execution_seconds.observe(ms as f64 / 1000.0);
        }
    }

    pub fn api_calls_made(&self, records: &[ApiCallRecord]) {
        for r in records {
            let labels = ApiCallLabels { system: r.origin.system.clone(), outcome: r.status.as_str().to_owned() };
            self.api_calls.get_or_create(&labels).inc();
            self.api_calls_by_outcome.get_or_create(&OutcomeLabel { outcome: r.status.as_str().to_owned() }).inc();
            self.api_call_seconds
                .get_or_create(&SystemLabel { system: r.origin.system.clone() })
                .observe(r.duration_ms as f64 / 1000.0);
        }
    }

    pub fn instantiated(&self, took: std::time::Duration) {
        self.instantiate_seconds.observe(took.as_secs_f64());
        self.instantiations.inc();
        self.instantiate_micros.inc_by(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// (instantiations, mean instantiation time in ms) since the process started.
    pub fn instantiation_summary(&self) -> (u64, f64) {
        let n = self.instantiations.get();
        let mean = if n == 0 { 0.0 } else { self.instantiate_micros.get() as f64 / n as f64 / 1000.0 };
        (n, mean)
    }

    /// The exposition text; `with_systems` adds the families labelled by system slug, which
    /// tenants choose (only for a `/metrics` protected by a token).
    pub fn render(&self, with_systems: bool) -> String {
        let mut text = String::new();
        let registry = if with_systems { &self.registry } else { &self.public };
        if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
            text.clear();
        }
        text
    }
}
