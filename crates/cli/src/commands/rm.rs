//! `lucid rm`: remove models (files and manifest) from the local store.

use lucid_store::Store;

#[derive(clap::Args)]
pub struct Args {
    /// Names or aliases of the models to remove.
    #[arg(required = true, value_name = "MODEL")]
    models: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    for model in &args.models {
        store.remove(model)?;
        eprintln!("removed {model}");
    }
    Ok(())
}
