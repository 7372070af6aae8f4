//! `lucid bench`: measure prefill and decode speed, beside llama.cpp when it is available.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid bench is not built yet")
}
