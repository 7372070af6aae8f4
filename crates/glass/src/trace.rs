//! The trace of one explained run, and its JSON form.
//!
//! These types are the glass box's wire format: the CLI's `--json`, the
//! HTTP endpoint and the web page all read and write exactly these (the
//! engine's own types are not serializable on purpose). Other tools depend on
//! the key names `tokens`, `steps`, `top`, `chosen`, `id`, `text` and `prob`;
//! renaming a field is a breaking change.
//!
//! Probabilities are the model's own distribution, the softmax of the raw
//! logits at temperature 1, whatever sampling chose the token. Entropies are
//! in nats. Positions count tokens from 0, prompt first.

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
}

impl ModelSummary {
    /// The summary of a model's shape.
    pub fn of(info: &lucid_engine::ModelInfo) -> ModelSummary {
        ModelSummary {
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

fn rounder(decimals: i32) -> impl Fn(&mut f32) {
    let scale = 10f64.powi(decimals);
    move |x: &mut f32| *x = ((*x as f64 * scale).round() / scale) as f32
}
