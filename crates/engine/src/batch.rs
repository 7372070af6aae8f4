//! A batch: the tokens of several sequences, each with its own cache, run
//! through the model in one forward pass.
//!
//! The matrix products see all tokens of all sequences as one matrix, which
//! is what makes batching pay; attention runs per sequence against its own
//! cache. A decode step of many requests is a batch of sequences with one
//! token each; a prompt is a batch of one sequence with many.

use crate::kv_cache::KvCache;

/// Which positions of a sequence need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsFor {
    /// Only the last token (generation).
    Last,
    /// Every token (scoring: perplexity, teacher forcing, the glass box).
    All,
    /// None (filling the cache with a prompt prefix).
    None,
}

/// One sequence's part of a batch.
#[derive(Debug)]
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub logits: LogitsFor,
}

/// Where a sequence's tokens sit in the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqSpan {
    /// Row of the batch where this sequence's tokens start.
    pub offset: usize,
    /// Number of tokens.
    pub len: usize,
    /// Position of the first token in the sequence (its cache length before).
    pub start_pos: usize,
}

/// A row of the output logits: which sequence and position it predicts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogitRow {
    pub seq: usize,
    /// Position of the token whose next-token distribution this row is.
    pub pos: usize,
    /// Row of the batch it came from.
    pub batch_row: usize,
}
