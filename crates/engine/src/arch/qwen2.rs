//! Qwen 2 and 2.5 (Alibaba): the Llama block with biases on the query, key
//! and value projections, rotating halves (`RopeStyle::NeoX`), and a RoPE
//! base of a million. GGUF names and keys are llama.cpp's `qwen2`.

use lucid_gguf::GgufFile;

use crate::arch::Architecture;
use crate::arch::llama::{self, Flavor, HfNames, QkNorm};
use crate::blocks::RopeStyle;
use crate::error::Result;
use crate::hf::{Converted, HfCheckpoint};
use crate::loaded::LoadOptions;
use crate::model::Model;

/// The registry entry.
pub struct Qwen2;

const QWEN2: Flavor = Flavor {
    arch: "qwen2",
    rope_style: RopeStyle::NeoX,
    qk_norm: QkNorm::None,
    moe_normalize: false,
    norm_eps: 1e-6,
    rope_base: 1_000_000.0,
};

impl Architecture for Qwen2 {
    fn name(&self) -> &'static str {
        "qwen2"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["qwen2"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["Qwen2ForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        llama::load_gguf(&QWEN2, file)
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        llama::convert_hf(&QWEN2, ckpt, &HfNames::LLAMA)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        llama::load_converted(&QWEN2, self.convert_hf(ckpt)?, opts)
    }
}
