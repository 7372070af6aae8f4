//! `lucid explain`: show what the model does with a prompt: tokens, next-token probabilities, attention, logit lens.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid explain is not built yet")
}
