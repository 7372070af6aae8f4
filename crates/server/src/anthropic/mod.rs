//! The Anthropic Messages API on local models: `POST /v1/messages` (plain
//! and streamed) and `POST /v1/messages/count_tokens`, so the `anthropic`
//! SDKs and the tools built on them run on a model lucid serves.
//!
//! A conversation becomes the same prompt as on the OpenAI and Ollama
//! routes (`crate::prompt`: the model's chat template and default system
//! message), and the model's default sampling settings apply where the
//! request sets none. A last message from the assistant is a prefill: the
//! reply continues it, as Anthropic's API does. Streams carry named events
//! (`message_start`, `content_block_start`, `ping`, `content_block_delta`
//! …, `message_delta`, `message_stop`); a generation the server cuts short
//! ends in an `error` event instead, which the SDK raises. Errors have
//! Anthropic's shape ([`AnthropicError`]).
//!
//! Structured output (`output_config.format`, a JSON schema) constrains
//! decoding with the same grammar as the OpenAI route's `response_format`.
//! Sampling fields that Anthropic's API has dropped (`temperature`,
//! `top_p`, `top_k`) are still applied when an older client sends them.
//!
//! Not yet: tools (`tool_use`/`tool_result` blocks), images and documents,
//! extended thinking and effort, and `provider:model` names; each is
//! refused with a 400 that names it.

mod wire;

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::stream::StreamExt;
use lucid_engine::{ChatMessage, Role, StopReason};
use lucid_providers::ModelRef;
use lucid_scheduler::{Event, Request};
use serde_json::{Map, Value};

use crate::body::ApiJson;
use crate::error::{AnthropicError, ApiError};
use crate::generate;
use crate::prompt;
use crate::state::{AppState, LocalModel};
use wire::*;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
}

/// Fields that ask nothing of the model: who asks, where and how fast the
/// vendor should run it, caching hints (lucid's prefix cache reuses every
/// prompt it can anyway), a request for cache diagnostics.
const METADATA_FIELDS: &[&str] = &[
    "metadata",
    "service_tier",
    "inference_geo",
    "speed",
    "user_profile_id",
    "workspace_id",
    "cache_control",
    "diagnostics",
];

async fn messages(
    State(state): State<AppState>,
    body: Result<ApiJson<MessagesRequest>, ApiError>,
) -> Result<Response, AnthropicError> {
    let ApiJson(req) = body?;
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down().into());
    }
    refuse_unknown(&req.other)?;
    refuse_tools_and_thinking(&req.tools, &req.tool_choice, &req.thinking)?;
    if req.max_tokens == 0 {
        return Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1").into());
    }
    if let Some(t) = req.temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be between 0 and 1, not {t}"),
        )
        .into());
    }
    let lm = local_model(&state, &req.model).await?;
    let (conversation, prefill) = conversation(req.system.as_ref(), &req.messages)?;
    let mut sampling = crate::openai::sampling(
        req.temperature,
        req.top_p,
        req.top_k,
        None,
        None,
        None,
        None,
        None,
    )?;
    prompt::apply_defaults(&lm, &mut sampling, req.temperature, req.top_p);
    let grammar = output_grammar(req.output_config.as_ref()).await?;
    let tokens = prompt::continued_chat_tokens(&lm, conversation, prefill, "messages").await?;
    let request = Request {
        prompt: tokens,
        max_tokens: Some(req.max_tokens as usize),
        sampling,
        stop: req.stop_sequences.clone().unwrap_or_default(),
        logprobs: None,
        grammar,
        ignore_eos: false,
    };
    let prompt_tokens = request.prompt.len();
    let gens = generate::submit_n(&lm, &request, 1, "messages")?;
    let merged = generate::merge(&state, &lm.name, gens, 0);
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let message = |content: Vec<TextBlock>, usage: Usage| Message {
        id: id.clone(),
        kind: "message",
        role: "assistant",
        model: req.model.clone(),
        content,
        stop_reason: None,
        stop_sequence: None,
        usage,
    };

    if !req.stream.unwrap_or(false) {
        let mut collected = generate::collect(merged, 1).await?;
        let Some(c) = collected.pop() else {
            return Err(ApiError::internal("the generation ended without a reply").into());
        };
        let Some(f) = c.finished else {
            return Err(ApiError::cut_off().into());
        };
        let mut reply = message(
            vec![TextBlock {
                kind: "text",
                text: c.text,
            }],
            usage(
                prompt_tokens,
                f.usage.completion_tokens,
                f.usage.cached_tokens,
            ),
        );
        reply.stop_reason = Some(stop_reason(f.reason)?);
        reply.stop_sequence = f.stop_string;
        return Ok(axum::Json(reply).into_response());
    }

    let start = StreamEvent::MessageStart {
        message: message(Vec::new(), usage(prompt_tokens, 0, 0)),
    };
    let out: VecDeque<SseEvent> = [
        start,
        StreamEvent::ContentBlockStart {
            index: 0,
            content_block: TextBlock {
                kind: "text",
                text: String::new(),
            },
        },
        StreamEvent::Ping,
    ]
    .iter()
    .map(event)
    .collect();
    let body = generate::drive(merged, out, move |e, out| match e {
        Some((_, Event::Token(t))) if !t.text.is_empty() => {
            out.push_back(event(&text_delta(t.text)));
        }
        Some((_, Event::Finished(f))) => {
            if !f.tail.is_empty() {
                out.push_back(event(&text_delta(f.tail)));
            }
            let reason = match stop_reason(f.reason) {
                Ok(reason) => reason,
                Err(cut) => {
                    out.push_back(error_event(&cut));
                    return;
                }
            };
            out.push_back(event(&StreamEvent::ContentBlockStop { index: 0 }));
            out.push_back(event(&StreamEvent::MessageDelta {
                delta: MessageDelta {
                    stop_reason: reason,
                    stop_sequence: f.stop_string,
                },
                usage: usage(
                    prompt_tokens,
                    f.usage.completion_tokens,
                    f.usage.cached_tokens,
                ),
            }));
            out.push_back(event(&StreamEvent::MessageStop));
        }
        Some((_, Event::Failed(e))) => {
            out.push_back(error_event(&ApiError::from_scheduler(e, "messages")));
        }
        Some((_, Event::Token(_))) | None => {}
    })
    .map(Ok::<_, Infallible>);
    Ok(Sse::new(body.boxed()).into_response())
}

async fn count_tokens(
    State(state): State<AppState>,
    body: Result<ApiJson<CountTokensRequest>, ApiError>,
) -> Result<Response, AnthropicError> {
    let ApiJson(req) = body?;
    refuse_unknown(&req.other)?;
    refuse_tools_and_thinking(&req.tools, &req.tool_choice, &req.thinking)?;
    let lm = local_model(&state, &req.model).await?;
    let (conversation, prefill) = conversation(req.system.as_ref(), &req.messages)?;
    let tokens = prompt::continued_chat_tokens(&lm, conversation, prefill, "messages").await?;
    Ok(axum::Json(TokenCount {
        input_tokens: tokens.len(),
    })
    .into_response())
}

async fn local_model(state: &AppState, name: &str) -> Result<LocalModel, ApiError> {
    let model_ref = ModelRef::parse(name).map_err(ApiError::from)?;
    if model_ref.provider_key().is_some() {
        return Err(ApiError::invalid(
            "model",
            format!(
                "`{name}` is a provider's model; /v1/messages runs the models this server \
                 holds (call a provider's model through /v1/chat/completions)"
            ),
        ));
    }
    state
        .require_model(model_ref.model().unwrap_or_default())
        .await
}

/// The grammar for `output_config.format` (a JSON schema), compiled as
/// the OpenAI route's `response_format`; reasoning `effort` is refused, as
/// lucid's models do not reason apart from their reply.
async fn output_grammar(
    config: Option<&OutputConfig>,
) -> Result<Option<std::sync::Arc<lucid_scheduler::Grammar>>, ApiError> {
    let Some(config) = config else {
        return Ok(None);
    };
    if let Some(field) = config
        .other
        .iter()
        .find(|(_, v)| !v.is_null())
        .map(|(k, _)| k)
    {
        return Err(ApiError::invalid(
            format!("output_config.{field}"),
            format!("`{field}` is not supported"),
        ));
    }
    if config.effort.as_ref().is_some_and(|e| !e.is_null()) {
        return Err(ApiError::invalid(
            "output_config.effort",
            "reasoning effort is not supported: lucid's models do not reason apart from their reply",
        ));
    }
    match &config.format {
        None => Ok(None),
        Some(OutputFormat::JsonSchema { schema }) => {
            crate::openai::compile(schema.clone(), "output_config.format.schema").await
        }
    }
}

/// Anthropic's `stop_reason`; a generation the server cut short has none
/// and is an error.
fn stop_reason(r: StopReason) -> Result<&'static str, ApiError> {
    Ok(match r {
        StopReason::EndOfGeneration => "end_turn",
        StopReason::StopString => "stop_sequence",
        StopReason::MaxTokens => "max_tokens",
        StopReason::ContextFull => "model_context_window_exceeded",
        StopReason::Cancelled => return Err(ApiError::cut_off()),
    })
}

fn usage(prompt: usize, output: usize, cached: usize) -> Usage {
    Usage {
        input_tokens: prompt - cached.min(prompt),
        output_tokens: output,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: cached,
    }
}

fn text_delta(text: String) -> StreamEvent {
    StreamEvent::ContentBlockDelta {
        index: 0,
        delta: TextDelta {
            kind: "text_delta",
            text,
        },
    }
}

fn event(e: &StreamEvent) -> SseEvent {
    SseEvent::default()
        .event(e.name())
        .data(serde_json::to_string(e).unwrap_or_default())
}

fn error_event(e: &ApiError) -> SseEvent {
    SseEvent::default()
        .event("error")
        .data(e.anthropic_body().to_string())
}

/// The engine's conversation, and the prefill: the text of a last message
/// from the assistant, which the reply continues.
fn conversation(
    system: Option<&Content>,
    messages: &[InputMessage],
) -> Result<(Vec<ChatMessage>, String), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system {
        let text = text_of(system, "system")?;
        if !text.is_empty() {
            out.push(ChatMessage::new(Role::System, text));
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!(
                        "role `{other}` is not supported (user, assistant; the system prompt \
                         goes in `system`)"
                    ),
                ));
            }
        };
        out.push(ChatMessage::new(
            role,
            text_of(&m.content, &format!("messages[{i}].content"))?,
        ));
    }
    let prefill = match out.last() {
        Some(last) if last.role == Role::Assistant => {
            out.pop().map(|m| m.content).unwrap_or_default()
        }
        _ => String::new(),
    };
    Ok((out, prefill))
}

/// The text of a string or of text blocks (one line apart).
fn text_of(content: &Content, param: &str) -> Result<String, ApiError> {
    let blocks = match content {
        Content::Text(t) => return Ok(t.clone()),
        Content::Blocks(blocks) => blocks,
    };
    let mut texts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{param}[{j}]");
        match (b.kind.as_str(), &b.text) {
            ("text", Some(t)) => texts.push(t.as_str()),
            ("text", None) => {
                return Err(ApiError::invalid(at, "a text block needs its `text`"));
            }
            ("tool_use" | "tool_result", _) => {
                return Err(ApiError::invalid(
                    at,
                    format!(
                        "`{}` blocks are not supported: lucid has no tool use yet",
                        b.kind
                    ),
                ));
            }
            (kind, _) => {
                return Err(ApiError::invalid(
                    at,
                    format!("content blocks of type `{kind}` are not supported; send text"),
                ));
            }
        }
        // `cache_control` asks for what lucid's prefix cache does anyway;
        // `citations` only describe the text.
        if let Some(field) = b
            .other
            .keys()
            .find(|k| !matches!(k.as_str(), "cache_control" | "citations"))
        {
            return Err(ApiError::invalid(
                format!("{at}.{field}"),
                format!("`{field}` is not supported on a text block"),
            ));
        }
    }
    Ok(texts.join("\n"))
}

/// Refuses, by name, every field lucid neither applies nor lists in
/// [`METADATA_FIELDS`]; `null` is the same as absent.
fn refuse_unknown(other: &Map<String, Value>) -> Result<(), ApiError> {
    match other
        .iter()
        .find(|(k, v)| !v.is_null() && !METADATA_FIELDS.contains(&k.as_str()))
    {
        Some((k, _)) => Err(ApiError::invalid(
            k.clone(),
            format!("`{k}` is not supported by lucid's Messages API"),
        )),
        None => Ok(()),
    }
}

/// No tools yet (an empty list or `tool_choice: none` asks for none), and
/// no extended thinking (`thinking: disabled` is what lucid does).
fn refuse_tools_and_thinking(
    tools: &Option<Value>,
    tool_choice: &Option<Value>,
    thinking: &Option<Value>,
) -> Result<(), ApiError> {
    if tools
        .as_ref()
        .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(ApiError::invalid("tools", "lucid has no tool use yet"));
    }
    if tool_choice
        .as_ref()
        .is_some_and(|c| !c.is_null() && c.get("type").and_then(Value::as_str) != Some("none"))
    {
        return Err(ApiError::invalid(
            "tool_choice",
            "lucid has no tool use yet",
        ));
    }
    if thinking
        .as_ref()
        .is_some_and(|t| !t.is_null() && t.get("type").and_then(Value::as_str) != Some("disabled"))
    {
        return Err(ApiError::invalid(
            "thinking",
            "extended thinking is not supported (`{\"type\": \"disabled\"}` is accepted)",
        ));
    }
    Ok(())
}
