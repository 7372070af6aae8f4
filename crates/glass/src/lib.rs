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
//! This crate knows nothing of terminals or HTTP: the CLI's `lucid explain`
//! and the `lucid-web` routes render and serve its [`Trace`], whose serde
//! form ([`trace`]) is the one wire format of the glass box. The recorder
//! asks only for the hook points a request needs, so a run that wants no
//! attention and no lens costs what a plain forward pass costs.

pub mod analysis;
pub mod error;
pub mod explain;
pub mod options;
pub mod recorder;
pub mod trace;

pub use error::{GlassError, Result};
pub use explain::{Event, explain, explain_with, prompt_tokens, token_text};
pub use options::{ExplainOptions, Limits};
pub use recorder::Recorder;
pub use trace::{
    Attended, AttentionMap, Chosen, Lens, LensColumn, ModelSummary, Step, StopReason, Timings,
    Token, TokenProb, Trace,
};
