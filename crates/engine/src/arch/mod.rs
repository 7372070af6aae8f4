//! The architecture registry: one entry per model family.
//!
//! Adding a family is one file in this folder and one line in
//! [`ARCHITECTURES`]; the rest of the engine (loading, cache, sampling,
//! hooks, server) is untouched. ARCHITECTURE.md has the recipe.

pub mod gemma3;
pub mod llama;

use lucid_gguf::{GgufFile, Metadata};

use crate::error::{EngineError, Result};
use crate::model::Model;

/// A model family lucid can run.
pub trait Architecture: Sync {
    /// The registry name, also shown to users.
    fn name(&self) -> &'static str;

    /// The values of `general.architecture` in GGUF files of this family.
    fn gguf_names(&self) -> &'static [&'static str];

    /// Builds the model from a GGUF file whose `general.architecture` is one
    /// of [`Architecture::gguf_names`].
    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>>;
}

/// Every family lucid runs.
pub static ARCHITECTURES: &[&dyn Architecture] = &[&llama::Llama, &gemma3::Gemma3];

/// The family of a GGUF file, by its `general.architecture`.
pub fn for_gguf(file: &GgufFile) -> Result<&'static dyn Architecture> {
    let source_name = file.path().map_or_else(
        || "<in-memory GGUF>".to_string(),
        |p| p.display().to_string(),
    );
    let arch = file.metadata().str("general.architecture")?;
    ARCHITECTURES
        .iter()
        .copied()
        .find(|a| a.gguf_names().contains(&arch))
        .ok_or_else(|| EngineError::UnsupportedArchitecture {
            source_name,
            arch: arch.to_string(),
            known: ARCHITECTURES
                .iter()
                .flat_map(|a| a.gguf_names())
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Loads the model in a GGUF file.
pub fn load_gguf(file: &GgufFile) -> Result<Box<dyn Model>> {
    for_gguf(file)?.load_gguf(file)
}

/// Reads `{arch}.{key}` hyperparameters from GGUF metadata.
pub struct Hparams<'a> {
    meta: &'a Metadata,
    prefix: &'a str,
    source_name: String,
}

impl<'a> Hparams<'a> {
    pub fn new(file: &'a GgufFile) -> Result<Hparams<'a>> {
        let prefix = file.metadata().str("general.architecture")?;
        Ok(Hparams {
            meta: file.metadata(),
            prefix,
            source_name: file.path().map_or_else(
                || "<in-memory GGUF>".to_string(),
                |p| p.display().to_string(),
            ),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.meta.usize(&self.key(key))?;
        if v == 0 {
            return Err(self.invalid(key, "must not be zero"));
        }
        Ok(v)
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.meta.opt_usize(&self.key(key))? {
            Some(0) => Err(self.invalid(key, "must not be zero")),
            v => Ok(v),
        }
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        let v = self.meta.opt_f32(&self.key(key))?;
        if let Some(x) = v
            && !x.is_finite()
        {
            return Err(self.invalid(key, "must be a finite number"));
        }
        Ok(v)
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        Ok(self.meta.opt_str(&self.key(key))?)
    }

    pub fn invalid(&self, key: &str, why: &str) -> EngineError {
        EngineError::Config {
            source_name: self.source_name.clone(),
            message: format!("{}: {why}", self.key(key)),
        }
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }
}
