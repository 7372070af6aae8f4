//! GPT-J (EleutherAI, 2021): rotary position embeddings on the first
//! `rotary_dim` values of each query and key head, rotating adjacent pairs
//! (`RopeStyle::Normal`), and a parallel block: attention and MLP both read
//! the same LayerNorm output and both add to the residual stream. The
//! attention projections have no bias; the output head is separate from the
//! embeddings and has one.
//!
//! GGUF names and keys are those gguf-py lists for llama.cpp's `gptj`
//! (`attn_q`, `attn_k`, `attn_v`, `rope.dimension_count`). llama.cpp knows
//! the name but has no forward pass for it, so lucid's GPT-J files load in
//! lucid only.

use lucid_gguf::{GgufFile, Value};
use lucid_tensor::ops::{self, Activation};

use crate::arch::{Architecture, Hparams};
use crate::batch::SeqInput;
use crate::blocks::{Attention, AttentionShape, Linear, Mlp, Norm, Rope, RopeScaling, RopeStyle};
use crate::error::Result;
use crate::hf::{Converted, HfCheckpoint, HfConfig};
use crate::hooks::{HookPoint, Hooks};
use crate::loaded::LoadOptions;
use crate::model::{ForwardCtx, Model, ModelInfo};
use crate::weights::{Loader, Weight, WeightSource};

/// The registry entry.
pub struct GptJ;

/// GPT-J's rotary base; its config has no key for it.
const ROPE_BASE: f32 = 10_000.0;

impl Architecture for GptJ {
    fn name(&self) -> &'static str {
        "gptj"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["gptj"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["GPTJForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        let config = GptJConfig::from_gguf(&Hparams::new(file)?, file)?;
        Ok(Box::new(GptJModel::load(config, &Loader::new(file))?))
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        let cfg = GptJConfig::from_hf(&ckpt.config())?;
        let mut c = Converted::new(ckpt.source_name(), "gptj");
        cfg.write_gguf(&mut c)?;
        let t = |name: &str| ckpt.tensor_in("transformer.", name);
        let opt = |name: &str| ckpt.opt_tensor_in("transformer.", name);
        c.push("token_embd.weight", t("wte.weight")?);
        for i in 0..cfg.n_layers {
            let (h, b) = (format!("h.{i}"), format!("blk.{i}"));
            for (gguf, hf) in [
                ("attn_norm", "ln_1"),
                ("ffn_up", "mlp.fc_in"),
                ("ffn_down", "mlp.fc_out"),
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
                ("attn_output", "out_proj"),
            ] {
                let hf = format!("{h}.attn.{hf}");
                c.push(format!("{b}.{gguf}.weight"), t(&format!("{hf}.weight"))?);
                c.push_opt(format!("{b}.{gguf}.bias"), opt(&format!("{hf}.bias"))?);
            }
        }
        c.push("output_norm.weight", t("ln_f.weight")?);
        c.push("output_norm.bias", t("ln_f.bias")?);
        c.push_opt("output.weight", ckpt.opt_tensor_in("", "lm_head.weight")?);
        c.push_opt("output.bias", ckpt.opt_tensor_in("", "lm_head.bias")?);
        Ok(c)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let c = crate::quantize::quantized(self.convert_hf(ckpt)?, opts.quantize)?;
        let hp = Hparams::from_metadata(&c.metadata, c.source_name().to_string())?;
        let config = GptJConfig::from_gguf(&hp, &c)?;
        Ok(Box::new(GptJModel::load(config, &Loader::new(&c))?))
    }
}

/// The hyperparameters of a GPT-J model.
#[derive(Clone, Debug, PartialEq)]
pub struct GptJConfig {
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub norm_eps: f32,
    pub act: Activation,
    /// Rotated values at the start of each head.
    pub rope_dims: usize,
}

impl GptJConfig {
    fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    fn from_gguf(hp: &Hparams<'_>, weights: &dyn WeightSource) -> Result<GptJConfig> {
        let d_model = hp.usize("embedding_length")?;
        let n_heads = hp.head_count(d_model)?;
        let head_dim = d_model / n_heads;
        let rope_dims = hp.rope_dims(head_dim)?;
        Ok(GptJConfig {
            n_layers: hp.usize("block_count")?,
            d_model,
            d_ff: hp.usize("feed_forward_length")?,
            n_heads,
            vocab_size: hp.vocab_size(weights)?,
            context_length: hp.usize("context_length")?,
            norm_eps: hp
                .opt_positive_f32("attention.layer_norm_epsilon")?
                .unwrap_or(1e-5),
            act: hp.activation(Activation::GeluTanh)?,
            rope_dims,
        })
    }

    fn from_hf(cfg: &HfConfig<'_>) -> Result<GptJConfig> {
        let d_model = cfg.usize("n_embd")?;
        let n_heads = cfg.usize("n_head")?;
        if d_model % n_heads != 0 {
            return Err(cfg.invalid("n_head", "must divide n_embd"));
        }
        let head_dim = d_model / n_heads;
        let rope_dims = cfg.opt_usize("rotary_dim")?.unwrap_or(head_dim);
        if rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(cfg.invalid("rotary_dim", "must be even and at most the head size"));
        }
        Ok(GptJConfig {
            n_layers: cfg.usize("n_layer")?,
            d_model,
            d_ff: cfg.opt_usize("n_inner")?.unwrap_or(4 * d_model),
            n_heads,
            vocab_size: cfg.usize("vocab_size")?,
            context_length: cfg.usize("n_positions")?,
            norm_eps: cfg.opt_positive_f32("layer_norm_epsilon")?.unwrap_or(1e-5),
            act: cfg.activation("activation_function", Activation::GeluTanh)?,
            rope_dims,
        })
    }

    fn write_gguf(&self, c: &mut Converted) -> Result<()> {
        c.set_u32("block_count", self.n_layers)?;
        c.set_u32("context_length", self.context_length)?;
        c.set_u32("embedding_length", self.d_model)?;
        c.set_u32("feed_forward_length", self.d_ff)?;
        c.set_u32("attention.head_count", self.n_heads)?;
        c.set("attention.layer_norm_epsilon", Value::F32(self.norm_eps));
        c.set_u32("rope.dimension_count", self.rope_dims)?;
        c.set_activation(self.act, Activation::GeluTanh);
        Ok(())
    }
}

struct Block {
    norm: Norm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attn: Attention,
    mlp: Mlp,
}

/// A loaded GPT-J model.
pub struct GptJModel {
    info: ModelInfo,
    config: GptJConfig,
    tok_embd: Weight,
    blocks: Vec<Block>,
    output_norm: Norm,
    output: Linear,
    rope: Rope,
}

impl GptJModel {
    pub fn load(config: GptJConfig, loader: &Loader<'_>) -> Result<GptJModel> {
        let c = &config;
        let d = c.d_model;
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_heads,
            head_dim: c.head_dim(),
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
                Ok(Block {
                    norm: Norm::layer(loader, &format!("{p}.attn_norm"), d, c.norm_eps)?,
                    wq: Linear::load(loader, &format!("{p}.attn_q"), d, d)?,
                    wk: Linear::load(loader, &format!("{p}.attn_k"), d, d)?,
                    wv: Linear::load(loader, &format!("{p}.attn_v"), d, d)?,
                    wo: Linear::load(loader, &format!("{p}.attn_output"), d, d)?,
                    attn: Attention {
                        shape,
                        scale: 1.0 / (shape.head_dim as f32).sqrt(),
                        window: None,
                        softcap: None,
                        bidirectional: false,
                    },
                    mlp: Mlp {
                        up: Linear::load(loader, &format!("{p}.ffn_up"), d, c.d_ff)?,
                        down: Linear::load(loader, &format!("{p}.ffn_down"), c.d_ff, d)?,
                        act: c.act,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GptJModel {
            info: ModelInfo {
                architecture: "gptj",
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
            rope: Rope::new(c.rope_dims, ROPE_BASE, RopeStyle::Normal, RopeScaling::None),
            output_norm: Norm::layer(loader, "output_norm", d, c.norm_eps)?,
            tok_embd,
            output,
            blocks,
            config,
        })
    }

    pub fn config(&self) -> &GptJConfig {
        &self.config
    }
}

impl Model for GptJModel {
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
        let d = self.info.d_model;
        let mut buf = std::mem::take(&mut ctx.buf);
        buf.size(n, d, d, d);
        buf.tmp.resize(n * d, 0.0);
        ctx.embed(&self.tok_embd, None, &mut buf.x);
        hooks.rows(HookPoint::Embed, &ctx.spans, d, &buf.x);
        for (l, b) in self.blocks.iter().enumerate() {
            hooks.rows(HookPoint::ResidPre(l), &ctx.spans, d, &buf.x);
            // One norm feeds both branches.
            b.norm.forward_on(&ctx.compute.pool, &buf.x, &mut buf.h);
            buf.project_qkv(&mut ctx.compute, [&b.wq, &b.wk, &b.wv]);
            self.rope.apply_qk_on(
                &ctx.compute.pool,
                &mut buf.q,
                &mut buf.k,
                b.attn.shape,
                &ctx.positions,
            );
            b.attn.attend(l, &b.wo, ctx, &mut buf, seqs, hooks);
            hooks.rows(HookPoint::AttnOut(l), &ctx.spans, d, &buf.o);
            b.mlp
                .forward(&mut ctx.compute, &buf.h, &mut buf.up, &mut buf.tmp);
            hooks.rows(HookPoint::MlpOut(l), &ctx.spans, d, &buf.tmp);
            ops::add_assign(&mut buf.x, &buf.o);
            ops::add_assign(&mut buf.x, &buf.tmp);
            hooks.rows(HookPoint::ResidPost(l), &ctx.spans, d, &buf.x);
        }
        ctx.output(&buf.x, &self.output_norm, &self.output, None, hooks);
        ctx.buf = buf;
        ctx.commit(seqs);
        Ok(())
    }
}
