//! One sequence being generated: the per-token loop, written once.
//!
//! A [`Sequence`] holds what a generation needs between forward passes: its
//! KV cache, its tokens (prompt and generated), the sampler, the streaming
//! UTF-8 decoder, the stop-string matcher, the limits and an optional
//! [`TokenConstraint`] (the server's JSON grammar). It does not run the model:
//! whoever drives it puts [`Sequence::input`] in a forward pass, alone
//! ([`Session`](crate::Session), the glass box) or batched with other
//! sequences (the scheduler), then hands the logits to [`Sequence::sample`]
//! and the chosen token to [`Sequence::accept`], which says what text is now
//! final and whether the sequence has ended. Every entry point generates
//! through these two calls, so end-of-generation tokens, stop strings,
//! UTF-8 boundaries and limits behave the same in the CLI, the server and
//! the glass box.

use lucid_tokenizer::StreamDecoder;

use crate::batch::{LogitsFor, SeqInput};
use crate::error::{EngineError, Result};
use crate::generate::GenerateParams;
use crate::kv_cache::KvCache;
use crate::loaded::LoadedModel;
use crate::sampler::Sampler;
use crate::stop::StopMatcher;

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (or a token constraint
    /// was complete, or allowed no token at all).
    EndOfGeneration,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// The caller asked to stop.
    Cancelled,
}

/// A rule on which tokens may come next, such as a JSON grammar.
pub trait TokenConstraint {
    /// Whether `id` may come next.
    fn allows(&mut self, id: u32) -> bool;
    /// Records that `id` came.
    fn advance(&mut self, id: u32);
    /// Whether the output is complete: no token may follow.
    fn is_complete(&self) -> bool;
}

/// How many times a refused token is masked and sampling retried before
/// the whole vocabulary is checked against the constraint.
const CONSTRAINT_RETRIES: usize = 16;

/// What accepting a token produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Text that is now final; empty while it might begin a stop string or
    /// an incomplete UTF-8 character, and for an end-of-generation token.
    pub text: String,
    /// Why the sequence ends here, if it does.
    pub stop: Option<StopReason>,
}

/// One sequence of one model being generated.
pub struct Sequence<'m> {
    model: &'m LoadedModel,
    cache: KvCache,
    /// Prompt and generated tokens; the cache holds the first `cache.len()`.
    tokens: Vec<u32>,
    prompt_len: usize,
    max_new: usize,
    ignore_eos: bool,
    sampler: Sampler,
    decoder: StreamDecoder<'m>,
    stops: StopMatcher,
    constraint: Option<Box<dyn TokenConstraint + 'm>>,
    /// A copy of the logits for constrained sampling.
    masked: Vec<f32>,
    /// The pending token and the guesses after it, while they are checked.
    drafted: Vec<u32>,
}

impl std::fmt::Debug for Sequence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence")
            .field("prompt_len", &self.prompt_len)
            .field("generated", &self.generated().len())
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl<'m> Sequence<'m> {
    /// A sequence that generates after `prompt` with `params`, over `cache`,
    /// which holds the KV entries of the tokens `cached`: the part of them
    /// shared with the prompt is kept (all but the prompt's last token, which
    /// must run to give the first logits), the rest is dropped.
    pub fn new(
        model: &'m LoadedModel,
        mut cache: KvCache,
        cached: &[u32],
        prompt: Vec<u32>,
        params: &GenerateParams,
    ) -> Result<Sequence<'m>> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if prompt.len() > cache.limit() {
            return Err(EngineError::ContextFull {
                used: 0,
                adding: prompt.len(),
                limit: cache.limit(),
            });
        }
        let common = cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(cache.len())
            .min(prompt.len() - 1);
        cache.truncate(common);
        Ok(Sequence {
            model,
            cache,
            prompt_len: prompt.len(),
            tokens: prompt,
            max_new: params.max_tokens,
            ignore_eos: params.ignore_eos,
            sampler: Sampler::new(params.sampling.clone())?,
            decoder: StreamDecoder::new(&model.tokenizer, !params.show_special),
            stops: StopMatcher::new(params.stop.iter().cloned()),
            constraint: None,
            masked: Vec::new(),
            drafted: Vec::new(),
        })
    }

    /// Only tokens that `constraint` allows will be sampled.
    pub fn with_constraint(mut self, constraint: Box<dyn TokenConstraint + 'm>) -> Sequence<'m> {
        self.constraint = Some(constraint);
        self
    }

    pub fn model(&self) -> &'m LoadedModel {
        self.model
    }

    /// Prompt and generated tokens.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// The tokens generated so far, end-of-generation tokens included.
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// The most tokens this sequence may generate.
    pub fn max_new(&self) -> usize {
        self.max_new
    }

    /// The text generated so far (what has been released and what is held
    /// back), cut before a stop string if one was found.
    pub fn text(&self) -> &str {
        self.stops.text()
    }

    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Tokens the model has yet to read.
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.cache.len()
    }

    /// The next `n` tokens the model has yet to read (at most all of them)
    /// as one sequence of a batch; it asks for logits only when they reach
    /// the last token, whose logits choose the next one.
    pub fn input(&mut self, n: usize) -> SeqInput<'_> {
        let start = self.cache.len();
        let end = start + n.min(self.pending());
        SeqInput {
            tokens: &self.tokens[start..end],
            logits: if end == self.tokens.len() {
                LogitsFor::Last
            } else {
                LogitsFor::None
            },
            cache: &mut self.cache,
        }
    }

    /// The one token the model has yet to read followed by `draft`, guesses
    /// at the tokens after it, as one sequence of a batch with logits for
    /// every row: row `i` chooses the token after the guesses `draft[..i]`
    /// (see [`crate::draft`]). Hand the rows to [`Sequence::sample`] and
    /// [`Sequence::accept`] in order while each accepted token equals the
    /// guess it checks, then call [`Sequence::settle`].
    pub fn input_with_draft(&mut self, draft: &[u32]) -> SeqInput<'_> {
        let start = self.cache.len();
        self.drafted.clear();
        self.drafted.extend_from_slice(&self.tokens[start..]);
        self.drafted.extend_from_slice(draft);
        SeqInput {
            tokens: &self.drafted,
            logits: LogitsFor::All,
            cache: &mut self.cache,
        }
    }

    /// The most guesses the next pass may check: room for them and the
    /// token after the last of them within the token limit and the context.
    pub fn draft_room(&self) -> usize {
        (self.max_new.saturating_sub(self.generated().len()))
            .min(self.cache.limit().saturating_sub(self.tokens.len()))
            .saturating_sub(1)
    }

    /// Forgets what the cache holds beyond the accepted tokens (the guesses
    /// that were wrong) after a pass over [`Sequence::input_with_draft`].
    pub fn settle(&mut self) {
        let keep = self.cache.len().min(self.tokens.len().saturating_sub(1));
        self.cache.truncate(keep);
    }

    /// Replaces the cache with `cache`, emptied: the model reads every
    /// token again (the scheduler frees a preempted sequence's memory so).
    pub fn restart(&mut self, mut cache: KvCache) {
        cache.clear();
        self.cache = cache;
    }

    /// The next token from the logits of the last token: sampled as the
    /// parameters say, and under a constraint from the tokens it allows.
    /// `None` when the constraint allows no token of the vocabulary.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        let Some(constraint) = self.constraint.as_mut() else {
            return Some(self.sampler.sample(logits, &self.tokens));
        };
        self.masked.clear();
        self.masked.extend_from_slice(logits);
        for _ in 0..CONSTRAINT_RETRIES {
            let id = self.sampler.sample(&self.masked, &self.tokens);
            if constraint.allows(id) {
                return Some(id);
            }
            if let Some(l) = self.masked.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        // Many refusals: mask the whole vocabulary once.
        let mut any = false;
        for (id, l) in self.masked.iter_mut().enumerate() {
            if *l == f32::NEG_INFINITY {
                continue;
            }
            if constraint.allows(id as u32) {
                any = true;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        if !any {
            return None;
        }
        let id = self.sampler.sample(&self.masked, &self.tokens);
        constraint.allows(id).then_some(id)
    }

    /// Appends `id` to the sequence and says what text it makes final and
    /// whether the sequence ends: at an end-of-generation token (unless
    /// ignored), a stop string, a complete constrained output, the token
    /// limit or a full context.
    pub fn accept(&mut self, id: u32) -> Accepted {
        self.tokens.push(id);
        let eog = !self.ignore_eos && self.model.tokenizer.is_end_of_generation(id);
        let piece = if eog {
            self.decoder.finish()
        } else {
            self.decoder.push(id)
        };
        let (text, hit) = self.stops.push(&piece);
        let stop = if hit {
            Some(StopReason::StopString)
        } else if eog
            || self.constraint.as_mut().is_some_and(|c| {
                c.advance(id);
                c.is_complete()
            })
        {
            Some(StopReason::EndOfGeneration)
        } else if self.generated().len() >= self.max_new {
            Some(StopReason::MaxTokens)
        } else if self.tokens.len() > self.cache.limit() {
            Some(StopReason::ContextFull)
        } else {
            None
        };
        Accepted { text, stop }
    }

    /// Ends the sequence for `reason` and returns the text still held back
    /// (a stop string's beginning that never completed, an incomplete
    /// character as U+FFFD); empty when a stop string or end-of-generation
    /// token ended it, since what is held back then is not output.
    pub fn finish(&mut self, reason: StopReason) -> String {
        if matches!(reason, StopReason::StopString | StopReason::EndOfGeneration) {
            return String::new();
        }
        let rest = self.decoder.finish();
        let (mut ready, _) = self.stops.push(&rest);
        ready.push_str(&self.stops.flush());
        ready
    }

    /// The tokens the cache holds and the cache, for reuse by a later
    /// sequence that shares a prefix.
    pub fn into_cached(self) -> (Vec<u32>, KvCache) {
        let mut tokens = self.tokens;
        tokens.truncate(self.cache.len());
        (tokens, self.cache)
    }

    /// The stop string that ended the sequence, if one did.
    pub fn stop_string(&self) -> Option<&str> {
        self.stops.matched()
    }

    /// The generated text, once finished.
    pub fn into_text(self) -> String {
        self.stops.into_text()
    }
}
