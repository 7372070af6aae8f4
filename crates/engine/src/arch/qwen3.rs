//! Qwen 3 (Alibaba): the Llama block with an RMSNorm on each head's query
//! and key before the rotation, rotating halves (`RopeStyle::NeoX`), and no
//! projection biases. Qwen 3 MoE swaps the MLP for a mixture of experts
//! (softmax router, top-k, the chosen weights renormalized as the
//! checkpoint's `norm_topk_prob` says). GGUF names and keys are llama.cpp's
//! `qwen3` and `qwen3moe`.

use lucid_gguf::GgufFile;

use crate::arch::Architecture;
use crate::arch::llama::{self, Flavor, HfNames, QkNorm};
use crate::blocks::RopeStyle;
use crate::error::Result;
use crate::hf::{Converted, HfCheckpoint};
use crate::loaded::LoadOptions;
use crate::model::Model;

/// The registry entry of the dense models.
pub struct Qwen3;

/// The registry entry of the mixtures (Qwen3-30B-A3B).
pub struct Qwen3Moe;

const QWEN3: Flavor = Flavor {
    arch: "qwen3",
    rope_style: RopeStyle::NeoX,
    qk_norm: QkNorm::PerHead,
    moe_normalize: true,
    norm_eps: 1e-6,
    rope_base: 1_000_000.0,
};

const QWEN3_MOE: Flavor = Flavor {
    arch: "qwen3moe",
    ..QWEN3
};

impl Architecture for Qwen3 {
    fn name(&self) -> &'static str {
        "qwen3"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["qwen3"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["Qwen3ForCausalLM", "Qwen3Model"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        llama::load_gguf(&QWEN3, file)
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        llama::convert_hf(&QWEN3, ckpt, &HfNames::LLAMA)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        llama::load_converted(&QWEN3, self.convert_hf(ckpt)?, opts)
    }
}

impl Architecture for Qwen3Moe {
    fn name(&self) -> &'static str {
        "qwen3moe"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["qwen3moe"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["Qwen3MoeForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        llama::load_gguf(&QWEN3_MOE, file)
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        llama::convert_hf(&QWEN3_MOE, ckpt, &HfNames::LLAMA)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        llama::load_converted(&QWEN3_MOE, self.convert_hf(ckpt)?, opts)
    }
}
