//! Phi-3, Phi-3.5 and Phi-4-mini (Microsoft): the Llama block with the
//! query, key and value projections fused into one matrix and the gate and
//! up projections into another (gate rows first), rotating halves
//! (`RopeStyle::NeoX`), an optional sliding window on every layer, and
//! "longrope" scaling: per-frequency divisors for contexts within the
//! original training length (`short_factor`) and beyond it
//! (`long_factor`), and a factor on the rotated values. As llama.cpp does,
//! lucid picks the long factors when the model's context exceeds the
//! original one (transformers picks by the length of the sequence so far).
//!
//! GGUF names and keys are llama.cpp's `phi3`: `attn_qkv`, `ffn_up` holding
//! gate and up, `rope_factors_long`/`rope_factors_short`,
//! `rope.scaling.attn_factor` and `rope.scaling.original_context_length`.

use lucid_gguf::GgufFile;

use crate::arch::Architecture;
use crate::arch::llama::{self, Flavor, LlamaConfig, QkNorm};
use crate::blocks::RopeStyle;
use crate::error::Result;
use crate::hf::{self, Converted, HfCheckpoint, HfConfig};
use crate::loaded::LoadOptions;
use crate::model::Model;

/// The registry entry.
pub struct Phi3;

const PHI3: Flavor = Flavor {
    arch: "phi3",
    rope_style: RopeStyle::NeoX,
    qk_norm: QkNorm::None,
    moe_normalize: true,
    norm_eps: 1e-5,
    rope_base: 10_000.0,
};

impl Architecture for Phi3 {
    fn name(&self) -> &'static str {
        "phi3"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["phi3"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["Phi3ForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        llama::load_gguf(&PHI3, file)
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        let config = ckpt.config();
        let cfg = LlamaConfig::from_hf(&PHI3, &config)?;
        let mut c = Converted::new(ckpt.source_name(), PHI3.arch);
        cfg.write_gguf(&mut c)?;
        if let Some([long, short]) = longrope_factors(&config, cfg.rope_dims / 2)? {
            c.push(
                "rope_factors_long.weight",
                hf::f32_vector("rope_factors_long.weight", &long),
            );
            c.push(
                "rope_factors_short.weight",
                hf::f32_vector("rope_factors_short.weight", &short),
            );
        }
        let t = |name: &str| ckpt.tensor_in("model.", name);
        c.push("token_embd.weight", t("embed_tokens.weight")?);
        for i in 0..cfg.n_layers {
            let (h, b) = (format!("layers.{i}"), format!("blk.{i}"));
            for (gguf, hf_name) in [
                ("attn_norm", "input_layernorm"),
                ("ffn_norm", "post_attention_layernorm"),
                ("attn_qkv", "self_attn.qkv_proj"),
                ("attn_output", "self_attn.o_proj"),
                ("ffn_up", "mlp.gate_up_proj"),
                ("ffn_down", "mlp.down_proj"),
            ] {
                c.push(
                    format!("{b}.{gguf}.weight"),
                    t(&format!("{h}.{hf_name}.weight"))?,
                );
            }
        }
        c.push("output_norm.weight", t("norm.weight")?);
        if config.opt_bool("tie_word_embeddings")? != Some(true) {
            c.push("output.weight", ckpt.tensor_in("", "lm_head.weight")?);
        }
        Ok(c)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        llama::load_converted(&PHI3, self.convert_hf(ckpt)?, opts)
    }
}

/// A longrope config's `[long_factor, short_factor]`, each `half` values.
fn longrope_factors(cfg: &HfConfig<'_>, half: usize) -> Result<Option<[Vec<f32>; 2]>> {
    let Some(rope) = cfg
        .get("rope_parameters")
        .or_else(|| cfg.get("rope_scaling"))
    else {
        return Ok(None);
    };
    let list = |key: &str| -> Option<Vec<f32>> {
        rope.get(key)?
            .as_array()?
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32))
            .collect()
    };
    match (list("long_factor"), list("short_factor")) {
        (None, None) => Ok(None),
        (Some(long), Some(short))
            if long.len() == half
                && short.len() == half
                && long.iter().chain(&short).all(|f| f.is_finite() && *f > 0.0) =>
        {
            Ok(Some([long, short]))
        }
        _ => Err(cfg.invalid(
            "rope_parameters",
            &format!("long_factor and short_factor must both be lists of {half} positive numbers"),
        )),
    }
}
