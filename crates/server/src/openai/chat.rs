//! `POST /v1/chat/completions` on a local model.

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
use crate::generate::{self, Collected};
use crate::prompt;
use crate::state::{AppState, LocalModel, now_secs};

use super::params::{
    STRUCTURED_FIELDS, check_max_tokens, check_n, grammar, messages, refuse_if_set,
    refuse_unknown_but, sampling, structured_outputs,
};
use super::remote::remote_chat;
use super::tools::{CallStream, ToolUse, tool_use};
use super::{FINGERPRINT, MAX_TOP_LOGPROBS, sse, sse_json, usage, wire_logprobs};

pub(super) async fn chat_completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    let msgs = messages(&req.messages)?;
    refuse_unknown_but(&req.other, STRUCTURED_FIELDS)?;
    if let Some(o) = &req.stream_options {
        crate::body::refuse_extra(&o.other, "stream_options")?;
    }
    let tool_use = tool_use(
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        req.parallel_tool_calls,
    )?;
    let may_call = tool_use.as_ref().is_some_and(ToolUse::may_call);
    refuse_if_set(
        "logit_bias",
        &req.logit_bias,
        "lucid does not apply logit biases",
    )?;
    let n = check_n(req.n)?;
    let max_tokens = match req.max_completion_tokens {
        Some(_) => check_max_tokens("max_completion_tokens", req.max_completion_tokens)?,
        None => check_max_tokens("max_tokens", req.max_tokens)?,
    };
    let top = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (_, Some(k)) if k > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
            ));
        }
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                "top_logprobs requires logprobs to be true",
            ));
        }
        (true, _) if may_call => {
            return Err(ApiError::invalid(
                "logprobs",
                "logprobs are not given with tools the model may call",
            ));
        }
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, None) => None,
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
    let stop = req.stop.clone().map(Stop::into_vec).unwrap_or_default();
    let stream = req.stream.unwrap_or(false);
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);

    let model_ref = ModelRef::parse(&req.model).map_err(ApiError::from)?;
    if model_ref.provider_key().is_some() {
        refuse_if_set(
            "ignore_eos",
            &req.ignore_eos,
            "a provider's model ends where its provider decides",
        )?;
        if tool_use.is_some() {
            return Err(ApiError::invalid(
                "tools",
                "tools are only supported for the models this server holds",
            ));
        }
        if let Some(field) = STRUCTURED_FIELDS
            .iter()
            .find(|f| req.other.get(**f).is_some_and(|v| !v.is_null()))
        {
            return Err(ApiError::invalid(
                *field,
                format!("`{field}` is only supported for the models this server holds"),
            ));
        }
        return remote_chat(state, req, msgs, max_tokens, top, stop, n, include_usage).await;
    }
    let local_name = model_ref.model().unwrap_or_default().to_owned();
    let lm = state.require_model(&local_name).await?;
    let mut sampling = sampling;
    prompt::apply_defaults(&lm, &mut sampling, req.temperature, req.top_p);
    let forced = tool_use.as_ref().is_some_and(ToolUse::forces_a_call);
    if forced && req.response_format.is_some() {
        return Err(ApiError::invalid(
            "response_format",
            "response_format cannot be combined with a tool_choice that asks for a call",
        ));
    }
    let grammar = match (
        grammar(req.response_format.as_ref()).await?,
        structured_outputs(&req.other).await?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "response_format",
                "response_format and structured_outputs (or guided_*) cannot both constrain the output",
            ));
        }
        (format, None) => format,
        (None, Some(_)) if forced => {
            return Err(ApiError::invalid(
                "structured_outputs",
                "structured_outputs cannot be combined with a tool_choice that asks for a call",
            ));
        }
        (None, structured) => structured,
    };
    let shown = tool_use.as_ref().and_then(|t| t.shown.clone());
    let tokens = prompt::chat_tokens_with_tools(&lm, msgs, shown, "messages").await?;
    let request = Request {
        prompt: tokens,
        max_tokens,
        sampling,
        stop,
        logprobs: top,
        grammar,
        ignore_eos: req.ignore_eos.unwrap_or(false),
    };
    let requests = match tool_use.as_ref().filter(|_| forced) {
        Some(tools) => tools.forced_requests(&state, &lm, &request, n).await?,
        None => vec![request.clone(); n],
    };
    let gens = generate::submit_each(&lm, requests, "messages")?;
    let prompt_tokens = request.prompt.len();
    let merged = generate::merge(&state, &lm.name, gens, 0);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let model_name = req.model.clone();
    if !stream {
        let collected = generate::collect(merged, n).await?;
        return Ok(axum::Json(chat_completion(
            &lm,
            id,
            created,
            model_name,
            prompt_tokens,
            collected,
            top.is_some(),
            tool_use.as_ref(),
        ))
        .into_response());
    }

    // Streaming: a role chunk per choice, content chunks as tokens come,
    // a finish chunk per choice, the usage chunk, then [DONE].
    let chunk = {
        let id = id.clone();
        let model = model_name.clone();
        move |choices: Vec<ChunkChoice>, usage: Option<Option<Usage>>| ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk",
            created,
            model: model.clone(),
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        }
    };
    let null_usage = include_usage.then_some(None);
    let out: VecDeque<SseEvent> = (0..n)
        .map(|i| {
            sse_json(&chunk(
                vec![ChunkChoice {
                    index: i,
                    delta: Delta {
                        role: Some("assistant"),
                        content: Some(String::new()),
                        tool_calls: None,
                    },
                    logprobs: None,
                    finish_reason: None,
                }],
                null_usage.clone(),
            ))
        })
        .collect();
    let mut completion_tokens = 0usize;
    let mut cached = 0usize;
    // With tools the model may call, each choice's text is held until its
    // end, when it is read for calls; a call the request forces is streamed
    // as it is written.
    let mut held: Option<Vec<String>> = may_call.then(|| vec![String::new(); n]);
    let mut calls: Option<Vec<CallStream>> =
        forced.then(|| (0..n).map(|_| CallStream::default()).collect());
    let call_chunk = |i: usize, delta: DeltaToolCall, finish: Option<&'static str>| ChunkChoice {
        index: i,
        delta: Delta {
            role: None,
            content: None,
            tool_calls: Some(vec![delta]),
        },
        logprobs: None,
        finish_reason: finish,
    };
    let body = generate::drive(merged, out, move |event, out| match event {
        Some((i, Event::Token(t))) if held.is_some() => {
            let Some(text) = held.as_mut().and_then(|h| h.get_mut(i)) else {
                return;
            };
            text.push_str(&t.text);
            if let Some(delta) = calls
                .as_mut()
                .and_then(|c| c.get_mut(i))
                .and_then(|c| c.delta(text, None))
            {
                out.push_back(sse_json(&chunk(
                    vec![call_chunk(i, delta, None)],
                    null_usage.clone(),
                )));
            }
        }
        Some((i, Event::Token(t))) => {
            let logprobs = t.logprobs.as_ref().map(|lp| ChoiceLogprobs {
                content: vec![wire_logprobs(&lm, t.id, lp)],
                refusal: None,
            });
            if !t.text.is_empty() || logprobs.is_some() {
                out.push_back(sse_json(&chunk(
                    vec![ChunkChoice {
                        index: i,
                        delta: Delta {
                            role: None,
                            content: Some(t.text),
                            tool_calls: None,
                        },
                        logprobs,
                        finish_reason: None,
                    }],
                    null_usage.clone(),
                )));
            }
        }
        Some((i, Event::Finished(f))) => {
            completion_tokens += f.usage.completion_tokens;
            cached = cached.max(f.usage.cached_tokens);
            let mut finish = generate::finish_reason(f.reason);
            let streamed_call = calls
                .as_mut()
                .and_then(|c| c.get_mut(i))
                .filter(|c| c.started());
            let held_text = held
                .as_mut()
                .map(|h| h.get_mut(i).map(std::mem::take).unwrap_or_default() + &f.tail);
            if held_text.is_some() && f.reason == StopReason::Cancelled {
                out.push_back(sse_json(&ApiError::cut_off().openai_body()));
                return;
            }
            if let (Some(text), Some(call)) = (held_text.as_ref(), streamed_call) {
                // The forced call's last piece.
                let complete = finish == "stop";
                if complete {
                    finish = "tool_calls";
                }
                if let Some(delta) = call.delta(text, Some(complete)) {
                    out.push_back(sse_json(&chunk(
                        vec![call_chunk(i, delta, None)],
                        null_usage.clone(),
                    )));
                }
            } else if let (Some(text), Some(tools)) = (held_text.as_ref(), tool_use.as_ref()) {
                let (content, calls) = tools.read(text);
                if !calls.is_empty() && finish == "stop" {
                    finish = "tool_calls";
                }
                let delta = Delta {
                    role: None,
                    content,
                    tool_calls: (!calls.is_empty()).then(|| {
                        calls
                            .into_iter()
                            .enumerate()
                            .map(|(index, c)| DeltaToolCall::whole(index, c))
                            .collect()
                    }),
                };
                out.push_back(sse_json(&chunk(
                    vec![ChunkChoice {
                        index: i,
                        delta,
                        logprobs: None,
                        finish_reason: None,
                    }],
                    null_usage.clone(),
                )));
            } else if !f.tail.is_empty() {
                out.push_back(sse_json(&chunk(
                    vec![ChunkChoice {
                        index: i,
                        delta: Delta {
                            role: None,
                            content: Some(f.tail),
                            tool_calls: None,
                        },
                        logprobs: None,
                        finish_reason: None,
                    }],
                    null_usage.clone(),
                )));
            }
            if f.reason == StopReason::Cancelled {
                // Cut short by the server: an error event (which the SDKs
                // raise) instead of a finish reason that says complete.
                out.push_back(sse_json(&ApiError::cut_off().openai_body()));
                return;
            }
            out.push_back(sse_json(&chunk(
                vec![ChunkChoice {
                    index: i,
                    delta: Delta {
                        role: None,
                        content: None,
                        tool_calls: None,
                    },
                    logprobs: None,
                    finish_reason: Some(finish),
                }],
                null_usage.clone(),
            )));
        }
        Some((_, Event::Failed(e))) => {
            // Mid-stream errors go out as an error object, as OpenAI does.
            out.push_back(sse_json(
                &ApiError::from_scheduler(e, "messages").openai_body(),
            ));
        }
        None => {
            if include_usage {
                out.push_back(sse_json(&chunk(
                    Vec::new(),
                    Some(Some(usage(prompt_tokens, completion_tokens, cached))),
                )));
            }
            out.push_back(SseEvent::default().data("[DONE]"));
        }
    })
    .map(Ok::<_, Infallible>);
    Ok(sse(body.boxed()))
}

#[allow(clippy::too_many_arguments)]
fn chat_completion(
    lm: &LocalModel,
    id: String,
    created: u64,
    model: String,
    prompt_tokens: usize,
    collected: Vec<Collected>,
    with_logprobs: bool,
    tool_use: Option<&ToolUse>,
) -> ChatCompletion {
    let completion_tokens = collected.iter().map(|c| c.tokens.len()).sum();
    let cached = collected
        .iter()
        .filter_map(|c| c.finished.as_ref().map(|f| f.usage.cached_tokens))
        .max()
        .unwrap_or(0);
    ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: collected
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let mut finish_reason = c
                    .finished
                    .as_ref()
                    .map_or("stop", |f| generate::finish_reason(f.reason));
                let (content, tool_calls) = match tool_use {
                    Some(tools) => tools.read(&c.text),
                    None => (Some(c.text), Vec::new()),
                };
                if !tool_calls.is_empty() && finish_reason == "stop" {
                    finish_reason = "tool_calls";
                }
                ChatChoice {
                    index: i,
                    logprobs: with_logprobs.then(|| ChoiceLogprobs {
                        content: c
                            .tokens
                            .iter()
                            .filter_map(|t| {
                                t.logprobs.as_ref().map(|lp| wire_logprobs(lm, t.id, lp))
                            })
                            .collect(),
                        refusal: None,
                    }),
                    finish_reason,
                    message: AssistantMessage {
                        role: "assistant",
                        content,
                        refusal: None,
                        tool_calls,
                    },
                }
            })
            .collect(),
        usage: usage(prompt_tokens, completion_tokens, cached),
        system_fingerprint: FINGERPRINT,
    }
}
