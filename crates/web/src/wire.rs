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

use lucid_glass::{LensColumn, ModelSummary, Step, Token, Trace};
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
    pub explain: ModelSummary,
}
