//! `lucid models`: list catalog and local models with kind, size, license and presence on disk.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid models is not built yet")
}
