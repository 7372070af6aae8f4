//! `lucid bom`: write a CycloneDX ML-BOM for the models a configuration uses.
//!
//! The models are the MODEL arguments (catalog names, aliases or paths) and
//! those a `--config` file names (any `model = "..."` or `models = [...]` in
//! it; see `lucid_catalog::bom::models_in_config`). With neither, the BOM
//! lists the models in the local store. Catalog models are described from the
//! catalog, with its hashes; files on disk are described from their metadata
//! and hashed (SHA-256) as the BOM is written.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, bail};
use lucid_catalog::Licenses;
use lucid_catalog::bom::{BomModel, BomOptions, cyclonedx, models_in_config};
use lucid_store::Store;

use crate::commands::license::{Target, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// A configuration whose `model` / `models` entries to list.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Catalog names, aliases or paths of models to list.
    models: Vec<String>,
    /// Write the BOM here instead of to stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut names = Vec::new();
    if let Some(config) = &args.config {
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("cannot read {}", config.display()))?;
        names = models_in_config(&text)
            .with_context(|| format!("{} is not valid TOML", config.display()))?;
        if names.is_empty() {
            bail!(
                "{} names no models (no `model` or `models` keys)",
                config.display()
            );
        }
    }
    for model in &args.models {
        if !names.contains(model) {
            names.push(model.clone());
        }
    }
    if names.is_empty() {
        let store = Store::open_default()?;
        names = store.list()?.into_iter().map(|m| m.name).collect();
        if names.is_empty() {
            bail!(
                "no models given and none in {}; name models or pass --config",
                store.home().display()
            );
        }
    }
    let mut targets = Vec::new();
    for name in &names {
        let mut target = resolve(name)?;
        match &mut target {
            Target::Local(local) => local
                .hash_files()
                .with_context(|| format!("cannot hash {name}"))?,
            Target::License(id) => bail!("`{name}` is a license ({id}), not a model"),
            Target::Entry(_) => {}
        }
        targets.push(target);
    }
    let models: Vec<BomModel> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Entry(entry) => Some(BomModel::Entry(entry)),
            Target::Local(local) => Some(BomModel::Local(local)),
            Target::License(_) => None,
        })
        .collect();
    let options = BomOptions {
        serial_number: uuid::Uuid::new_v4().to_string(),
        timestamp: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let bom = cyclonedx(&models, Licenses::builtin(), &options);
    let mut text = serde_json::to_string_pretty(&bom)?;
    text.push('\n');
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}
