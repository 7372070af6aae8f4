//! `lucid stop MODEL`: a running `lucid serve` unloads the model (at once
//! if it is idle, else when its requests are done), as `ollama stop` does
//! and through the same request: `/api/generate` with `keep_alive: 0`. The
//! model stays listed, and the next request that names it loads it again.

#[derive(clap::Args)]
pub struct Args {
    /// The model to unload, as the server lists it.
    model: String,
    #[command(flatten)]
    server: crate::running::Server,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let body = serde_json::json!({"model": args.model, "keep_alive": 0});
    args.server.call("/api/generate", Some(body))?;
    eprintln!(
        "{} is unloaded from {} once idle (at once when no request runs); \
         the next request for it loads it again",
        args.model,
        args.server.address()
    );
    Ok(())
}
