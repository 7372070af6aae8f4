//! Gemma 3: RMSNorm before and after both attention and MLP, per-head
//! query/key norms, a GeGLU MLP, an embedding scaled by √d_model, and
//! sliding-window attention on most layers with a global layer every few,
//! each kind with its own RoPE base.
//!
//! The block is Gemma 2's too (`gemma2.rs`), without the query/key norms
//! and with soft-capped scores: both families load into [`GemmaModel`] from
//! a [`GemmaLayout`].

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
pub struct Gemma3;

impl Architecture for Gemma3 {
    fn name(&self) -> &'static str {
        "gemma3"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["gemma3"]
    }

    /// Gemma 3 reads images between these markers; lucid runs its text.
    fn input_markers(&self) -> &'static [&'static str] {
        &["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        let layout = layout_from_gguf(&Hparams::new(file)?, file)?;
        Ok(Box::new(GemmaModel::load(layout, &Loader::new(file))?))
    }
}

/// A Gemma 3 file's hyperparameters, read straight into the Gemma block's
/// layout: per-head query/key norms, every `pattern`-th layer global, each
/// kind of layer with its own RoPE base.
fn layout_from_gguf(hp: &Hparams<'_>, file: &GgufFile) -> Result<GemmaLayout> {
    let n_layers = hp.usize("block_count")?;
    let d_model = hp.usize("embedding_length")?;
    let (n_heads, n_kv_heads, head_dim) = hp.attention_heads(d_model)?;
    let sliding_window = hp.opt_usize("attention.sliding_window")?;
    // Every `pattern`-th layer is global; the others slide (llama.cpp's
    // default of 6 when the file does not say).
    let pattern = hp
        .opt_usize("attention.sliding_window_pattern")?
        .unwrap_or(6);
    let rope_scaling = match (
        hp.opt_str("rope.scaling.type")?,
        hp.opt_f32("rope.scaling.factor")?,
    ) {
        (Some("linear"), Some(f)) if f > 0.0 => RopeScaling::Linear(f),
        _ => RopeScaling::None,
    };
    let rope_base = hp
        .opt_positive_f32("rope.freq_base")?
        .unwrap_or(1_000_000.0);
    let rope_base_local = hp
        .opt_positive_f32("rope.freq_base_swa")?
        .unwrap_or(10_000.0);
    Ok(GemmaLayout {
        architecture: "gemma3",
        n_layers,
        d_model,
        d_ff: hp.usize("feed_forward_length")?,
        n_heads,
        n_kv_heads,
        head_dim,
        vocab_size: hp.vocab_size(file)?,
        context_length: hp.usize("context_length")?,
        norm_eps: hp
            .opt_positive_f32("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-6),
        qk_norm: true,
        is_local: (0..n_layers)
            .map(|l| sliding_window.is_some() && l % pattern < pattern - 1)
            .collect(),
        sliding_window,
        attention_scale: 1.0 / (head_dim as f32).sqrt(),
        attn_softcap: None,
        final_logit_softcap: hp.opt_f32("final_logit_softcapping")?.filter(|c| *c > 0.0),
        rope_global: Rope::new(head_dim, rope_base, RopeStyle::NeoX, rope_scaling),
        rope_local: Rope::new(
            head_dim,
            rope_base_local,
            RopeStyle::NeoX,
            RopeScaling::None,
        ),
    })
}

/// What the Gemma 2 and Gemma 3 blocks need to load: sizes, which layers
/// slide, and the typed differences between the two families.
#[derive(Clone, Debug)]
pub struct GemmaLayout {
    pub architecture: &'static str,
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub norm_eps: f32,
    /// RMSNorm on each head's query and key before the rotation (Gemma 3).
    pub qk_norm: bool,
    /// Which layers use the sliding window.
    pub is_local: Vec<bool>,
    /// Tokens a sliding-window layer sees, itself included.
    pub sliding_window: Option<usize>,
    /// Multiplies the queries.
    pub attention_scale: f32,
    /// `cap · tanh(score / cap)` on attention scores (Gemma 2).
    pub attn_softcap: Option<f32>,
    pub final_logit_softcap: Option<f32>,
    /// The rotations of the full-attention and of the sliding layers.
    pub rope_global: Rope,
    pub rope_local: Rope,
}

struct Block {
    attn_norm: Norm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    wo: Linear,
    attn_post_norm: Norm,
    attn: Attention,
    local: bool,
    ffn_norm: Norm,
    mlp: GatedMlp,
    ffn_post_norm: Norm,
}

/// A loaded Gemma 2 or Gemma 3 model.
pub struct GemmaModel {
    info: ModelInfo,
    layout: GemmaLayout,
    tok_embd: Weight,
    embed_scale: f32,
    blocks: Vec<Block>,
    output_norm: Norm,
    output: Linear,
}

impl GemmaModel {
    pub fn load(layout: GemmaLayout, loader: &Loader<'_>) -> Result<GemmaModel> {
        let c = &layout;
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
        };
        let tok_embd = loader.matrix("token_embd.weight", c.vocab_size, c.d_model)?;
        let output = match Linear::opt_load(loader, "output", c.d_model, c.vocab_size)? {
            Some(l) => l,
            None => Linear {
                weight: tok_embd.clone(),
                bias: None,
            },
        };
        // GGUF files store Gemma's norm weights with the 1 already added, so
        // every norm here is a plain RMSNorm.
        let rms = |name: String, width: usize| Norm::rms(loader, &name, width, c.norm_eps);
        let blocks = (0..c.n_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                let local = c.is_local.get(i).copied().unwrap_or(false);
                let (q_norm, k_norm) = if c.qk_norm {
                    (
                        Some(rms(format!("{p}.attn_q_norm"), c.head_dim)?),
                        Some(rms(format!("{p}.attn_k_norm"), c.head_dim)?),
                    )
                } else {
                    (None, None)
                };
                Ok(Block {
                    attn_norm: rms(format!("{p}.attn_norm"), c.d_model)?,
                    wq: Linear::load(loader, &format!("{p}.attn_q"), c.d_model, shape.q_width())?,
                    wk: Linear::load(loader, &format!("{p}.attn_k"), c.d_model, shape.kv_width())?,
                    wv: Linear::load(loader, &format!("{p}.attn_v"), c.d_model, shape.kv_width())?,
                    q_norm,
                    k_norm,
                    wo: Linear::load(
                        loader,
                        &format!("{p}.attn_output"),
                        shape.q_width(),
                        c.d_model,
                    )?,
                    attn_post_norm: rms(format!("{p}.post_attention_norm"), c.d_model)?,
                    attn: Attention {
                        shape,
                        scale: c.attention_scale,
                        window: if local { c.sliding_window } else { None },
                        softcap: c.attn_softcap,
                        bidirectional: false,
                    },
                    local,
                    ffn_norm: rms(format!("{p}.ffn_norm"), c.d_model)?,
                    mlp: GatedMlp {
                        gate: Linear::load(loader, &format!("{p}.ffn_gate"), c.d_model, c.d_ff)?,
                        up: Linear::load(loader, &format!("{p}.ffn_up"), c.d_model, c.d_ff)?,
                        down: Linear::load(loader, &format!("{p}.ffn_down"), c.d_ff, c.d_model)?,
                        act: Activation::GeluTanh,
                    },
                    ffn_post_norm: rms(format!("{p}.post_ffw_norm"), c.d_model)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GemmaModel {
            info: ModelInfo {
                architecture: c.architecture,
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
            embed_scale: (c.d_model as f32).sqrt(),
            output_norm: Norm::rms(loader, "output_norm", c.d_model, c.norm_eps)?,
            tok_embd,
            output,
            blocks,
            layout,
        })
    }

    pub fn layout(&self) -> &GemmaLayout {
        &self.layout
    }
}

impl Model for GemmaModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn unembed(&self, ctx: &mut ForwardCtx, resid_rows: &[f32], out: &mut Vec<f32>) -> Result<()> {
        ctx.unembed(
            resid_rows,
            &self.output_norm,
            &self.output,
            self.layout.final_logit_softcap,
            out,
        )
    }

    fn forward(
        &self,
        ctx: &mut ForwardCtx,
        seqs: &mut [SeqInput<'_>],
        hooks: &mut Hooks<'_>,
    ) -> Result<()> {
        let n = ctx.begin(&self.info, seqs)?;
        let d = self.info.d_model;
        let shape = AttentionShape {
            n_heads: self.info.n_heads,
            n_kv_heads: self.info.n_kv_heads,
            head_dim: self.info.head_dim,
        };
        let mut buf = std::mem::take(&mut ctx.buf);
        buf.size(n, d, shape.q_width(), shape.kv_width());
        ctx.embed(&self.tok_embd, Some(self.embed_scale), &mut buf.x);
        hooks.rows(HookPoint::Embed, &ctx.spans, d, &buf.x);
        for (l, b) in self.blocks.iter().enumerate() {
            hooks.rows(HookPoint::ResidPre(l), &ctx.spans, d, &buf.x);
            b.attn_norm
                .forward_on(&ctx.compute.pool, &buf.x, &mut buf.h);
            buf.project_qkv(&mut ctx.compute, [&b.wq, &b.wk, &b.wv]);
            if let (Some(qn), Some(kn)) = (&b.q_norm, &b.k_norm) {
                qn.forward_inplace(&ctx.compute.pool, &mut buf.q, &mut buf.tmp);
                kn.forward_inplace(&ctx.compute.pool, &mut buf.k, &mut buf.tmp);
            }
            let rope = if b.local {
                &self.layout.rope_local
            } else {
                &self.layout.rope_global
            };
            rope.apply_qk_on(
                &ctx.compute.pool,
                &mut buf.q,
                &mut buf.k,
                shape,
                &ctx.positions,
            );
            b.attn.attend(l, &b.wo, ctx, &mut buf, seqs, hooks);
            b.attn_post_norm
                .forward_inplace(&ctx.compute.pool, &mut buf.o, &mut buf.tmp);
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
            b.ffn_post_norm
                .forward_inplace(&ctx.compute.pool, &mut buf.o, &mut buf.tmp);
            hooks.rows(HookPoint::MlpOut(l), &ctx.spans, d, &buf.o);
            ops::add_assign(&mut buf.x, &buf.o);
            hooks.rows(HookPoint::ResidPost(l), &ctx.spans, d, &buf.x);
        }
        ctx.output(
            &buf.x,
            &self.output_norm,
            &self.output,
            self.layout.final_logit_softcap,
            hooks,
        );
        ctx.buf = buf;
        ctx.commit(seqs);
        Ok(())
    }
}
