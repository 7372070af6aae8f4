//! Llama and the families that share its block: RMSNorm, rotary positions,
//! grouped-query attention, a SwiGLU MLP (SmolLM2, Llama 2 and 3, Mistral).

use lucid_gguf::GgufFile;
use lucid_tensor::ops::{self, Activation};

use crate::arch::{Architecture, Hparams};
use crate::batch::SeqInput;
use crate::blocks::{
    Attention, AttentionShape, GatedMlp, Linear, Norm, Rope, RopeScaling, RopeStyle,
};
use crate::error::Result;
use crate::hooks::{HookPoint, Hooks};
use crate::model::{ForwardCtx, Model, ModelInfo};
use crate::weights::{Loader, Weight};

/// The registry entry.
pub struct Llama;

impl Architecture for Llama {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["llama"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        let hp = Hparams::new(file)?;
        let config = LlamaConfig::from_gguf(&hp, file)?;
        Ok(Box::new(LlamaModel::load(config, &Loader::new(file))?))
    }
}

/// The hyperparameters of a Llama-style model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
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
    pub rope_dims: usize,
    pub rope_style: RopeStyle,
    pub rope_scaling: RopeScaling,
}

impl LlamaConfig {
    fn from_gguf(hp: &Hparams<'_>, file: &GgufFile) -> Result<LlamaConfig> {
        let d_model = hp.usize("embedding_length")?;
        let n_heads = hp.usize("attention.head_count")?;
        let n_kv_heads = hp.opt_usize("attention.head_count_kv")?.unwrap_or(n_heads);
        if n_heads % n_kv_heads != 0 {
            return Err(hp.invalid(
                "attention.head_count_kv",
                "must divide attention.head_count",
            ));
        }
        let head_dim = hp
            .opt_usize("attention.key_length")?
            .unwrap_or(d_model / n_heads);
        let vocab_size = hp.vocab_size(file)?;
        let rope_scaling = match (
            hp.opt_str("rope.scaling.type")?,
            hp.opt_f32("rope.scaling.factor")?,
        ) {
            (Some("linear"), Some(f)) if f > 0.0 => RopeScaling::Linear(f),
            _ => RopeScaling::None,
        };
        let rope_dims = hp.rope_dims(head_dim)?;
        Ok(LlamaConfig {
            n_layers: hp.usize("block_count")?,
            d_model,
            d_ff: hp.usize("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            context_length: hp.usize("context_length")?,
            norm_eps: hp
                .opt_positive_f32("attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5),
            rope_base: hp.opt_positive_f32("rope.freq_base")?.unwrap_or(10_000.0),
            rope_dims,
            // GGUF Llama files store the query and key rows permuted for
            // ggml's adjacent-pair rotation.
            rope_style: RopeStyle::Normal,
            rope_scaling,
        })
    }
}

struct Block {
    attn_norm: Norm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attn: Attention,
    ffn_norm: Norm,
    mlp: GatedMlp,
}

/// A loaded Llama-style model.
pub struct LlamaModel {
    info: ModelInfo,
    config: LlamaConfig,
    tok_embd: Weight,
    blocks: Vec<Block>,
    output_norm: Norm,
    output: Linear,
    rope: Rope,
}

impl LlamaModel {
    pub fn load(config: LlamaConfig, loader: &Loader<'_>) -> Result<LlamaModel> {
        let c = &config;
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
        };
        let tok_embd = loader.matrix("token_embd.weight", c.vocab_size, c.d_model)?;
        // Small models tie the output projection to the embedding.
        let output = match Linear::opt_load(loader, "output", c.d_model, c.vocab_size)? {
            Some(l) => l,
            None => Linear {
                weight: tok_embd.clone(),
                bias: None,
            },
        };
        let mut rope_scaling = c.rope_scaling.clone();
        if let Some(factors) = loader.opt_vector("rope_freqs.weight", c.rope_dims / 2)? {
            rope_scaling = RopeScaling::FreqFactors(factors);
        }
        let blocks = (0..c.n_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                Ok(Block {
                    attn_norm: Norm::rms(loader, &format!("{p}.attn_norm"), c.d_model, c.norm_eps)?,
                    wq: Linear::load(loader, &format!("{p}.attn_q"), c.d_model, shape.q_width())?,
                    wk: Linear::load(loader, &format!("{p}.attn_k"), c.d_model, shape.kv_width())?,
                    wv: Linear::load(loader, &format!("{p}.attn_v"), c.d_model, shape.kv_width())?,
                    wo: Linear::load(
                        loader,
                        &format!("{p}.attn_output"),
                        shape.q_width(),
                        c.d_model,
                    )?,
                    attn: Attention {
                        shape,
                        scale: 1.0 / (c.head_dim as f32).sqrt(),
                        window: None,
                        softcap: None,
                    },
                    ffn_norm: Norm::rms(loader, &format!("{p}.ffn_norm"), c.d_model, c.norm_eps)?,
                    mlp: GatedMlp {
                        gate: Linear::load(loader, &format!("{p}.ffn_gate"), c.d_model, c.d_ff)?,
                        up: Linear::load(loader, &format!("{p}.ffn_up"), c.d_model, c.d_ff)?,
                        down: Linear::load(loader, &format!("{p}.ffn_down"), c.d_ff, c.d_model)?,
                        act: Activation::Silu,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LlamaModel {
            info: ModelInfo {
                architecture: "llama",
                n_layers: c.n_layers,
                d_model: c.d_model,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                d_ff: c.d_ff,
                vocab_size: c.vocab_size,
                context_length: c.context_length,
                kv_width: shape.kv_width(),
                kv_precision: loader.kv_precision(),
            },
            rope: Rope::new(c.rope_dims, c.rope_base, c.rope_style, rope_scaling),
            output_norm: Norm::rms(loader, "output_norm", c.d_model, c.norm_eps)?,
            tok_embd,
            output,
            blocks,
            config,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
}

impl Model for LlamaModel {
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
        let shape = self.blocks.first().map(|b| b.attn.shape);
        let (qw, kvw) = shape.map_or((0, 0), |s| (s.q_width(), s.kv_width()));
        let mut buf = std::mem::take(&mut ctx.buf);
        buf.size(n, d, qw, kvw);
        ctx.embed(&self.tok_embd, None, &mut buf.x);
        hooks.rows(HookPoint::Embed, &ctx.spans, d, &buf.x);
        for (l, b) in self.blocks.iter().enumerate() {
            hooks.rows(HookPoint::ResidPre(l), &ctx.spans, d, &buf.x);
            b.attn_norm
                .forward_on(&ctx.compute.pool, &buf.x, &mut buf.h);
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
            ops::add_assign(&mut buf.x, &buf.o);
            b.ffn_norm.forward_on(&ctx.compute.pool, &buf.x, &mut buf.h);
            b.mlp.forward(
                &mut ctx.compute,
                &buf.h,
                &mut buf.gate,
                &mut buf.up,
                &mut buf.o,
            );
            hooks.rows(HookPoint::MlpOut(l), &ctx.spans, d, &buf.o);
            ops::add_assign(&mut buf.x, &buf.o);
            hooks.rows(HookPoint::ResidPost(l), &ctx.spans, d, &buf.x);
        }
        ctx.output(&buf.x, &self.output_norm, &self.output, None, hooks);
        ctx.buf = buf;
        ctx.commit(seqs);
        Ok(())
    }
}
