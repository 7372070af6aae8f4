//! The OpenAI-compatible API: `GET /v1/models`, `POST /v1/chat/completions`
//! and `POST /v1/completions`, streamed as OpenAI streams them (SSE `data:`
//! chunks, a final chunk with the finish reason, a usage chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`).
//!
//! Local model names run on the scheduler here; `provider:model` names go
//! through the provider router (chat only), so a client can reach OpenAI,
//! Anthropic, Gemini or a compatible endpoint through lucid.

pub mod wire;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::stream::{self, BoxStream, StreamExt};
use lucid_engine::{ChatMessage, Role, SamplingParams, StopReason};
use lucid_providers::{ChatEvent, ChatRequest, ModelRef};
use lucid_scheduler::{Event, Grammar, Request, TokenLogprobs};

use crate::body::ApiJson;
use crate::error::ApiError;
use crate::generate::{self, Collected};
use crate::prompt;
use crate::state::{AppState, LocalModel, now_secs};
use wire::*;

const FINGERPRINT: &str = "lucid";

/// The most choices per request.
const MAX_N: u32 = 16;
/// The most alternatives per position (OpenAI's limit).
const MAX_TOP_LOGPROBS: u32 = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*model}", get(get_model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
}

async fn list_models(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(ModelList {
        object: "list",
        data: state
            .models()
            .iter()
            .map(|m| ModelObject {
                id: m.name.clone(),
                object: "model",
                created: m.created,
                owned_by: "lucid",
            })
            .collect(),
    })
}

async fn get_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    let m = state.require_model(&model)?;
    Ok(axum::Json(ModelObject {
        id: m.name.clone(),
        object: "model",
        created: m.created,
        owned_by: "lucid",
    })
    .into_response())
}

/// Sampling as OpenAI defines its defaults: temperature 1, no top-k or min-p cut.
/// (One argument per request field, named as the field, is clearer here
/// than a struct that would only repeat the wire type.)
#[allow(clippy::too_many_arguments)]
fn sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    presence: Option<f32>,
    frequency: Option<f32>,
    seed: Option<i64>,
) -> Result<SamplingParams, ApiError> {
    let t = temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&t) {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be between 0 and 2, not {t}"),
        ));
    }
    let p = top_p.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&p) {
        return Err(ApiError::invalid(
            "top_p",
            format!("top_p must be between 0 and 1, not {p}"),
        ));
    }
    for (name, v) in [
        ("presence_penalty", presence),
        ("frequency_penalty", frequency),
    ] {
        if let Some(v) = v
            && !(-2.0..=2.0).contains(&v)
        {
            return Err(ApiError::invalid(
                name,
                format!("{name} must be between -2 and 2, not {v}"),
            ));
        }
    }
    if let Some(m) = min_p
        && !(0.0..=1.0).contains(&m)
    {
        return Err(ApiError::invalid(
            "min_p",
            format!("min_p must be between 0 and 1, not {m}"),
        ));
    }
    if let Some(r) = repeat_penalty
        && !(r > 0.0 && r.is_finite())
    {
        return Err(ApiError::invalid(
            "repeat_penalty",
            format!("repeat_penalty must be > 0, not {r}"),
        ));
    }
    Ok(SamplingParams {
        temperature: t,
        top_k: top_k.unwrap_or(0) as usize,
        top_p: p,
        min_p: min_p.unwrap_or(0.0),
        repeat_penalty: repeat_penalty.unwrap_or(1.0),
        presence_penalty: presence.unwrap_or(0.0),
        frequency_penalty: frequency.unwrap_or(0.0),
        penalty_last_n: 64,
        seed: seed.map(|s| s as u64),
    })
}

fn check_n(n: Option<u32>) -> Result<usize, ApiError> {
    match n.unwrap_or(1) {
        n @ 1..=MAX_N => Ok(n as usize),
        n => Err(ApiError::invalid(
            "n",
            format!("n must be between 1 and {MAX_N}, not {n}"),
        )),
    }
}

fn check_max_tokens(param: &str, v: Option<u32>) -> Result<Option<usize>, ApiError> {
    match v {
        Some(0) => Err(ApiError::invalid(
            param,
            format!("{param} must be at least 1"),
        )),
        v => Ok(v.map(|v| v as usize)),
    }
}

fn refuse_if_set<T>(param: &str, v: &Option<T>, why: &str) -> Result<(), ApiError> {
    if v.is_some() {
        return Err(ApiError::invalid(
            param,
            format!("`{param}` is not supported: {why}"),
        ));
    }
    Ok(())
}

/// The grammar for `response_format`, if it asks for JSON.
pub(crate) fn grammar(format: Option<&ResponseFormat>) -> Result<Option<Arc<Grammar>>, ApiError> {
    match format {
        None | Some(ResponseFormat::Text) => Ok(None),
        Some(ResponseFormat::JsonObject) => Ok(Some(Arc::new(Grammar::any_object()))),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let Some(schema) = &json_schema.schema else {
                return Err(ApiError::invalid(
                    "response_format.json_schema.schema",
                    "json_schema needs a `schema`",
                ));
            };
            Grammar::from_schema(schema)
                .map(|g| Some(Arc::new(g)))
                .map_err(|e| ApiError::invalid("response_format.json_schema.schema", e.to_string()))
        }
    }
}

/// The engine's messages from OpenAI's; `developer` is a system message.
fn messages(msgs: &[Message]) -> Result<Vec<ChatMessage>, ApiError> {
    if msgs.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role"),
                        format!(
                            "role `{other}` is not supported (system, developer, user, assistant)"
                        ),
                    ));
                }
            };
            Ok(ChatMessage::new(role, content_text(m.content.as_ref(), i)?))
        })
        .collect()
}

fn content_text(c: Option<&Content>, i: usize) -> Result<String, ApiError> {
    match c {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t.clone()),
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => out.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("messages[{i}].content[{j}]"),
                            format!("content parts of type `{kind}` are not supported; send text"),
                        ));
                    }
                }
            }
            Ok(out)
        }
    }
}

fn wire_logprobs(model: &LocalModel, id: u32, lp: &TokenLogprobs) -> TokenLogprob {
    let (token, bytes) = prompt::token_text(&model.model, id);
    TokenLogprob {
        token,
        logprob: lp.logprob,
        bytes,
        top_logprobs: lp
            .top
            .iter()
            .map(|&(t, l)| {
                let (token, bytes) = prompt::token_text(&model.model, t);
                TopLogprob {
                    token,
                    logprob: l,
                    bytes,
                }
            })
            .collect(),
    }
}

fn usage(prompt_tokens: usize, completion_tokens: usize, cached: usize) -> Usage {
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: cached,
        }),
    }
}

fn sse_json<T: serde::Serialize>(v: &T) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(v).unwrap_or_default())
}

type SseStream = BoxStream<'static, Result<SseEvent, Infallible>>;

fn sse(stream: SseStream) -> Response {
    Sse::new(stream).into_response()
}

async fn chat_completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    let msgs = messages(&req.messages)?;
    refuse_if_set("tools", &req.tools, "lucid has no tool calling")?;
    refuse_if_set("tool_choice", &req.tool_choice, "lucid has no tool calling")?;
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
        return remote_chat(state, req, msgs, max_tokens, top, stop, n, include_usage).await;
    }
    let local_name = model_ref.model().unwrap_or_default().to_owned();
    let lm = state.require_model(&local_name)?.clone();
    let mut sampling = sampling;
    prompt::apply_defaults(&lm, &mut sampling, req.temperature, req.top_p);
    let grammar = grammar(req.response_format.as_ref())?;
    let tokens = prompt::chat_tokens(&lm, msgs, "messages").await?;
    let request = Request {
        prompt: tokens,
        max_tokens,
        sampling,
        stop,
        logprobs: top,
        grammar,
        ignore_eos: false,
    };
    let gens = generate::submit_n(&lm, &request, n, "messages")?;
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
    let body = generate::drive(merged, out, move |event, out| match event {
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
            if !f.tail.is_empty() {
                out.push_back(sse_json(&chunk(
                    vec![ChunkChoice {
                        index: i,
                        delta: Delta {
                            role: None,
                            content: Some(f.tail),
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
                    },
                    logprobs: None,
                    finish_reason: Some(generate::finish_reason(f.reason)),
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

fn chat_completion(
    lm: &LocalModel,
    id: String,
    created: u64,
    model: String,
    prompt_tokens: usize,
    collected: Vec<Collected>,
    with_logprobs: bool,
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
            .map(|(i, c)| ChatChoice {
                index: i,
                logprobs: with_logprobs.then(|| ChoiceLogprobs {
                    content: c
                        .tokens
                        .iter()
                        .filter_map(|t| t.logprobs.as_ref().map(|lp| wire_logprobs(lm, t.id, lp)))
                        .collect(),
                    refusal: None,
                }),
                finish_reason: c
                    .finished
                    .as_ref()
                    .map_or("stop", |f| generate::finish_reason(f.reason)),
                message: AssistantMessage {
                    role: "assistant",
                    content: c.text,
                    refusal: None,
                },
            })
            .collect(),
        usage: usage(prompt_tokens, completion_tokens, cached),
        system_fingerprint: FINGERPRINT,
    }
}

/// A chat with a vendor's model (or a compatible endpoint) through the
/// provider router.
#[allow(clippy::too_many_arguments)]
async fn remote_chat(
    state: AppState,
    req: ChatCompletionRequest,
    msgs: Vec<ChatMessage>,
    max_tokens: Option<usize>,
    top: Option<usize>,
    stop: Vec<String>,
    n: usize,
    include_usage: bool,
) -> Result<Response, ApiError> {
    state.license_policy().check_remote(&req.model)?;
    if n != 1 {
        return Err(ApiError::invalid(
            "n",
            "n > 1 is not supported for provider models",
        ));
    }
    if !matches!(req.response_format, None | Some(ResponseFormat::Text)) {
        return Err(ApiError::invalid(
            "response_format",
            "response_format is only supported for local models",
        ));
    }
    let params = lucid_providers::SamplingParams {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        max_tokens: max_tokens.map(|m| m as u32),
        stop,
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logprobs: top.map(|t| t as u8),
    };
    let chat = ChatRequest {
        model: req.model.clone(),
        messages: msgs
            .into_iter()
            .map(|m| lucid_providers::Message {
                role: match m.role {
                    Role::System => lucid_providers::Role::System,
                    Role::User => lucid_providers::Role::User,
                    Role::Assistant => lucid_providers::Role::Assistant,
                },
                content: m.content,
            })
            .collect(),
        params,
        stream: req.stream.unwrap_or(false),
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let providers = state.providers().clone();
    if !chat.stream {
        let r = providers.chat(&chat).await?;
        let u = r.usage.unwrap_or_default();
        return Ok(axum::Json(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model: req.model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: r.text,
                    refusal: None,
                },
                logprobs: r.logprobs.map(|lps| ChoiceLogprobs {
                    content: lps.into_iter().map(provider_logprob).collect(),
                    refusal: None,
                }),
                finish_reason: provider_finish(&r.finish_reason),
            }],
            usage: Usage {
                prompt_tokens: u.prompt_tokens as usize,
                completion_tokens: u.completion_tokens as usize,
                total_tokens: u.total_tokens() as usize,
                prompt_tokens_details: None,
            },
            system_fingerprint: FINGERPRINT,
        })
        .into_response());
    }
    let upstream = providers.chat_stream(&chat).await?;
    let model = req.model.clone();
    let mk = move |choices: Vec<ChunkChoice>, usage: Option<Option<Usage>>| ChatCompletionChunk {
        id: id.clone(),
        object: "chat.completion.chunk",
        created,
        model: model.clone(),
        system_fingerprint: FINGERPRINT,
        choices,
        usage,
    };
    let null_usage = include_usage.then_some(None);
    let first = sse_json(&mk(
        vec![ChunkChoice {
            index: 0,
            delta: Delta {
                role: Some("assistant"),
                content: Some(String::new()),
            },
            logprobs: None,
            finish_reason: None,
        }],
        null_usage.clone(),
    ));
    let body = stream::once(async move { first })
        .chain(upstream.flat_map(move |ev| {
            let events: Vec<SseEvent> = match ev {
                Ok(ChatEvent::Delta { text, logprobs }) => vec![sse_json(&mk(
                    vec![ChunkChoice {
                        index: 0,
                        delta: Delta {
                            role: None,
                            content: Some(text),
                        },
                        logprobs: logprobs.map(|l| ChoiceLogprobs {
                            content: l.into_iter().map(provider_logprob).collect(),
                            refusal: None,
                        }),
                        finish_reason: None,
                    }],
                    null_usage.clone(),
                ))],
                Ok(ChatEvent::Finish { reason, usage }) => {
                    let mut v = vec![sse_json(&mk(
                        vec![ChunkChoice {
                            index: 0,
                            delta: Delta {
                                role: None,
                                content: None,
                            },
                            logprobs: None,
                            finish_reason: Some(provider_finish(&reason)),
                        }],
                        null_usage.clone(),
                    ))];
                    if include_usage {
                        let u = usage.unwrap_or_default();
                        v.push(sse_json(&mk(
                            Vec::new(),
                            Some(Some(Usage {
                                prompt_tokens: u.prompt_tokens as usize,
                                completion_tokens: u.completion_tokens as usize,
                                total_tokens: u.total_tokens() as usize,
                                prompt_tokens_details: None,
                            })),
                        )));
                    }
                    v
                }
                Err(e) => vec![sse_json(&ApiError::from(e).openai_body())],
            };
            stream::iter(events)
        }))
        .chain(stream::once(async { SseEvent::default().data("[DONE]") }))
        .map(Ok::<_, Infallible>);
    Ok(sse(body.boxed()))
}

fn provider_logprob(l: lucid_providers::TokenLogprob) -> TokenLogprob {
    TokenLogprob {
        bytes: l.token.as_bytes().to_vec(),
        token: l.token,
        logprob: l.logprob,
        top_logprobs: l
            .top
            .into_iter()
            .map(|t| TopLogprob {
                bytes: t.token.as_bytes().to_vec(),
                token: t.token,
                logprob: t.logprob,
            })
            .collect(),
    }
}

fn provider_finish(r: &lucid_providers::FinishReason) -> &'static str {
    match r {
        lucid_providers::FinishReason::Stop => "stop",
        lucid_providers::FinishReason::Length => "length",
        lucid_providers::FinishReason::ContentFilter => "content_filter",
        lucid_providers::FinishReason::ToolCalls => "tool_calls",
        lucid_providers::FinishReason::Other(_) => "stop",
    }
}

async fn completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
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
        .require_model(model_ref.model().unwrap_or_default())?
        .clone();
    let mut sampling = sampling;
    prompt::apply_defaults(&lm, &mut sampling, req.temperature, req.top_p);
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
            grammar: None,
            ignore_eos: false,
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
