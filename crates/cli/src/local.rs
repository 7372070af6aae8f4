//! Finding and opening a local model by catalog name or path, pulling it
//! first when the catalog knows it and the store does not have it yet.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lucid_catalog::ModelEntry;
use lucid_engine::{LoadedModel, ModelDefaults};
use lucid_store::Store;

use crate::progress::Bar;

/// Resolves `model` (a catalog name, an alias or a path), pulling a catalog
/// model that is not in the store yet, and loads it with the catalog's
/// defaults for it (system message, sampling), which every entry point
/// applies through `LoadedModel::chat_prompt` and its `defaults`.
pub fn load(model: &str) -> anyhow::Result<LoadedModel> {
    let (path, entry) = resolve(model)?;
    let mut loaded = load_path(model, &path)?;
    loaded.defaults = defaults(entry);
    Ok(loaded)
}

/// The catalog's `[defaults]` of `entry`, as the engine takes them.
pub fn defaults(entry: Option<&ModelEntry>) -> ModelDefaults {
    entry
        .and_then(|e| e.defaults.as_ref())
        .map_or_else(ModelDefaults::default, |d| ModelDefaults {
            system: d.system.clone(),
            temperature: d.temperature,
            top_p: d.top_p,
        })
}

/// The file of `model` in the store, pulled first if it is not there yet,
/// and its catalog entry.
pub fn resolve(model: &str) -> anyhow::Result<(PathBuf, Option<&'static ModelEntry>)> {
    let store = Store::open_default()?;
    let bar = Bar::default();
    let resolved = store.ensure(model, &bar);
    bar.clear();
    let resolved = resolved?;
    Ok((resolved.path, resolved.entry))
}

/// Loads the model file or checkpoint at `path`; `model` names it in errors.
pub fn load_path(model: &str, path: &Path) -> anyhow::Result<LoadedModel> {
    LoadedModel::load(path).with_context(|| format!("cannot load {model}"))
}

/// The default thread count: the cores this process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
