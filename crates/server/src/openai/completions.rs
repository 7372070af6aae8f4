//! `POST /v1/completions`: raw text prompts on a local model.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures::stream::StreamExt;
use lucid_engine::StopReason;
use lucid_providers::ModelRef;
use lucid_scheduler::{Event, Request};

use super::wire::*;
use crate::body::ApiJson;
use crate::error::ApiError;
use crate::generate;
use crate::prompt;
use crate::state::{AppState, LocalModel, now_secs};

use super::params::{
    STRUCTURED_FIELDS, check_max_tokens, check_n, refuse_if_set, refuse_unknown_but, sampling,
    structured_outputs,
};
use super::{FINGERPRINT, sse, sse_json, usage};

pub(super) async fn completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    refuse_unknown_but(&req.other, STRUCTURED_FIELDS)?;
    if let Some(o) = &req.stream_options {
        crate::body::refuse_extra(&o.other, "stream_options")?;
    }
    if req.echo == Some(true) {
        return Err(ApiError::invalid("echo", "`echo` is not supported"));
    }
    refuse_if_set("suffix", &req.suffix, "lucid has no fill-in-the-middle")?;
    refuse_if_set(
        "logit_bias",
        &req.logit_bias,
        "lucid does not apply logit biases",
    )?;
    if req.best_of.is_some_and(|b| b != req.n.unwrap_or(1)) {
        return Err(ApiError::invalid(
            "best_of",
            "`best_of` other than `n` is not supported",
        ));
    }
    let n = check_n(req.n)?;
    // OpenAI's default for the legacy endpoint is 16 tokens.
    let max_tokens = check_max_tokens("max_tokens", req.max_tokens)?.or(Some(16));
    let top = match req.logprobs {
        Some(k) if k > 5 => {
            return Err(ApiError::invalid(
                "logprobs",
                "logprobs must be between 0 and 5",
            ));
        }
        k => k.map(|k| k as usize),
    };
    let sampling = sampling(
        req.temperature,
        req.top_p,
        req.top_k,
        req.min_p,
        req.repeat_penalty,
        req.presence_penalty,
        req.frequency_penalty,
        req.seed,
    )?;
    let model_ref = ModelRef::parse(&req.model).map_err(ApiError::from)?;
    if model_ref.provider_key().is_some() {
        return Err(ApiError::invalid(
            "model",
            "/v1/completions serves local models only; use /v1/chat/completions for provider models",
        ));
    }
    let lm = state
        .require_model(model_ref.model().unwrap_or_default())
        .await?;
    let mut sampling = sampling;
    prompt::apply_defaults(&lm, &mut sampling, req.temperature, req.top_p);
    let grammar = structured_outputs(&req.other).await?;
    let prompts: Vec<Vec<u32>> = match &req.prompt {
        Prompt::Text(t) => prompt::raw_tokens(&lm, vec![t.clone()], "prompt").await?,
        Prompt::Texts(ts) if !ts.is_empty() => {
            prompt::raw_tokens(&lm, ts.clone(), "prompt").await?
        }
        Prompt::Tokens(ids) => vec![ids.clone()],
        Prompt::TokenLists(l) if !l.is_empty() => l.clone(),
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "prompt must not be an empty list",
            ));
        }
    };
    let mut gens = Vec::new();
    let mut prompt_tokens = 0;
    for p in &prompts {
        prompt_tokens += p.len();
        let request = Request {
            prompt: p.clone(),
            max_tokens,
            sampling: sampling.clone(),
            stop: req.stop.clone().map(Stop::into_vec).unwrap_or_default(),
            logprobs: top,
            grammar: grammar.clone(),
            ignore_eos: req.ignore_eos.unwrap_or(false),
        };
        gens.extend(generate::submit_n(&lm, &request, n, "prompt")?);
    }
    let total = gens.len();
    let merged = generate::merge(&state, &lm.name, gens, 0);
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let model = req.model.clone();
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if !req.stream.unwrap_or(false) {
        let collected = generate::collect(merged, total).await?;
        let completion_tokens = collected.iter().map(|c| c.tokens.len()).sum();
        let cached = collected
            .iter()
            .filter_map(|c| c.finished.as_ref().map(|f| f.usage.cached_tokens))
            .sum();
        let choices = collected
            .into_iter()
            .enumerate()
            .map(|(i, c)| CompletionChoice {
                logprobs: top.map(|_| completion_logprobs(&lm, &c.tokens, 0)),
                finish_reason: Some(
                    c.finished
                        .as_ref()
                        .map_or("stop", |f| generate::finish_reason(f.reason)),
                ),
                text: c.text,
                index: i,
            })
            .collect();
        return Ok(axum::Json(Completion {
            id,
            object: "text_completion",
            created,
            model,
            system_fingerprint: FINGERPRINT,
            choices,
            usage: Some(Some(usage(prompt_tokens, completion_tokens, cached))),
        })
        .into_response());
    }
    let null_usage = include_usage.then_some(None);
    let mk = move |choices: Vec<CompletionChoice>, usage: Option<Option<Usage>>| Completion {
        id: id.clone(),
        object: "text_completion",
        created,
        model: model.clone(),
        system_fingerprint: FINGERPRINT,
        choices,
        usage,
    };
    let mut offsets = vec![0usize; total];
    let mut completion_tokens = 0;
    let mut cached = 0;
    let body = generate::drive(merged, VecDeque::new(), move |event, out| match event {
        Some((i, Event::Token(t))) => {
            let off = offsets.get(i).copied().unwrap_or(0);
            let logprobs = top.map(|_| completion_logprobs(&lm, std::slice::from_ref(&t), off));
            if let Some(o) = offsets.get_mut(i) {
                *o += t.text.len();
            }
            if !t.text.is_empty() || logprobs.is_some() {
                out.push_back(sse_json(&mk(
                    vec![CompletionChoice {
                        text: t.text,
                        index: i,
                        logprobs,
                        finish_reason: None,
                    }],
                    null_usage.clone(),
                )));
            }
        }
        Some((i, Event::Finished(f))) => {
            completion_tokens += f.usage.completion_tokens;
            cached += f.usage.cached_tokens;
            let cut = f.reason == StopReason::Cancelled;
            out.push_back(sse_json(&mk(
                vec![CompletionChoice {
                    text: f.tail,
                    index: i,
                    logprobs: None,
                    finish_reason: (!cut).then(|| generate::finish_reason(f.reason)),
                }],
                null_usage.clone(),
            )));
            if cut {
                out.push_back(sse_json(&ApiError::cut_off().openai_body()));
            }
        }
        Some((_, Event::Failed(e))) => {
            out.push_back(sse_json(
                &ApiError::from_scheduler(e, "prompt").openai_body(),
            ));
        }
        None => {
            if include_usage {
                out.push_back(sse_json(&mk(
                    Vec::new(),
                    Some(Some(usage(prompt_tokens, completion_tokens, cached))),
                )));
            }
            out.push_back(SseEvent::default().data("[DONE]"));
        }
    });
    Ok(sse(body.map(Ok::<_, Infallible>).boxed()))
}

/// The legacy log-probabilities of some tokens, the first at text offset `offset`.
fn completion_logprobs(
    lm: &LocalModel,
    tokens: &[lucid_scheduler::Token],
    offset: usize,
) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    let mut off = offset;
    for t in tokens {
        let Some(lp) = &t.logprobs else { continue };
        out.tokens.push(prompt::token_text(&lm.model, t.id).0);
        out.token_logprobs.push(lp.logprob);
        out.top_logprobs.push(
            lp.top
                .iter()
                .map(|&(id, l)| {
                    (
                        prompt::token_text(&lm.model, id).0,
                        serde_json::Value::from(l),
                    )
                })
                .collect(),
        );
        out.text_offset.push(off);
        off += t.text.len();
    }
    out
}
