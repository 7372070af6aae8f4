//! Gemma 2 (Google): RMSNorm before and after both attention and MLP, a
//! GeGLU MLP, an embedding scaled by √d_model, attention scores and final
//! logits soft-capped with `tanh`, and a sliding window on every other
//! layer (the first, third, ...), full attention on the rest. It runs on
//! Gemma 3's block ([`GemmaModel`]) without the query/key norms.
//!
//! GGUF names and keys are llama.cpp's `gemma2`. Checkpoints store each
//! norm's weight as `w - 1`; GGUF files store `w`, as llama.cpp's converter
//! writes them. GGUF has no key for the query scale (`query_pre_attn_scalar`):
//! llama.cpp uses `head_dim` except for the 46-layer 27B model, which uses
//! `d_model / n_heads`, and lucid does the same, writing
//! `gemma2.lucid.query_pre_attn_scalar` for a checkpoint that says otherwise.

use lucid_gguf::{GgufFile, Value};
use lucid_tensor::ops::Activation;

use crate::arch::gemma3::{GemmaLayout, GemmaModel};
use crate::arch::{Architecture, Hparams};
use crate::blocks::{Rope, RopeScaling, RopeStyle};
use crate::error::Result;
use crate::hf::{self, Converted, HfCheckpoint, HfConfig};
use crate::loaded::LoadOptions;
use crate::model::Model;
use crate::weights::{Loader, Weight, WeightSource};

/// The registry entry.
pub struct Gemma2;

const QUERY_SCALAR_KEY: &str = "lucid.query_pre_attn_scalar";

impl Architecture for Gemma2 {
    fn name(&self) -> &'static str {
        "gemma2"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["gemma2"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["Gemma2ForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        let config = Gemma2Config::from_gguf(&Hparams::new(file)?, file)?;
        Ok(Box::new(GemmaModel::load(
            config.layout(),
            &Loader::new(file),
        )?))
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        let cfg = Gemma2Config::from_hf(&ckpt.config())?;
        let mut c = Converted::new(ckpt.source_name(), "gemma2");
        cfg.write_gguf(&mut c)?;
        let t = |name: &str| ckpt.tensor_in("model.", name);
        let norm = |name: &str| -> Result<Weight> { Ok(hf::map_f32(&t(name)?, |w| w + 1.0)) };
        c.push("token_embd.weight", t("embed_tokens.weight")?);
        for i in 0..cfg.n_layers {
            let (h, b) = (format!("layers.{i}"), format!("blk.{i}"));
            for (gguf, hf_name) in [
                ("attn_norm", "input_layernorm"),
                ("post_attention_norm", "post_attention_layernorm"),
                ("ffn_norm", "pre_feedforward_layernorm"),
                ("post_ffw_norm", "post_feedforward_layernorm"),
            ] {
                c.push(
                    format!("{b}.{gguf}.weight"),
                    norm(&format!("{h}.{hf_name}.weight"))?,
                );
            }
            for (gguf, hf_name) in [
                ("attn_q", "self_attn.q_proj"),
                ("attn_k", "self_attn.k_proj"),
                ("attn_v", "self_attn.v_proj"),
                ("attn_output", "self_attn.o_proj"),
                ("ffn_gate", "mlp.gate_proj"),
                ("ffn_up", "mlp.up_proj"),
                ("ffn_down", "mlp.down_proj"),
            ] {
                c.push(
                    format!("{b}.{gguf}.weight"),
                    t(&format!("{h}.{hf_name}.weight"))?,
                );
            }
        }
        c.push("output_norm.weight", norm("norm.weight")?);
        Ok(c)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let c = crate::quantize::quantized(self.convert_hf(ckpt)?, opts.quantize)?;
        let hp = Hparams::from_metadata(&c.metadata, c.source_name().to_string())?;
        let config = Gemma2Config::from_gguf(&hp, &c)?;
        Ok(Box::new(GemmaModel::load(
            config.layout(),
            &Loader::new(&c),
        )?))
    }
}

/// The hyperparameters of a Gemma 2 model.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemma2Config {
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub norm_eps: f32,
    pub rope_base: f32,
    /// Tokens a sliding-window layer sees, itself included.
    pub sliding_window: Option<usize>,
    /// The queries are scaled by `1 / √query_pre_attn_scalar`.
    pub query_pre_attn_scalar: f32,
    pub attn_softcap: Option<f32>,
    pub final_logit_softcap: Option<f32>,
}

impl Gemma2Config {
    fn from_gguf(hp: &Hparams<'_>, weights: &dyn WeightSource) -> Result<Gemma2Config> {
        let n_layers = hp.usize("block_count")?;
        let d_model = hp.usize("embedding_length")?;
        let (n_heads, n_kv_heads, head_dim) = hp.attention_heads(d_model)?;
        // llama.cpp: the 27B model (46 layers) scales by d_model / n_heads.
        let default_scalar = if n_layers == 46 {
            (d_model / n_heads) as f32
        } else {
            head_dim as f32
        };
        Ok(Gemma2Config {
            n_layers,
            d_model,
            d_ff: hp.usize("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size: hp.vocab_size(weights)?,
            context_length: hp.usize("context_length")?,
            norm_eps: hp
                .opt_positive_f32("attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-6),
            rope_base: hp.opt_positive_f32("rope.freq_base")?.unwrap_or(10_000.0),
            sliding_window: hp.opt_usize("attention.sliding_window")?,
            query_pre_attn_scalar: hp
                .opt_positive_f32(QUERY_SCALAR_KEY)?
                .unwrap_or(default_scalar),
            attn_softcap: hp.opt_f32("attn_logit_softcapping")?.filter(|c| *c > 0.0),
            final_logit_softcap: hp.opt_f32("final_logit_softcapping")?.filter(|c| *c > 0.0),
        })
    }

    fn from_hf(cfg: &HfConfig<'_>) -> Result<Gemma2Config> {
        let d_model = cfg.usize("hidden_size")?;
        let (n_heads, n_kv_heads, head_dim) = cfg.attention_heads(d_model)?;
        let act = cfg.activation("hidden_activation", Activation::GeluTanh)?;
        if act != Activation::GeluTanh {
            return Err(cfg.invalid("hidden_activation", "Gemma 2 runs gelu_pytorch_tanh"));
        }
        // Every other layer slides, starting with the first; a checkpoint
        // that lists another pattern is not one lucid reads.
        if let Some(types) = cfg.get("layer_types").and_then(|v| v.as_array()) {
            let alternating = types.iter().enumerate().all(|(i, t)| {
                t.as_str()
                    == Some(if i % 2 == 0 {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    })
            });
            if !alternating {
                return Err(cfg.invalid(
                    "layer_types",
                    "Gemma 2 alternates sliding and full attention, starting with sliding",
                ));
            }
        }
        let rope = cfg
            .get("rope_parameters")
            .or_else(|| cfg.get("rope_scaling"));
        let rope_base = match rope
            .and_then(|r| r.get("rope_theta"))
            .and_then(|v| v.as_f64())
        {
            Some(b) => b as f32,
            None => cfg.opt_positive_f32("rope_theta")?.unwrap_or(10_000.0),
        };
        Ok(Gemma2Config {
            n_layers: cfg.usize("num_hidden_layers")?,
            d_model,
            d_ff: cfg.usize("intermediate_size")?,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size: cfg.usize("vocab_size")?,
            context_length: cfg.usize("max_position_embeddings")?,
            norm_eps: cfg.opt_positive_f32("rms_norm_eps")?.unwrap_or(1e-6),
            rope_base,
            sliding_window: cfg.opt_usize("sliding_window")?,
            query_pre_attn_scalar: cfg
                .opt_positive_f32("query_pre_attn_scalar")?
                .unwrap_or(head_dim as f32),
            attn_softcap: cfg.opt_f32("attn_logit_softcapping")?.filter(|c| *c > 0.0),
            final_logit_softcap: cfg.opt_f32("final_logit_softcapping")?.filter(|c| *c > 0.0),
        })
    }

    fn write_gguf(&self, c: &mut Converted) -> Result<()> {
        c.set_u32("context_length", self.context_length)?;
        c.set_u32("embedding_length", self.d_model)?;
        c.set_u32("block_count", self.n_layers)?;
        c.set_u32("feed_forward_length", self.d_ff)?;
        c.set_u32("attention.head_count", self.n_heads)?;
        c.set_u32("attention.head_count_kv", self.n_kv_heads)?;
        c.set_u32("attention.key_length", self.head_dim)?;
        c.set_u32("attention.value_length", self.head_dim)?;
        c.set("rope.freq_base", Value::F32(self.rope_base));
        c.set(
            "attention.layer_norm_rms_epsilon",
            Value::F32(self.norm_eps),
        );
        if let Some(w) = self.sliding_window {
            c.set_u32("attention.sliding_window", w)?;
        }
        if let Some(cap) = self.attn_softcap {
            c.set("attn_logit_softcapping", Value::F32(cap));
        }
        if let Some(cap) = self.final_logit_softcap {
            c.set("final_logit_softcapping", Value::F32(cap));
        }
        let llama_cpp_scalar = if self.n_layers == 46 {
            (self.d_model / self.n_heads) as f32
        } else {
            self.head_dim as f32
        };
        if self.query_pre_attn_scalar != llama_cpp_scalar {
            c.set(QUERY_SCALAR_KEY, Value::F32(self.query_pre_attn_scalar));
        }
        Ok(())
    }

    /// Gemma's block, with Gemma 2's choices: no query/key norms, every
    /// other layer sliding (the first, third, ...), one rotation for all.
    pub fn layout(&self) -> GemmaLayout {
        let rope = Rope::new(
            self.head_dim,
            self.rope_base,
            RopeStyle::NeoX,
            RopeScaling::None,
        );
        GemmaLayout {
            architecture: "gemma2",
            n_layers: self.n_layers,
            d_model: self.d_model,
            d_ff: self.d_ff,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            vocab_size: self.vocab_size,
            context_length: self.context_length,
            norm_eps: self.norm_eps,
            qk_norm: false,
            is_local: (0..self.n_layers).map(|l| l % 2 == 0).collect(),
            sliding_window: self.sliding_window,
            attention_scale: 1.0 / self.query_pre_attn_scalar.sqrt(),
            attn_softcap: self.attn_softcap,
            final_logit_softcap: self.final_logit_softcap,
            rope_global: rope.clone(),
            rope_local: rope,
        }
    }
}
