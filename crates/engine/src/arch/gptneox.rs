//! GPT-NeoX and Pythia (EleutherAI, 2022): rotary position embeddings on
//! the first `rotary_pct` of each head, rotating halves
//! (`RopeStyle::NeoX`), a fused query-key-value projection, LayerNorm with
//! bias, and an output embedding separate from the input one. With
//! `use_parallel_residual` (Pythia) attention and MLP read their own norms
//! of the same input and both add to the residual stream; without it the
//! block is sequential, as GPT-2's.
//!
//! GGUF names and keys are llama.cpp's `gptneox`. Hugging Face stores the
//! fused projection per head (`[q, k, v]` of head 0, then of head 1, ...);
//! it is regrouped into llama.cpp's layout (all queries, all keys, all
//! values) when the checkpoint is restated.
//!
//! Pythia's MLP uses the exact (erf) GELU, and so does lucid for `gptneox`
//! files; llama.cpp uses the tanh approximation for this family.

use lucid_gguf::{GgufFile, Value};
use lucid_tensor::ops::{self, Activation};

use crate::arch::{Architecture, Hparams};
use crate::batch::SeqInput;
use crate::blocks::{Attention, AttentionShape, Linear, Mlp, Norm, Rope, RopeScaling, RopeStyle};
use crate::error::Result;
use crate::hf::{self, Converted, HfCheckpoint, HfConfig};
use crate::hooks::{HookPoint, Hooks};
use crate::loaded::LoadOptions;
use crate::model::{ForwardCtx, Model, ModelInfo};
use crate::weights::{Loader, Weight, WeightSource};

/// The registry entry.
pub struct GptNeoX;

impl Architecture for GptNeoX {
    fn name(&self) -> &'static str {
        "gptneox"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["gptneox"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["GPTNeoXForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        let config = GptNeoXConfig::from_gguf(&Hparams::new(file)?, file)?;
        Ok(Box::new(GptNeoXModel::load(config, &Loader::new(file))?))
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        let cfg = GptNeoXConfig::from_hf(&ckpt.config())?;
        let mut c = Converted::new(ckpt.source_name(), "gptneox");
        cfg.write_gguf(&mut c)?;
        let t = |name: &str| ckpt.tensor_in("gpt_neox.", name);
        let opt = |name: &str| ckpt.opt_tensor_in("gpt_neox.", name);
        // Chunk (part, head) of llama.cpp's layout is chunk (head, part) of
        // Hugging Face's.
        let (heads, head_dim) = (cfg.n_heads, cfg.head_dim());
        let order: Vec<usize> = (0..3)
            .flat_map(|part| (0..heads).map(move |h| 3 * h + part))
            .collect();
        c.push("token_embd.weight", t("embed_in.weight")?);
        for i in 0..cfg.n_layers {
            let (h, b) = (format!("layers.{i}"), format!("blk.{i}"));
            for (gguf, hf) in [
                ("attn_norm", "input_layernorm"),
                ("ffn_norm", "post_attention_layernorm"),
                ("ffn_up", "mlp.dense_h_to_4h"),
                ("ffn_down", "mlp.dense_4h_to_h"),
            ] {
                c.push(
                    format!("{b}.{gguf}.weight"),
                    t(&format!("{h}.{hf}.weight"))?,
                );
                c.push(format!("{b}.{gguf}.bias"), t(&format!("{h}.{hf}.bias"))?);
            }
            let qkv = t(&format!("{h}.attention.query_key_value.weight"))?;
            let row = qkv.shape.first().copied().unwrap_or(0);
            c.push(
                format!("{b}.attn_qkv.weight"),
                hf::reorder_chunks(&qkv, head_dim * row, &order)?,
            );
            if let Some(bias) = opt(&format!("{h}.attention.query_key_value.bias"))? {
                c.push(
                    format!("{b}.attn_qkv.bias"),
                    hf::reorder_chunks(&bias, head_dim, &order)?,
                );
            }
            c.push(
                format!("{b}.attn_output.weight"),
                t(&format!("{h}.attention.dense.weight"))?,
            );
            c.push_opt(
                format!("{b}.attn_output.bias"),
                opt(&format!("{h}.attention.dense.bias"))?,
            );
        }
        c.push("output_norm.weight", t("final_layer_norm.weight")?);
        c.push("output_norm.bias", t("final_layer_norm.bias")?);
        c.push("output.weight", ckpt.tensor_in("", "embed_out.weight")?);
        Ok(c)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let c = crate::quantize::quantized(self.convert_hf(ckpt)?, opts.quantize)?;
        let hp = Hparams::from_metadata(&c.metadata, c.source_name().to_string())?;
        let config = GptNeoXConfig::from_gguf(&hp, &c)?;
        Ok(Box::new(GptNeoXModel::load(config, &Loader::new(&c))?))
    }
}

/// The hyperparameters of a GPT-NeoX model.
#[derive(Clone, Debug, PartialEq)]
pub struct GptNeoXConfig {
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
    pub rope_base: f32,
    /// `x + attn(ln1(x)) + mlp(ln2(x))` rather than one after the other.
    pub parallel_residual: bool,
}

impl GptNeoXConfig {
    fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    fn from_gguf(hp: &Hparams<'_>, weights: &dyn WeightSource) -> Result<GptNeoXConfig> {
        let d_model = hp.usize("embedding_length")?;
        let n_heads = hp.head_count(d_model)?;
        let head_dim = d_model / n_heads;
        let rope_dims = hp.rope_dims(head_dim)?;
        Ok(GptNeoXConfig {
            n_layers: hp.usize("block_count")?,
            d_model,
            d_ff: hp.usize("feed_forward_length")?,
            n_heads,
            vocab_size: hp.vocab_size(weights)?,
            context_length: hp.usize("context_length")?,
            norm_eps: hp
                .opt_positive_f32("attention.layer_norm_epsilon")?
                .unwrap_or(1e-5),
            act: hp.activation(Activation::GeluErf)?,
            rope_dims,
            rope_base: hp.opt_positive_f32("rope.freq_base")?.unwrap_or(10_000.0),
            parallel_residual: hp.opt_bool("use_parallel_residual")?.unwrap_or(true),
        })
    }

    fn from_hf(cfg: &HfConfig<'_>) -> Result<GptNeoXConfig> {
        let d_model = cfg.usize("hidden_size")?;
        let n_heads = cfg.usize("num_attention_heads")?;
        if d_model % n_heads != 0 {
            return Err(cfg.invalid("num_attention_heads", "must divide hidden_size"));
        }
        // Pythia's configs say `rotary_pct` and `rotary_emb_base`; configs
        // that transformers 5 writes put both in `rope_parameters`.
        let rope = cfg
            .get("rope_parameters")
            .or_else(|| cfg.get("rope_scaling"));
        let rope_f32 = |key: &str| rope.and_then(|r| r.get(key)).and_then(|v| v.as_f64());
        if let Some(kind) = rope
            .and_then(|r| r.get("rope_type").or_else(|| r.get("type")))
            .and_then(|v| v.as_str())
            && kind != "default"
        {
            return Err(cfg.invalid(
                "rope_parameters",
                &format!("rope type '{kind}' is not one lucid runs for GPT-NeoX"),
            ));
        }
        let pct = match cfg.opt_f32("rotary_pct")? {
            Some(p) => p as f64,
            None => rope_f32("partial_rotary_factor").unwrap_or(0.25),
        };
        let base = match cfg.opt_positive_f32("rotary_emb_base")? {
            Some(b) => b as f64,
            None => rope_f32("rope_theta").unwrap_or(10_000.0),
        };
        let head_dim = d_model / n_heads;
        // As transformers and llama.cpp's converter compute it.
        let rope_dims = (head_dim as f64 * pct) as usize;
        if !(0.0..=1.0).contains(&pct)
            || !rope_dims.is_multiple_of(2)
            || base <= 0.0
            || base.is_nan()
        {
            return Err(cfg.invalid(
                "rotary_pct",
                "must give an even number of rotated values per head, with a positive base",
            ));
        }
        Ok(GptNeoXConfig {
            n_layers: cfg.usize("num_hidden_layers")?,
            d_model,
            d_ff: cfg.usize("intermediate_size")?,
            n_heads,
            vocab_size: cfg.usize("vocab_size")?,
            context_length: cfg.usize("max_position_embeddings")?,
            norm_eps: cfg.opt_positive_f32("layer_norm_eps")?.unwrap_or(1e-5),
            act: cfg.activation("hidden_act", Activation::GeluErf)?,
            rope_dims,
            rope_base: base as f32,
            parallel_residual: cfg.opt_bool("use_parallel_residual")?.unwrap_or(true),
        })
    }

    fn write_gguf(&self, c: &mut Converted) -> Result<()> {
        c.set_u32("context_length", self.context_length)?;
        c.set_u32("embedding_length", self.d_model)?;
        c.set_u32("block_count", self.n_layers)?;
        c.set_u32("feed_forward_length", self.d_ff)?;
        c.set_u32("rope.dimension_count", self.rope_dims)?;
        c.set("rope.freq_base", Value::F32(self.rope_base));
        c.set_u32("attention.head_count", self.n_heads)?;
        c.set("use_parallel_residual", Value::Bool(self.parallel_residual));
        c.set("attention.layer_norm_epsilon", Value::F32(self.norm_eps));
        c.set_activation(self.act, Activation::GeluErf);
        Ok(())
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
    mlp: Mlp,
}

/// A loaded GPT-NeoX model.
pub struct GptNeoXModel {
    info: ModelInfo,
    config: GptNeoXConfig,
    tok_embd: Weight,
    blocks: Vec<Block>,
    output_norm: Norm,
    output: Linear,
    rope: Rope,
}

impl GptNeoXModel {
    pub fn load(config: GptNeoXConfig, loader: &Loader<'_>) -> Result<GptNeoXModel> {
        let c = &config;
        let d = c.d_model;
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_heads,
            head_dim: c.head_dim(),
        };
        let blocks = (0..c.n_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                let [wq, wk, wv] = Linear::load_fused(loader, &format!("{p}.attn_qkv"), d, [d; 3])?;
                Ok(Block {
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
        Ok(GptNeoXModel {
            info: ModelInfo {
                architecture: "gptneox",
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
            tok_embd: loader.matrix("token_embd.weight", c.vocab_size, d)?,
            // GPT-NeoX never ties its output to the embeddings.
            output: Linear::load(loader, "output", d, c.vocab_size)?,
            rope: Rope::new(c.rope_dims, c.rope_base, RopeStyle::NeoX, RopeScaling::None),
            output_norm: Norm::layer(loader, "output_norm", d, c.norm_eps)?,
            blocks,
            config,
        })
    }

    pub fn config(&self) -> &GptNeoXConfig {
        &self.config
    }
}

impl Model for GptNeoXModel {
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
            if self.config.parallel_residual {
                // The MLP reads its own norm of the block's input.
                b.ffn_norm.forward_on(&ctx.compute.pool, &buf.x, &mut buf.h);
                ops::add_assign(&mut buf.x, &buf.o);
            } else {
                ops::add_assign(&mut buf.x, &buf.o);
                b.ffn_norm.forward_on(&ctx.compute.pool, &buf.x, &mut buf.h);
            }
            b.mlp
                .forward(&mut ctx.compute, &buf.h, &mut buf.up, &mut buf.tmp);
            hooks.rows(HookPoint::MlpOut(l), &ctx.spans, d, &buf.tmp);
            ops::add_assign(&mut buf.x, &buf.tmp);
            hooks.rows(HookPoint::ResidPost(l), &ctx.spans, d, &buf.x);
        }
        ctx.output(&buf.x, &self.output_norm, &self.output, None, hooks);
        ctx.buf = buf;
        ctx.commit(seqs);
        Ok(())
    }
}
