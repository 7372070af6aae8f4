//! `lucid quantize`: convert a model to a quantized GGUF file.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lucid quantize is not built yet")
}
