//! The trace of one explained run, the semantic view of several texts, and
//! their JSON form.
//!
//! These types are the glass box's wire format: the CLI's `--json`, the
//! HTTP endpoint and the web page all read and write exactly these (the
//! engine's own types are not serializable on purpose). Other tools depend on
//! the key names `tokens`, `steps`, `top`, `chosen`, `id`, `text` and `prob`,
//! and of the semantic view `texts`, `similarity`, `neighbours`, `pairs`,
//! `index`, `a`, `b`, `a_contributions` and `b_contributions`; renaming a
//! field is a breaking change, adding one is not.
//!
//! Probabilities are the model's own distribution, the softmax of the raw
//! logits at temperature 1, whatever sampling chose the token. Entropies are
//! in nats. Positions count tokens from 0, prompt first; texts of a semantic
//! view count from 0 in the order given.

use serde::{Deserialize, Serialize};

/// What a run of the model did with a prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The shape of the model that ran.
    pub model: ModelSummary,
    /// The prompt's tokens, in order (position `i` is `tokens[i]`).
    pub tokens: Vec<Token>,
    /// One per predicted position: the first is the prediction after the
    /// whole prompt, each later one after the previous step's token.
    pub steps: Vec<Step>,
    /// The text of the chosen tokens.
    pub completion: String,
    /// Why the run ended.
    pub stop: StopReason,
    /// Attention maps of the requested layers and heads over every position
    /// the model read (the prompt and all chosen tokens but the last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<AttentionMap>,
    /// The logit lens, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<Lens>,
    /// Where the time went.
    pub timings: Timings,
}

/// The numbers that decide how big a trace can be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// The family (`llama`, `gemma3`, `gpt2`, …).
    pub architecture: String,
    pub n_layers: usize,
    /// Query heads per layer (the heads of the attention maps).
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_model: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    /// What the model's forward pass yields: `generator` (next-token
    /// logits: [`Trace`]) or `encoder` (hidden states only: [`Semantic`]).
    /// Absent in traces written before it existed, which were all
    /// generators'.
    #[serde(default)]
    pub role: ModelKind,
}

/// What a model's forward pass yields ([`lucid_engine::ModelRole`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Next-token logits: explained with a [`Trace`] (and, as an embedder,
    /// with a [`Semantic`] view).
    #[default]
    Generator,
    /// Hidden states only (BERT and the sentence-transformers models on
    /// it): a [`Semantic`] view.
    Encoder,
}

impl ModelSummary {
    /// The summary of a model's shape.
    pub fn of(model: &dyn lucid_engine::Model) -> ModelSummary {
        let info = model.info();
        ModelSummary {
            role: match model.role() {
                lucid_engine::ModelRole::Generator => ModelKind::Generator,
                lucid_engine::ModelRole::Encoder => ModelKind::Encoder,
            },
            architecture: info.architecture.to_string(),
            n_layers: info.n_layers,
            n_heads: info.n_heads,
            n_kv_heads: info.n_kv_heads,
            d_model: info.d_model,
            vocab_size: info.vocab_size,
            context_length: info.context_length,
        }
    }
}

/// A token: its id and the text it stands for (invalid UTF-8, as in a token
/// holding part of a character, shows as U+FFFD).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: u32,
    pub text: String,
}

/// A candidate next token with its probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    pub id: u32,
    pub text: String,
    pub prob: f32,
    /// The raw logit (after any final softcap).
    pub logit: f32,
}

/// The token that was chosen at a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub id: u32,
    pub text: String,
    pub prob: f32,
    pub logit: f32,
    /// 1 for the most probable token; ties share the better rank.
    pub rank: usize,
}

/// One prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The position whose output made the prediction (the last token read).
    pub position: usize,
    /// The most probable next tokens, most probable first.
    pub top: Vec<TokenProb>,
    pub chosen: Chosen,
    /// Entropy of the next-token distribution, in nats.
    pub entropy: f32,
    /// The earlier positions the predicting position attended to most,
    /// averaged over every layer and head, most attended first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attended: Vec<Attended>,
}

/// How much one position was attended to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attended {
    pub position: usize,
    pub id: u32,
    pub text: String,
    pub weight: f32,
}

/// The attention probabilities of one head: `weights[q * keys + k]` is how
/// much query position `q` attended to key position `k`. Rows sum to 1;
/// positions after the query (and outside a sliding window) are 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionMap {
    pub layer: usize,
    pub head: usize,
    pub queries: usize,
    pub keys: usize,
    pub weights: Vec<f32>,
}

impl AttentionMap {
    /// The row of query position `q`.
    pub fn row(&self, q: usize) -> Option<&[f32]> {
        self.weights.get(q * self.keys..(q + 1) * self.keys)
    }
}

/// The logit lens: the residual stream after each layer, put through the
/// final norm and the unembedding as if the model ended there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lens {
    /// The hook points read, bottom to top: `embed`, then
    /// `blocks.{l}.resid_post` for every block. The last one's lens is the
    /// model's own prediction.
    pub layers: Vec<String>,
    /// One column per position read, in order.
    pub positions: Vec<LensColumn>,
}

/// The lens at one position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LensColumn {
    pub position: usize,
    /// `layers[i]`: the top tokens at [`Lens::layers`]`[i]`, most probable first.
    pub layers: Vec<Vec<TokenProb>>,
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The requested number of steps was reached.
    MaxTokens,
    /// The chosen token ends generation.
    EndOfGeneration,
    /// The caller stopped it (a client went away); the last step may lack
    /// its lens columns.
    Cancelled,
}

/// Time spent, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Forward passes, hooks included.
    pub forward_ms: f64,
    /// The logit lens (unembedding every layer).
    pub lens_ms: f64,
    pub total_ms: f64,
}

impl Trace {
    /// Rounds attention weights and probabilities to `decimals` places, so
    /// their JSON is short (`0.1235` rather than `0.12345679`). Display
    /// needs no more; numerical checks use unrounded traces.
    pub fn round(&mut self, decimals: i32) {
        for m in &mut self.attention {
            m.round(decimals);
        }
        for s in &mut self.steps {
            s.round(decimals);
        }
        if let Some(lens) = &mut self.lens {
            for c in &mut lens.positions {
                c.round(decimals);
            }
        }
    }
}

impl Step {
    /// Rounds the probabilities and attention weights (see [`Trace::round`]).
    pub fn round(&mut self, decimals: i32) {
        let r = rounder(decimals);
        self.top.iter_mut().for_each(|t| r(&mut t.prob));
        r(&mut self.chosen.prob);
        self.attended.iter_mut().for_each(|a| r(&mut a.weight));
    }
}

impl LensColumn {
    /// Rounds the probabilities (see [`Trace::round`]).
    pub fn round(&mut self, decimals: i32) {
        let r = rounder(decimals);
        for cell in &mut self.layers {
            cell.iter_mut().for_each(|t| r(&mut t.prob));
        }
    }
}

impl AttentionMap {
    /// Rounds the weights (see [`Trace::round`]).
    pub fn round(&mut self, decimals: i32) {
        self.weights.iter_mut().for_each(rounder(decimals));
    }
}

/// The semantic view of several texts: how an embedding model places them
/// relative to each other, and which tokens made two of them similar.
///
/// A text's embedding is its final hidden states pooled into one vector
/// ([`EmbeddingSummary::pooling`]); similarities are cosines, which for a
/// model that normalizes its vectors is their dot product. Every number is
/// computed from the hidden states in f64 (and written as f32), so a pair's
/// contributions sum to its similarity to within f32 rounding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Semantic {
    /// The shape of the model that ran.
    pub model: ModelSummary,
    /// How the model turns a text into one vector.
    pub embedding: EmbeddingSummary,
    /// The texts, in the order given.
    pub texts: Vec<TextEmbedding>,
    /// `similarity[i][j]` is the cosine of texts `i` and `j`: symmetric,
    /// 1 on the diagonal (0 for a text whose vector is zero).
    pub similarity: Vec<Vec<f32>>,
    /// The pairs asked for (by default each text with its nearest
    /// neighbour, each pair once), most similar first unless given.
    pub pairs: Vec<PairContributions>,
    /// Where the time went.
    pub timings: SemanticTimings,
}

/// How a model turns a text into one vector
/// ([`lucid_engine::EmbeddingConfig`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingSummary {
    pub pooling: PoolingKind,
    /// Whether the model scales its vectors to length 1. It does not change
    /// a cosine.
    pub normalized: bool,
    /// Texts are cut to this many tokens (special tokens included).
    pub max_tokens: usize,
}

impl EmbeddingSummary {
    /// The summary of how `model` embeds.
    pub fn of(model: &lucid_engine::LoadedModel) -> EmbeddingSummary {
        let config = &model.embedding;
        EmbeddingSummary {
            pooling: PoolingKind::of(config.pooling),
            normalized: config.normalize,
            max_tokens: lucid_engine::embed::max_tokens(model.model.as_ref(), config),
        }
    }
}

/// Which hidden states make a text's vector ([`lucid_engine::Pooling`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolingKind {
    /// The mean of every token's row, special tokens included: every token
    /// contributes.
    Mean,
    /// The first token's row: only it contributes.
    Cls,
    /// The last token's row: only it contributes.
    Last,
}

impl PoolingKind {
    /// Its name in the JSON: `mean`, `cls` or `last`.
    pub fn name(self) -> &'static str {
        match self {
            PoolingKind::Mean => "mean",
            PoolingKind::Cls => "cls",
            PoolingKind::Last => "last",
        }
    }

    pub fn of(pooling: lucid_engine::Pooling) -> PoolingKind {
        match pooling {
            lucid_engine::Pooling::Mean => PoolingKind::Mean,
            lucid_engine::Pooling::Cls => PoolingKind::Cls,
            lucid_engine::Pooling::LastToken => PoolingKind::Last,
        }
    }
}

/// One text of a semantic view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextEmbedding {
    /// The text as given.
    pub text: String,
    /// Its tokens as the model read them (special tokens included).
    pub tokens: Vec<Token>,
    /// Whether the text was cut to [`EmbeddingSummary::max_tokens`].
    pub truncated: bool,
    /// The length of the pooled vector before any normalization.
    pub norm: f32,
    /// The embedding as the model returns it (`lucid embed`'s vector), when
    /// asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Every other text, most similar first (lower index first on ties).
    pub neighbours: Vec<Neighbour>,
}

/// Another text and its similarity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub index: usize,
    pub similarity: f32,
}

/// What each token of two texts adds to their similarity.
///
/// With mean pooling, text `a`'s vector is `A = (1/n) Σ h_i` over its token
/// rows `h_i`, so `cos(a, b) = Σ_i (h_i · B̂) / (n |A|)` with `B̂ = B / |B|`:
/// token `i` contributes `(h_i · B̂) / (n |A|)`, and a text's contributions
/// sum to the similarity. With CLS or last-token pooling the one pooled
/// token contributes all of it and the others 0. A token can contribute
/// less than 0: it points away from the other text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairContributions {
    /// Indices of the two texts.
    pub a: usize,
    pub b: usize,
    /// `similarity[a][b]`.
    pub similarity: f32,
    /// One per token of text `a`, in order; they sum to `similarity`.
    pub a_contributions: Vec<f32>,
    /// One per token of text `b`, in order; they sum to `similarity`.
    pub b_contributions: Vec<f32>,
}

/// Time spent, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SemanticTimings {
    /// Tokenizing and the forward passes.
    pub forward_ms: f64,
    /// Pooling, similarities and contributions.
    pub analysis_ms: f64,
    pub total_ms: f64,
}

impl Semantic {
    /// Rounds similarities, contributions and norms to `decimals` places
    /// (see [`Trace::round`]); vectors are left as they are.
    pub fn round(&mut self, decimals: i32) {
        let r = rounder(decimals);
        self.similarity.iter_mut().flatten().for_each(&r);
        for t in &mut self.texts {
            r(&mut t.norm);
            t.neighbours.iter_mut().for_each(|n| r(&mut n.similarity));
        }
        for p in &mut self.pairs {
            r(&mut p.similarity);
            p.a_contributions.iter_mut().for_each(&r);
            p.b_contributions.iter_mut().for_each(&r);
        }
    }

    /// The pair `(a, b)` or `(b, a)`, if it was computed.
    pub fn pair(&self, a: usize, b: usize) -> Option<&PairContributions> {
        self.pairs
            .iter()
            .find(|p| (p.a, p.b) == (a, b) || (p.a, p.b) == (b, a))
    }
}

fn rounder(decimals: i32) -> impl Fn(&mut f32) {
    let scale = 10f64.powi(decimals);
    move |x: &mut f32| *x = ((*x as f64 * scale).round() / scale) as f32
}
