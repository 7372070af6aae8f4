//! `lucid serve`: serve models over an OpenAI- and Ollama-compatible HTTP API, with the glass-box web page.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid serve is not built yet")
}
