//! The engine-side scheduler: many generations over one model at once, with
//! continuous batching, and nothing of HTTP.
//!
//! A [`Scheduler`] owns one thread per model, which owns the model's
//! [`ForwardCtx`](lucid_engine::ForwardCtx) (forward passes are not
//! reentrant). [`Scheduler::submit`] queues a [`Request`] (prompt tokens,
//! sampling, stop strings, log-probabilities, an optional JSON [`Grammar`])
//! and returns a [`Generation`]: a stream of [`Event`]s, one per token and a
//! final [`Finished`] with the stop reason, token counts and timings.
//! Dropping the generation cancels it within one decode step.
//!
//! What the scheduler guarantees:
//! - every active sequence's decode step runs in one forward pass, with
//!   prompts read in chunks between them ([`scheduler`] explains the loop);
//! - at most `max_sequences` run and `max_queue` wait; more are refused with
//!   [`SchedulerError::Busy`] and a retry delay;
//! - the KV cache (running sequences' worst case plus the prefix cache) stays
//!   within `kv_cache_bytes`;
//! - finished sequences' caches are kept in a small LRU and reused by later
//!   requests that share a prefix ([`prefix_cache`]);
//! - under a [`Grammar`], the output is valid JSON of the schema's shape
//!   ([`json`] lists the supported schema subset).
//!
//! It knows token ids and text, not OpenAI or Ollama: the server crate turns
//! requests and events into wire formats.

pub mod error;
pub mod json;
mod logprobs;
pub mod prefix_cache;
pub mod request;
pub mod scheduler;

pub use error::{SchedulerError, SchemaError};
pub use json::{Grammar, Json, JsonState, TokenTable};
pub use request::{
    CancelHandle, Event, Finished, Generation, Request, Timings, Token, TokenLogprobs, Usage,
};
pub use scheduler::{
    DRAFT_MAX_DECODERS, EmbedRequest, EmbedResult, EmbedTask, Scheduler, SchedulerConfig, Stats,
};
