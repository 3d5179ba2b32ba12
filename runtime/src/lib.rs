//! The DIBOP runtime: an integration and orchestration server for dealer groups.
//!
//! [`serve`] runs the whole server on a bound listener until a shutdown future resolves; the
//! binary and the end-to-end tests both start it that way.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod authoring;
pub mod bootstrap;
pub use dibop_core::bounded;
pub use dibop_engine::canonical;
pub mod client;
pub mod config;
pub mod console;
pub use dibop_engine::connections;
pub mod crypto;
pub mod demo;
pub use dibop_engine as engine;
pub use dibop_plugin_host::egress;
pub mod error;
pub use dibop_core::guard;
pub mod metrics;
pub mod otlp;
pub mod signing;
pub use dibop_plugin_host as plugins;
pub use dibop_store::limiter as ratelimit;
pub mod state;
pub use dibop_store as store;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;
use ratelimit::RateLimiter;
use state::AppState;
use store::Store;

/// Opens the database, applies migrations and bootstraps an empty one.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let options = store::Options {
        max_connections: config.db_max_connections,
        full_sync: config.sqlite_synchronous == config::SqliteSynchronous::Full,
        sqlite_max_bytes: config.sqlite_max_size_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
    };
    let store = Store::open(config.database_url.as_ref(), &config.data_dir, &options).await?;
    store.migrate().await?;
    Ok(store)
}

/// Runs the server on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // A bad JWT secret stops the start before the database is touched.
    auth::tokens::check_configured_secret(config.jwt_secret.as_ref())?;
    let store = open_store(&config).await?;
    bootstrap::bootstrap(&store, &config).await?;
    let secret = auth::tokens::load_or_create_secret(config.jwt_secret.as_ref(), &config.data_dir)?;
    let tls = egress::tls_config(config.extra_ca_file.as_deref())?;
    let host = Arc::new(
        plugins::PluginHost::new(&config.data_dir, config.allow_private_networks, config.warm_instance_calls)?
            .with_net(plugins::outbound::Net::new(tls.clone()))
            .with_observer(Arc::new(|instantiate, api_calls| {
                let metrics = metrics::get();
                if !instantiate.is_zero() {
                    metrics.instantiated(instantiate);
                }
                metrics.api_calls_made(api_calls);
            }))
            .with_compile_timeout(Duration::from_millis(config.compile_timeout_ms)),
    );
    let (outbox, queued) = alerts::Outbox::new(&tls, config.allow_private_networks, config.alert_queue)?;
    let registry = Arc::new(plugins::registry::Registry::new(host, store.clone(), &config.data_dir)?);
    registry.register_bundled().await?;
    registry.keep_bytes_in_database().await?;
    registry.pin_unpinned_connections().await?;
    let sealer = Arc::new(crypto::sealer(config.secret_key.as_ref(), &config.data_dir)?);
    let limiter = Arc::new(RateLimiter::new(&store, config.limiter_buckets));
    let alerts = alerts::Alerts { store: store.clone(), sealer: sealer.clone(), outbox: Arc::new(outbox) };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (otlp, exporting) = match &config.otlp_endpoint {
        Some(endpoint) => {
            let (exporter, task) =
                otlp::Exporter::start(endpoint, store.clone(), config.otlp_payloads, stopped.clone())?;
            (Some(exporter), Some(task))
        }
        None => (None, None),
    };
    let engine = engine::Engine::new(
        store.clone(),
        registry.clone(),
        sealer.clone(),
        limiter.clone(),
        Arc::new(engine::Node::new(
            config.max_in_flight,
            config.enterprise_slots.unwrap_or((config.max_in_flight / 2).max(1)),
        )),
        engine::Settings {
            lease_ms: config.lease_ms,
            max_for_each_items: config.max_for_each_items,
            max_parallel_branches: config.max_parallel_branches,
        },
        Arc::new(EngineEvents { alerts: alerts.clone(), otlp: otlp.clone() }),
    );
    // When the shutdown signal came: the grace period counts from there, and waiting handlers
    // answer then, before their connection closes.
    let (signalled, mut signal) = tokio::sync::watch::channel(None);
    let state = AppState {
        tokens: Arc::new(auth::tokens::Tokens::new(&secret)),
        passwords: Arc::new(auth::password::Passwords::new(config.login_concurrency).await?),
        engine,
        config: Arc::new(config),
        alerts,
        draining: engine::executions::Draining::new(signal.clone()),
    };
    let housekeeping = tokio::spawn(housekeeping(state.clone(), stopped.clone()));
    let deliveries = tokio::spawn(alerts::send_queued(state.alerts.clone(), queued, stopped.clone()));
    let workers = engine::start(&state.engine, &stopped);

    let app = api::router(state.clone());
    tracing::info!(address = %listener.local_addr()?, "DIBOP API listening");
    let grace = Duration::from_millis(state.config.shutdown_grace_ms);
    let http = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = signalled.send(Some(tokio::time::Instant::now()));
        })
        .into_future();
    tokio::select! {
        served = http => served.context("serving HTTP")?,
        // Requests still open when the grace period ends are dropped (an execute that waits
        // answers 202 when the shutdown starts, so none of those).
        () = async {
            let _ = signal.wait_for(Option::is_some).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("requests still open after the shutdown grace period; closing them"),
    }
    let deadline = signal.borrow().map_or_else(tokio::time::Instant::now, |at| at + grace);
    let _ = stop.send(true);
    let _ = housekeeping.await;
    engine::stop(&state.engine, deadline, workers).await;
    // Alert deliveries and trace exports still queued get a moment to go out.
    let _ = tokio::time::timeout(Duration::from_secs(5), deliveries).await;
    if let Some(exporting) = exporting {
        let _ = tokio::time::timeout(Duration::from_secs(5), exporting).await;
    }
    store.close().await;
    tracing::info!("DIBOP stopped");
    Ok(())
}

/// The server's subscriptions to the engine's events: ended executions count in the metrics,
/// and the alert rules are evaluated (and the trace exported) off the worker's path after each
/// run.
struct EngineEvents {
    alerts: alerts::Alerts,
    otlp: Option<Arc<otlp::Exporter>>,
}

impl engine::Events for EngineEvents {
    fn execution_ended(&self, ended: store::Ended) {
        metrics::get().execution_ended(ended.status.as_str(), ended.started_at);
    }

    fn run_over(&self, enterprise_id: &str, execution_id: &str) {
        if let Some(otlp) = &self.otlp {
            otlp.offer(enterprise_id, execution_id);
        }
        tokio::spawn(alerts::execution_ended(self.alerts.clone(), enterprise_id.to_owned(), execution_id.to_owned()));
    }
}

/// Periodic upkeep until `stopped` flips.
async fn housekeeping(state: AppState, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut retention = tokio::time::interval(Duration::from_millis(state.config.retention_sweep_ms));
    let mut alerts = tokio::time::interval(Duration::from_millis(state.config.alert_eval_ms));
    loop {
        // Each pass is guarded: a panic in one is logged and the next pass runs as usual.
        let pass = tokio::select! {
            _ = tick.tick() => guard::catch(async {
                if let Err(err) = state.limiter().prune().await {
                    tracing::warn!(error = %format!("{err:#}"), "pruning rate-limit windows failed");
                }
            }).await,
            _ = retention.tick() => guard::catch(async {
                match state.store().purge_expired().await {
                    Ok(store::Purged { executions: 0, api_calls: 0, pages_released: 0, .. }) => {}
                    Ok(store::Purged { executions, api_calls, batches, pages_released }) => {
                        tracing::info!(executions, api_calls, batches, pages_released, "purged data past its retention");
                    }
                    Err(err) => tracing::warn!(error = %format!("{err:#}"), "purging data past its retention failed"),
                }
            }).await,
            _ = alerts.tick() => guard::catch(async {
                if let Err(err) = alerts::evaluate_periodic(&state.alerts).await {
                    tracing::warn!(error = %format!("{err:#}"), "evaluating periodic alert rules failed");
                }
            }).await,
            _ = stopped.changed() => return,
        };
        if let Err(panic) = pass {
            tracing::error!(panic = %panic, "a housekeeping pass panicked; housekeeping goes on");
        }
    }
}
