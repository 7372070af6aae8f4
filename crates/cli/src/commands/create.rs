//! `lucid create NAME -f FILE`: a model of one's own from a TOML model file
//! (the model it is made from, a system message, sampling settings, a chat
//! template, a license note), kept in the store and honoured by `run`,
//! `serve` and `explain` as the catalog's defaults are.

use std::path::PathBuf;

use anyhow::Context;
use lucid_store::{Store, UserModel};

use crate::local;

#[derive(clap::Args)]
pub struct Args {
    /// The new model's name.
    name: String,
    /// The model file (TOML): `from = "smollm2"`, `system = "…"`,
    /// `template = "…"`, `license_note = "…"`, `[parameters]` with
    /// `temperature` and `top_p`.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let user = UserModel::read(&args.file)?;
    let path = store.create(&args.name, &user)?;
    // Load it as `run` will, so a template that does not compile, or a
    // model that cannot load, is found now rather than at first use; the
    // file stays only if it loads.
    if let Err(e) = local::load(&args.name) {
        let _ = store.remove(&args.name);
        return Err(e).with_context(|| format!("{} does not load", args.name));
    }
    eprintln!("created {} ({})", args.name, path.display());
    Ok(())
}
