//! The DIBOP runtime: an integration and orchestration server for dealer groups.
//!
//! [`serve`] runs the whole server on a bound listener until a shutdown future resolves; the
//! binary and the end-to-end tests both start it that way.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod canonical;
pub mod client;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod demo;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod plugins;
pub mod ratelimit;
pub mod state;
pub mod store;

use std::future::Future;
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
    let store = Store::connect(config.database_url.as_ref(), &config.data_dir, config.db_max_connections).await?;
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
    let host = Arc::new(plugins::PluginHost::new(
        &config.data_dir,
        config.allow_private_networks,
        config.warm_instance_calls,
    )?);
    let registry = plugins::registry::Registry::new(host, store.clone(), &config.data_dir)?;
    registry.register_bundled().await?;
    let state = AppState {
        tokens: Arc::new(auth::tokens::Tokens::new(&secret)),
        passwords: Arc::new(auth::password::Passwords::new(config.login_concurrency).await?),
        limiter: Arc::new(RateLimiter::new(&store)),
        sealer: Arc::new(crypto::Sealer::new(config.secret_key.as_ref(), &config.data_dir)?),
        registry: Arc::new(registry),
        engine: Arc::new(engine::EngineHandle::new(config.workers)),
        store: store.clone(),
        config: Arc::new(config),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let housekeeping = tokio::spawn(housekeeping(state.clone(), stopped.clone()));
    let workers = engine::start(&state, state.config.workers, &stopped);

    let app = api::router(state);
    tracing::info!(address = %listener.local_addr()?, "DIBOP API listening");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;

    let _ = stop.send(true);
    let _ = housekeeping.await;
    for worker in workers {
        let _ = worker.await;
    }
    store.close().await;
    tracing::info!("DIBOP stopped");
    Ok(())
}

/// Periodic upkeep until `stopped` flips.
async fn housekeeping(state: AppState, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut retention = tokio::time::interval(Duration::from_millis(state.config.retention_sweep_ms));
    let mut alerts = tokio::time::interval(Duration::from_millis(state.config.alert_eval_ms));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(err) = state.limiter.prune().await {
                    tracing::warn!(error = %format!("{err:#}"), "pruning rate-limit windows failed");
                }
            }
            _ = retention.tick() => match state.store.purge_expired().await {
                Ok((0, 0)) => {}
                Ok((executions, api_calls)) => {
                    tracing::info!(executions, api_calls, "purged data past its retention");
                }
                Err(err) => tracing::warn!(error = %format!("{err:#}"), "purging data past its retention failed"),
            },
            _ = alerts.tick() => {
                if let Err(err) = alerts::evaluate_periodic(&state).await {
                    tracing::warn!(error = %format!("{err:#}"), "evaluating periodic alert rules failed");
                }
            }
            _ = stopped.changed() => return,
        }
    }
}
