//! BERT (Google, 2018) and the sentence-transformers models built on it
//! (all-MiniLM, …): an encoder. Token, learned position and token-type
//! embeddings are summed and normed; each block is post-norm, with
//! bidirectional attention (every token sees its whole sequence), biases on
//! every linear layer and a GELU MLP. There is no output head: the last
//! block's rows are the hidden states that embedding pools. A cross-encoder
//! (`BertForSequenceClassification`) adds the pooler (dense + tanh on the
//! `[CLS]` row) and a classifier, applied by [`Model::classify`].
//!
//! GGUF names and keys are llama.cpp's `bert` (`cls` and `cls.output` for
//! the pooler and the classifier).

use lucid_gguf::{GgufFile, Value};
use lucid_tensor::ops::{self, Activation};

use crate::arch::{Architecture, Hparams};
use crate::batch::SeqInput;
use crate::blocks::{Attention, AttentionShape, LearnedPositions, Linear, Mlp, Norm};
use crate::embed::{EmbeddingConfig, Pooling};
use crate::error::{EngineError, Result};
use crate::hf::{Converted, HfCheckpoint, HfConfig};
use crate::hooks::{HookPoint, Hooks};
use crate::loaded::LoadOptions;
use crate::model::{ForwardCtx, Model, ModelInfo, ModelRole};
use crate::weights::{Loader, Weight, WeightSource};

/// The registry entry.
pub struct Bert;

impl Architecture for Bert {
    fn name(&self) -> &'static str {
        "bert"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["bert"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["BertModel", "BertForSequenceClassification"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        let config = BertConfig::from_gguf(&Hparams::new(file)?, file)?;
        Ok(Box::new(BertModel::load(config, &Loader::new(file))?))
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        let cfg = BertConfig::from_hf(&ckpt.config())?;
        let mut c = Converted::new(ckpt.source_name(), "bert");
        cfg.write_gguf(&mut c)?;
        // How the model pools, as llama.cpp's converter records it (a
        // cross-encoder's is its head: 4, "rank").
        let pooling = EmbeddingConfig::from_sentence_transformers(ckpt.dir())?;
        let pooling_type = match (cfg.n_labels, pooling.map(|p| p.pooling)) {
            (Some(_), _) => Some(4),
            (None, Some(Pooling::Mean)) => Some(1),
            (None, Some(Pooling::Cls)) => Some(2),
            (None, Some(Pooling::LastToken)) => Some(3),
            (None, None) => None,
        };
        if let Some(t) = pooling_type {
            c.set("pooling_type", Value::U32(t));
        }
        // `BertModel` checkpoints name tensors from the encoder down;
        // `BertForSequenceClassification` puts them under `bert.`.
        let t = |name: &str| ckpt.tensor_in("bert.", name);
        c.push("token_embd.weight", t("embeddings.word_embeddings.weight")?);
        c.push(
            "position_embd.weight",
            t("embeddings.position_embeddings.weight")?,
        );
        c.push(
            "token_types.weight",
            t("embeddings.token_type_embeddings.weight")?,
        );
        for part in ["weight", "bias"] {
            c.push(
                format!("token_embd_norm.{part}"),
                t(&format!("embeddings.LayerNorm.{part}"))?,
            );
        }
        for i in 0..cfg.n_layers {
            let (h, b) = (format!("encoder.layer.{i}"), format!("blk.{i}"));
            for (gguf, hf) in [
                ("attn_q", "attention.self.query"),
                ("attn_k", "attention.self.key"),
                ("attn_v", "attention.self.value"),
                ("attn_output", "attention.output.dense"),
                ("attn_output_norm", "attention.output.LayerNorm"),
                ("ffn_up", "intermediate.dense"),
                ("ffn_down", "output.dense"),
                ("layer_output_norm", "output.LayerNorm"),
            ] {
                for part in ["weight", "bias"] {
                    c.push(
                        format!("{b}.{gguf}.{part}"),
                        t(&format!("{h}.{hf}.{part}"))?,
                    );
                }
            }
        }
        if cfg.n_labels.is_some() {
            for (gguf, hf) in [("cls", "bert.pooler.dense"), ("cls.output", "classifier")] {
                for part in ["weight", "bias"] {
                    c.push(
                        format!("{gguf}.{part}"),
                        ckpt.tensor(&format!("{hf}.{part}"))?,
                    );
                }
            }
        }
        Ok(c)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let c = crate::quantize::quantized(self.convert_hf(ckpt)?, opts.quantize)?;
        let hp = Hparams::from_metadata(&c.metadata, c.source_name().to_string())?;
        let config = BertConfig::from_gguf(&hp, &c)?;
        Ok(Box::new(BertModel::load(config, &Loader::new(&c))?))
    }
}

/// The hyperparameters of a BERT model.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub vocab_size: usize,
    /// Rows of the position embedding: the longest sequence.
    pub context_length: usize,
    /// Rows of the token-type (segment) embedding.
    pub n_token_types: usize,
    pub norm_eps: f32,
    pub act: Activation,
    /// Outputs of the classification head, for a cross-encoder.
    pub n_labels: Option<usize>,
}

impl BertConfig {
    fn from_gguf(hp: &Hparams<'_>, weights: &dyn WeightSource) -> Result<BertConfig> {
        let d_model = hp.usize("embedding_length")?;
        let n_heads = hp.head_count(d_model)?;
        if hp.opt_bool("attention.causal")? == Some(true) {
            return Err(hp.invalid(
                "attention.causal",
                "BERT's attention is bidirectional; a causal BERT is not supported",
            ));
        }
        let n_labels = match weights.weight("cls.output.weight") {
            Some(w) => Some(w.shape.get(1).copied().unwrap_or(1)),
            None => None,
        };
        Ok(BertConfig {
            n_layers: hp.usize("block_count")?,
            d_model,
            d_ff: hp.usize("feed_forward_length")?,
            n_heads,
            vocab_size: hp.vocab_size(weights)?,
            context_length: hp.usize("context_length")?,
            n_token_types: match weights.weight("token_types.weight") {
                Some(w) => w.shape.get(1).copied().unwrap_or(1),
                None => 0,
            },
            norm_eps: hp
                .opt_positive_f32("attention.layer_norm_epsilon")?
                .unwrap_or(1e-12),
            act: hp.activation(Activation::GeluErf)?,
            n_labels,
        })
    }

    fn from_hf(cfg: &HfConfig<'_>) -> Result<BertConfig> {
        if let Some(kind) = cfg.opt_str("position_embedding_type")?
            && kind != "absolute"
        {
            return Err(cfg.invalid(
                "position_embedding_type",
                "lucid runs BERT with learned absolute positions only",
            ));
        }
        if cfg.opt_bool("is_decoder")? == Some(true) {
            return Err(cfg.invalid("is_decoder", "a BERT decoder is not supported"));
        }
        let d_model = cfg.usize("hidden_size")?;
        let n_heads = cfg.usize("num_attention_heads")?;
        if d_model % n_heads != 0 {
            return Err(cfg.invalid("num_attention_heads", "must divide hidden_size"));
        }
        let classifier = cfg
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            == Some("BertForSequenceClassification");
        let n_labels = if classifier {
            // `num_labels` is not written by every version; `id2label` is.
            let from_labels = cfg
                .get("id2label")
                .and_then(|m| m.as_object())
                .map(|m| m.len());
            Some(cfg.opt_usize("num_labels")?.or(from_labels).unwrap_or(2))
        } else {
            None
        };
        Ok(BertConfig {
            n_layers: cfg.usize("num_hidden_layers")?,
            d_model,
            d_ff: cfg.usize("intermediate_size")?,
            n_heads,
            vocab_size: cfg.usize("vocab_size")?,
            context_length: cfg.usize("max_position_embeddings")?,
            n_token_types: cfg.opt_usize("type_vocab_size")?.unwrap_or(2),
            norm_eps: cfg.opt_positive_f32("layer_norm_eps")?.unwrap_or(1e-12),
            act: cfg.activation("hidden_act", Activation::GeluErf)?,
            n_labels,
        })
    }

    /// The `bert.*` keys llama.cpp reads.
    fn write_gguf(&self, c: &mut Converted) -> Result<()> {
        c.set_u32("block_count", self.n_layers)?;
        c.set_u32("context_length", self.context_length)?;
        c.set_u32("embedding_length", self.d_model)?;
        c.set_u32("feed_forward_length", self.d_ff)?;
        c.set_u32("attention.head_count", self.n_heads)?;
        c.set("attention.layer_norm_epsilon", Value::F32(self.norm_eps));
        c.set("attention.causal", Value::Bool(false));
        c.set_activation(self.act, Activation::GeluErf);
        Ok(())
    }
}

/// One post-norm encoder block.
struct EncoderBlock {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attn: Attention,
    attn_norm: Norm,
    mlp: Mlp,
    out_norm: Norm,
}

/// The pooler and classifier of a cross-encoder.
struct ClassifierHead {
    pooler: Linear,
    classifier: Linear,
}

/// A loaded BERT model.
pub struct BertModel {
    info: ModelInfo,
    config: BertConfig,
    tok_embd: Weight,
    positions: LearnedPositions,
    token_types: Option<Weight>,
    embd_norm: Norm,
    blocks: Vec<EncoderBlock>,
    head: Option<ClassifierHead>,
}

impl BertModel {
    pub fn load(config: BertConfig, loader: &Loader<'_>) -> Result<BertModel> {
        let c = &config;
        let d = c.d_model;
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_heads,
            head_dim: d / c.n_heads,
        };
        let blocks = (0..c.n_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                let linear = |name: &str, n_in, n_out| {
                    Linear::load(loader, &format!("{p}.{name}"), n_in, n_out)
                };
                Ok(EncoderBlock {
                    wq: linear("attn_q", d, d)?,
                    wk: linear("attn_k", d, d)?,
                    wv: linear("attn_v", d, d)?,
                    wo: linear("attn_output", d, d)?,
                    attn: Attention {
                        shape,
                        scale: 1.0 / (shape.head_dim as f32).sqrt(),
                        window: None,
                        softcap: None,
                        bidirectional: true,
                    },
                    attn_norm: Norm::layer(
                        loader,
                        &format!("{p}.attn_output_norm"),
                        d,
                        c.norm_eps,
                    )?,
                    mlp: Mlp {
                        up: linear("ffn_up", d, c.d_ff)?,
                        down: linear("ffn_down", c.d_ff, d)?,
                        act: c.act,
                    },
                    out_norm: Norm::layer(
                        loader,
                        &format!("{p}.layer_output_norm"),
                        d,
                        c.norm_eps,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head = match c.n_labels {
            Some(n) => Some(ClassifierHead {
                pooler: Linear::load(loader, "cls", d, d)?,
                classifier: Linear::load(loader, "cls.output", d, n)?,
            }),
            None => None,
        };
        let token_types = match c.n_token_types {
            0 => None,
            n => Some(loader.matrix("token_types.weight", n, d)?),
        };
        Ok(BertModel {
            info: ModelInfo {
                architecture: "bert",
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
            positions: LearnedPositions::load(loader, "position_embd", c.context_length, d)?,
            token_types,
            embd_norm: Norm::layer(loader, "token_embd_norm", d, c.norm_eps)?,
            blocks,
            head,
            config,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Adds each token's segment embedding: `ctx.token_types` when the caller
    /// gave them (a query/document pair), else segment 0 everywhere.
    fn add_token_types(&self, ctx: &ForwardCtx, x: &mut [f32], row: &mut Vec<f32>) -> Result<()> {
        let Some(table) = &self.token_types else {
            return Ok(());
        };
        let d = self.info.d_model;
        let n_types = table.matrix().rows;
        row.resize(d, 0.0);
        if ctx.token_types.is_empty() {
            table.row_to_f32(0, row);
            for xr in x.chunks_exact_mut(d) {
                ops::add_assign(xr, row);
            }
            return Ok(());
        }
        if ctx.token_types.len() != ctx.tokens.len() {
            return Err(EngineError::Config {
                source_name: "bert".into(),
                message: format!(
                    "{} token types for {} tokens",
                    ctx.token_types.len(),
                    ctx.tokens.len()
                ),
            });
        }
        if let Some(&t) = ctx.token_types.iter().find(|&&t| t as usize >= n_types) {
            return Err(EngineError::Config {
                source_name: "bert".into(),
                message: format!("token type {t} is past the model's {n_types}"),
            });
        }
        for (xr, &t) in x.chunks_exact_mut(d).zip(&ctx.token_types) {
            table.row_to_f32(t as usize, row);
            ops::add_assign(xr, row);
        }
        Ok(())
    }
}

impl Model for BertModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn role(&self) -> ModelRole {
        ModelRole::Encoder
    }

    fn unembed(&self, _: &mut ForwardCtx, _: &[f32], _: &mut Vec<f32>) -> Result<()> {
        Err(EngineError::NotAGenerator { arch: "bert" })
    }

    fn classify(&self, ctx: &mut ForwardCtx, pooled: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let Some(head) = &self.head else {
            return Err(EngineError::NotAClassifier { arch: "bert" });
        };
        let d = self.info.d_model;
        let n = pooled.len() / d;
        let mut h = vec![0.0; n * d];
        ctx.compute.linear(pooled, &head.pooler, &mut h);
        for v in &mut h {
            *v = v.tanh();
        }
        out.clear();
        out.resize(n * head.classifier.out_features(), 0.0);
        ctx.compute.linear(&h, &head.classifier, out);
        Ok(())
    }

    fn n_labels(&self) -> Option<usize> {
        self.config.n_labels
    }

    fn forward(
        &self,
        ctx: &mut ForwardCtx,
        seqs: &mut [SeqInput<'_>],
        hooks: &mut Hooks<'_>,
    ) -> Result<()> {
        let n = ctx.begin_encoder(&self.info, seqs)?;
        self.positions.check(&ctx.positions)?;
        let d = self.info.d_model;
        let mut buf = std::mem::take(&mut ctx.buf);
        buf.size(n, d, d, d);
        ctx.embed(&self.tok_embd, None, &mut buf.x);
        let added = self
            .positions
            .add(&ctx.positions, &mut buf.x, &mut buf.tmp)
            .and_then(|()| self.add_token_types(ctx, &mut buf.x, &mut buf.tmp));
        if let Err(e) = added {
            ctx.buf = buf;
            return Err(e);
        }
        self.embd_norm
            .forward_inplace(&ctx.compute.pool, &mut buf.x, &mut buf.tmp);
        hooks.rows(HookPoint::Embed, &ctx.spans, d, &buf.x);
        for (l, b) in self.blocks.iter().enumerate() {
            hooks.rows(HookPoint::ResidPre(l), &ctx.spans, d, &buf.x);
            ctx.compute.linears(
                &buf.x,
                &mut [
                    (&b.wq, &mut buf.q),
                    (&b.wk, &mut buf.k),
                    (&b.wv, &mut buf.v),
                ],
            );
            b.attn.attend(l, &b.wo, ctx, &mut buf, seqs, hooks);
            hooks.rows(HookPoint::AttnOut(l), &ctx.spans, d, &buf.o);
            ops::add_assign(&mut buf.x, &buf.o);
            b.attn_norm
                .forward_inplace(&ctx.compute.pool, &mut buf.x, &mut buf.tmp);
            b.mlp
                .forward(&mut ctx.compute, &buf.x, &mut buf.up, &mut buf.o);
            hooks.rows(HookPoint::MlpOut(l), &ctx.spans, d, &buf.o);
            ops::add_assign(&mut buf.x, &buf.o);
            b.out_norm
                .forward_inplace(&ctx.compute.pool, &mut buf.x, &mut buf.tmp);
            hooks.rows(HookPoint::ResidPost(l), &ctx.spans, d, &buf.x);
        }
        ctx.encoder_output(&buf.x, d, hooks);
        ctx.buf = buf;
        ctx.commit(seqs);
        Ok(())
    }
}
