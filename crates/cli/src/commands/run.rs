//! `lucid run`: run a model on a prompt, or chat with it.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid run is not built yet")
}
