//! Llama and the families that share its block: RMSNorm, rotary positions,
//! grouped-query attention, a SwiGLU MLP (SmolLM2, Llama 2 and 3, Mistral).
//! A Llama file with experts is a Mixtral-style mixture (`mixtral.rs`).
//!
//! The block is shared: Qwen 2 (`qwen2.rs`) adds biases to the query, key
//! and value projections (which [`Linear::load`] picks up), Qwen 3 and
//! OLMoE normalize queries and keys ([`QkNorm`]), and any of them may swap
//! the MLP for a mixture of experts ([`Moe`]). Each family says how with a
//! [`Flavor`]; the model and its forward pass are [`LlamaModel`].
//!
//! GGUF Llama files store the query and key rows permuted for ggml's
//! adjacent-pair rotation (`RopeStyle::Normal`); llama.cpp's converter
//! permutes Hugging Face's halves into it, and so does [`convert_hf`]. Qwen
//! and OLMoE files keep the halves (`RopeStyle::NeoX`).

use lucid_gguf::{GgufFile, Value};
use lucid_tensor::ops::{self, Activation};

use crate::arch::{Architecture, Hparams};
use crate::batch::SeqInput;
use crate::blocks::{
    Attention, AttentionShape, GatedMlp, Linear, Moe, MoeConfig, Norm, Rope, RopeScaling, RopeStyle,
};
use crate::error::Result;
use crate::hf::{self, Converted, HfCheckpoint, HfConfig};
use crate::hooks::{HookPoint, Hooks};
use crate::loaded::LoadOptions;
use crate::model::{ForwardCtx, Model, ModelInfo};
use crate::weights::{Loader, Weight, WeightSource};

/// The registry entry.
pub struct Llama;

/// Llama's flavor of the block.
pub const LLAMA: Flavor = Flavor {
    arch: "llama",
    rope_style: RopeStyle::Normal,
    qk_norm: QkNorm::None,
    moe_normalize: true,
    norm_eps: 1e-5,
    rope_base: 10_000.0,
};

impl Architecture for Llama {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn gguf_names(&self) -> &'static [&'static str] {
        &["llama"]
    }

    fn hf_names(&self) -> &'static [&'static str] {
        &["LlamaForCausalLM", "MistralForCausalLM"]
    }

    fn load_gguf(&self, file: &GgufFile) -> Result<Box<dyn Model>> {
        load_gguf(&LLAMA, file)
    }

    fn convert_hf(&self, ckpt: &HfCheckpoint) -> Result<Converted> {
        convert_hf(&LLAMA, ckpt, &HfNames::LLAMA)
    }

    fn load_hf(&self, ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        load_converted(&LLAMA, self.convert_hf(ckpt)?, opts)
    }
}

/// What tells apart the families written from the Llama block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flavor {
    /// The GGUF architecture name (`general.architecture`).
    pub arch: &'static str,
    /// How the family's GGUF files pair the rotated dimensions.
    pub rope_style: RopeStyle,
    pub qk_norm: QkNorm,
    /// Whether a mixture's chosen expert weights are divided by their sum
    /// when the file does not say (`expert_weights_norm`).
    pub moe_normalize: bool,
    /// The RMSNorm epsilon and RoPE base when the file does not say.
    pub norm_eps: f32,
    pub rope_base: f32,
}

/// RMSNorm on the queries and keys before the rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// Over each head (Qwen 3, Gemma 3): weights of `head_dim` values.
    PerHead,
    /// Over all heads of a token together (OLMoE): weights of the whole
    /// query and key widths.
    Whole,
}

/// The hyperparameters of a Llama-style model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub flavor: Flavor,
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
    pub rope_scaling: RopeScaling,
    /// Tokens each position sees, itself included (Mistral 7B v0.1's
    /// sliding window); `None` for full attention.
    pub sliding_window: Option<usize>,
    /// A mixture of experts in place of the MLP in every block.
    pub moe: Option<MoeConfig>,
    /// Multiplies the rotated queries and keys (Phi 3's longrope
    /// `attn_factor`; 1 elsewhere).
    pub rope_attn_factor: f32,
    /// The context the short longrope factors are for: a model whose
    /// context is longer uses the long ones (`rope_factors_long`), as
    /// llama.cpp chooses them.
    pub rope_original_context: Option<usize>,
}

impl LlamaConfig {
    pub fn from_gguf(
        flavor: &Flavor,
        hp: &Hparams<'_>,
        weights: &dyn WeightSource,
    ) -> Result<LlamaConfig> {
        let d_model = hp.usize("embedding_length")?;
        let (n_heads, n_kv_heads, head_dim) = hp.attention_heads(d_model)?;
        let rope_scaling = match (
            hp.opt_str("rope.scaling.type")?,
            hp.opt_f32("rope.scaling.factor")?,
        ) {
            (Some("linear"), Some(f)) if f > 0.0 => RopeScaling::Linear(f),
            _ => RopeScaling::None,
        };
        let moe = match hp.opt_usize("expert_count")? {
            Some(n_experts) if n_experts > 1 => {
                let n_used = hp.usize("expert_used_count")?;
                if n_used > n_experts {
                    return Err(hp.invalid("expert_used_count", "must be at most expert_count"));
                }
                if let Some(Value::U32(g)) = hp.value("expert_gating_func")
                    && *g != 1
                {
                    return Err(
                        hp.invalid("expert_gating_func", "lucid runs softmax gating (1) only")
                    );
                }
                if hp.opt_usize("expert_shared_count")?.is_some() {
                    return Err(hp.invalid(
                        "expert_shared_count",
                        "shared experts are not something lucid runs for this family",
                    ));
                }
                let d_ff = match hp.opt_usize("expert_feed_forward_length")? {
                    Some(f) => f,
                    None => hp.usize("feed_forward_length")?,
                };
                Some(MoeConfig {
                    n_experts,
                    n_used,
                    d_ff,
                    normalize: hp
                        .opt_bool("expert_weights_norm")?
                        .unwrap_or(flavor.moe_normalize),
                })
            }
            _ => None,
        };
        let d_ff = match moe {
            Some(m) => hp.opt_usize("feed_forward_length")?.unwrap_or(m.d_ff),
            None => hp.usize("feed_forward_length")?,
        };
        Ok(LlamaConfig {
            flavor: *flavor,
            n_layers: hp.usize("block_count")?,
            d_model,
            d_ff,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size: hp.vocab_size(weights)?,
            context_length: hp.usize("context_length")?,
            norm_eps: hp
                .opt_positive_f32("attention.layer_norm_rms_epsilon")?
                .unwrap_or(flavor.norm_eps),
            rope_base: hp
                .opt_positive_f32("rope.freq_base")?
                .unwrap_or(flavor.rope_base),
            rope_dims: hp.rope_dims(head_dim)?,
            rope_scaling,
            sliding_window: hp.opt_usize("attention.sliding_window")?,
            moe,
            rope_attn_factor: hp
                .opt_positive_f32("rope.scaling.attn_factor")?
                .unwrap_or(1.0),
            rope_original_context: hp.opt_usize("rope.scaling.original_context_length")?,
        })
    }

    /// Reads `config.json` of a Llama, Mistral, Mixtral, Qwen 2/3 or OLMoE
    /// checkpoint (their keys are the same where they overlap).
    pub fn from_hf(flavor: &Flavor, cfg: &HfConfig<'_>) -> Result<LlamaConfig> {
        let d_model = cfg.usize("hidden_size")?;
        let (n_heads, n_kv_heads, head_dim) = cfg.attention_heads(d_model)?;
        if cfg.get("clip_qkv").is_some() {
            return Err(cfg.invalid(
                "clip_qkv",
                "clipped projections are not something lucid runs",
            ));
        }
        // transformers 5 writes `rope_parameters`; older configs say
        // `rope_theta` and `rope_scaling`.
        let rope = cfg
            .get("rope_parameters")
            .or_else(|| cfg.get("rope_scaling"));
        let rope_f64 = |key: &str| rope.and_then(|r| r.get(key)).and_then(|v| v.as_f64());
        let rope_base = match rope_f64("rope_theta") {
            Some(b) => b as f32,
            None => cfg
                .opt_positive_f32("rope_theta")?
                .unwrap_or(flavor.rope_base),
        };
        if !(rope_base > 0.0 && rope_base.is_finite()) {
            return Err(cfg.invalid("rope_theta", "must be a positive number"));
        }
        let kind = rope
            .and_then(|r| r.get("rope_type").or_else(|| r.get("type")))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let rope_scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => match rope_f64("factor") {
                Some(f) if f > 0.0 => RopeScaling::Linear(f as f32),
                _ => return Err(cfg.invalid("rope_parameters", "linear scaling needs a factor above zero")),
            },
            // Phi 3's factors are tensors, pushed by its converter.
            "longrope" | "su" => RopeScaling::None,
            "llama3" => RopeScaling::FreqFactors(llama3_factors(
                rope_base,
                head_dim,
                rope_f64("factor").unwrap_or(8.0),
                rope_f64("low_freq_factor").unwrap_or(1.0),
                rope_f64("high_freq_factor").unwrap_or(4.0),
                rope_f64("original_max_position_embeddings").unwrap_or(8192.0),
            )
            .ok_or_else(|| cfg.invalid("rope_parameters", "llama3 scaling needs high_freq_factor above low_freq_factor, both above zero"))?),
            other => {
                return Err(cfg.invalid(
                    "rope_parameters",
                    &format!("rope type '{other}' is not one lucid runs for this family"),
                ));
            }
        };
        let n_experts = match cfg.opt_usize("num_local_experts")? {
            Some(n) => Some(n),
            None => cfg.opt_usize("num_experts")?,
        };
        let moe = match n_experts {
            Some(n_experts) if n_experts > 1 => {
                if cfg
                    .opt_usize("decoder_sparse_step")?
                    .is_some_and(|s| s != 1)
                    || cfg
                        .get("mlp_only_layers")
                        .and_then(|v| v.as_array())
                        .is_some_and(|a| !a.is_empty())
                {
                    return Err(cfg.invalid(
                        "mlp_only_layers",
                        "lucid runs mixtures with experts in every layer",
                    ));
                }
                let n_used = cfg.usize("num_experts_per_tok")?;
                if n_used > n_experts {
                    return Err(cfg.invalid(
                        "num_experts_per_tok",
                        "must be at most the number of experts",
                    ));
                }
                let d_ff = match cfg.opt_usize("moe_intermediate_size")? {
                    Some(f) => f,
                    None => cfg.usize("intermediate_size")?,
                };
                Some(MoeConfig {
                    n_experts,
                    n_used,
                    d_ff,
                    normalize: cfg
                        .opt_bool("norm_topk_prob")?
                        .unwrap_or(flavor.moe_normalize),
                })
            }
            _ => None,
        };
        // Phi-4-mini rotates the first three quarters of each head.
        let partial = match rope_f64("partial_rotary_factor") {
            Some(p) => p,
            None => cfg.opt_f32("partial_rotary_factor")?.map_or(1.0, f64::from),
        };
        let rope_dims = (head_dim as f64 * partial) as usize;
        if !(partial > 0.0 && partial <= 1.0 && rope_dims.is_multiple_of(2)) {
            return Err(cfg.invalid(
                "partial_rotary_factor",
                "must give an even number of rotated values per head",
            ));
        }
        let context_length = cfg.usize("max_position_embeddings")?;
        let (rope_attn_factor, rope_original_context) = if matches!(kind, "longrope" | "su") {
            let original = match rope_f64("original_max_position_embeddings") {
                Some(o) if o >= 1.0 => o as usize,
                _ => cfg.usize("original_max_position_embeddings")?,
            };
            // transformers' rule when the config gives no attention_factor.
            let scale = context_length as f64 / original as f64;
            let factor = match rope_f64("attention_factor") {
                Some(f) => f,
                None if scale <= 1.0 => 1.0,
                None => (1.0 + scale.ln() / (original as f64).ln()).sqrt(),
            };
            (factor as f32, Some(original))
        } else {
            (1.0, None)
        };
        // Qwen's configs carry a window they do not use unless asked.
        let sliding_window = match cfg.opt_bool("use_sliding_window")? {
            Some(false) => None,
            _ => cfg.opt_usize("sliding_window")?,
        };
        Ok(LlamaConfig {
            flavor: *flavor,
            n_layers: cfg.usize("num_hidden_layers")?,
            d_model,
            d_ff: cfg.usize("intermediate_size")?,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size: cfg.usize("vocab_size")?,
            context_length,
            norm_eps: cfg
                .opt_positive_f32("rms_norm_eps")?
                .unwrap_or(flavor.norm_eps),
            rope_base,
            rope_dims,
            rope_scaling,
            sliding_window,
            moe,
            rope_attn_factor,
            rope_original_context,
        })
    }

    /// The metadata llama.cpp's converter writes for these keys. Llama 3's
    /// frequency factors are a tensor (`rope_freqs.weight`), pushed by
    /// [`convert_hf`].
    pub fn write_gguf(&self, c: &mut Converted) -> Result<()> {
        c.set_u32("context_length", self.context_length)?;
        c.set_u32("embedding_length", self.d_model)?;
        c.set_u32("block_count", self.n_layers)?;
        c.set_u32("feed_forward_length", self.d_ff)?;
        c.set_u32("attention.head_count", self.n_heads)?;
        c.set_u32("attention.head_count_kv", self.n_kv_heads)?;
        c.set_u32("attention.key_length", self.head_dim)?;
        c.set_u32("attention.value_length", self.head_dim)?;
        c.set_u32("rope.dimension_count", self.rope_dims)?;
        c.set("rope.freq_base", Value::F32(self.rope_base));
        c.set(
            "attention.layer_norm_rms_epsilon",
            Value::F32(self.norm_eps),
        );
        if let RopeScaling::Linear(f) = self.rope_scaling {
            c.set("rope.scaling.type", Value::String("linear".into()));
            c.set("rope.scaling.factor", Value::F32(f));
        }
        if let Some(w) = self.sliding_window {
            c.set_u32("attention.sliding_window", w)?;
        }
        if let Some(o) = self.rope_original_context {
            c.set_u32("rope.scaling.original_context_length", o)?;
            c.set(
                "rope.scaling.attn_factor",
                Value::F32(self.rope_attn_factor),
            );
        }
        if let Some(m) = self.moe {
            c.set_u32("expert_count", m.n_experts)?;
            c.set_u32("expert_used_count", m.n_used)?;
            c.set_u32("expert_feed_forward_length", m.d_ff)?;
            c.set("expert_weights_norm", Value::Bool(m.normalize));
        }
        Ok(())
    }

    fn shape(&self) -> AttentionShape {
        AttentionShape {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
        }
    }
}

/// Llama 3's per-frequency RoPE divisors, as llama.cpp's converter and
/// transformers compute them: long wavelengths are stretched by `factor`,
/// short ones kept, the band between blended.
fn llama3_factors(
    base: f32,
    head_dim: usize,
    factor: f64,
    low: f64,
    high: f64,
    original_context: f64,
) -> Option<Vec<f32>> {
    if !(low > 0.0 && high > low && factor > 0.0 && original_context > 0.0) {
        return None;
    }
    let (low_wavelen, high_wavelen) = (original_context / low, original_context / high);
    Some(
        (0..head_dim / 2)
            .map(|i| {
                let freq = (base as f64).powf(-((2 * i) as f64) / head_dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor as f32
                } else {
                    let smooth = (original_context / wavelen - low) / (high - low);
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect(),
    )
}

/// Where a checkpoint keeps a mixture's tensors, under `model.layers.{i}.`.
#[derive(Clone, Copy, Debug)]
pub struct HfNames {
    /// The router (`mlp.gate`).
    pub router: &'static str,
    /// The experts, numbered (`mlp.experts`).
    pub experts: &'static str,
    /// Each expert's gate, up and down projections.
    pub gate_up_down: [&'static str; 3],
}

impl HfNames {
    /// Qwen 3 MoE and OLMoE.
    pub const LLAMA: HfNames = HfNames {
        router: "mlp.gate",
        experts: "mlp.experts",
        gate_up_down: ["gate_proj", "up_proj", "down_proj"],
    };
    /// Mixtral.
    pub const MIXTRAL: HfNames = HfNames {
        router: "block_sparse_moe.gate",
        experts: "block_sparse_moe.experts",
        gate_up_down: ["w1", "w3", "w2"],
    };
}

/// A checkpoint of a Llama-style family in GGUF's terms.
pub fn convert_hf(flavor: &Flavor, ckpt: &HfCheckpoint, names: &HfNames) -> Result<Converted> {
    let cfg = LlamaConfig::from_hf(flavor, &ckpt.config())?;
    let mut c = Converted::new(ckpt.source_name(), flavor.arch);
    cfg.write_gguf(&mut c)?;
    let t = |name: &str| ckpt.tensor_in("model.", name);
    let hd = cfg.head_dim;
    // Hugging Face's rotated halves into ggml's adjacent pairs, per head:
    // row `2i + j` of a head is row `j * hd/2 + i` of the checkpoint's.
    let permute = |w: Weight, heads: usize| -> Result<Weight> {
        if flavor.rope_style == RopeStyle::NeoX {
            return Ok(w);
        }
        let order: Vec<usize> = (0..heads)
            .flat_map(|h| (0..hd / 2).flat_map(move |i| [h * hd + i, h * hd + hd / 2 + i]))
            .collect();
        let row = w.n_elements() / (heads * hd).max(1);
        hf::reorder_chunks(&w, row, &order)
    };
    c.push("token_embd.weight", t("embed_tokens.weight")?);
    if let RopeScaling::FreqFactors(f) = &cfg.rope_scaling {
        c.push("rope_freqs.weight", hf::f32_vector("rope_freqs.weight", f));
    }
    for i in 0..cfg.n_layers {
        let (h, b) = (format!("layers.{i}"), format!("blk.{i}"));
        let opt = |name: &str| ckpt.opt_tensor_in("model.", &format!("{h}.{name}"));
        c.push(
            format!("{b}.attn_norm.weight"),
            t(&format!("{h}.input_layernorm.weight"))?,
        );
        c.push(
            format!("{b}.ffn_norm.weight"),
            t(&format!("{h}.post_attention_layernorm.weight"))?,
        );
        for (gguf, proj, heads) in [
            ("attn_q", "q_proj", cfg.n_heads),
            ("attn_k", "k_proj", cfg.n_kv_heads),
        ] {
            c.push(
                format!("{b}.{gguf}.weight"),
                permute(t(&format!("{h}.self_attn.{proj}.weight"))?, heads)?,
            );
            if let Some(bias) = opt(&format!("self_attn.{proj}.bias"))? {
                c.push(format!("{b}.{gguf}.bias"), permute(bias, heads)?);
            }
        }
        for (gguf, proj) in [("attn_v", "v_proj"), ("attn_output", "o_proj")] {
            c.push(
                format!("{b}.{gguf}.weight"),
                t(&format!("{h}.self_attn.{proj}.weight"))?,
            );
            c.push_opt(
                format!("{b}.{gguf}.bias"),
                opt(&format!("self_attn.{proj}.bias"))?,
            );
        }
        if flavor.qk_norm != QkNorm::None {
            c.push(
                format!("{b}.attn_q_norm.weight"),
                t(&format!("{h}.self_attn.q_norm.weight"))?,
            );
            c.push(
                format!("{b}.attn_k_norm.weight"),
                t(&format!("{h}.self_attn.k_norm.weight"))?,
            );
        }
        match cfg.moe {
            Some(m) => {
                c.push(
                    format!("{b}.ffn_gate_inp.weight"),
                    t(&format!("{h}.{}.weight", names.router))?,
                );
                for (gguf, proj) in ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"]
                    .into_iter()
                    .zip(names.gate_up_down)
                {
                    let experts = (0..m.n_experts)
                        .map(|e| t(&format!("{h}.{}.{e}.{proj}.weight", names.experts)))
                        .collect::<Result<Vec<_>>>()?;
                    c.push(format!("{b}.{gguf}.weight"), hf::stack(&experts)?);
                }
            }
            None => {
                for (gguf, proj) in [
                    ("ffn_gate", "gate_proj"),
                    ("ffn_up", "up_proj"),
                    ("ffn_down", "down_proj"),
                ] {
                    c.push(
                        format!("{b}.{gguf}.weight"),
                        t(&format!("{h}.mlp.{proj}.weight"))?,
                    );
                }
            }
        }
    }
    c.push("output_norm.weight", t("norm.weight")?);
    // Tied embeddings: no separate head.
    if let Some(head) = ckpt.opt_tensor_in("", "lm_head.weight")?
        && ckpt.config().opt_bool("tie_word_embeddings")? != Some(true)
    {
        c.push("output.weight", head);
    }
    Ok(c)
}

/// Loads a GGUF file of a Llama-style family.
pub fn load_gguf(flavor: &Flavor, file: &GgufFile) -> Result<Box<dyn Model>> {
    let hp = Hparams::new(file)?;
    let config = LlamaConfig::from_gguf(flavor, &hp, file)?;
    Ok(Box::new(LlamaModel::load(config, &Loader::new(file))?))
}

/// Loads a converted checkpoint of a Llama-style family, quantized first
/// when asked.
pub fn load_converted(
    flavor: &Flavor,
    converted: Converted,
    opts: &LoadOptions,
) -> Result<Box<dyn Model>> {
    let c = crate::quantize::quantized(converted, opts.quantize)?;
    let hp = Hparams::from_metadata(&c.metadata, c.source_name().to_string())?;
    let config = LlamaConfig::from_gguf(flavor, &hp, &c)?;
    Ok(Box::new(LlamaModel::load(config, &Loader::new(&c))?))
}

/// A block's feed-forward part.
enum Ffn {
    Dense(GatedMlp),
    Experts(Moe),
}

struct Block {
    attn_norm: Norm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    wo: Linear,
    attn: Attention,
    ffn_norm: Norm,
    ffn: Ffn,
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
        let shape = c.shape();
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
        if let Some(long) = loader.opt_vector("rope_factors_long.weight", c.rope_dims / 2)? {
            let short = loader.vector("rope_factors_short.weight", c.rope_dims / 2)?;
            let beyond = c
                .rope_original_context
                .is_some_and(|o| c.context_length > o);
            rope_scaling = RopeScaling::FreqFactors(if beyond { long } else { short });
        }
        let (q_norm_width, k_norm_width) = match c.flavor.qk_norm {
            QkNorm::None | QkNorm::PerHead => (c.head_dim, c.head_dim),
            QkNorm::Whole => (shape.q_width(), shape.kv_width()),
        };
        let rms = |name: String, width: usize| Norm::rms(loader, &name, width, c.norm_eps);
        let blocks = (0..c.n_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                let (q_norm, k_norm) = match c.flavor.qk_norm {
                    QkNorm::None => (None, None),
                    QkNorm::PerHead | QkNorm::Whole => (
                        Some(rms(format!("{p}.attn_q_norm"), q_norm_width)?),
                        Some(rms(format!("{p}.attn_k_norm"), k_norm_width)?),
                    ),
                };
                let ffn = match c.moe {
                    Some(m) => Ffn::Experts(Moe::load(loader, &p, c.d_model, m, Activation::Silu)?),
                    None => {
                        // Phi 3 fuses the gate and up projections into
                        // `ffn_up`, gate rows first.
                        let [gate, up] = if loader.has(&format!("{p}.ffn_gate.weight")) {
                            [
                                Linear::load(loader, &format!("{p}.ffn_gate"), c.d_model, c.d_ff)?,
                                Linear::load(loader, &format!("{p}.ffn_up"), c.d_model, c.d_ff)?,
                            ]
                        } else {
                            Linear::load_fused(
                                loader,
                                &format!("{p}.ffn_up"),
                                c.d_model,
                                [c.d_ff, c.d_ff],
                            )?
                        };
                        Ffn::Dense(GatedMlp {
                            gate,
                            up,
                            down: Linear::load(
                                loader,
                                &format!("{p}.ffn_down"),
                                c.d_ff,
                                c.d_model,
                            )?,
                            act: Activation::Silu,
                        })
                    }
                };
                // Phi 3 fuses the query, key and value projections.
                let [wq, wk, wv] = if loader.has(&format!("{p}.attn_qkv.weight")) {
                    Linear::load_fused(
                        loader,
                        &format!("{p}.attn_qkv"),
                        c.d_model,
                        [shape.q_width(), shape.kv_width(), shape.kv_width()],
                    )?
                } else {
                    [
                        Linear::load(loader, &format!("{p}.attn_q"), c.d_model, shape.q_width())?,
                        Linear::load(loader, &format!("{p}.attn_k"), c.d_model, shape.kv_width())?,
                        Linear::load(loader, &format!("{p}.attn_v"), c.d_model, shape.kv_width())?,
                    ]
                };
                Ok(Block {
                    attn_norm: rms(format!("{p}.attn_norm"), c.d_model)?,
                    wq,
                    wk,
                    wv,
                    q_norm,
                    k_norm,
                    wo: Linear::load(
                        loader,
                        &format!("{p}.attn_output"),
                        shape.q_width(),
                        c.d_model,
                    )?,
                    attn: Attention {
                        shape,
                        scale: 1.0 / (c.head_dim as f32).sqrt(),
                        window: c.sliding_window,
                        softcap: None,
                        bidirectional: false,
                    },
                    ffn_norm: rms(format!("{p}.ffn_norm"), c.d_model)?,
                    ffn,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LlamaModel {
            info: ModelInfo {
                architecture: c.flavor.arch,
                n_layers: c.n_layers,
                d_model: c.d_model,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                d_ff: c.moe.map_or(c.d_ff, |m| m.d_ff),
                vocab_size: c.vocab_size,
                context_length: c.context_length,
                kv_width: shape.kv_width(),
                kv_precision: loader.kv_precision(),
            },
            rope: Rope::new(c.rope_dims, c.rope_base, c.flavor.rope_style, rope_scaling)
                .with_factor(c.rope_attn_factor),
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
        let shape = self.config.shape();
        let mut buf = std::mem::take(&mut ctx.buf);
        buf.size(n, d, shape.q_width(), shape.kv_width());
        ctx.embed(&self.tok_embd, None, &mut buf.x);
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
            match &b.ffn {
                Ffn::Dense(mlp) => mlp.forward(
                    &mut ctx.compute,
                    &buf.h,
                    &mut buf.gate,
                    &mut buf.up,
                    &mut buf.o,
                ),
                Ffn::Experts(moe) => {
                    moe.forward(&mut ctx.compute, &buf.h, &mut buf.moe, &mut buf.o);
                    let width = moe.config.n_experts;
                    hooks.rows(
                        HookPoint::RouterLogits(l),
                        &ctx.spans,
                        width,
                        &buf.moe.logits,
                    );
                }
            }
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
