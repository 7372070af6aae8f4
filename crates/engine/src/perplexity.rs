//! Perplexity of a model on a text, computed the way llama.cpp's
//! `llama-perplexity` computes it by default, so the two can be compared.
//!
//! The text is tokenized once (BOS as the model's metadata says) and cut into
//! non-overlapping chunks of `n_ctx` tokens; leftover tokens are dropped.
//! Each chunk starts from an empty cache. When the model adds BOS, a chunk's
//! first token is replaced by BOS. Only the second half of each chunk is
//! scored: the positions `n_ctx/2 .. n_ctx-2` each predict the next token.

use crate::batch::LogitsFor;
use crate::error::{EngineError, Result};
use crate::generate::Session;
use crate::hooks::Hooks;
use crate::loaded::LoadedModel;

/// Rows of logits computed per forward pass while scoring, which bounds the
/// memory of a pass (a row is the size of the vocabulary).
const SCORE_ROWS: usize = 32;

/// The result of a perplexity run.
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    /// `exp(mean negative log-likelihood)` over all scored tokens.
    pub ppl: f64,
    /// Its standard error, as llama-perplexity prints after `+/-`.
    pub ppl_error: f64,
    /// Perplexity of each chunk on its own.
    pub per_chunk: Vec<f64>,
    pub scored_tokens: usize,
}

/// Scores `tokens` (the whole text, tokenized once) in chunks of `n_ctx`.
pub fn perplexity(
    model: &LoadedModel,
    tokens: &[u32],
    n_ctx: usize,
    n_threads: usize,
) -> Result<Perplexity> {
    if n_ctx < 4 || tokens.len() < 2 * n_ctx {
        return Err(EngineError::Config {
            source_name: model.meta.name.clone(),
            message: format!(
                "perplexity needs at least 2 × {n_ctx} tokens of text, and the text has {}",
                tokens.len()
            ),
        });
    }
    let bos = if model.tokenizer.add_bos() {
        model.tokenizer.bos()
    } else {
        None
    };
    let first = n_ctx / 2;
    let mut session = Session::new(model, n_threads, Some(n_ctx));
    let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0usize);
    let mut per_chunk = Vec::new();
    for chunk in tokens.chunks_exact(n_ctx) {
        let mut chunk = chunk.to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.reset();
        session.feed(&chunk[..first], LogitsFor::None, &mut Hooks::none())?;
        let (mut chunk_sum, mut chunk_count) = (0f64, 0usize);
        let mut pos = first;
        while pos < n_ctx - 1 {
            let end = (pos + SCORE_ROWS).min(n_ctx - 1);
            session.feed(&chunk[..end], LogitsFor::All, &mut Hooks::none())?;
            // Rows are the positions pos..end, each predicting the next token.
            for (row, j) in (pos..end).enumerate() {
                let nll = -log_softmax_at(session.ctx().logits_row(row), chunk[j + 1] as usize);
                chunk_sum += nll;
                chunk_count += 1;
                sum_sq += nll * nll;
            }
            pos = end;
        }
        sum += chunk_sum;
        count += chunk_count;
        per_chunk.push((chunk_sum / chunk_count as f64).exp());
    }
    let mean = sum / count as f64;
    let var = (sum_sq / count as f64 - mean * mean).max(0.0);
    let ppl = mean.exp();
    Ok(Perplexity {
        ppl,
        ppl_error: ppl * (var / (count.saturating_sub(1).max(1)) as f64).sqrt(),
        per_chunk,
        scored_tokens: count,
    })
}

/// `log_softmax(logits)[i]`, in f64.
fn log_softmax_at(logits: &[f32], i: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits
        .get(i)
        .map_or(f64::NEG_INFINITY, |&l| l as f64 - max - sum.ln())
}
