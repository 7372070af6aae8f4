//! OLMoE (Allen AI): the Llama block with an RMSNorm over each token's
//! whole query and whole key (not per head) before the rotation, rotating
//! halves (`RopeStyle::NeoX`), and a mixture of experts in every block
//! whose chosen weights are not renormalized. GGUF names and keys are
//! llama.cpp's `olmoe`.

use lucid_gguf::GgufFile;

use crate::arch::Architecture;
use crate::arch::llama::{self, Flavor, HfNames, QkNorm};
use crate::blocks::RopeStyle;
use crate::error::Result;
use crate::hf::{Converted, HfCheckpoint};
use crate::loaded::LoadOptions;
use crate::model::Model;

/// The registry entry.
pub struct Olmoe;

const OLMOE: Flavor = Flavor {
    arch: "olmoe",
    rope_style: RopeStyle::NeoX,
    qk_norm: QkNorm::Whole,
    moe_normalize: false,
    norm_eps: 1e-5,
    rope_base: 10_000.0,
};

impl Architecture for Olmoe {
    fn name(&self) -> &'static str {
        "olmoe"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["olmoe"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["OlmoeForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        llama::load_gguf(&OLMOE, file)
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        llama::convert_hf(&OLMOE, ckpt, &HfNames::LLAMA)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        llama::load_converted(&OLMOE, self.convert_hf(ckpt)?, opts)
    }
}
