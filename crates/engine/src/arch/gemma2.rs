//! Gemma 2 (Google): RMSNorm before and after both attention and MLP, a
//! GeGLU MLP, an embedding scaled by √d_model, attention scores and final
//! logits soft-capped with `tanh`, and a sliding window on every other
//! layer (the first, third, ...), full attention on the rest.
//!
//! GGUF names and keys are llama.cpp's `gemma2`. Checkpoints store each
//! norm's weight as `w - 1`; GGUF files store `w`, as llama.cpp's converter
//! writes them. GGUF has no key for the query scale (`query_pre_attn_scalar`):
//! llama.cpp uses `head_dim` except for the 46-layer 27B model, which uses
//! `d_model / n_heads`, and lucid does the same, writing
//! `gemma2.lucid.query_pre_attn_scalar` for a checkpoint that says otherwise.

use lucid_gguf::{GgufFile, Value};
use lucid_tensor::ops::{self, Activation};

use crate::arch::{Architecture, Hparams};
use crate::batch::SeqInput;
use crate::blocks::{
    Attention, AttentionShape, GatedMlp, Linear, Norm, Rope, RopeScaling, RopeStyle,
};
use crate::error::Result;
use crate::hf::{self, Converted, HfCheckpoint, HfConfig};
use crate::hooks::{HookPoint, Hooks};
use crate::loaded::LoadOptions;
use crate::model::{ForwardCtx, Model, ModelInfo};
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
        Ok(Box::new(Gemma2Model::load(config, &Loader::new(file))?))
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
        Ok(Box::new(Gemma2Model::load(config, &Loader::new(&c))?))
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
        let n_heads = cfg.usize("num_attention_heads")?;
        let n_kv_heads = cfg.opt_usize("num_key_value_heads")?.unwrap_or(n_heads);
        if n_heads % n_kv_heads != 0 {
            return Err(cfg.invalid("num_key_value_heads", "must divide num_attention_heads"));
        }
        let head_dim = match cfg.opt_usize("head_dim")? {
            Some(h) => h,
            None => d_model / n_heads,
        };
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
}

struct Block {
    attn_norm: Norm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attn_post_norm: Norm,
    attn: Attention,
    ffn_norm: Norm,
    mlp: GatedMlp,
    ffn_post_norm: Norm,
}

/// A loaded Gemma 2 model.
pub struct Gemma2Model {
    info: ModelInfo,
    config: Gemma2Config,
    tok_embd: Weight,
    embed_scale: f32,
    blocks: Vec<Block>,
    output_norm: Norm,
    output: Linear,
    rope: Rope,
}

impl Gemma2Model {
    pub fn load(config: Gemma2Config, loader: &Loader<'_>) -> Result<Gemma2Model> {
        let c = &config;
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
        let rms = |name: String| Norm::rms(loader, &name, c.d_model, c.norm_eps);
        let blocks = (0..c.n_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                Ok(Block {
                    attn_norm: rms(format!("{p}.attn_norm"))?,
                    wq: Linear::load(loader, &format!("{p}.attn_q"), c.d_model, shape.q_width())?,
                    wk: Linear::load(loader, &format!("{p}.attn_k"), c.d_model, shape.kv_width())?,
                    wv: Linear::load(loader, &format!("{p}.attn_v"), c.d_model, shape.kv_width())?,
                    wo: Linear::load(
                        loader,
                        &format!("{p}.attn_output"),
                        shape.q_width(),
                        c.d_model,
                    )?,
                    attn_post_norm: rms(format!("{p}.post_attention_norm"))?,
                    attn: Attention {
                        shape,
                        scale: 1.0 / c.query_pre_attn_scalar.sqrt(),
                        window: if i % 2 == 0 { c.sliding_window } else { None },
                        softcap: c.attn_softcap,
                    },
                    ffn_norm: rms(format!("{p}.ffn_norm"))?,
                    mlp: GatedMlp {
                        gate: Linear::load(loader, &format!("{p}.ffn_gate"), c.d_model, c.d_ff)?,
                        up: Linear::load(loader, &format!("{p}.ffn_up"), c.d_model, c.d_ff)?,
                        down: Linear::load(loader, &format!("{p}.ffn_down"), c.d_ff, c.d_model)?,
                        act: Activation::GeluTanh,
                    },
                    ffn_post_norm: rms(format!("{p}.post_ffw_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gemma2Model {
            info: ModelInfo {
                architecture: "gemma2",
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
            rope: Rope::new(c.head_dim, c.rope_base, RopeStyle::NeoX, RopeScaling::None),
            output_norm: rms("output_norm".to_string())?,
            tok_embd,
            output,
            blocks,
            config,
        })
    }

    pub fn config(&self) -> &Gemma2Config {
        &self.config
    }
}

impl Model for Gemma2Model {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn unembed(&self, ctx: &mut ForwardCtx, resid_rows: &[f32], out: &mut Vec<f32>) -> Result<()> {
        ctx.unembed(
            resid_rows,
            &self.output_norm,
            &self.output,
            self.config.final_logit_softcap,
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
        let (qw, kvw) = (self.info.n_heads * self.info.head_dim, self.info.kv_width);
        let mut buf = std::mem::take(&mut ctx.buf);
        buf.size(n, d, qw, kvw);
        ctx.embed(&self.tok_embd, Some(self.embed_scale), &mut buf.x);
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
            self.config.final_logit_softcap,
            hooks,
        );
        ctx.buf = buf;
        ctx.commit(seqs);
        Ok(())
    }
}
