//! The local inference engine: model families, the forward pass, the KV cache,
//! sampling and generation. It knows nothing of HTTP or of where files came from.
//!
//! Layering: `lucid-tensor` does arithmetic; this crate turns weights into a
//! forward pass ([`arch`], built from [`blocks`]), runs it over batches of
//! sequences ([`batch`], [`kv_cache`]), lets observers look inside
//! ([`hooks`]), and turns logits into text ([`sampler`], [`generate`]).

pub mod arch;
pub mod batch;
pub mod blocks;
pub mod chat;
pub mod draft;
pub mod embed;
pub mod error;
pub mod generate;
pub mod hf;
pub mod hooks;
pub mod kv_cache;
pub mod loaded;
pub mod memory;
pub mod model;
pub mod perplexity;
pub mod prompt;
pub mod quantize;
pub mod sampler;
pub mod sequence;
pub mod stop;
pub mod tools;
pub mod weights;

pub use batch::{LogitRow, LogitsFor, SeqInput};
pub use chat::{ChatMessage, ChatTemplate, FunctionCall, Role, ToolCall};
pub use draft::{DraftPace, Drafting, PromptLookup};
pub use embed::{Embedding, EmbeddingConfig, Pooling};
pub use error::{EngineError, Result};
pub use generate::{GenerateParams, Generated, Session, Timings, TokenEvent};
pub use hf::HfCheckpoint;
pub use hooks::{HookData, HookPoint, Hooks, Observer};
pub use kv_cache::{KvCache, KvPrecision};
pub use loaded::{LoadOptions, LoadedModel, ModelMeta, Score};
pub use model::{ForwardCtx, Model, ModelInfo, ModelRole};
pub use prompt::ModelDefaults;
pub use sampler::{Sampler, SamplingParams};
pub use sequence::{Accepted, Sequence, StopReason, TokenConstraint};
pub use stop::StopMatcher;
