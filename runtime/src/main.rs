//! The `dibop` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use dibop::config::{ConfigArgs, LogFormat};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "dibop", version, about = "DIBOP runtime: integration and orchestration for dealer groups")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Serve(ConfigArgs),
    /// Apply database migrations and exit.
    Migrate(ConfigArgs),
    /// Run the server with a sandbox dealer system, connections and the "Vehicle lookup"
    /// orchestration; execute it once, print the result and keep serving.
    Demo(ConfigArgs),
    /// Manage orchestrations on a running server (DIBOP_URL, DIBOP_TOKEN).
    #[command(subcommand)]
    Orchestration(OrchestrationCommand),
    /// Execute an orchestration on a running server and print the result.
    Execute {
        /// Orchestration name or id.
        name_or_id: String,
        /// A parameter as name=value (value parsed as JSON when it is JSON); repeatable.
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
        /// Queue it and return at once.
        #[arg(long = "async")]
        run_async: bool,
        #[command(flatten)]
        remote: dibop::client::Remote,
    },
    /// Manage plugins on a running server.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Write, build and try connectors locally (no server needed).
    #[command(subcommand)]
    Connector(dibop::authoring::ConnectorCommand),
}

#[derive(Subcommand)]
enum OrchestrationCommand {
    /// Create the orchestration in a JSON file, or replace the one with the same name.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
        #[command(flatten)]
        remote: dibop::client::Remote,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Upload a WebAssembly component (with its signature from FILE.sig when that exists).
    Push {
        file: std::path::PathBuf,
        /// enterprise or global.
        #[arg(long, default_value = "enterprise")]
        scope: String,
        /// The signature file (`dibop plugin sign`); default FILE.sig when it exists.
        #[arg(long)]
        signature: Option<std::path::PathBuf>,
        #[command(flatten)]
        remote: dibop::client::Remote,
    },
    /// Make an Ed25519 signing key: writes the private key to --out and prints the public key
    /// (what a platform admin trusts with POST /plugin-signers).
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Sign a component with a private key from `keygen`: writes FILE.sig (base64).
    Sign {
        file: std::path::PathBuf,
        #[arg(long)]
        key: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The report printed says why.
        Err(err) if err.is::<dibop::authoring::sandbox::Failed>() => std::process::ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            init_logging(config.log_format);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            dibop::serve(listener, config, shutdown_signal()).await
        }
        Command::Demo(mut args) => {
            // A fresh data directory per run unless one is given, so the printed login is valid.
            args.data_dir
                .get_or_insert_with(|| std::env::temp_dir().join(format!("dibop-demo-{}", std::process::id())));
            let config = args.resolve()?;
            init_logging(config.log_format);
            dibop::demo::run(config, shutdown_signal()).await
        }
        Command::Orchestration(OrchestrationCommand::Apply { file, remote }) => {
            dibop::client::apply(&remote, &file).await
        }
        Command::Execute { name_or_id, params, run_async, remote } => {
            dibop::client::execute(&remote, &name_or_id, &params, run_async).await
        }
        Command::Plugin(PluginCommand::Push { file, scope, signature, remote }) => {
            dibop::client::push(&remote, &file, &scope, signature.as_deref()).await
        }
        Command::Plugin(PluginCommand::Keygen { out }) => dibop::client::keygen(&out),
        Command::Plugin(PluginCommand::Sign { file, key }) => dibop::client::sign(&file, &key),
        Command::Connector(command) => dibop::authoring::run(command).await,
        Command::Migrate(args) => {
            let config = args.resolve()?;
            init_logging(config.log_format);
            let store = dibop::open_store(&config).await?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("DIBOP_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
