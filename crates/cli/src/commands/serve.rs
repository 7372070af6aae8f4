//! `lucid serve`: serve models over an OpenAI- and Ollama-compatible HTTP API.
//!
//! Loads each `--model` (pulling catalog models that are not in the store
//! yet), starts one scheduler per model, registers the local models as the
//! provider router's local provider (so `openai:…`, `anthropic:…`,
//! `gemini:…` and `compat:…` names work beside them), binds to loopback by
//! default and prints the address on stdout. The glass box (`POST
//! /v1/explain` and the web page at `/`) is served beside the API. Ctrl-C or
//! SIGTERM stops it gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lucid_scheduler::{Scheduler, SchedulerConfig};
use lucid_server::{AppState, LocalModel, ServerBuilder, ServerConfig};

use crate::local;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on; loopback by default, so nothing outside this machine can connect.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A model to serve: catalog name (`smollm2`, `gemma3`) or a path (repeatable).
    #[arg(long = "model", value_name = "NAME")]
    models: Vec<String>,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "LUCID_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Sequences generated at once per model (batched into one forward pass).
    #[arg(long, default_value_t = 16)]
    max_sequences: usize,
    /// Requests that may wait per model beyond --max-sequences; more get 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// KV-cache budget per model, in MiB (running sequences and prefix cache).
    #[arg(long, default_value_t = 1024)]
    kv_cache_mb: usize,
    /// Threads for the forward pass (default: the cores available).
    #[arg(long)]
    threads: Option<usize>,
    /// Largest context per sequence in tokens (default: the model's).
    #[arg(long)]
    ctx_size: Option<usize>,
    /// Speculative decoding for local models, while at most two requests
    /// are decoding at once.
    #[command(flatten)]
    draft: local::DraftArgs,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// Connections open at once; more are answered 503 at once and closed.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers; also how long
    /// an idle keep-alive connection is kept.
    #[arg(long, default_value_t = 15)]
    header_timeout: u64,
    /// Seconds a client may take to send a request's body (408 after).
    #[arg(long, default_value_t = 60)]
    body_timeout: u64,
    /// A host name browsers may reach this server by, besides IP addresses
    /// and localhost (repeatable). Without --api-key, requests naming
    /// another host in `Host` or `Origin` are refused (DNS rebinding,
    /// cross-site requests).
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// A web origin whose pages may call this server from a browser
    /// (`https://app.example`, or `*` for any; repeatable): CORS preflights
    /// are answered and the headers set. Off by default; --api-key still
    /// applies.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Seconds running streams may go on after Ctrl-C/SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 10)]
    shutdown_timeout: u64,
    /// A use the deployment declares (commercial, distill, ...; repeatable):
    /// models whose license forbids it are refused.
    #[arg(long = "intended-use", value_name = "USE")]
    intended_uses: Vec<lucid_catalog::Use>,
    /// Also refuse models whose license lucid has no verdict on for a declared use.
    #[arg(long)]
    refuse_unknown_licenses: bool,
    /// The providers config file (default: ~/.config/lucid/providers.toml if it exists).
    #[arg(long)]
    providers_config: Option<std::path::PathBuf>,
    /// How long a model stays loaded after its last request ("5m", "1h";
    /// "forever", the default, keeps it for as long as the server runs).
    /// An unloaded model is loaded again by the next request that names
    /// it; Ollama's `keep_alive` sets it per request, `lucid stop` unloads.
    #[arg(long, default_value = "forever")]
    keep_alive: lucid_server::state::KeepAlive,
}

/// Loads `name` as the server serves it: checked against the license
/// policy, with its own scheduler, under its catalog name with its aliases.
fn served_model(
    name: &str,
    policy: &lucid_server::policy::LicensePolicy,
    config: &SchedulerConfig,
) -> anyhow::Result<LocalModel> {
    let loaded = Arc::new(local::load(name)?);
    // Refuse before serving a model whose license forbids a declared use.
    policy.check_local(name, &loaded)?;
    let scheduler = Scheduler::start(loaded, config.clone());
    let mut aliases = vec![name.to_owned()];
    let entry = lucid_catalog::Catalog::builtin().find(name);
    if let Some(entry) = entry {
        aliases.push(entry.name.clone());
        aliases.extend(entry.aliases.iter().cloned());
    }
    if let Some(stem) = std::path::Path::new(name).file_stem() {
        aliases.push(stem.to_string_lossy().into_owned());
    }
    let served = entry.map_or_else(|| name.to_owned(), |e| e.name.clone());
    Ok(LocalModel::new(served, scheduler).with_aliases(aliases))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Before any model loads: a mistyped origin is a quick error.
    lucid_server::cors::layer(&args.cors_origins).map_err(anyhow::Error::msg)?;
    let threads = args.threads.unwrap_or_else(local::default_threads);
    let policy = lucid_server::policy::LicensePolicy::new(lucid_catalog::Policy {
        intended_uses: args.intended_uses.clone(),
        refuse_unknown: args.refuse_unknown_licenses,
    });
    let scheduler_config = SchedulerConfig {
        max_sequences: args.max_sequences,
        max_queue: args.max_queue,
        kv_cache_bytes: args.kv_cache_mb << 20,
        threads,
        context: args.ctx_size,
        draft: args.draft.drafting(),
        ..SchedulerConfig::default()
    };
    let policy = Arc::new(policy);
    // Loads a model now, and the same way again after a keep-alive or
    // `lucid stop` unloaded it.
    let open = {
        let policy = policy.clone();
        move |name: &str| -> anyhow::Result<LocalModel> {
            let load = {
                let (name, policy, config) =
                    (name.to_owned(), policy.clone(), scheduler_config.clone());
                move || served_model(&name, &policy, &config)
            };
            let model = load()?;
            let loader: lucid_server::state::Loader =
                Arc::new(move || load().map_err(|e| format!("{e:#}")));
            Ok(model.with_loader(loader))
        }
    };
    // The models named at start load now, so that a bad name fails at once.
    let models = args
        .models
        .iter()
        .map(|name| open(name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config_path = args
        .providers_config
        .clone()
        .or_else(|| lucid_providers::Config::default_path().filter(|p| p.is_file()));
    let providers = lucid_providers::Router::from_env_and_config(config_path.as_deref())
        .context("reading the providers configuration")?;
    let state = AppState::with_local_provider(
        models,
        providers,
        ServerConfig {
            api_key: args.api_key.clone().filter(|k| !k.is_empty()),
            max_body_bytes: args.max_body_bytes,
            max_connections: args.max_connections.max(1),
            header_timeout: Duration::from_secs(args.header_timeout.max(1)),
            body_timeout: Duration::from_secs(args.body_timeout.max(1)),
            allowed_hosts: args.allowed_hosts.clone(),
            cors_origins: args.cors_origins.clone(),
            shutdown_deadline: Duration::from_secs(args.shutdown_timeout),
            policy: policy.policy().clone(),
            keep_alive: args.keep_alive,
        },
    );
    // Ollama's /api/pull, /api/delete, /api/copy and /api/create manage the
    // store, and any model in it is served when a request names it.
    let opener: lucid_server::library::Opener =
        Arc::new(move |name| open(name).map_err(|e| format!("{e:#}")));
    state.set_library(lucid_server::Library::new(
        lucid_store::Store::open_default()?,
        opener,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = lucid_server::listen::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        println!(
            "lucid is serving {} on http://{addr}",
            state.model_names().join(", ")
        );
        if state.config().api_key.is_none() && !addr.ip().is_loopback() {
            eprintln!(
                "warning: listening on {addr} without --api-key: anyone who can reach it can use it"
            );
        }
        // The glass box: `POST /v1/explain` and the web page at `/`, over the
        // same loaded models.
        let (names, lookup) = (state.clone(), state.clone());
        let explain_models = lucid_web::models_fn(
            move || names.model_names(),
            move |name| lookup.model(name).map(|m| m.model.clone()),
        );
        let web = lucid_web::router(
            explain_models,
            lucid_web::WebConfig {
                threads,
                ..lucid_web::WebConfig::default()
            },
        );
        let app = ServerBuilder::new(state.clone()).routes(web).build();
        lucid_server::serve(listener, app, state, lucid_server::shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    })
}
