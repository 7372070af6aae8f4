//! The `lucid` command: glue between the user's terminal and lucid's crates.
//!
//! Each subcommand lives in its own module under `commands/`; this file only
//! parses the command line, installs logging and dispatches. Data goes to
//! stdout, diagnostics and progress to stderr.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lucid",
    version,
    about = "Run, serve and look inside language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download a model from the catalog into the local store.
    Pull(commands::pull::Args),
    /// List the models in the local store.
    List(commands::list::Args),
    /// Remove a model from the local store.
    Rm(commands::rm::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LUCID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Pull(args) => commands::pull::run(args),
        Command::List(args) => commands::list::run(args),
        Command::Rm(args) => commands::rm::run(args),
    }
}
