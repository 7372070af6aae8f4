//! Self-attention against a sequence's KV cache: causal for the decoders,
//! bidirectional for the encoders.
//!
//! The projections and position embeddings are the family's business; this
//! block appends the new keys and values to the cache and computes, for each
//! sequence, head and new token, `softmax(q·Kᵀ · scale) · V` over the
//! positions the token may see (all before it, or a sliding window; for an
//! encoder, every token of its sequence).

use std::sync::atomic::{AtomicUsize, Ordering};

use lucid_tensor::ThreadPool;
use lucid_tensor::attention::{GroupQuery, attend_group};
use lucid_tensor::ops;
use lucid_tensor::pool::SharedMut;

use crate::batch::{SeqInput, SeqSpan};
use crate::blocks::Linear;
use crate::hooks::{HookData, HookPoint, Hooks};
use crate::model::{Buffers, ForwardCtx};

/// Head counts and sizes of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    pub fn q_width(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_width(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// The attention computation of one layer.
#[derive(Clone, Debug)]
pub struct Attention {
    pub shape: AttentionShape,
    /// Multiplies `q·k` (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// Each token sees at most this many positions, itself included.
    pub window: Option<usize>,
    /// Scores become `cap * tanh(score / cap)` before the softmax.
    pub softcap: Option<f32>,
    /// Each token also sees the later tokens of its sequence (encoders such
    /// as BERT). Only meaningful when every sequence is read whole in one
    /// pass, which the encoders' forward pass checks.
    pub bidirectional: bool,
}

/// Per-thread score buffers, kept between calls.
#[derive(Debug, Default)]
pub struct AttnScratch {
    scores: Vec<Vec<f32>>,
    pattern: Vec<f32>,
}

impl Attention {
    /// Layer `layer`'s attention over the batch's projected `buf.q`, `buf.k`
    /// and `buf.v` (appending the keys and values to the caches), then the
    /// output projection `wo` into `buf.o`.
    pub fn attend(
        &self,
        layer: usize,
        wo: &Linear,
        ctx: &mut ForwardCtx,
        buf: &mut Buffers,
        seqs: &mut [SeqInput<'_>],
        hooks: &mut Hooks<'_>,
    ) {
        self.forward(
            &ctx.compute.pool,
            layer,
            &buf.q,
            &buf.k,
            &buf.v,
            seqs,
            &ctx.spans,
            &mut buf.attn,
            &mut buf.attn_scratch,
            hooks,
        );
        ctx.compute.linear(&buf.attn, wo, &mut buf.o);
    }

    /// Appends `k` and `v` (rows of the batch) to each sequence's cache, then
    /// writes the attention output of every new token into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        pool: &ThreadPool,
        layer: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        seqs: &mut [SeqInput<'_>],
        spans: &[SeqSpan],
        out: &mut [f32],
        scratch: &mut AttnScratch,
        hooks: &mut Hooks<'_>,
    ) {
        let s = self.shape;
        let (qw, kvw) = (s.q_width(), s.kv_width());
        for (seq, span) in seqs.iter_mut().zip(spans) {
            let cache = &mut seq.cache.layers[layer];
            cache
                .k
                .extend(&k[span.offset * kvw..(span.offset + span.len) * kvw]);
            cache
                .v
                .extend(&v[span.offset * kvw..(span.offset + span.len) * kvw]);
        }
        let n_threads = pool.n_threads();
        scratch.scores.resize_with(n_threads, Vec::new);
        let caches: &[SeqInput<'_>] = seqs;
        let group = (s.n_heads / s.n_kv_heads.max(1)).max(1);
        let gw = group * s.head_dim;

        // Work items: (sequence, key/value head, token), in that order; each
        // item is the group of query heads that share the key/value head.
        let total: usize = spans.iter().map(|sp| sp.len * s.n_kv_heads).sum();
        let out_ptr = SharedMut::new(out);
        let scores_ptr = SharedMut::new(&mut scratch.scores);
        let next = AtomicUsize::new(0);
        // Items are claimed a few at a time (one at a time when there are
        // few, as in decoding), so that a short item costs no more than its
        // claim.
        let claim = (total / (n_threads * 8)).clamp(1, 16);
        pool.run(&|thread| {
            // SAFETY: each thread uses its own score buffer.
            let scores = unsafe { &mut scores_ptr.slice(thread, 1)[0] };
            // The sequence of the last item and that sequence's first item:
            // a thread's claims only move forward, so does this.
            let (mut seq, mut seq_first) = (0, 0);
            loop {
                let first = next.fetch_add(claim, Ordering::Relaxed);
                if first >= total {
                    return;
                }
                for item in first..(first + claim).min(total) {
                    while item >= seq_first + spans[seq].len * s.n_kv_heads {
                        seq_first += spans[seq].len * s.n_kv_heads;
                        seq += 1;
                    }
                    let item = item - seq_first;
                    let span = spans[seq];
                    let (kv_head, t) = (item / span.len, item % span.len);
                    let pos = span.start_pos + t;
                    let row = span.offset + t;
                    let first_key = self.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    let last_key = self.last_key(span, pos);
                    let cache = &caches[seq].cache.layers[layer];
                    let query = GroupQuery {
                        q: &q[row * qw + kv_head * gw..][..gw],
                        k: cache.k.view(),
                        v: cache.v.view(),
                        stride: kvw,
                        offset: kv_head * s.head_dim,
                        head_dim: s.head_dim,
                        keys: first_key..=last_key,
                        scale: self.scale,
                        softcap: self.softcap,
                    };
                    // SAFETY: each (row, group) output slice is written by one item.
                    let o = unsafe { out_ptr.slice(row * qw + kv_head * gw, gw) };
                    attend_group(&query, scores, o);
                }
            }
        });

        if hooks.wants(HookPoint::AttnPattern(layer)) {
            self.report_patterns(layer, q, caches, spans, scratch, hooks);
        }
    }

    /// The last position the token at `pos` of `span` sees: itself, or with
    /// bidirectional attention the span's last token.
    fn last_key(&self, span: SeqSpan, pos: usize) -> usize {
        if self.bidirectional {
            span.start_pos + span.len - 1
        } else {
            pos
        }
    }

    /// Recomputes the attention probabilities for an observer: `[heads,
    /// queries, keys]` per sequence, zero where a token may not look. Only
    /// runs when somebody asked, so the common path keeps no patterns.
    fn report_patterns(
        &self,
        layer: usize,
        q: &[f32],
        caches: &[SeqInput<'_>],
        spans: &[SeqSpan],
        scratch: &mut AttnScratch,
        hooks: &mut Hooks<'_>,
    ) {
        let s = self.shape;
        let (qw, kvw) = (s.q_width(), s.kv_width());
        let group = (s.n_heads / s.n_kv_heads.max(1)).max(1);
        for (seq, span) in spans.iter().enumerate() {
            let n_keys = span.start_pos + span.len;
            let pattern = &mut scratch.pattern;
            pattern.clear();
            pattern.resize(s.n_heads * span.len * n_keys, 0.0);
            for head in 0..s.n_heads {
                for t in 0..span.len {
                    let pos = span.start_pos + t;
                    let first_key = self.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    let last_key = self.last_key(*span, pos);
                    let qv = &q[(span.offset + t) * qw + head * s.head_dim..][..s.head_dim];
                    let row = &mut pattern[(head * span.len + t) * n_keys..][..n_keys];
                    for j in first_key..=last_key {
                        let mut x = caches[seq].cache.layers[layer]
                            .k
                            .dot(j * kvw + (head / group) * s.head_dim, qv)
                            * self.scale;
                        if let Some(cap) = self.softcap {
                            x = cap * (x / cap).tanh();
                        }
                        row[j] = x;
                    }
                    ops::softmax(&mut row[first_key..=last_key]);
                }
            }
            hooks.tensor(
                HookPoint::AttnPattern(layer),
                HookData {
                    seq,
                    first_pos: span.start_pos,
                    shape: &[s.n_heads, span.len, n_keys],
                    data: pattern,
                },
            );
        }
    }
}
