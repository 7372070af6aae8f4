//! GPT-2 (OpenAI, 2019): learned absolute position embeddings added to the
//! token embeddings, pre-norm blocks with LayerNorm (with bias), one fused
//! query-key-value projection, a GELU (tanh) MLP, biases on every linear
//! layer, and the output head tied to the token embeddings.
//!
//! GGUF names and keys are llama.cpp's `gpt2`. Hugging Face's
//! `GPT2LMHeadModel` stores its linear layers as `Conv1D`, `[in, out]`; they
//! are transposed into GGUF's `[out, in]` when the checkpoint is restated.

use lucid_gguf::{GgufFile, Value};
use lucid_tensor::ops::Activation;

use crate::arch::{Architecture, Hparams};
use crate::batch::SeqInput;
use crate::blocks::{
    Attention, AttentionShape, LearnedPositions, Linear, Mlp, Norm, SequentialBlock,
};
use crate::error::Result;
use crate::hf::{self, Converted, HfCheckpoint, HfConfig};
use crate::hooks::{HookPoint, Hooks};
use crate::loaded::LoadOptions;
use crate::model::{ForwardCtx, Model, ModelInfo};
use crate::weights::{Loader, Weight, WeightSource};

/// The registry entry.
pub struct Gpt2;

impl Architecture for Gpt2 {
    fn name(&self) -> &'static str {
        "gpt2"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["gpt2"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["GPT2LMHeadModel"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        let config = Gpt2Config::from_gguf(&Hparams::new(file)?, file)?;
        Ok(Box::new(Gpt2Model::load(config, &Loader::new(file))?))
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        let cfg = Gpt2Config::from_hf(&ckpt.config())?;
        let mut c = Converted::new(ckpt.source_name(), "gpt2");
        cfg.write_gguf(&mut c)?;
        let t = |name: &str| ckpt.tensor_in("transformer.", name);
        // Conv1D layers store [in, out]; GGUF, like every other linear
        // layer, [out, in].
        let conv = |name: &str| hf::transpose(&t(name)?);
        c.push("token_embd.weight", t("wte.weight")?);
        c.push("position_embd.weight", t("wpe.weight")?);
        for i in 0..cfg.n_layers {
            let (h, b) = (format!("h.{i}"), format!("blk.{i}"));
            for (gguf, hf) in [("attn_norm", "ln_1"), ("ffn_norm", "ln_2")] {
                c.push(
                    format!("{b}.{gguf}.weight"),
                    t(&format!("{h}.{hf}.weight"))?,
                );
                c.push(format!("{b}.{gguf}.bias"), t(&format!("{h}.{hf}.bias"))?);
            }
            for (gguf, hf) in [
                ("attn_qkv", "attn.c_attn"),
                ("attn_output", "attn.c_proj"),
                ("ffn_up", "mlp.c_fc"),
                ("ffn_down", "mlp.c_proj"),
            ] {
                c.push(
                    format!("{b}.{gguf}.weight"),
                    conv(&format!("{h}.{hf}.weight"))?,
                );
                c.push(format!("{b}.{gguf}.bias"), t(&format!("{h}.{hf}.bias"))?);
            }
        }
        c.push("output_norm.weight", t("ln_f.weight")?);
        c.push("output_norm.bias", t("ln_f.bias")?);
        // GPT-2 ties the head to the embeddings; a checkpoint that says
        // otherwise and stores a head gets it.
        if ckpt.config().opt_bool("tie_word_embeddings")? == Some(false) {
            c.push_opt("output.weight", ckpt.opt_tensor_in("", "lm_head.weight")?);
        }
        Ok(c)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let c = crate::quantize::quantized(self.convert_hf(ckpt)?, opts.quantize)?;
        let hp = Hparams::from_metadata(&c.metadata, c.source_name().to_string())?;
        let config = Gpt2Config::from_gguf(&hp, &c)?;
        Ok(Box::new(Gpt2Model::load(config, &Loader::new(&c))?))
    }
}

/// The hyperparameters of a GPT-2 model.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpt2Config {
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub vocab_size: usize,
    /// Rows of the position embedding: the longest sequence.
    pub context_length: usize,
    pub norm_eps: f32,
    pub act: Activation,
}

impl Gpt2Config {
    fn from_gguf(hp: &Hparams<'_>, weights: &dyn WeightSource) -> Result<Gpt2Config> {
        let d_model = hp.usize("embedding_length")?;
        let n_heads = hp.head_count(d_model)?;
        Ok(Gpt2Config {
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
        })
    }

    fn from_hf(cfg: &HfConfig<'_>) -> Result<Gpt2Config> {
        for (key, supported) in [
            ("scale_attn_weights", true),
            ("scale_attn_by_inverse_layer_idx", false),
            ("add_cross_attention", false),
        ] {
            if cfg.opt_bool(key)?.is_some_and(|v| v != supported) {
                return Err(cfg.invalid(key, &format!("lucid runs GPT-2 with {key} = {supported}")));
            }
        }
        let d_model = cfg.usize("n_embd")?;
        let n_heads = cfg.usize("n_head")?;
        if d_model % n_heads != 0 {
            return Err(cfg.invalid("n_head", "must divide n_embd"));
        }
        Ok(Gpt2Config {
            n_layers: cfg.usize("n_layer")?,
            d_model,
            d_ff: cfg.opt_usize("n_inner")?.unwrap_or(4 * d_model),
            n_heads,
            vocab_size: cfg.usize("vocab_size")?,
            context_length: match cfg.opt_usize("n_positions")? {
                Some(n) => n,
                None => cfg.usize("n_ctx")?,
            },
            norm_eps: cfg.opt_positive_f32("layer_norm_epsilon")?.unwrap_or(1e-5),
            act: cfg.activation("activation_function", Activation::GeluTanh)?,
        })
    }

    /// The `gpt2.*` keys llama.cpp reads.
    fn write_gguf(&self, c: &mut Converted) -> Result<()> {
        c.set_u32("block_count", self.n_layers)?;
        c.set_u32("context_length", self.context_length)?;
        c.set_u32("embedding_length", self.d_model)?;
        c.set_u32("feed_forward_length", self.d_ff)?;
        c.set_u32("attention.head_count", self.n_heads)?;
        c.set("attention.layer_norm_epsilon", Value::F32(self.norm_eps));
        c.set_activation(self.act, Activation::GeluTanh);
        Ok(())
    }
}

/// A loaded GPT-2 model.
pub struct Gpt2Model {
    info: ModelInfo,
    config: Gpt2Config,
    tok_embd: Weight,
    positions: LearnedPositions,
    blocks: Vec<SequentialBlock>,
    output_norm: Norm,
    output: Linear,
}

impl Gpt2Model {
    pub fn load(config: Gpt2Config, loader: &Loader<'_>) -> Result<Gpt2Model> {
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
                let [wq, wk, wv] = Linear::load_fused(loader, &format!("{p}.attn_qkv"), d, [d; 3])?;
                Ok(SequentialBlock {
                    attn_norm: Norm::layer(loader, &format!("{p}.attn_norm"), d, c.norm_eps)?,
                    wq,
                    wk,
                    wv,
                    wo: Linear::load(loader, &format!("{p}.attn_output"), d, d)?,
                    attn: Attention {
                        shape,
                        scale: 1.0 / (shape.head_dim as f32).sqrt(),
                        window: None,
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
        Ok(Gpt2Model {
            info: ModelInfo {
                architecture: "gpt2",
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

    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }
}

impl Model for Gpt2Model {
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
