//! Mixtral (Mistral AI): Mistral's block with a mixture of eight experts
//! in place of the MLP, two per token, their softmax weights renormalized.
//! llama.cpp writes these files as `llama` with `expert_count` set, so GGUF
//! Mixtral files load through [`Llama`](crate::arch::llama::Llama); this
//! entry reads the checkpoints, whose experts are named `w1`, `w2`, `w3`
//! under `block_sparse_moe`.

use lucid_gguf::GgufFile;

use crate::arch::Architecture;
use crate::arch::llama::{self, HfNames, LLAMA};
use crate::error::Result;
use crate::hf::{Converted, HfCheckpoint};
use crate::loaded::LoadOptions;
use crate::model::Model;

/// The registry entry.
pub struct Mixtral;

impl Architecture for Mixtral {
    fn name(&self) -> &'static str {
        "mixtral"
    }

    /// GGUF Mixtral files say `llama`.
    fn gguf_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["MixtralForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        llama::load_gguf(&LLAMA, file)
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        llama::convert_hf(&LLAMA, ckpt, &HfNames::MIXTRAL)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        llama::load_converted(&LLAMA, self.convert_hf(ckpt)?, opts)
    }
}
