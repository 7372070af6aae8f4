//! Finding and opening a local model by catalog name or path, pulling it
//! first when the catalog knows it and the store does not have it yet.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lucid_catalog::ModelEntry;
use lucid_engine::{LoadedModel, ModelDefaults};
use lucid_store::{Store, UserModel};

use crate::progress::Bar;

/// Resolves `model` (a catalog name, an alias, a path, or a user model made
/// with `lucid create`), pulling a catalog model that is not in the store
/// yet, and loads it with its defaults (the catalog's, then the user
/// model's: system message, sampling, chat template), which every entry
/// point applies through `LoadedModel::chat_prompt` and its `defaults`.
pub fn load(model: &str) -> anyhow::Result<LoadedModel> {
    Ok(load_local(model)?.model)
}

/// A model loaded by [`load_local`], with what is known about it besides
/// its file.
pub struct Local {
    pub model: LoadedModel,
    /// The catalog entry of the model it is (or is made from).
    pub entry: Option<&'static ModelEntry>,
    /// The user models it was made through, the one named first.
    pub made_from: Vec<(String, UserModel)>,
}

/// [`load`], and the model's catalog entry and user models. The catalog's
/// display name replaces the file's `general.name`, which converters often
/// make from a file name ("Smollm2 135M 8k Lc100K Mix1 Ep2"); a user model
/// is shown by its own name.
pub fn load_local(model: &str) -> anyhow::Result<Local> {
    let store = Store::open_default()?;
    let mut made_from = Vec::new();
    let mut base = model.to_owned();
    while let Some(user) = store.user_model(&base)? {
        anyhow::ensure!(
            made_from.len() < lucid_store::MAX_CHAIN,
            "{model}: `from` chains through more than {} user models",
            lucid_store::MAX_CHAIN
        );
        let next = user.from.clone();
        made_from.push((base, user));
        base = next;
    }
    let (path, entry) = resolve(&base)?;
    let mut loaded = load_path(&base, &path)?;
    loaded.defaults = defaults(entry);
    name_from_catalog(&mut loaded, entry);
    // The innermost first, so the named model's settings win.
    for (name, user) in made_from.iter().rev() {
        apply(&mut loaded, name, user)?;
    }
    Ok(Local {
        model: loaded,
        entry,
        made_from,
    })
}

/// Puts a user model's settings in place of the defaults they override.
fn apply(model: &mut LoadedModel, name: &str, user: &UserModel) -> anyhow::Result<()> {
    let d = &mut model.defaults;
    d.system = user.system.clone().or(d.system.take());
    d.temperature = user.parameters.temperature.or(d.temperature);
    d.top_p = user.parameters.top_p.or(d.top_p);
    if let Some(template) = &user.template {
        model
            .set_chat_template(template)
            .with_context(|| format!("the chat template of user model `{name}`"))?;
    }
    model.meta.name = name.to_owned();
    Ok(())
}

/// Names `model` by its catalog entry's display name, when it has one.
pub fn name_from_catalog(model: &mut LoadedModel, entry: Option<&ModelEntry>) {
    if let Some(name) = entry.and_then(|e| e.display_name.clone()) {
        model.meta.name = name;
    }
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

/// `--draft` and `--draft-max`, for `lucid run` and `lucid serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct DraftArgs {
    /// Speculative decoding: `lookup` guesses the next tokens from earlier
    /// in the prompt and answer (prompt lookup) and has the model check
    /// them in one pass. The output is the same; it comes sooner when the
    /// answer repeats its prompt (editing code, quoting a text).
    #[arg(long, value_enum)]
    pub draft: Option<DraftKind>,
    /// The most tokens guessed at once (with --draft).
    #[arg(long, default_value_t = lucid_engine::PromptLookup::default().max_draft)]
    pub draft_max: usize,
}

/// Where speculative guesses come from.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DraftKind {
    /// Earlier in the sequence.
    Lookup,
}

impl DraftArgs {
    pub fn drafting(&self) -> lucid_engine::Drafting {
        match self.draft {
            None => lucid_engine::Drafting::Off,
            Some(DraftKind::Lookup) => {
                lucid_engine::Drafting::PromptLookup(lucid_engine::PromptLookup {
                    max_draft: self.draft_max,
                    ..lucid_engine::PromptLookup::default()
                })
            }
        }
    }
}
