//! Text to vectors: the final hidden states of a model, pooled into one
//! vector per text and normalized as the model's publisher configured it.
//!
//! Encoders (BERT and the sentence-transformers models on it) and decoders
//! trained as embedders (Qwen3-Embedding) go through the same path: a pass
//! with [`ForwardCtx::keep_hidden`], each text read whole with a cache of its
//! own, many texts per pass. How to pool comes from the model's files: a
//! sentence-transformers `modules.json` (with `1_Pooling/config.json` and
//! `sentence_bert_config.json`) beside a Hugging Face checkpoint, or
//! `{arch}.pooling_type` in a GGUF file. A model that says nothing is pooled
//! as Ollama and llama-server pool it: the mean of the tokens for an
//! encoder, the last token for a decoder, normalized to length 1.

use std::path::Path;

use lucid_gguf::Metadata;
use lucid_tokenizer::Tokenizer;
use serde::Deserialize;

use crate::batch::{LogitsFor, SeqInput};
use crate::error::{EngineError, Result};
use crate::hooks::Hooks;
use crate::model::{ForwardCtx, Model, ModelRole};

/// How the rows of a text's hidden states become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of every token's row (special tokens included, as
    /// sentence-transformers does).
    Mean,
    /// The first token's row (`[CLS]`).
    Cls,
    /// The last token's row: for decoders, the only one that saw the text.
    LastToken,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::LastToken => "last",
        }
    }
}

/// Where an [`EmbeddingConfig`] came from, for `lucid show` and `--json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// The sentence-transformers files beside the checkpoint.
    SentenceTransformers,
    /// `{arch}.pooling_type` in the GGUF file.
    Gguf,
    /// Nothing in the model's files: lucid's default for its kind.
    Default,
}

/// How a model turns text into one vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddingConfig {
    pub pooling: Pooling,
    /// Whether the vector is scaled to length 1.
    pub normalize: bool,
    /// Texts are cut to this many tokens (special tokens included); `None`
    /// leaves only the model's context length.
    pub max_tokens: Option<usize>,
    pub source: ConfigSource,
}

impl EmbeddingConfig {
    /// What lucid does for a model whose files say nothing.
    pub fn default_for(role: ModelRole) -> EmbeddingConfig {
        EmbeddingConfig {
            pooling: match role {
                ModelRole::Encoder => Pooling::Mean,
                ModelRole::Generator => Pooling::LastToken,
            },
            normalize: true,
            max_tokens: None,
            source: ConfigSource::Default,
        }
    }

    /// The sentence-transformers configuration in `dir`, if it has a
    /// `modules.json`. Modules that change the vector in ways lucid does
    /// not implement (a `Dense` projection, several pooling modes at once)
    /// are refused by name rather than ignored.
    pub fn from_sentence_transformers(dir: &Path) -> Result<Option<EmbeddingConfig>> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(None);
        }
        let modules: Vec<StModule> = read_json(&modules_path)?;
        let mut pooling = None;
        let mut normalize = false;
        for m in &modules {
            let kind = m.kind.rsplit('.').next().unwrap_or(&m.kind);
            match kind {
                "Transformer" => {}
                "Normalize" => normalize = true,
                "Pooling" => {
                    let path = dir.join(&m.path).join("config.json");
                    let cfg: StPooling = read_json(&path)?;
                    pooling = Some(cfg.pooling().map_err(|why| EngineError::Config {
                        source_name: path.display().to_string(),
                        message: why,
                    })?);
                }
                other => {
                    return Err(EngineError::Config {
                        source_name: modules_path.display().to_string(),
                        message: format!(
                            "module `{other}` ({}) is not supported: lucid runs Transformer, \
                             Pooling and Normalize modules",
                            m.kind
                        ),
                    });
                }
            }
        }
        let bert_config = dir.join("sentence_bert_config.json");
        let max_tokens = if bert_config.is_file() {
            read_json::<StBertConfig>(&bert_config)?.max_seq_length
        } else {
            None
        };
        Ok(Some(EmbeddingConfig {
            // A Transformer without a Pooling module gives token embeddings;
            // mean is what sentence-transformers adds when loading such a
            // model as a sentence embedder.
            pooling: pooling.unwrap_or(Pooling::Mean),
            normalize,
            max_tokens,
            source: ConfigSource::SentenceTransformers,
        }))
    }

    /// `{arch}.pooling_type` of a GGUF file, as llama.cpp's converter
    /// writes it (1 mean, 2 CLS, 3 last token); `None` when absent or 0
    /// (per-token output, no pooling), or 4 (a reranker's own head).
    /// llama.cpp normalizes embeddings unless asked not to; so does lucid.
    pub fn from_gguf(meta: &Metadata) -> Result<Option<EmbeddingConfig>> {
        let Ok(arch) = meta.str("general.architecture") else {
            return Ok(None);
        };
        let key = format!("{arch}.pooling_type");
        let Some(value) = meta.opt_u64(&key)? else {
            return Ok(None);
        };
        let pooling = match value {
            1 => Pooling::Mean,
            2 => Pooling::Cls,
            3 => Pooling::LastToken,
            _ => return Ok(None),
        };
        Ok(Some(EmbeddingConfig {
            pooling,
            normalize: true,
            max_tokens: None,
            source: ConfigSource::Gguf,
        }))
    }
}

#[derive(Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct StBertConfig {
    max_seq_length: Option<usize>,
}

/// `1_Pooling/config.json`.
#[derive(Deserialize)]
struct StPooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default = "yes")]
    include_prompt: bool,
}

fn yes() -> bool {
    true
}

impl StPooling {
    fn pooling(&self) -> std::result::Result<Pooling, String> {
        if !self.include_prompt {
            return Err("include_prompt = false is not supported".into());
        }
        let modes = [
            (self.pooling_mode_cls_token, Some(Pooling::Cls), "cls_token"),
            (
                self.pooling_mode_mean_tokens,
                Some(Pooling::Mean),
                "mean_tokens",
            ),
            (
                self.pooling_mode_lasttoken,
                Some(Pooling::LastToken),
                "lasttoken",
            ),
            (self.pooling_mode_max_tokens, None, "max_tokens"),
            (
                self.pooling_mode_mean_sqrt_len_tokens,
                None,
                "mean_sqrt_len_tokens",
            ),
            (
                self.pooling_mode_weightedmean_tokens,
                None,
                "weightedmean_tokens",
            ),
        ];
        let on: Vec<_> = modes.iter().filter(|m| m.0).collect();
        match on.as_slice() {
            [(_, Some(p), _)] => Ok(*p),
            [(_, None, name)] => Err(format!("pooling_mode_{name} is not supported")),
            [] => Err("no pooling mode is on".into()),
            _ => Err(format!(
                "several pooling modes at once ({}) are not supported",
                on.iter().map(|m| m.2).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let open_error = |message: String| EngineError::Open {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| open_error(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| open_error(format!("not the JSON expected: {e}")))
}

/// One text's vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    /// Tokens the model read (after any cut, special tokens included).
    pub n_tokens: usize,
    /// Whether the text was cut to fit.
    pub truncated: bool,
}

/// Tokens of all texts in one pass, at most: enough to fill the matrix
/// kernels, little enough that the hidden states of a pass stay small.
pub const PASS_TOKENS: usize = 4096;

/// The token ids of `text` as the model reads it for embedding: special
/// tokens added, cut to the configured length and the model's context.
pub fn tokenize(
    tokenizer: &Tokenizer,
    model: &dyn Model,
    config: &EmbeddingConfig,
    text: &str,
) -> Result<lucid_tokenizer::Truncated> {
    let limit = max_tokens(model, config);
    let t = tokenizer.encode_truncated(text, limit)?;
    if t.ids.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    Ok(t)
}

/// The most tokens one text may have.
pub fn max_tokens(model: &dyn Model, config: &EmbeddingConfig) -> usize {
    let context = model.info().context_length;
    config.max_tokens.map_or(context, |m| m.min(context))
}

/// The final hidden states of each input, pooled and normalized as
/// `config` says: one vector per input, in order. Inputs share passes of up
/// to [`PASS_TOKENS`] tokens.
pub fn embed_ids(
    model: &dyn Model,
    ctx: &mut ForwardCtx,
    config: &EmbeddingConfig,
    inputs: &[&[u32]],
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(inputs.len());
    hidden_states(model, ctx, inputs, &[], |_, rows, d| {
        out.push(pool(rows, d, config.pooling, config.normalize));
    })?;
    Ok(out)
}

/// Runs `inputs` through the model, many per pass, and calls `each(i,
/// rows, d_model)` with input `i`'s final hidden states, in order.
/// `types`, when not empty, gives each input's token segments (for text
/// pairs); an input whose entry is empty (or missing) is all segment 0.
pub fn hidden_states(
    model: &dyn Model,
    ctx: &mut ForwardCtx,
    inputs: &[&[u32]],
    types: &[&[u32]],
    mut each: impl FnMut(usize, &[f32], usize),
) -> Result<()> {
    let d = model.info().d_model;
    let mut start = 0;
    ctx.keep_hidden(true);
    let result = (|| {
        while start < inputs.len() {
            // At least one input per pass, however long.
            let mut end = start + 1;
            let mut tokens = inputs[start].len();
            while end < inputs.len() && tokens + inputs[end].len() <= PASS_TOKENS {
                tokens += inputs[end].len();
                end += 1;
            }
            let batch = &inputs[start..end];
            let mut caches: Vec<_> = batch
                .iter()
                .map(|ids| model.new_cache(Some(ids.len())))
                .collect();
            let mut seqs: Vec<SeqInput<'_>> = batch
                .iter()
                .zip(caches.iter_mut())
                .map(|(ids, cache)| SeqInput {
                    tokens: ids,
                    cache,
                    logits: LogitsFor::None,
                })
                .collect();
            ctx.token_types.clear();
            if !types.is_empty() {
                for (i, ids) in batch.iter().enumerate() {
                    match types.get(start + i) {
                        Some(t) if !t.is_empty() => ctx.token_types.extend_from_slice(t),
                        _ => ctx.token_types.resize(ctx.token_types.len() + ids.len(), 0),
                    }
                }
            }
            model.forward(ctx, &mut seqs, &mut Hooks::none())?;
            let hidden = ctx.hidden();
            let mut offset = 0;
            for (i, ids) in batch.iter().enumerate() {
                let rows = &hidden[offset * d..(offset + ids.len()) * d];
                each(start + i, rows, d);
                offset += ids.len();
            }
            start = end;
        }
        Ok(())
    })();
    ctx.keep_hidden(false);
    ctx.token_types.clear();
    result
}

/// One vector from a text's rows `[tokens, d]`.
pub fn pool(rows: &[f32], d: usize, pooling: Pooling, normalize: bool) -> Vec<f32> {
    let n = rows.len() / d.max(1);
    let mut v = vec![0.0f32; d];
    if n == 0 {
        return v;
    }
    match pooling {
        Pooling::Mean => {
            // Summed in f64: the mean of hundreds of rows keeps its last bits.
            let mut acc = vec![0.0f64; d];
            for row in rows.chunks_exact(d) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += f64::from(x);
                }
            }
            for (o, a) in v.iter_mut().zip(&acc) {
                *o = (a / n as f64) as f32;
            }
        }
        Pooling::Cls => v.copy_from_slice(&rows[..d]),
        Pooling::LastToken => v.copy_from_slice(&rows[(n - 1) * d..]),
    }
    if normalize {
        normalize_l2(&mut v);
    }
    v
}

/// Scales `v` to length 1 (a zero vector stays zero), as PyTorch's
/// `F.normalize` does.
pub fn normalize_l2(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    let norm = norm.max(1e-12);
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
}

/// Keeps the first `dims` values of a vector (a Matryoshka model's shorter
/// embedding), scaled to length 1 again when the model normalizes.
pub fn truncate_dimensions(v: &mut Vec<f32>, dims: usize, normalize: bool) {
    v.truncate(dims);
    if normalize {
        normalize_l2(v);
    }
}

/// The cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let denom = (aa.sqrt() * bb.sqrt()).max(1e-12);
    (ab / denom) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_picks_rows() {
        let rows = [1.0, 2.0, 3.0, 4.0, 5.0, 9.0];
        assert_eq!(pool(&rows, 2, Pooling::Mean, false), vec![3.0, 5.0]);
        assert_eq!(pool(&rows, 2, Pooling::Cls, false), vec![1.0, 2.0]);
        assert_eq!(pool(&rows, 2, Pooling::LastToken, false), vec![5.0, 9.0]);
        let v = pool(&[3.0, 4.0], 2, Pooling::Cls, true);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
    }

    #[test]
    fn sentence_transformers_pooling_modes() {
        let p = |json: &str| serde_json::from_str::<StPooling>(json).unwrap().pooling();
        assert_eq!(
            p(r#"{"pooling_mode_mean_tokens": true}"#),
            Ok(Pooling::Mean)
        );
        assert_eq!(
            p(r#"{"pooling_mode_lasttoken": true}"#),
            Ok(Pooling::LastToken)
        );
        assert!(
            p(r#"{"pooling_mode_max_tokens": true}"#)
                .unwrap_err()
                .contains("max_tokens")
        );
        assert!(
            p(r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#)
                .unwrap_err()
                .contains("several")
        );
        assert!(p("{}").is_err());
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
    }
}
