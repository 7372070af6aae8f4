//! `lucid ps`: the models a running `lucid serve` holds, with their memory,
//! context and the requests they are working on, read from the server's
//! Ollama route `/api/ps` (what `ollama ps` reads).

use anyhow::Context;
use indicatif::HumanBytes;
use serde::Deserialize;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: crate::running::Server,
    /// Print the server's JSON answer as it is.
    #[arg(long)]
    json: bool,
}

/// The fields of `/api/ps` this command shows.
#[derive(Deserialize)]
struct Running {
    models: Vec<RunningModel>,
}

#[derive(Deserialize)]
struct RunningModel {
    name: String,
    #[serde(default)]
    digest: String,
    size: u64,
    #[serde(default)]
    context_length: Option<u64>,
    #[serde(default)]
    requests_running: Option<u64>,
    #[serde(default)]
    requests_queued: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let body = args.server.call("/api/ps", None)?;
    let base = args.server.address();
    if args.json {
        println!("{}", body.trim());
        return Ok(());
    }
    let running: Running = serde_json::from_str(&body)
        .with_context(|| format!("{base}/api/ps did not answer as a lucid or Ollama server"))?;
    if running.models.is_empty() {
        eprintln!("the server at {base} holds no models");
        return Ok(());
    }
    let optional = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let rows: Vec<[String; 7]> = running
        .models
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.digest.chars().take(12).collect(),
                HumanBytes(m.size).to_string(),
                optional(m.context_length),
                optional(m.requests_running),
                optional(m.requests_queued),
                "100% CPU".to_owned(),
            ]
        })
        .collect();
    crate::table::print(
        [
            "NAME",
            "ID",
            "SIZE",
            "CONTEXT",
            "RUNNING",
            "QUEUED",
            "PROCESSOR",
        ],
        &rows,
        &[],
    )
}
