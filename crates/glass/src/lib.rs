//! The glass box: what a transformer does with a prompt, recorded from the
//! very forward pass that answers it.
//!
//! [`explain()`] runs a model over a prompt with a [`Recorder`] listening at the
//! engine's hook points, and returns a [`Trace`]: the prompt's tokens, and
//! for every predicted position the most probable next tokens, the chosen
//! one with its probability and rank, the entropy, the positions attended to
//! most; optionally the attention maps of chosen layers and heads and the
//! logit lens (every layer's residual stream through the final norm and the
//! unembedding, [`lucid_engine::Model::unembed`]).
//!
//! [`semantic()`] is the glass box of an embedding model: several texts, the
//! cosine similarity of every pair, each text's nearest neighbours, and
//! for chosen pairs what each token adds to their similarity (a
//! [`Semantic`] view, from the final hidden states of the same forward pass
//! that [`lucid_engine::LoadedModel::embed`] runs).
//!
//! This crate knows nothing of terminals or HTTP: the CLI's `lucid explain`
//! and the `lucid-web` routes render and serve its [`Trace`] and
//! [`Semantic`], whose serde form ([`trace`]) is the one wire format of the
//! glass box. The recorder
//! asks only for the hook points a request needs, so a run that wants no
//! attention and no lens costs what a plain forward pass costs.

pub mod analysis;
pub mod error;
pub mod explain;
pub mod options;
pub mod recorder;
pub mod semantic;
pub mod trace;

pub use error::{GlassError, Result};
pub use explain::{Event, check_generator, explain, explain_with, prompt_tokens, token_text};
pub use options::{ExplainOptions, Limits, Pairs, SemanticOptions};
pub use recorder::Recorder;
pub use semantic::semantic;
pub use trace::{
    Attended, AttentionMap, Chosen, EmbeddingSummary, Lens, LensColumn, ModelKind, ModelSummary,
    Neighbour, PairContributions, PoolingKind, Semantic, SemanticTimings, Step, StopReason,
    TextEmbedding, Timings, Token, TokenProb, Trace,
};
