//! The `lucid` command: glue between the user's terminal and lucid's crates.
//!
//! Each subcommand lives in its own module under `commands/`; this file only
//! parses the command line, installs logging and dispatches. Data goes to
//! stdout, diagnostics and progress to stderr.

mod chat;
mod commands;
mod local;
mod progress;
mod running;
mod table;

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
    /// Make a model of your own from a TOML model file: a system message, sampling settings, a chat template.
    Create(commands::create::Args),
    /// Remove a model (or a user model) from the local store.
    Rm(commands::rm::Args),
    /// Run a model on a prompt, or chat with it.
    Run(commands::run::Args),
    /// Turn texts into vectors with an embedding model (or any local model).
    Embed(commands::embed::Args),
    /// Describe a model: its architecture, sizes, tensors and license.
    Show(commands::show::Args),
    /// Show what the model does with a prompt: tokens, next-token probabilities, attention, logit lens.
    Explain(commands::explain::Args),
    /// Serve models over an OpenAI- and Ollama-compatible HTTP API, with the glass-box web page.
    Serve(commands::serve::Args),
    /// List the models a running `lucid serve` holds, with their memory and requests.
    Ps(commands::ps::Args),
    /// Unload a model from a running `lucid serve` (the next request loads it again).
    Stop(commands::stop::Args),
    /// Measure prefill and decode speed, beside llama.cpp when it is available.
    Bench(commands::bench::Args),
    /// List catalog and local models with kind, size, license and presence on disk.
    Models(commands::models::Args),
    /// Show a model's license, or check it against intended uses.
    License(commands::license::Args),
    /// Write a CycloneDX ML-BOM for the models a configuration uses.
    Bom(commands::bom::Args),
    /// Convert a model to a quantized GGUF file.
    Quantize(commands::quantize::Args),
}

/// The hidden first argument that makes `lucid` a chat-template worker
/// (`lucid_engine::chat::isolated`) instead of a command.
const TEMPLATE_WORKER: &str = "__chat-template-worker";

fn main() -> anyhow::Result<()> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == TEMPLATE_WORKER)
    {
        return template_worker();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LUCID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, and never with NO_COLOR
        // (https://no-color.org): log lines piped to a file stay plain.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    // Every chat template (a model file's, a user's) renders in a worker
    // process whose memory is bounded, so none can abort this one.
    // On Linux through /proc/self/exe, which still starts this very program
    // after its file was replaced by an upgrade.
    let exe = if cfg!(target_os = "linux") {
        Ok(std::path::PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    };
    match exe {
        Ok(exe) => lucid_engine::chat::isolated::isolate(exe, vec![TEMPLATE_WORKER.into()]),
        Err(e) => tracing::warn!("chat templates render in this process: {e}"),
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Pull(args) => commands::pull::run(args),
        Command::List(args) => commands::list::run(args),
        Command::Rm(args) => commands::rm::run(args),
        Command::Create(args) => commands::create::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::Show(args) => commands::show::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Models(args) => commands::models::run(args),
        Command::Ps(args) => commands::ps::run(args),
        Command::Stop(args) => commands::stop::run(args),
        Command::License(args) => commands::license::run(args),
        Command::Bom(args) => commands::bom::run(args),
        Command::Quantize(args) => commands::quantize::run(args),
    }
}

/// A chat-template worker: bounds its own memory, then renders what its
/// parent sends until the parent closes the pipe.
fn template_worker() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, setrlimit};
        let bound = lucid_engine::chat::isolated::WORKER_MEMORY;
        setrlimit(Resource::RLIMIT_AS, bound, bound)?;
    }
    lucid_engine::chat::isolated::serve(std::io::stdin().lock(), std::io::stdout().lock())?;
    Ok(())
}
