//! `dibop connector ...`: what a connector author runs locally, without a server. `new` writes a
//! project from a template ([`scaffold`]), `build` builds it with the pinned tools
//! ([`toolchain`]), `test` runs one call in the server's sandbox ([`sandbox`]).

pub mod sandbox;
pub mod scaffold;
pub mod toolchain;

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Write a new connector project NAME (a slug, e.g. my-lookup): one operation against a
    /// configurable base_url, a unit test, a README and an orchestration that uses it.
    New {
        name: String,
        #[arg(long, value_enum)]
        lang: scaffold::Lang,
        /// The folder to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust only: the SDK folder (sdk/ of a DIBOP checkout); default: the checkout this
        /// dibop was built from.
        #[arg(long, env = "DIBOP_SDK_DIR")]
        sdk: Option<PathBuf>,
    },
    /// Build the project in DIR into DIR/dist/NAME.wasm with the pinned tools (installed under
    /// DIBOP_TOOLS_DIR, default ~/.cache/dibop-tools, the first time).
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run one call of a component in the server's sandbox (limits, allow-list, schemas) and
    /// print the output or error, logs, stdout/stderr and every HTTP request.
    Test(sandbox::TestArgs),
}

pub async fn run(command: ConnectorCommand) -> anyhow::Result<()> {
    match command {
        ConnectorCommand::New { name, lang, dir, sdk } => {
            let made = scaffold::new(&name, lang, &dir, sdk)?;
            println!("{}", made.display());
            eprintln!("next: cd {} && dibop connector build (README.md walks you through the rest)", made.display());
            Ok(())
        }
        ConnectorCommand::Build { dir } => {
            let built = tokio::task::spawn_blocking(move || toolchain::build(&dir)).await??;
            println!("{}", built.display());
            Ok(())
        }
        ConnectorCommand::Test(args) => sandbox::run(args, &toolchain::tools_dir().join("sandbox")).await,
    }
}
