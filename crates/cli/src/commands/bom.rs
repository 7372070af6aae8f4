//! `lucid bom`: write a CycloneDX ML-BOM for the models a configuration uses.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid bom is not built yet")
}
