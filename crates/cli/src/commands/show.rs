//! `lucid show`: describe a model: its architecture, sizes, tensors and license.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid show is not built yet")
}
