//! The interface every model family implements, and the per-call state of a
//! forward pass.

use lucid_tensor::ops;

use crate::batch::{LogitRow, LogitsFor, SeqInput, SeqSpan};
use crate::blocks::attention::AttnScratch;
use crate::blocks::linear::{Compute, Linear};
use crate::blocks::norm::Norm;
use crate::error::{EngineError, Result};
use crate::hooks::{HookPoint, Hooks};
use crate::kv_cache::{KvCache, KvPrecision};
use crate::weights::Weight;

/// A model's shape, in the numbers people compare models by.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The registry name of the family (`llama`, `gemma3`, …).
    pub architecture: &'static str,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub vocab_size: usize,
    /// The longest sequence the model was trained for.
    pub context_length: usize,
    /// Width of one layer's key row and value row in the cache.
    pub kv_width: usize,
    /// How the KV cache stores keys and values.
    pub kv_precision: KvPrecision,
}

/// What a model's forward pass yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRole {
    /// A decoder: next-token logits, each token seeing those before it (and
    /// its hidden states, for embedding).
    Generator,
    /// An encoder: hidden states only, each sequence read whole with every
    /// token seeing all of it.
    Encoder,
}

/// A loaded model of some family: its weights and its forward pass.
pub trait Model: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// Whether the model generates or only encodes.
    fn role(&self) -> ModelRole {
        ModelRole::Generator
    }

    /// The classification head of a cross-encoder or sequence classifier
    /// applied to pooled rows `[n, d_model]`, leaving `[n, labels]` scores
    /// (logits, before any activation) in `out`.
    fn classify(&self, ctx: &mut ForwardCtx, pooled: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let _ = (ctx, pooled, out);
        Err(EngineError::NotAClassifier {
            arch: self.info().architecture,
        })
    }

    /// The number of outputs of the classification head, if the model has one.
    fn n_labels(&self) -> Option<usize> {
        None
    }

    /// Runs the tokens of every sequence through the model, appending to each
    /// sequence's cache, and leaves the requested logits in `ctx`. On error no
    /// cache has changed.
    fn forward(
        &self,
        ctx: &mut ForwardCtx,
        seqs: &mut [SeqInput<'_>],
        hooks: &mut Hooks<'_>,
    ) -> Result<()>;

    /// The final norm and the unembedding (and any final softcap) applied to
    /// arbitrary residual-stream rows `[n, d_model]`, leaving `[n, vocab]`
    /// logits in `out`: what the model would predict had the stream stopped
    /// there (the logit lens). Applied to the last block's output it gives
    /// the model's own logits.
    fn unembed(&self, ctx: &mut ForwardCtx, resid_rows: &[f32], out: &mut Vec<f32>) -> Result<()>;

    /// An empty cache for one sequence of up to `limit` positions (the
    /// model's context length when `None` or larger).
    fn new_cache(&self, limit: Option<usize>) -> KvCache {
        let info = self.info();
        let limit = limit.map_or(info.context_length, |l| l.min(info.context_length));
        KvCache::new(
            info.n_layers,
            info.kv_width,
            info.kv_width,
            limit,
            info.kv_precision,
        )
    }
}

/// Buffers that the families' forward passes share, kept between calls so
/// the decode loop does not allocate.
#[derive(Debug, Default)]
pub struct Buffers {
    pub x: Vec<f32>,
    pub h: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub attn: Vec<f32>,
    pub o: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub tmp: Vec<f32>,
    pub attn_scratch: AttnScratch,
    pub moe: crate::blocks::MoeBuffers,
}

impl Buffers {
    /// The query, key and value projections of the normed rows `h` into
    /// `q`, `k` and `v`, in one parallel region.
    pub fn project_qkv(&mut self, compute: &mut Compute, [wq, wk, wv]: [&Linear; 3]) {
        compute.linears(
            &self.h,
            &mut [(wq, &mut self.q), (wk, &mut self.k), (wv, &mut self.v)],
        );
    }

    /// Sizes the buffers every family uses for `n` tokens.
    pub fn size(&mut self, n: usize, d_model: usize, q_width: usize, kv_width: usize) {
        self.x.resize(n * d_model, 0.0);
        self.h.resize(n * d_model, 0.0);
        self.o.resize(n * d_model, 0.0);
        self.q.resize(n * q_width, 0.0);
        self.attn.resize(n * q_width, 0.0);
        self.k.resize(n * kv_width, 0.0);
        self.v.resize(n * kv_width, 0.0);
    }
}

/// What a forward pass needs besides the model: threads, buffers, the
/// layout of the batch, and where the logits land.
#[derive(Debug)]
pub struct ForwardCtx {
    pub compute: Compute,
    pub buf: Buffers,
    pub tokens: Vec<u32>,
    pub spans: Vec<SeqSpan>,
    pub positions: Vec<usize>,
    /// Each token's segment (0 for the first text of a pair, 1 for the
    /// second) for encoders that embed them; empty means all 0. Set by the
    /// caller before the pass, in batch order.
    pub token_types: Vec<u32>,
    logit_rows: Vec<LogitRow>,
    logits: Vec<f32>,
    final_rows: Vec<f32>,
    vocab: usize,
    /// Whether passes keep every token's final hidden state in `hidden`.
    keep_hidden: bool,
    hidden: Vec<f32>,
}

impl ForwardCtx {
    pub fn new(n_threads: usize) -> ForwardCtx {
        ForwardCtx {
            compute: Compute::new(n_threads),
            buf: Buffers::default(),
            tokens: Vec::new(),
            spans: Vec::new(),
            positions: Vec::new(),
            token_types: Vec::new(),
            logit_rows: Vec::new(),
            logits: Vec::new(),
            final_rows: Vec::new(),
            vocab: 0,
            keep_hidden: false,
            hidden: Vec::new(),
        }
    }

    pub fn n_threads(&self) -> usize {
        self.compute.pool.n_threads()
    }

    /// The logits of the last forward pass, one row per [`ForwardCtx::logit_rows`].
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Which sequence and position each row of [`ForwardCtx::logits`] is for.
    pub fn logit_rows(&self) -> &[LogitRow] {
        &self.logit_rows
    }

    /// The logits row for sequence `seq`'s last token, if it was computed.
    pub fn last_logits(&self, seq: usize) -> Option<&[f32]> {
        let i = self.logit_rows.iter().rposition(|r| r.seq == seq)?;
        Some(&self.logits[i * self.vocab..(i + 1) * self.vocab])
    }

    /// Makes the following passes keep the final hidden state of every token
    /// (after the final norm), `[tokens, d_model]` in batch order, for
    /// [`ForwardCtx::hidden`]: what embedding pools. Off by default, as it
    /// costs a norm per token that generation does not need.
    pub fn keep_hidden(&mut self, on: bool) {
        self.keep_hidden = on;
    }

    /// The final hidden states of the last pass, when asked for with
    /// [`ForwardCtx::keep_hidden`]: one row of `d_model` per token, the
    /// sequences one after another as [`ForwardCtx::spans`] lays them out.
    pub fn hidden(&self) -> &[f32] {
        &self.hidden
    }

    /// The last rows of an encoder's pass: `x` (`[tokens, d_model]`, already
    /// normed by the last block) becomes the hidden states, reported at
    /// [`HookPoint::FinalNorm`] for every token. Encoders have no logits.
    pub fn encoder_output(&mut self, x: &[f32], d: usize, hooks: &mut Hooks<'_>) {
        self.hidden.clear();
        self.hidden.extend_from_slice(x);
        self.logits.clear();
        hooks.rows(HookPoint::FinalNorm, &self.spans, d, &self.hidden);
    }

    /// [`ForwardCtx::begin`] for an encoder: every sequence must be read
    /// whole (an empty cache) and ask for no logits.
    pub fn begin_encoder(&mut self, info: &ModelInfo, seqs: &mut [SeqInput<'_>]) -> Result<usize> {
        for s in seqs.iter() {
            if !s.cache.is_empty() {
                return Err(EngineError::EncoderContinuation {
                    cached: s.cache.len(),
                });
            }
            if !matches!(s.logits, LogitsFor::None) {
                return Err(EngineError::NotAGenerator {
                    arch: info.architecture,
                });
            }
        }
        self.begin(info, seqs)
    }

    /// Row `i` of the logits.
    pub fn logits_row(&self, i: usize) -> &[f32] {
        &self.logits[i * self.vocab..(i + 1) * self.vocab]
    }

    /// Checks the batch and lays it out: token ids in range, room in every
    /// cache; fills `tokens`, `spans`, `positions` and the logit rows.
    /// Returns the number of tokens in the batch.
    pub fn begin(&mut self, info: &ModelInfo, seqs: &mut [SeqInput<'_>]) -> Result<usize> {
        self.tokens.clear();
        self.spans.clear();
        self.positions.clear();
        self.logit_rows.clear();
        self.vocab = info.vocab_size;
        for (i, s) in seqs.iter_mut().enumerate() {
            if s.tokens.is_empty() {
                return Err(EngineError::EmptyPrompt);
            }
            if let Some(&id) = s.tokens.iter().find(|&&id| id as usize >= info.vocab_size) {
                return Err(EngineError::TokenOutOfRange {
                    id,
                    vocab: info.vocab_size,
                });
            }
            let used = s.cache.len();
            if used + s.tokens.len() > s.cache.limit() {
                return Err(EngineError::ContextFull {
                    used,
                    adding: s.tokens.len(),
                    limit: s.cache.limit(),
                });
            }
            let offset = self.tokens.len();
            self.spans.push(SeqSpan {
                offset,
                len: s.tokens.len(),
                start_pos: used,
            });
            self.tokens.extend_from_slice(s.tokens);
            self.positions.extend(used..used + s.tokens.len());
            let n = s.tokens.len();
            let rows = match s.logits {
                LogitsFor::All => 0..n,
                LogitsFor::Last => n - 1..n,
                LogitsFor::None => 0..0,
            };
            for t in rows {
                self.logit_rows.push(LogitRow {
                    seq: i,
                    pos: used + t,
                    batch_row: offset + t,
                });
            }
            s.cache.reserve(n);
        }
        Ok(self.tokens.len())
    }

    /// Marks the batch's tokens as appended to every cache.
    pub fn commit(&self, seqs: &mut [SeqInput<'_>]) {
        for (s, span) in seqs.iter_mut().zip(&self.spans) {
            s.cache.commit(span.len);
        }
    }

    /// Looks up the embedding rows of the batch's tokens into `out`, scaled.
    pub fn embed(&self, table: &Weight, scale: Option<f32>, out: &mut [f32]) {
        let d = table.shape.first().copied().unwrap_or(0);
        for (&id, row) in self.tokens.iter().zip(out.chunks_exact_mut(d)) {
            table.row_to_f32(id as usize, row);
            if let Some(s) = scale {
                ops::scale(row, s);
            }
        }
    }

    /// The output head: the final norm and the unembedding, for the rows
    /// that need logits. `x` is the residual stream of the whole batch.
    pub fn output(
        &mut self,
        x: &[f32],
        norm: &Norm,
        head: &Linear,
        softcap: Option<f32>,
        hooks: &mut Hooks<'_>,
    ) {
        let d = norm.width();
        if self.keep_hidden {
            self.hidden.resize(x.len(), 0.0);
            norm.forward_on(&self.compute.pool, x, &mut self.hidden);
        } else {
            self.hidden.clear();
        }
        let n = self.logit_rows.len();
        self.final_rows.resize(n * d, 0.0);
        for (r, row) in self
            .logit_rows
            .iter()
            .zip(self.final_rows.chunks_exact_mut(d))
        {
            norm.forward(&x[r.batch_row * d..(r.batch_row + 1) * d], row);
        }
        self.logits.resize(n * self.vocab, 0.0);
        if n > 0 {
            self.compute
                .linear(&self.final_rows, head, &mut self.logits);
        }
        if let Some(cap) = softcap {
            for v in &mut self.logits {
                *v = cap * (*v / cap).tanh();
            }
        }
        if hooks.wants(HookPoint::FinalNorm) || hooks.wants(HookPoint::Logits) {
            self.report_output_rows(hooks, d);
        }
    }

    /// The output head on arbitrary residual rows, for [`Model::unembed`]:
    /// the final norm, the unembedding and an optional softcap, as
    /// [`ForwardCtx::output`] applies them to the rows that need logits.
    pub fn unembed(
        &mut self,
        rows: &[f32],
        norm: &Norm,
        head: &Linear,
        softcap: Option<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let d = norm.width();
        if d == 0 || !rows.len().is_multiple_of(d) {
            return Err(EngineError::TensorShape {
                source_name: "unembed".into(),
                name: "residual rows".into(),
                expected: vec![rows.len() / d.max(1), d],
                found: vec![rows.len()],
            });
        }
        let n = rows.len() / d;
        let mut normed = std::mem::take(&mut self.final_rows);
        normed.resize(n * d, 0.0);
        norm.forward(rows, &mut normed);
        let vocab = head.out_features();
        out.clear();
        out.resize(n * vocab, 0.0);
        if n > 0 {
            self.compute.linear(&normed, head, out);
        }
        self.final_rows = normed;
        if let Some(cap) = softcap {
            for v in out.iter_mut() {
                *v = cap * (*v / cap).tanh();
            }
        }
        Ok(())
    }

    fn report_output_rows(&self, hooks: &mut Hooks<'_>, d: usize) {
        // Group the logit rows by sequence; within one they are consecutive.
        let mut start = 0;
        while start < self.logit_rows.len() {
            let seq = self.logit_rows[start].seq;
            let mut end = start;
            while end < self.logit_rows.len() && self.logit_rows[end].seq == seq {
                end += 1;
            }
            let first_pos = self.logit_rows[start].pos;
            let n = end - start;
            hooks.tensor(
                HookPoint::FinalNorm,
                crate::hooks::HookData {
                    seq,
                    first_pos,
                    shape: &[n, d],
                    data: &self.final_rows[start * d..end * d],
                },
            );
            hooks.tensor(
                HookPoint::Logits,
                crate::hooks::HookData {
                    seq,
                    first_pos,
                    shape: &[n, self.vocab],
                    data: &self.logits[start * self.vocab..end * self.vocab],
                },
            );
            start = end;
        }
    }
}
