//! `lucid ps`: the models a running `lucid serve` holds, with their memory,
//! context and the requests they are working on, read from the server's
//! Ollama route `/api/ps` (what `ollama ps` reads).

use std::time::Duration;

use anyhow::Context;
use indicatif::HumanBytes;
use serde::Deserialize;

#[derive(clap::Args)]
pub struct Args {
    /// The server's address (`lucid serve` listens on 127.0.0.1:8080 unless
    /// told otherwise).
    #[arg(long, env = "LUCID_HOST", default_value = "http://127.0.0.1:8080")]
    host: String,
    /// The server's API key, if it was started with `--api-key`.
    #[arg(long, env = "LUCID_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
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
    let base = if args.host.contains("://") {
        args.host.trim_end_matches('/').to_owned()
    } else {
        format!("http://{}", args.host.trim_end_matches('/'))
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("starting the HTTP client")?;
    let mut request = client.get(format!("{base}/api/ps"));
    if let Some(key) = &args.api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().map_err(|e| {
        anyhow::anyhow!(
            "no lucid server answers at {base} ({}); start one with `lucid serve`, or give --host",
            root_cause(&e)
        )
    })?;
    let status = response.status();
    let body = response
        .text()
        .with_context(|| format!("reading the answer of {base}/api/ps"))?;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!("{base} wants an API key: give --api-key or set LUCID_API_KEY");
    }
    if !status.is_success() {
        anyhow::bail!("{base}/api/ps answered {status}: {}", body.trim());
    }
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

/// The innermost error's text (reqwest's own says only "error sending
/// request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
