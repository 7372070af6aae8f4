//! The JSON of `/v1/explain`: the request, and the envelopes around
//! `lucid-glass`'s [`Trace`] (whose own serde form is the trace's one wire
//! format; this module only adds what HTTP needs around it).
//!
//! # `POST /v1/explain`
//!
//! ```json
//! {
//!   "model": "smollm2",
//!   "prompt": "The capital of France is",   // or "tokens": [504, 3575, …]
//!   "chat": false,          // wrap the prompt in the chat template
//!   "max_tokens": 1,        // steps (predicted tokens)
//!   "top_k": 10,            // candidates per step
//!   "attention": {"layers": [3] | "all", "heads": [0, 1] | "all"},
//!   "attended": 5,          // most-attended positions per step
//!   "lens": false,          // the logit lens
//!   "lens_top_k": 3,        // tokens per lens cell
//!   "temperature": 0,       // 0: greedy
//!   "seed": null,
//!   "precision": 4,         // decimals of probabilities and weights (null: all)
//!   "stream": false
//! }
//! ```
//!
//! Without `stream`, the answer is the trace with the model's name:
//! `{"model_name": "smollm2", "model": {…}, "tokens": […], "steps": […], …}`.
//!
//! With `"stream": true`, it is NDJSON (`application/x-ndjson`), one object
//! per line, each with a `type`:
//! - `{"type":"start","model_name":…,"model":{…},"tokens":[…]}` once the
//!   prompt is tokenized;
//! - `{"type":"step","index":0,"step":{…}}` after each forward pass;
//! - with `lens`, `{"type":"lens","columns":[…]}` after each step: the lens
//!   columns of the positions that step's pass read (computing them takes
//!   longer than the pass, so the step comes first);
//! - `{"type":"done","trace":{…}}` with the whole trace (attention maps
//!   included), or `{"type":"error","error":{"message":…}}`; either is last.
//!
//! An embedding model (an encoder, `"role": "encoder"` in the model list)
//! predicts no tokens: `/v1/explain` answers it with a 400 that points to
//! the semantic view.
//!
//! # `POST /v1/explain/semantic`
//!
//! The semantic view of several texts through any model's embedding (an
//! encoder's, or a generator's as `/v1/embeddings` would pool it):
//!
//! ```json
//! {
//!   "model": "all-minilm",
//!   "texts": ["A man is eating food.", "A man is eating bread.", "The movie was great."],
//!   "pairs": "nearest",     // or "all", or [[0, 2], [1, 2]]: token contributions of these pairs
//!   "vectors": false,       // include each text's embedding
//!   "precision": 4          // decimals of similarities, contributions and norms (null: all)
//! }
//! ```
//!
//! From 2 to 32 texts, 16,384 tokens in all (each text cut to the model's
//! embedding length first). The answer is `lucid-glass`'s
//! [`Semantic`] with the model's name, never streamed:
//!
//! ```json
//! {
//!   "model_name": "all-minilm",
//!   "model": {"architecture": "bert", "role": "encoder", "n_layers": 6, …},
//!   "embedding": {"pooling": "mean", "normalized": true, "max_tokens": 256},
//!   "texts": [{"text": "A man is eating food.", "tokens": [{"id": 101, "text": "[CLS]"}, …],
//!              "truncated": false, "norm": 5.2174,
//!              "neighbours": [{"index": 1, "similarity": 0.7553}, …]}, …],
//!   "similarity": [[1.0, 0.7553, 0.0291], …],
//!   "pairs": [{"a": 0, "b": 1, "similarity": 0.7553,
//!              "a_contributions": [0.0712, …], "b_contributions": [0.0533, …]}],
//!   "timings": {"forward_ms": 9.1, "analysis_ms": 0.2, "total_ms": 9.6}
//! }
//! ```
//!
//! `similarity[i][j]` is the cosine of texts `i` and `j`; `neighbours` lists
//! every other text, most similar first; a pair's `a_contributions` has one
//! number per token of text `a` (the same for `b`), what that token adds to
//! the similarity: they sum to it (before rounding). The maths is in
//! `lucid_glass::PairContributions`.

use lucid_glass::{
    EmbeddingSummary, LensColumn, ModelSummary, Pairs, Semantic, Step, Token, Trace,
};
use serde::{Deserialize, Serialize};

/// A request to explain a prompt.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: Option<String>,
    /// Token ids to read instead of a prompt (the page uses this to fetch
    /// another layer's attention for exactly the positions it shows).
    #[serde(default)]
    pub tokens: Option<Vec<u32>>,
    #[serde(default)]
    pub chat: bool,
    #[serde(default = "one")]
    pub max_tokens: usize,
    #[serde(default = "ten")]
    pub top_k: usize,
    #[serde(default)]
    pub attention: Option<AttentionRequest>,
    #[serde(default = "five")]
    pub attended: usize,
    #[serde(default)]
    pub lens: bool,
    #[serde(default = "three")]
    pub lens_top_k: usize,
    #[serde(default)]
    pub temperature: f32,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default = "four")]
    pub precision: Option<u32>,
    #[serde(default)]
    pub stream: bool,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn five() -> usize {
    5
}
fn ten() -> usize {
    10
}
fn four() -> Option<u32> {
    Some(4)
}

/// Which attention maps to return.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionRequest {
    pub layers: Select,
    #[serde(default = "Select::all")]
    pub heads: Select,
}

/// A list of indices, or `"all"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Select {
    List(Vec<usize>),
    Word(String),
}

impl Select {
    fn all() -> Select {
        Select::Word("all".into())
    }

    /// The indices selected out of `0..n`; `None` for a word other than `all`.
    pub fn resolve(&self, n: usize) -> Option<Vec<usize>> {
        match self {
            Select::List(v) => Some(v.clone()),
            Select::Word(w) if w == "all" => Some((0..n).collect()),
            Select::Word(_) => None,
        }
    }
}

/// A request for the semantic view of several texts.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticRequest {
    pub model: String,
    pub texts: Vec<String>,
    #[serde(default = "PairsRequest::nearest")]
    pub pairs: PairsRequest,
    #[serde(default)]
    pub vectors: bool,
    #[serde(default = "four")]
    pub precision: Option<u32>,
}

/// `"nearest"`, `"all"`, or a list of `[a, b]` pairs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PairsRequest {
    List(Vec<[usize; 2]>),
    Word(String),
}

impl PairsRequest {
    fn nearest() -> PairsRequest {
        PairsRequest::Word("nearest".into())
    }

    /// The pairs asked for; `None` for a word other than `nearest` or `all`.
    pub fn resolve(&self) -> Option<Pairs> {
        match self {
            PairsRequest::List(v) => Some(Pairs::These(v.iter().map(|&[a, b]| (a, b)).collect())),
            PairsRequest::Word(w) if w == "nearest" => Some(Pairs::Nearest),
            PairsRequest::Word(w) if w == "all" => Some(Pairs::All),
            PairsRequest::Word(_) => None,
        }
    }
}

/// The answer of `/v1/explain/semantic`.
#[derive(Serialize)]
pub struct SemanticResponse<'a> {
    pub model_name: &'a str,
    #[serde(flatten)]
    pub semantic: &'a Semantic,
}

/// The answer without streaming.
#[derive(Serialize)]
pub struct ExplainResponse<'a> {
    pub model_name: &'a str,
    #[serde(flatten)]
    pub trace: &'a Trace,
}

/// One line of a streamed answer.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    Start {
        model_name: &'a str,
        model: ModelSummary,
        tokens: Vec<Token>,
    },
    Step {
        index: usize,
        step: &'a Step,
    },
    Lens {
        columns: &'a [LensColumn],
    },
    Done {
        trace: &'a Trace,
    },
    Error {
        error: ErrorBody,
    },
}

/// The body of an error, shaped like OpenAI's so clients of the main server
/// read both alike: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// `GET /v1/explain/models`: the models that can be explained, in the shape
/// of OpenAI's model list, each with its shape.
#[derive(Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelEntry>,
}

#[derive(Serialize, Deserialize)]
pub struct ModelEntry {
    pub id: String,
    pub object: String,
    pub owned_by: String,
    /// The model's shape; `role` says which view it has (`generator`: the
    /// trace of `/v1/explain`; `encoder`: only the semantic view).
    pub explain: ModelSummary,
    /// How the model embeds a text (for `/v1/explain/semantic`).
    pub embedding: EmbeddingSummary,
}
