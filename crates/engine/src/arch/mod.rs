//! The architecture registry: one entry per model family.
//!
//! Adding a family is one file in this folder and one line in
//! [`ARCHITECTURES`]; the rest of the engine (loading, cache, sampling,
//! hooks, server) is untouched. ARCHITECTURE.md has the recipe.

pub mod bert;
pub mod gemma2;
pub mod gemma3;
pub mod gpt2;
pub mod gptj;
pub mod gptneo;
pub mod gptneox;
pub mod llama;
pub mod mixtral;
pub mod olmoe;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use lucid_gguf::{GgufFile, Metadata};
use lucid_tensor::ops::Activation;

use crate::error::{EngineError, Result};
use crate::hf::{Converted, HfCheckpoint};
use crate::loaded::LoadOptions;
use crate::model::Model;
use crate::weights::WeightSource;

/// A model family lucid can run.
pub trait Architecture: Sync {
    /// The registry name, also shown to users.
    fn name(&self) -> &'static str;

    /// The values of `general.architecture` in GGUF files of this family.
    fn gguf_names(&self) -> &'static [&'static str];

    /// Builds the model from a GGUF file whose `general.architecture` is one
    /// of [`Architecture::gguf_names`].
    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>>;

    /// Special tokens that mark inputs this family takes and lucid does not
    /// run (Gemma 3's image markers): a text-only run never means them as
    /// text, so they are decoded as nothing unless special tokens are asked
    /// for (`Tokenizer::mark_input_markers`).
    fn input_markers(&self) -> &'static [&'static str] {
        &[]
    }

    /// The values of `architectures[0]` in Hugging Face `config.json` files
    /// of this family (`GPT2LMHeadModel`); none if lucid cannot read them.
    fn hf_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Restates a Hugging Face checkpoint in GGUF's terms: the metadata keys
    /// and tensor names llama.cpp's converter writes for this family, with
    /// tensors transposed, split or reordered as it does. Tensors that need
    /// no change keep pointing into the checkpoint's memory map. This is
    /// what `lucid quantize` writes, and what [`Architecture::load_hf`] loads.
    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        Err(not_from_hf(self.name(), ckpt))
    }

    /// Builds the model from a Hugging Face checkpoint whose
    /// `architectures[0]` is one of [`Architecture::hf_names`].
    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let _ = opts;
        Err(not_from_hf(self.name(), ckpt))
    }
}

fn not_from_hf(name: &str, ckpt: &HfCheckpoint) -> EngineError {
    EngineError::Config {
        source_name: ckpt.source_name(),
        message: format!("lucid cannot load {name} models from Hugging Face checkpoints yet"),
    }
}

/// Every family lucid runs.
pub static ARCHITECTURES: &[&dyn Architecture] = &[
    &llama::Llama,
    &mixtral::Mixtral,
    &qwen2::Qwen2,
    &qwen3::Qwen3,
    &qwen3::Qwen3Moe,
    &olmoe::Olmoe,
    &phi3::Phi3,
    &gemma2::Gemma2,
    &gemma3::Gemma3,
    &gpt2::Gpt2,
    &gptneo::GptNeo,
    &gptj::GptJ,
    &gptneox::GptNeoX,
    &bert::Bert,
];

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

/// The family of a Hugging Face checkpoint, by its `architectures[0]`.
pub fn for_hf(ckpt: &HfCheckpoint) -> Result<&'static dyn Architecture> {
    let arch = ckpt.architecture()?;
    ARCHITECTURES
        .iter()
        .copied()
        .find(|a| a.hf_names().contains(&arch))
        .ok_or_else(|| EngineError::UnsupportedArchitecture {
            source_name: ckpt.source_name(),
            arch: arch.to_string(),
            known: ARCHITECTURES
                .iter()
                .flat_map(|a| a.hf_names())
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Loads the model in a Hugging Face checkpoint.
pub fn load_hf(ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
    for_hf(ckpt)?.load_hf(ckpt, opts)
}

/// The lucid-specific key (under `{arch}.`) for an MLP activation other
/// than the family's usual one; see [`Hparams::activation`].
pub const ACTIVATION_KEY: &str = "lucid.activation";

/// `v` if it is absent or above zero; else why not, for a config error.
pub(crate) fn above_zero(v: Option<f32>) -> std::result::Result<Option<f32>, String> {
    match v {
        Some(x) if x <= 0.0 => Err(format!("must be above zero, not {x}")),
        v => Ok(v),
    }
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

    /// Reads the metadata of a model that is not in a file: a Hugging Face
    /// checkpoint restated in GGUF's terms ([`Architecture::convert_hf`]).
    pub fn from_metadata(meta: &'a Metadata, source_name: String) -> Result<Hparams<'a>> {
        Ok(Hparams {
            prefix: meta.str("general.architecture")?,
            meta,
            source_name,
        })
    }

    /// `{arch}.{key}` as a boolean, if present.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        Ok(self.meta.opt_bool(&self.key(key))?)
    }

    /// `{arch}.vocab_size`, or else the rows of `token_embd.weight`.
    pub fn vocab_size(&self, weights: &dyn WeightSource) -> Result<usize> {
        if let Some(v) = self.opt_usize("vocab_size")? {
            return Ok(v);
        }
        weights
            .weight("token_embd.weight")
            .and_then(|t| t.shape.get(1).copied())
            .ok_or_else(|| EngineError::MissingTensor {
                source_name: self.source_name.clone(),
                name: "token_embd.weight".into(),
            })
    }

    /// The MLP's activation. llama.cpp's files have no key for it (each
    /// family has its own), so lucid writes `{arch}.lucid.activation` only
    /// where a checkpoint uses another one than its family's (GPT-NeoX-20B's
    /// `gelu_fast` against Pythia's `gelu`), and reads it here with the
    /// family's as the default.
    pub fn activation(&self, default: Activation) -> Result<Activation> {
        match self.opt_str(ACTIVATION_KEY)? {
            None => Ok(default),
            Some(name) => crate::hf::activation_by_name(name)
                .ok_or_else(|| self.invalid(ACTIVATION_KEY, "names no activation lucid runs")),
        }
    }

    /// The raw value of `{arch}.{key}`, for types without a getter here
    /// (arrays of booleans).
    pub fn value(&self, key: &str) -> Option<&'a lucid_gguf::Value> {
        self.meta.get(&self.key(key))
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

    /// A number the maths divides by, takes the root or the logarithm of
    /// (norm epsilons, RoPE bases, scaling factors): finite and above zero.
    pub fn opt_positive_f32(&self, key: &str) -> Result<Option<f32>> {
        let v = self.opt_f32(key)?;
        above_zero(v).map_err(|why| self.invalid(key, &why))
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

    /// `attention.head_count`, which must divide `d_model`.
    pub fn head_count(&self, d_model: usize) -> Result<usize> {
        let n_heads = self.usize("attention.head_count")?;
        if !d_model.is_multiple_of(n_heads) {
            return Err(self.invalid("attention.head_count", "must divide embedding_length"));
        }
        Ok(n_heads)
    }

    /// `attention.head_count`, `attention.head_count_kv` (which must divide
    /// it; the same when absent) and the head size (`attention.key_length`,
    /// else `d_model / head_count`, which `attention.value_length` must
    /// equal when present): the grouped-query attention of the Llama-style
    /// families.
    pub fn attention_heads(&self, d_model: usize) -> Result<(usize, usize, usize)> {
        let n_heads = self.usize("attention.head_count")?;
        let n_kv_heads = self
            .opt_usize("attention.head_count_kv")?
            .unwrap_or(n_heads);
        if n_heads % n_kv_heads != 0 {
            return Err(self.invalid(
                "attention.head_count_kv",
                "must divide attention.head_count",
            ));
        }
        let head_dim = self
            .opt_usize("attention.key_length")?
            .unwrap_or(d_model / n_heads);
        if head_dim == 0 {
            return Err(self.invalid("attention.key_length", "must not be zero"));
        }
        if self
            .opt_usize("attention.value_length")?
            .is_some_and(|v| v != head_dim)
        {
            return Err(self.invalid("attention.value_length", "must equal attention.key_length"));
        }
        Ok((n_heads, n_kv_heads, head_dim))
    }

    /// `rope.dimension_count` (the whole head when absent): even, and at
    /// most `head_dim`.
    pub fn rope_dims(&self, head_dim: usize) -> Result<usize> {
        let rope_dims = self.opt_usize("rope.dimension_count")?.unwrap_or(head_dim);
        if rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(self.invalid(
                "rope.dimension_count",
                "must be even and at most the head size",
            ));
        }
        Ok(rope_dims)
    }
}
