//! The scheduler's errors: why a request was not accepted, or why a
//! generation stopped early. Each carries what a front end needs to answer
//! well (a retry delay, the limit that was exceeded, the schema path).

use std::time::Duration;

/// A JSON Schema that constrained decoding cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema at {path}: {message}")]
pub struct SchemaError {
    /// Where in the schema, as a JSON pointer.
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The queue is full; try again after `retry_after`.
    #[error("the server is busy: {queued} requests are waiting for this model; retry in {}s", retry_after.as_secs())]
    Busy {
        retry_after: Duration,
        queued: usize,
    },

    /// The prompt does not leave room for even one generated token.
    #[error(
        "the prompt is {prompt_tokens} tokens, but this model's context is {limit} tokens (including at least one generated token)"
    )]
    PromptTooLong { prompt_tokens: usize, limit: usize },

    /// An input to embed is longer than the model reads.
    #[error("an input is {tokens} tokens, but this model reads at most {limit}")]
    InputTooLong { tokens: usize, limit: usize },

    /// The model cannot do what was asked (generate with an encoder, rerank
    /// without a classification head).
    #[error("{0}")]
    Unsupported(String),

    /// The prompt has no tokens.
    #[error("the prompt is empty")]
    EmptyPrompt,

    /// The request needs more KV cache than the whole budget.
    #[error(
        "the request needs {needed_mib} MiB of KV cache ({positions} positions), more than the server's limit of {limit_mib} MiB; lower max_tokens or shorten the prompt"
    )]
    TooLarge {
        needed_mib: usize,
        positions: usize,
        limit_mib: usize,
    },

    /// A sampling parameter is out of range.
    #[error("{0}")]
    InvalidParams(String),

    /// The schema for constrained decoding cannot be enforced.
    #[error(transparent)]
    Schema(#[from] SchemaError),

    /// The forward pass failed (or panicked) for this generation's batch.
    #[error("the engine failed: {0}")]
    Engine(String),

    /// The scheduler stopped (the server is shutting down).
    #[error("the model's scheduler has stopped")]
    Stopped,
}
