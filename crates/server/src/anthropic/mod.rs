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
//! Client tools work as on the chat route (`crate::openai::tools`):
//! `tool_use` blocks in a reply (`stop_reason: "tool_use"`), `tool_result`
//! blocks in the conversation; `tool_choice` `any` and `tool` constrain the
//! call to the tool's `input_schema`.
//!
//! Not yet: Anthropic's server tools, images and documents, extended
//! thinking and effort, and `provider:model` names; each is refused with a
//! 400 that names it.

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
use lucid_scheduler::{Event, Request};
use serde_json::{Map, Value, json};

use crate::body::ApiJson;
use crate::error::{AnthropicError, ApiError};
use crate::generate;
use crate::openai::tools::{ToolUse, tool_use};
use crate::prompt;
use crate::state::AppState;
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
    refuse_thinking(&req.thinking)?;
    let tools = tools(req.tools.as_ref(), req.tool_choice.as_ref())?;
    let may_call = tools.as_ref().is_some_and(ToolUse::may_call);
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
    let lm = state
        .require_local_model(&req.model, "/v1/messages")
        .await?;
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
    let forced = tools.as_ref().is_some_and(ToolUse::forces_a_call);
    if forced
        && req
            .output_config
            .as_ref()
            .is_some_and(|c| c.format.is_some())
    {
        return Err(ApiError::invalid(
            "output_config.format",
            "an output format cannot be combined with a tool_choice that asks for a call",
        )
        .into());
    }
    let grammar = output_grammar(req.output_config.as_ref()).await?;
    let shown = tools.as_ref().and_then(|t| t.shown.clone());
    let tokens = prompt::conversation_tokens(&lm, conversation, shown, prefill, "messages").await?;
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
    let requests = match tools.as_ref().filter(|_| forced) {
        Some(t) => t.forced_requests(&state, &lm, &request, 1).await?,
        None => vec![request],
    };
    let gens = generate::submit_each(&lm, requests, "messages")?;
    let merged = generate::merge(&state, &lm.name, gens, 0);
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let message = |content: Vec<OutBlock>, usage: Usage| Message {
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
        let (blocks, called) = blocks(tools.as_ref(), c.text);
        let mut reply = message(
            blocks,
            usage(
                prompt_tokens,
                f.usage.completion_tokens,
                f.usage.cached_tokens,
            ),
        );
        reply.stop_reason = Some(stop_reason(f.reason, called)?);
        reply.stop_sequence = f.stop_string;
        return Ok(axum::Json(reply).into_response());
    }

    let start = StreamEvent::MessageStart {
        message: message(Vec::new(), usage(prompt_tokens, 0, 0)),
    };
    let mut first = vec![start];
    // Without tools the text streams as it comes; with tools the model may
    // call, it is held to the end and read for calls, then sent as blocks.
    if !may_call {
        first.push(StreamEvent::ContentBlockStart {
            index: 0,
            content_block: OutBlock::Text {
                text: String::new(),
            },
        });
    }
    first.push(StreamEvent::Ping);
    let out: VecDeque<SseEvent> = first.iter().map(event).collect();
    let mut held = String::new();
    let body = generate::drive(merged, out, move |e, out| match e {
        Some((_, Event::Token(t))) if may_call => held.push_str(&t.text),
        Some((_, Event::Token(t))) if !t.text.is_empty() => {
            out.push_back(event(&text_delta(0, t.text)));
        }
        Some((_, Event::Finished(f))) => {
            let reason = if may_call {
                held.push_str(&f.tail);
                let (blocks, called) = blocks(tools.as_ref(), std::mem::take(&mut held));
                match stop_reason(f.reason, called) {
                    Ok(reason) => {
                        for (index, block) in blocks.into_iter().enumerate() {
                            send_block(out, index, block);
                        }
                        reason
                    }
                    Err(cut) => {
                        out.push_back(error_event(&cut));
                        return;
                    }
                }
            } else {
                if !f.tail.is_empty() {
                    out.push_back(event(&text_delta(0, f.tail)));
                }
                match stop_reason(f.reason, false) {
                    Ok(reason) => {
                        out.push_back(event(&StreamEvent::ContentBlockStop { index: 0 }));
                        reason
                    }
                    Err(cut) => {
                        out.push_back(error_event(&cut));
                        return;
                    }
                }
            };
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

/// A whole block as a stream sends it: its start (a tool call with empty
/// input), its content as one delta, its stop.
fn send_block(out: &mut VecDeque<SseEvent>, index: usize, block: OutBlock) {
    let (start, delta) = match block {
        OutBlock::Text { text } => (
            OutBlock::Text {
                text: String::new(),
            },
            BlockDelta::TextDelta { text },
        ),
        OutBlock::ToolUse { id, name, input } => (
            OutBlock::ToolUse {
                id,
                name,
                input: Value::Object(Map::new()),
            },
            BlockDelta::InputJsonDelta {
                partial_json: input.to_string(),
            },
        ),
    };
    out.push_back(event(&StreamEvent::ContentBlockStart {
        index,
        content_block: start,
    }));
    out.push_back(event(&StreamEvent::ContentBlockDelta { index, delta }));
    out.push_back(event(&StreamEvent::ContentBlockStop { index }));
}

/// A reply's blocks: its text (when there is any, or nothing else), then
/// its calls; and whether it called a tool.
fn blocks(tools: Option<&ToolUse>, text: String) -> (Vec<OutBlock>, bool) {
    let (content, calls) = match tools {
        Some(t) => t.read_calls(&text),
        None => (Some(text), Vec::new()),
    };
    let mut blocks = Vec::with_capacity(calls.len() + 1);
    if let Some(text) = content.filter(|t| !t.is_empty() || calls.is_empty()) {
        blocks.push(OutBlock::Text { text });
    }
    let called = !calls.is_empty();
    for call in calls {
        blocks.push(OutBlock::ToolUse {
            id: format!("toolu_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
            name: call.name,
            input: call.arguments,
        });
    }
    (blocks, called)
}

/// Anthropic's tools and `tool_choice` as the chat route's: `auto`, `any`
/// (a call is required), `tool` (that one), `none`; client tools only.
fn tools(tools: Option<&Value>, choice: Option<&Value>) -> Result<Option<ToolUse>, ApiError> {
    let list = match tools {
        None | Some(Value::Null) => return refuse_choice_without_tools(choice),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::invalid("tools", "tools must be a list")),
    };
    let mut functions = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        if let Some(kind) = tool
            .get("type")
            .and_then(Value::as_str)
            .filter(|k| *k != "custom")
        {
            return Err(ApiError::invalid(
                format!("tools[{i}].type"),
                format!("`{kind}` is a server tool of Anthropic's; lucid runs only client tools"),
            ));
        }
        // `cache_control` asks for what lucid's prefix cache does anyway.
        known_fields(
            tool,
            &[
                "type",
                "name",
                "description",
                "input_schema",
                "cache_control",
            ],
            &format!("tools[{i}]"),
        )?;
        functions.push(json!({"type": "function", "function": {
            "name": tool.get("name").cloned().unwrap_or(Value::Null),
            "description": tool.get("description").cloned().unwrap_or(Value::Null),
            "parameters": tool.get("input_schema").cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        }}));
    }
    if let Some(c) = choice.filter(|c| !c.is_null()) {
        known_fields(
            c,
            &["type", "name", "disable_parallel_tool_use"],
            "tool_choice",
        )?;
    }
    let parallel = choice
        .and_then(|c| c.get("disable_parallel_tool_use"))
        .and_then(Value::as_bool)
        .map(|disable| !disable);
    let choice = match choice.filter(|c| !c.is_null()) {
        None => None,
        Some(c) => Some(match c.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": c.get("name")}}),
            _ => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    "tool_choice's type is auto, any, tool or none",
                ));
            }
        }),
    };
    tool_use(Some(&Value::Array(functions)), choice.as_ref(), parallel)
}

/// Refuses the first field of `object` not in `known`, by name.
fn known_fields(object: &Value, known: &[&str], at: &str) -> Result<(), ApiError> {
    let other = object
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    crate::body::refuse_extra(&other, at)
}

fn refuse_choice_without_tools(choice: Option<&Value>) -> Result<Option<ToolUse>, ApiError> {
    match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        None | Some("none" | "auto") => Ok(None),
        Some(_) => Err(ApiError::invalid(
            "tool_choice",
            "tool_choice asks for a call, but there are no tools",
        )),
    }
}

async fn count_tokens(
    State(state): State<AppState>,
    body: Result<ApiJson<CountTokensRequest>, ApiError>,
) -> Result<Response, AnthropicError> {
    let ApiJson(req) = body?;
    refuse_unknown(&req.other)?;
    refuse_thinking(&req.thinking)?;
    let tools = tools(req.tools.as_ref(), req.tool_choice.as_ref())?;
    let lm = state
        .require_local_model(&req.model, "/v1/messages")
        .await?;
    let (conversation, prefill) = conversation(req.system.as_ref(), &req.messages)?;
    let shown = tools.and_then(|t| t.shown);
    let tokens = prompt::conversation_tokens(&lm, conversation, shown, prefill, "messages").await?;
    Ok(axum::Json(TokenCount {
        input_tokens: tokens.len(),
    })
    .into_response())
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
fn stop_reason(r: StopReason, called: bool) -> Result<&'static str, ApiError> {
    Ok(match r {
        StopReason::EndOfGeneration | StopReason::StopString if called => "tool_use",
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

fn text_delta(index: usize, text: String) -> StreamEvent {
    StreamEvent::ContentBlockDelta {
        index,
        delta: BlockDelta::TextDelta { text },
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
        crate::body::refuse_extra(&m.other, &format!("messages[{i}]"))?;
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
        out.extend(turns(role, &m.content, &format!("messages[{i}].content"))?);
    }
    let prefill = match out.last() {
        Some(last) if last.role == Role::Assistant && last.tool_calls.is_empty() => {
            out.pop().map(|m| m.content).unwrap_or_default()
        }
        _ => String::new(),
    };
    Ok((out, prefill))
}

/// The turns one message makes: a user's `tool_result` blocks are tool
/// messages (before the user's own text), an assistant's `tool_use` blocks
/// its tool calls.
fn turns(role: Role, content: &Content, param: &str) -> Result<Vec<ChatMessage>, ApiError> {
    let Content::Blocks(blocks) = content else {
        return Ok(vec![ChatMessage::new(role, text_of(content, param)?)]);
    };
    let mut turns = Vec::new();
    let mut own = ChatMessage::new(role, String::new());
    let mut texts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{param}[{j}]");
        let field = |name: &str| b.other.get(name).filter(|v| !v.is_null());
        match (b.kind.as_str(), role) {
            ("tool_use", Role::Assistant) => {
                let (Some(id), Some(name), Some(input)) = (
                    field("id").and_then(Value::as_str),
                    field("name").and_then(Value::as_str),
                    field("input").filter(|i| i.is_object()),
                ) else {
                    return Err(ApiError::invalid(
                        at,
                        "a tool_use block needs its `id`, `name` and `input` (an object)",
                    ));
                };
                own.tool_calls.push(lucid_engine::ToolCall {
                    id: id.to_owned(),
                    kind: "function".into(),
                    function: lucid_engine::FunctionCall {
                        name: name.to_owned(),
                        arguments: input.clone(),
                    },
                });
            }
            ("tool_result", Role::User) => {
                let Some(id) = field("tool_use_id").and_then(Value::as_str) else {
                    return Err(ApiError::invalid(
                        at,
                        "a tool_result block needs its `tool_use_id`",
                    ));
                };
                let result = match field("content") {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => {
                        let blocks: Vec<Block> =
                            serde_json::from_value(v.clone()).map_err(|e| {
                                ApiError::invalid(format!("{at}.content"), e.to_string())
                            })?;
                        text_of(&Content::Blocks(blocks), &format!("{at}.content"))?
                    }
                };
                let is_error = field("is_error").and_then(Value::as_bool) == Some(true);
                let mut message = ChatMessage::new(
                    Role::Tool,
                    if is_error {
                        format!("Error: {result}")
                    } else {
                        result
                    },
                );
                message.tool_call_id = Some(id.to_owned());
                turns.push(message);
            }
            ("tool_use" | "tool_result", _) => {
                let belongs = if b.kind == "tool_use" {
                    "assistant"
                } else {
                    "user"
                };
                return Err(ApiError::invalid(
                    at,
                    format!("`{}` blocks belong in {belongs} messages", b.kind),
                ));
            }
            _ => texts.push(block_text(b, &at)?),
        }
    }
    own.content = texts.join("\n");
    if !own.content.is_empty() || !own.tool_calls.is_empty() || turns.is_empty() {
        turns.push(own);
    }
    Ok(turns)
}

/// The text of a string or of text blocks (one line apart).
fn text_of(content: &Content, param: &str) -> Result<String, ApiError> {
    match content {
        Content::Text(t) => Ok(t.clone()),
        Content::Blocks(blocks) => {
            let texts = blocks
                .iter()
                .enumerate()
                .map(|(j, b)| block_text(b, &format!("{param}[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts.join("\n"))
        }
    }
}

/// The text of one text block; any other block is refused at `at`.
fn block_text<'a>(b: &'a Block, at: &str) -> Result<&'a str, ApiError> {
    let text = match (b.kind.as_str(), &b.text) {
        ("text", Some(t)) => t.as_str(),
        ("text", None) => {
            return Err(ApiError::invalid(at, "a text block needs its `text`"));
        }
        (kind, _) => {
            return Err(ApiError::invalid(
                at,
                format!("content blocks of type `{kind}` are not supported; send text"),
            ));
        }
    };
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
    Ok(text)
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

/// No extended thinking (`thinking: disabled` is what lucid does).
fn refuse_thinking(thinking: &Option<Value>) -> Result<(), ApiError> {
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
