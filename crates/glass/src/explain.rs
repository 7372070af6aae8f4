//! Running a model over a prompt with the recorder attached, and turning
//! what it saw into a [`Trace`].
//!
//! Each step is one forward pass: the whole prompt first, then the token the
//! previous step chose. The step's prediction, its attended positions and
//! its lens columns come from that pass alone, so a step can be handed to
//! the caller (and streamed) as soon as its pass is done.

use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use lucid_engine::{
    ChatMessage, ForwardCtx, GenerateParams, Hooks, LoadedModel, ModelRole, Role, Sequence,
    StopReason as EngineStop,
};

use crate::analysis::{Distribution, rank, top_k};
use crate::error::{GlassError, Result};
use crate::options::{ExplainOptions, Limits};
use crate::recorder::Recorder;
use crate::trace::{
    Attended, AttentionMap, Chosen, Lens, LensColumn, ModelSummary, Step, StopReason, Timings,
    Token, TokenProb, Trace,
};

/// The tokens of a prompt: the text as it is (with the BOS token where the
/// model asks for one, and control tokens written in it recognized), or, with
/// `chat`, the text as one user message after the model's default system
/// message, in its chat template, up to where the assistant's reply begins
/// (`LoadedModel::chat_prompt`, as the CLI and the server build it).
pub fn prompt_tokens(model: &LoadedModel, text: &str, chat: bool) -> Result<Vec<u32>> {
    if chat {
        Ok(model.chat_prompt(&[ChatMessage::new(Role::User, text)])?)
    } else {
        Ok(model.raw_prompt(text)?)
    }
}

/// The text a token stands for.
pub fn token_text(model: &LoadedModel, id: u32) -> String {
    String::from_utf8_lossy(&model.tokenizer.token_bytes(id)).into_owned()
}

/// Refuses an encoder, which predicts no tokens: its glass box is the
/// semantic view ([`crate::semantic()`]).
pub fn check_generator(model: &LoadedModel) -> Result<()> {
    match model.model.role() {
        ModelRole::Generator => Ok(()),
        ModelRole::Encoder => Err(GlassError::NotAGenerator {
            architecture: model.model.info().architecture.to_string(),
        }),
    }
}

/// What the caller hears while a run goes on.
#[derive(Debug)]
pub enum Event<'a> {
    /// A step's prediction is made (sent before its lens is computed, which
    /// can take much longer than the forward pass).
    Step { index: usize, step: &'a Step },
    /// The lens columns of the positions the last forward pass read.
    Lens { columns: &'a [LensColumn] },
}

/// Runs `model` over `prompt` on `threads` threads, recording what
/// `options` ask for, after checking them against `limits`.
pub fn explain(
    model: &LoadedModel,
    prompt: &[u32],
    options: &ExplainOptions,
    limits: &Limits,
    threads: usize,
) -> Result<Trace> {
    explain_with(model, prompt, options, limits, threads, |_| {
        ControlFlow::Continue(())
    })
}

/// Like [`explain`], calling `on_event` after every step; it may return
/// `ControlFlow::Break` to stop (the trace then ends with
/// [`StopReason::Cancelled`]).
pub fn explain_with(
    model: &LoadedModel,
    prompt: &[u32],
    options: &ExplainOptions,
    limits: &Limits,
    threads: usize,
    mut on_event: impl FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<Trace> {
    let start = Instant::now();
    let info = model.model.info();
    check_generator(model)?;
    options.check(info, prompt.len(), limits)?;
    let heads = options.heads(info.n_heads);
    let mut recorder = Recorder::new(
        info.n_layers,
        info.d_model,
        &options.attention_layers,
        &heads,
        options.attended > 0,
        options.lens,
    );
    let mut ctx = ForwardCtx::new(threads.max(1));
    let cache = model
        .model
        .new_cache(Some(prompt.len() + options.max_tokens));
    let params = GenerateParams {
        max_tokens: options.max_tokens,
        sampling: options.sampling.clone(),
        stop: Vec::new(),
        ignore_eos: !options.stop_at_end_of_generation,
        show_special: false,
        ..GenerateParams::default()
    };
    let mut seq = Sequence::new(model, cache, &[], prompt.to_vec(), &params)?;
    let mut steps = Vec::new();
    let mut lens_columns = Vec::new();
    let mut timings = Timings::default();
    let mut stop = StopReason::MaxTokens;
    let mut logits = Vec::new();
    for index in 0..options.max_tokens {
        let first_pos = seq.cache().len();
        recorder.begin_pass();
        let t = Instant::now();
        let n = seq.pending();
        model.model.forward(
            &mut ctx,
            &mut [seq.input(n)],
            &mut Hooks::new(&mut recorder),
        )?;
        timings.forward_ms += ms(t);
        logits.clear();
        logits.extend_from_slice(ctx.last_logits(0).ok_or(GlassError::NoLogits)?);
        let id = seq.sample(&logits).ok_or(GlassError::NoLogits)?;
        let position = seq.tokens().len() - 1;
        let attended = match recorder.last_row_mean() {
            Some(row) => most_attended(model, &row, seq.tokens(), options.attended),
            None => Vec::new(),
        };
        let step = make_step(model, &logits, id, position, options.top_k, attended);
        steps.push(step);
        let mut flow = on_event(Event::Step {
            index,
            step: &steps[index],
        });
        if options.lens && flow.is_continue() {
            let t = Instant::now();
            let n_before = lens_columns.len();
            lens_pass(
                model,
                &mut ctx,
                &recorder,
                first_pos,
                options.lens_top_k,
                &mut lens_columns,
            )?;
            timings.lens_ms += ms(t);
            flow = on_event(Event::Lens {
                columns: &lens_columns[n_before..],
            });
        }
        let end = seq.accept(id).stop;
        if end == Some(EngineStop::EndOfGeneration) {
            stop = StopReason::EndOfGeneration;
            break;
        }
        if flow.is_break() {
            stop = StopReason::Cancelled;
            break;
        }
        // The step limit (the context, at least prompt and steps long,
        // cannot fill first).
        if end.is_some() {
            break;
        }
    }
    // The last chosen token was never read.
    let read = seq.tokens().len() - 1;
    let attention = recorder
        .maps()
        .zip(recorder.rows())
        .map(|((layer, head), rows)| square(layer, head, rows, read))
        .collect();
    // What the decoder still holds joins the completion.
    seq.finish(match stop {
        StopReason::MaxTokens => EngineStop::MaxTokens,
        StopReason::EndOfGeneration => EngineStop::EndOfGeneration,
        StopReason::Cancelled => EngineStop::Cancelled,
    });
    timings.total_ms = ms(start);
    Ok(Trace {
        model: ModelSummary::of(model.model.as_ref()),
        tokens: prompt
            .iter()
            .map(|&id| Token {
                id,
                text: token_text(model, id),
            })
            .collect(),
        completion: seq.into_text(),
        steps,
        stop,
        attention,
        lens: options.lens.then(|| Lens {
            layers: std::iter::once("embed".to_string())
                .chain((0..info.n_layers).map(|l| format!("blocks.{l}.resid_post")))
                .collect(),
            positions: lens_columns,
        }),
        timings,
    })
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn candidate(model: &LoadedModel, d: &Distribution, logits: &[f32], id: u32) -> TokenProb {
    let logit = logits
        .get(id as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    TokenProb {
        id,
        text: token_text(model, id),
        prob: d.prob(logit),
        logit,
    }
}

fn make_step(
    model: &LoadedModel,
    logits: &[f32],
    id: u32,
    position: usize,
    k: usize,
    attended: Vec<Attended>,
) -> Step {
    let d = Distribution::new(logits);
    let c = candidate(model, &d, logits, id);
    Step {
        position,
        top: top_k(logits, k)
            .into_iter()
            .map(|t| candidate(model, &d, logits, t))
            .collect(),
        chosen: Chosen {
            id,
            text: c.text,
            prob: c.prob,
            logit: c.logit,
            rank: rank(logits, id),
        },
        entropy: d.entropy(logits),
        attended,
    }
}

/// The `n` positions with the largest weight in `row`, largest first.
fn most_attended(model: &LoadedModel, row: &[f32], tokens: &[u32], n: usize) -> Vec<Attended> {
    top_k(row, n)
        .into_iter()
        .filter_map(|p| {
            let id = *tokens.get(p as usize)?;
            Some(Attended {
                position: p as usize,
                id,
                text: token_text(model, id),
                weight: row[p as usize],
            })
        })
        .collect()
}

/// Ragged causal rows as a `positions × positions` square.
fn square(layer: usize, head: usize, rows: &[Vec<f32>], positions: usize) -> AttentionMap {
    let mut weights = vec![0.0; positions * positions];
    for (q, row) in rows.iter().take(positions).enumerate() {
        let n = row.len().min(positions);
        weights[q * positions..q * positions + n].copy_from_slice(&row[..n]);
    }
    AttentionMap {
        layer,
        head,
        queries: positions,
        keys: positions,
        weights,
    }
}

/// Unembeds at most this many values at once, so the lens of a long prompt
/// over a large vocabulary never holds all its logits (Gemma 3: 262,144
/// tokens × 32 rows = 32 MiB).
const LENS_CHUNK_VALUES: usize = 8 << 20;

/// The lens columns of the positions the last pass read, appended to `out`.
fn lens_pass(
    model: &LoadedModel,
    ctx: &mut ForwardCtx,
    recorder: &Recorder,
    first_pos: usize,
    k: usize,
    out: &mut Vec<LensColumn>,
) -> Result<()> {
    let d = model.model.info().d_model;
    let vocab = model.model.info().vocab_size.max(1);
    let n_layers = recorder.lens_layers();
    let n = recorder.resid(0).len() / d.max(1);
    let first = out.len();
    out.extend((0..n).map(|t| LensColumn {
        position: first_pos + t,
        layers: Vec::with_capacity(n_layers),
    }));
    let chunk = (LENS_CHUNK_VALUES / vocab).clamp(1, n.max(1));
    let mut logits = Vec::new();
    for layer in 0..n_layers {
        let resid = recorder.resid(layer);
        if resid.len() != n * d {
            return Err(GlassError::MissingHook {
                point: if layer == 0 {
                    "embed".to_string()
                } else {
                    format!("blocks.{}.resid_post", layer - 1)
                },
            });
        }
        for (c, rows) in resid.chunks(chunk * d).enumerate() {
            model.model.unembed(ctx, rows, &mut logits)?;
            for (i, cell) in top_rows(ctx, &logits, vocab, k).into_iter().enumerate() {
                let list = cell
                    .into_iter()
                    .map(|(id, prob, logit)| TokenProb {
                        id,
                        text: token_text(model, id),
                        prob,
                        logit,
                    })
                    .collect();
                out[first + c * chunk + i].layers.push(list);
            }
        }
    }
    Ok(())
}

/// The top `k` tokens (id, probability, logit) of each `vocab`-wide row of
/// `logits`; the rows are shared out over the forward context's threads,
/// since a row's softmax over a large vocabulary costs about as much as a
/// small model's whole decode step.
fn top_rows(ctx: &ForwardCtx, logits: &[f32], vocab: usize, k: usize) -> Vec<Vec<(u32, f32, f32)>> {
    let n = logits.len() / vocab;
    let results: Vec<Mutex<Vec<(u32, f32, f32)>>> =
        (0..n).map(|_| Mutex::new(Vec::new())).collect();
    let next = AtomicUsize::new(0);
    ctx.compute.pool.run(&|_| {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            let row = &logits[i * vocab..(i + 1) * vocab];
            let dist = Distribution::new(row);
            let cell = top_k(row, k)
                .into_iter()
                .map(|id| {
                    let logit = row[id as usize];
                    (id, dist.prob(logit), logit)
                })
                .collect();
            if let Ok(mut slot) = results[i].lock() {
                *slot = cell;
            }
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_default())
        .collect()
}
