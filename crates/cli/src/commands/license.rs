//! `lucid license`: show a model's license, or check it against intended uses.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid license is not built yet")
}
