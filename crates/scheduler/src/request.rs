//! What goes into the scheduler (a [`Request`]) and what comes out of it
//! (a stream of [`Event`]s through a [`Generation`]).
//!
//! These are engine-side types: token ids, durations and stop reasons, no
//! JSON. The server turns them into OpenAI or Ollama wire objects.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use lucid_engine::{SamplingParams, StopReason};
use tokio::sync::mpsc;

use crate::error::SchedulerError;
use crate::json::Grammar;

/// One generation to run.
#[derive(Clone, Debug)]
pub struct Request {
    /// The prompt's token ids, BOS and chat template already applied.
    pub prompt: Vec<u32>,
    /// The most tokens to generate; `None`: until the end of generation or
    /// the context (bounded by the KV-cache budget).
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    /// Stop before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// Report each token's log-probability and this many alternatives.
    pub logprobs: Option<usize>,
    /// Constrain the output to this grammar (JSON mode).
    pub grammar: Option<Arc<Grammar>>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
}

impl Request {
    /// A request with default sampling and no limits but the context.
    pub fn new(prompt: Vec<u32>) -> Request {
        Request {
            prompt,
            max_tokens: None,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            logprobs: None,
            grammar: None,
            ignore_eos: false,
        }
    }
}

/// The log-probability of a generated token and the most likely alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// Natural log of the chosen token's probability under the model.
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// One generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub id: u32,
    /// Text that is now final; may be empty (an incomplete UTF-8 character,
    /// a possible stop string, or an end-of-generation token).
    pub text: String,
    pub logprobs: Option<TokenLogprobs>,
    /// Time since the previous token of this generation, or since the
    /// request was submitted for the first (time to first token).
    pub latency: Duration,
}

/// Token counts of a finished generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV cache was reused from an earlier request.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
}

/// Where a finished generation's time went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Waiting in the queue.
    pub queued: Duration,
    /// From submission to the first token.
    pub time_to_first_token: Duration,
    /// From the first token to the last.
    pub decode: Duration,
}

/// The end of a generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub reason: StopReason,
    /// Text held back until the end (a partial stop string that never
    /// completed, an incomplete character); empty in most cases.
    pub tail: String,
    /// The stop string that ended it, when `reason` is a stop string.
    pub stop_string: Option<String>,
    pub usage: Usage,
    pub timings: Timings,
}

/// What a generation reports, in order: tokens, then exactly one
/// `Finished` or `Failed`.
#[derive(Debug)]
pub enum Event {
    Token(Token),
    Finished(Finished),
    Failed(SchedulerError),
}

/// Stops a generation from outside, like dropping its [`Generation`].
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(pub(crate) Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A running (or queued) generation: a stream of [`Event`]s. Dropping it
/// cancels the generation: the scheduler notices before its next decode step
/// and frees the sequence's cache.
#[derive(Debug)]
pub struct Generation {
    pub(crate) id: u64,
    pub(crate) rx: mpsc::UnboundedReceiver<Event>,
    pub(crate) cancel: CancelHandle,
    pub(crate) prompt_tokens: usize,
}

impl Generation {
    /// The scheduler's id for this generation, for logs.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// A handle that cancels this generation.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Stops the generation; a `Finished` with [`StopReason::Cancelled`]
    /// follows unless it had already ended.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The next event, waiting for it.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread (not for async code).
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// Blocks until the end and returns the tokens and how it ended.
    pub fn blocking_collect(mut self) -> Result<(Vec<Token>, Finished), SchedulerError> {
        let mut tokens = Vec::new();
        while let Some(e) = self.blocking_next() {
            match e {
                Event::Token(t) => tokens.push(t),
                Event::Finished(f) => return Ok((tokens, f)),
                Event::Failed(e) => return Err(e),
            }
        }
        Err(SchedulerError::Stopped)
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl futures_core::Stream for Generation {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}
