//! GPT-Neo (EleutherAI, 2021): GPT-2's layout (learned positions, LayerNorm
//! with bias, GELU MLP, tied output) with two differences in attention:
//! layers alternate between global attention and local attention over a
//! window of recent tokens (`attention_layers`, `window_size`), and the
//! scores are not scaled by `1/sqrt(head_dim)`. The query, key and value
//! projections have no bias.
//!
//! llama.cpp has no GPT-Neo architecture, so lucid writes its GGUF files
//! under its own name, `gptneo`, with llama.cpp's tensor names and keys where
//! they exist: `gptneo.attention.sliding_window` is the window and
//! `gptneo.attention.sliding_window_pattern` says, per layer, whether it is
//! local (as llama.cpp's per-layer pattern arrays do).

use lucid_gguf::{Array, GgufFile, Value};
use lucid_tensor::ops::Activation;

use crate::arch::{Architecture, Hparams};
use crate::batch::SeqInput;
use crate::blocks::{
    Attention, AttentionShape, LearnedPositions, Linear, Mlp, Norm, SequentialBlock,
};
use crate::error::Result;
use crate::hf::{Converted, HfCheckpoint, HfConfig};
use crate::hooks::{HookPoint, Hooks};
use crate::loaded::LoadOptions;
use crate::model::{ForwardCtx, Model, ModelInfo};
use crate::weights::{Loader, Weight, WeightSource};

/// The registry entry.
pub struct GptNeo;

/// lucid's GGUF architecture name for GPT-Neo (llama.cpp has none).
const ARCH: &str = "gptneo";

impl Architecture for GptNeo {
    fn name(&self) -> &'static str {
        "gptneo"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &[ARCH]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["GPTNeoForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        let config = GptNeoConfig::from_gguf(&Hparams::new(file)?, file)?;
        Ok(Box::new(GptNeoModel::load(config, &Loader::new(file))?))
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        let cfg = GptNeoConfig::from_hf(&ckpt.config())?;
        let mut c = Converted::new(ckpt.source_name(), ARCH);
        cfg.write_gguf(&mut c)?;
        let t = |name: &str| ckpt.tensor_in("transformer.", name);
        let opt = |name: &str| ckpt.opt_tensor_in("transformer.", name);
        c.push("token_embd.weight", t("wte.weight")?);
        c.push("position_embd.weight", t("wpe.weight")?);
        for i in 0..cfg.n_layers {
            let (h, b) = (format!("h.{i}"), format!("blk.{i}"));
            for (gguf, hf) in [
                ("attn_norm", "ln_1"),
                ("ffn_norm", "ln_2"),
                ("attn_output", "attn.attention.out_proj"),
                ("ffn_up", "mlp.c_fc"),
                ("ffn_down", "mlp.c_proj"),
            ] {
                c.push(
                    format!("{b}.{gguf}.weight"),
                    t(&format!("{h}.{hf}.weight"))?,
                );
                c.push(format!("{b}.{gguf}.bias"), t(&format!("{h}.{hf}.bias"))?);
            }
            for (gguf, hf) in [
                ("attn_q", "q_proj"),
                ("attn_k", "k_proj"),
                ("attn_v", "v_proj"),
            ] {
                let hf = format!("{h}.attn.attention.{hf}");
                c.push(format!("{b}.{gguf}.weight"), t(&format!("{hf}.weight"))?);
                c.push_opt(format!("{b}.{gguf}.bias"), opt(&format!("{hf}.bias"))?);
            }
        }
        c.push("output_norm.weight", t("ln_f.weight")?);
        c.push("output_norm.bias", t("ln_f.bias")?);
        if ckpt.config().opt_bool("tie_word_embeddings")? == Some(false) {
            c.push_opt("output.weight", ckpt.opt_tensor_in("", "lm_head.weight")?);
        }
        Ok(c)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let c = crate::quantize::quantized(self.convert_hf(ckpt)?, opts.quantize)?;
        let hp = Hparams::from_metadata(&c.metadata, c.source_name().to_string())?;
        let config = GptNeoConfig::from_gguf(&hp, &c)?;
        Ok(Box::new(GptNeoModel::load(config, &Loader::new(&c))?))
    }
}

/// The hyperparameters of a GPT-Neo model.
#[derive(Clone, Debug, PartialEq)]
pub struct GptNeoConfig {
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub norm_eps: f32,
    pub act: Activation,
    /// The positions a local layer's token sees, itself included.
    pub window: usize,
    /// Per layer: local (windowed) attention or global.
    pub local: Vec<bool>,
}

impl GptNeoConfig {
    fn from_gguf(hp: &Hparams<'_>, weights: &dyn WeightSource) -> Result<GptNeoConfig> {
        let n_layers = hp.usize("block_count")?;
        let d_model = hp.usize("embedding_length")?;
        let n_heads = hp.head_count(d_model)?;
        let pattern_key = "attention.sliding_window_pattern";
        let local = match hp.value(pattern_key) {
            Some(Value::Array(Array::Bool(v))) if v.len() == n_layers => v.clone(),
            _ => {
                return Err(hp.invalid(pattern_key, "must be one boolean per layer (true: local)"));
            }
        };
        Ok(GptNeoConfig {
            n_layers,
            d_model,
            d_ff: hp.usize("feed_forward_length")?,
            n_heads,
            vocab_size: hp.vocab_size(weights)?,
            context_length: hp.usize("context_length")?,
            norm_eps: hp
                .opt_positive_f32("attention.layer_norm_epsilon")?
                .unwrap_or(1e-5),
            act: hp.activation(Activation::GeluTanh)?,
            window: hp.usize("attention.sliding_window")?,
            local,
        })
    }

    fn from_hf(cfg: &HfConfig<'_>) -> Result<GptNeoConfig> {
        let n_layers = cfg.usize("num_layers")?;
        let d_model = cfg.usize("hidden_size")?;
        let n_heads = cfg.usize("num_heads")?;
        if d_model % n_heads != 0 {
            return Err(cfg.invalid("num_heads", "must divide hidden_size"));
        }
        let local = attention_layers(cfg)?
            .iter()
            .map(|kind| match kind.as_str() {
                "global" => Ok(false),
                "local" => Ok(true),
                other => Err(cfg.invalid(
                    "attention_layers",
                    &format!("'{other}' is neither 'global' nor 'local'"),
                )),
            })
            .collect::<Result<Vec<bool>>>()?;
        if local.len() != n_layers {
            return Err(cfg.invalid("attention_layers", "must name one type per layer"));
        }
        Ok(GptNeoConfig {
            n_layers,
            d_model,
            d_ff: cfg.opt_usize("intermediate_size")?.unwrap_or(4 * d_model),
            n_heads,
            vocab_size: cfg.usize("vocab_size")?,
            context_length: cfg.usize("max_position_embeddings")?,
            norm_eps: cfg.opt_positive_f32("layer_norm_epsilon")?.unwrap_or(1e-5),
            act: cfg.activation("activation_function", Activation::GeluTanh)?,
            window: cfg.opt_usize("window_size")?.unwrap_or(256),
            local,
        })
    }

    fn write_gguf(&self, c: &mut Converted) -> Result<()> {
        c.set_u32("block_count", self.n_layers)?;
        c.set_u32("context_length", self.context_length)?;
        c.set_u32("embedding_length", self.d_model)?;
        c.set_u32("feed_forward_length", self.d_ff)?;
        c.set_u32("attention.head_count", self.n_heads)?;
        c.set("attention.layer_norm_epsilon", Value::F32(self.norm_eps));
        c.set_u32("attention.sliding_window", self.window)?;
        c.set(
            "attention.sliding_window_pattern",
            Value::Array(Array::Bool(self.local.clone())),
        );
        c.set_activation(self.act, Activation::GeluTanh);
        Ok(())
    }
}

/// `attention_layers` (one type per layer), or `attention_types` expanded
/// as transformers does: `[[["global", "local"], 12]]` is the pair twelve
/// times.
fn attention_layers(cfg: &HfConfig<'_>) -> Result<Vec<String>> {
    let strings = |v: &serde_json::Value| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    if let Some(v) = cfg.get("attention_layers") {
        return strings(v)
            .ok_or_else(|| cfg.invalid("attention_layers", "must be a list of strings"));
    }
    let bad = || cfg.invalid("attention_types", "must be a list of [[types...], count]");
    let types = cfg.get("attention_types").ok_or_else(bad)?;
    let mut layers = Vec::new();
    for item in types.as_array().ok_or_else(bad)? {
        let kinds = item.get(0).and_then(strings).ok_or_else(bad)?;
        let count = item
            .get(1)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(bad)?;
        for _ in 0..count.min(1 << 16) {
            layers.extend(kinds.iter().cloned());
        }
    }
    Ok(layers)
}

/// A loaded GPT-Neo model.
pub struct GptNeoModel {
    info: ModelInfo,
    config: GptNeoConfig,
    tok_embd: Weight,
    positions: LearnedPositions,
    blocks: Vec<SequentialBlock>,
    output_norm: Norm,
    output: Linear,
}

impl GptNeoModel {
    pub fn load(config: GptNeoConfig, loader: &Loader<'_>) -> Result<GptNeoModel> {
        let c = &config;
        let d = c.d_model;
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_heads,
            head_dim: d / c.n_heads,
        };
        let tok_embd = loader.matrix("token_embd.weight", c.vocab_size, d)?;
        let output = match Linear::opt_load(loader, "output", d, c.vocab_size)? {
            Some(l) => l,
            None => Linear {
                weight: tok_embd.clone(),
                bias: None,
            },
        };
        let blocks = (0..c.n_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                Ok(SequentialBlock {
                    attn_norm: Norm::layer(loader, &format!("{p}.attn_norm"), d, c.norm_eps)?,
                    wq: Linear::load(loader, &format!("{p}.attn_q"), d, d)?,
                    wk: Linear::load(loader, &format!("{p}.attn_k"), d, d)?,
                    wv: Linear::load(loader, &format!("{p}.attn_v"), d, d)?,
                    wo: Linear::load(loader, &format!("{p}.attn_output"), d, d)?,
                    attn: Attention {
                        shape,
                        // GPT-Neo does not scale its attention scores.
                        scale: 1.0,
                        window: c.local[i].then_some(c.window),
                        softcap: None,
                        bidirectional: false,
                    },
                    ffn_norm: Norm::layer(loader, &format!("{p}.ffn_norm"), d, c.norm_eps)?,
                    mlp: Mlp {
                        up: Linear::load(loader, &format!("{p}.ffn_up"), d, c.d_ff)?,
                        down: Linear::load(loader, &format!("{p}.ffn_down"), c.d_ff, d)?,
                        act: c.act,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GptNeoModel {
            info: ModelInfo {
                architecture: "gptneo",
                n_layers: c.n_layers,
                d_model: d,
                n_heads: c.n_heads,
                n_kv_heads: c.n_heads,
                head_dim: shape.head_dim,
                d_ff: c.d_ff,
                vocab_size: c.vocab_size,
                context_length: c.context_length,
                kv_width: shape.kv_width(),
                kv_precision: loader.kv_precision(),
            },
            positions: LearnedPositions::load(loader, "position_embd", c.context_length, d)?,
            output_norm: Norm::layer(loader, "output_norm", d, c.norm_eps)?,
            tok_embd,
            output,
            blocks,
            config,
        })
    }

    pub fn config(&self) -> &GptNeoConfig {
        &self.config
    }
}

impl Model for GptNeoModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn unembed(&self, ctx: &mut ForwardCtx, resid_rows: &[f32], out: &mut Vec<f32>) -> Result<()> {
        ctx.unembed(resid_rows, &self.output_norm, &self.output, None, out)
    }

    fn forward(
        &self,
        ctx: &mut ForwardCtx,
        seqs: &mut [SeqInput<'_>],
        hooks: &mut Hooks<'_>,
    ) -> Result<()> {
        let n = ctx.begin(&self.info, seqs)?;
        self.positions.check(&ctx.positions)?;
        let d = self.info.d_model;
        let mut buf = std::mem::take(&mut ctx.buf);
        buf.size(n, d, d, d);
        ctx.embed(&self.tok_embd, None, &mut buf.x);
        self.positions
            .add(&ctx.positions, &mut buf.x, &mut buf.tmp)?;
        hooks.rows(HookPoint::Embed, &ctx.spans, d, &buf.x);
        for (l, b) in self.blocks.iter().enumerate() {
            b.forward(l, d, ctx, &mut buf, seqs, hooks);
        }
        ctx.output(&buf.x, &self.output_norm, &self.output, None, hooks);
        ctx.buf = buf;
        ctx.commit(seqs);
        Ok(())
    }
}
