//! Generation: prompt tokens in, a stream of tokens and text out.
//!
//! A [`Session`] runs one sequence: it keeps the KV cache between calls and
//! reuses the longest prefix the new prompt shares with what it has already
//! read, so a multi-turn chat only processes the new turn.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::batch::{LogitsFor, SeqInput};
use crate::draft::Drafting;
use crate::error::{EngineError, Result};
use crate::hooks::Hooks;
use crate::kv_cache::KvCache;
use crate::loaded::LoadedModel;
use crate::model::ForwardCtx;
use crate::sampler::SamplingParams;
use crate::sequence::{Sequence, StopReason};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// The most tokens to generate.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Stop before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Write control tokens (`<|im_end|>`, `<end_of_turn>`) into the text
    /// as their text; by default they are left out of it.
    pub show_special: bool,
    /// Guess tokens ahead and check them in one pass (speculative decoding);
    /// the output is the same either way.
    pub draft: Drafting,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            show_special: false,
            draft: Drafting::Off,
        }
    }
}

/// How long the two phases took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens run through the model (after prefix reuse).
    pub prefill_tokens: usize,
    pub prefill: Duration,
    /// Tokens generated after the first.
    pub decode_tokens: usize,
    pub decode: Duration,
    /// Tokens guessed by drafting and checked by the model.
    pub drafted: usize,
    /// Guesses the model agreed with (each one a forward pass saved).
    pub draft_accepted: usize,
}

impl Timings {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill)
    }

    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode)
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// One generated token, as reported while generating.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenEvent<'a> {
    pub id: u32,
    /// Text that is now final (held back while it might begin a stop string
    /// or an incomplete UTF-8 character).
    pub text: &'a str,
    /// The logits the token was chosen from (after the model, before sampling).
    pub logits: &'a [f32],
}

/// The result of a generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// The prompt as the model read it.
    pub prompt_tokens: Vec<u32>,
    /// The generated tokens, stop tokens included.
    pub tokens: Vec<u32>,
    /// The generated text, without any stop string or end-of-generation token.
    pub text: String,
    pub stop: StopReason,
    pub timings: Timings,
}

/// One sequence of one model: a cache, the tokens in it, and a forward context.
pub struct Session<'m> {
    model: &'m LoadedModel,
    ctx: ForwardCtx,
    cache: KvCache,
    /// The tokens the cache holds, in order.
    cached: Vec<u32>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cached", &self.cached.len())
            .finish()
    }
}

impl<'m> Session<'m> {
    /// A session on `n_threads` threads with a context of at most `context`
    /// tokens (the model's own when `None`).
    pub fn new(model: &'m LoadedModel, n_threads: usize, context: Option<usize>) -> Session<'m> {
        Session::with_cache(model, n_threads, model.model.new_cache(context))
    }

    /// A session over a cache made by the caller, for example one kept in a
    /// precision other than the model's default.
    pub fn with_cache(model: &'m LoadedModel, n_threads: usize, cache: KvCache) -> Session<'m> {
        Session {
            model,
            ctx: ForwardCtx::new(n_threads),
            cache,
            cached: Vec::new(),
        }
    }

    pub fn model(&self) -> &'m LoadedModel {
        self.model
    }

    /// The tokens the cache holds.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    pub fn context_limit(&self) -> usize {
        self.cache.limit()
    }

    /// Forgets everything read so far.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.cached.clear();
    }

    /// Makes the cache hold exactly `tokens`, reusing the common prefix, and
    /// leaves logits for the listed rows in the forward context. Returns how
    /// many tokens were run.
    pub fn feed(
        &mut self,
        tokens: &[u32],
        logits: LogitsFor,
        hooks: &mut Hooks<'_>,
    ) -> Result<usize> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let mut common = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // The last token must run to produce logits.
        if common == tokens.len() {
            common -= 1;
        }
        self.cache.truncate(common);
        self.cached.truncate(common);
        let new = &tokens[common..];
        let mut seqs = [SeqInput {
            tokens: new,
            cache: &mut self.cache,
            logits,
        }];
        self.model.model.forward(&mut self.ctx, &mut seqs, hooks)?;
        self.cached.extend_from_slice(new);
        Ok(new.len())
    }

    /// The forward context of the last call (logits, batch layout).
    pub fn ctx(&self) -> &ForwardCtx {
        &self.ctx
    }

    /// Generates after `prompt`, calling `on_token` for every token; it may
    /// return `ControlFlow::Break` to stop.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Generated> {
        let limit = self.cache.limit();
        let placeholder = self.model.model.new_cache(Some(0));
        let cache = std::mem::replace(&mut self.cache, placeholder);
        let cached = std::mem::take(&mut self.cached);
        let mut seq = match Sequence::new(self.model, cache, &cached, prompt.to_vec(), params) {
            Ok(seq) => seq,
            Err(e) => {
                // The cache is lost with the sequence: start afresh.
                self.cache = self.model.model.new_cache(Some(limit));
                return Err(e);
            }
        };
        let result = run(&mut seq, &mut self.ctx, params.draft, on_token);
        let generated = seq.generated().to_vec();
        let (cached, cache) = seq.into_cached();
        self.cache = cache;
        self.cached = cached;
        let (stop, text, timings) = result?;
        Ok(Generated {
            prompt_tokens: prompt.to_vec(),
            tokens: generated,
            text,
            stop,
            timings,
        })
    }
}

/// The loop of one sequence alone: read what is pending, choose, accept,
/// until the sequence ends. Returns how it ended, the text and the timings.
fn run(
    seq: &mut Sequence<'_>,
    ctx: &mut ForwardCtx,
    drafting: Drafting,
    mut on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<(StopReason, String, Timings)> {
    let model = seq.model();
    let mut timings = Timings {
        prefill_tokens: seq.pending(),
        ..Timings::default()
    };
    let start = Instant::now();
    let mut decode_start = start;
    let mut draft = Vec::new();
    let mut pace = drafting.pace();
    let stop = 'run: loop {
        draft.clear();
        if !seq.generated().is_empty()
            && let Drafting::PromptLookup(lookup) = drafting
        {
            let room = seq.draft_room().min(pace.next_allowance());
            lookup.draft(seq.tokens(), room, &mut draft);
        }
        if draft.is_empty() {
            let n = seq.pending();
            model
                .model
                .forward(ctx, &mut [seq.input(n)], &mut Hooks::none())?;
        } else {
            model
                .model
                .forward(ctx, &mut [seq.input_with_draft(&draft)], &mut Hooks::none())?;
            timings.drafted += draft.len();
        }
        if seq.generated().is_empty() {
            timings.prefill = start.elapsed();
            decode_start = Instant::now();
            if seq.max_new() == 0 {
                break StopReason::MaxTokens;
            }
        }
        // Without a draft, the one row of logits; with one, a row for the
        // pending token and one after each guess, taken while the guesses
        // hold.
        let rows = if draft.is_empty() {
            ctx.logit_rows().len().saturating_sub(1)..ctx.logit_rows().len()
        } else {
            0..draft.len() + 1
        };
        let kept_before = timings.draft_accepted;
        for row in rows {
            let logits = ctx.logits_row(row);
            let Some(id) = seq.sample(logits) else {
                break 'run StopReason::EndOfGeneration;
            };
            let accepted = seq.accept(id);
            let flow = on_token(TokenEvent {
                id,
                text: &accepted.text,
                logits,
            });
            if let Some(stop) = accepted.stop {
                break 'run stop;
            }
            if flow.is_break() {
                break 'run StopReason::Cancelled;
            }
            match draft.get(row) {
                Some(&guess) if guess == id => timings.draft_accepted += 1,
                _ => break,
            }
        }
        pace.record(draft.len(), timings.draft_accepted - kept_before);
        seq.settle();
    };
    seq.settle();
    let tail = seq.finish(stop);
    if !tail.is_empty() {
        let _ = on_token(TokenEvent {
            id: seq.generated().last().copied().unwrap_or(0),
            text: &tail,
            logits: &[],
        });
    }
    let n = seq.generated().len();
    timings.decode_tokens = n.saturating_sub(1);
    timings.decode = if n > 1 {
        decode_start.elapsed()
    } else {
        Duration::ZERO
    };
    Ok((stop, seq.text().to_string(), timings))
}
