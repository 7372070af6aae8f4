//! `POST /v1/responses`: OpenAI's Responses API on a local model, stateless
//! (every turn comes in `input`; nothing is stored).
//!
//! `input` is a string or message items (roles user, assistant, system,
//! developer; `input_text`/`output_text` parts), `instructions` the system
//! message; the prompt is built as on the chat route, with the model's
//! defaults. `text.format` (`json_schema`, `json_object`) constrains the
//! output as `response_format` does. A reply stopped by
//! `max_output_tokens` (or a full context) is `incomplete`. Streams carry
//! the named events the SDK reads, from `response.created` to
//! `response.completed` (or `response.incomplete`); a generation the server
//! cuts short ends in `response.failed`.
//!
//! Function tools work as on the chat route (`tools`, `tool_choice`,
//! `parallel_tool_calls`; calls forced by `required` or a named function
//! are constrained to the function's parameters): a call comes back as a
//! `function_call` output item (streamed: `response.output_item.added`,
//! `response.function_call_arguments.delta`/`.done`), and goes back in as
//! `function_call` and `function_call_output` input items. With tools the
//! model may call, the streamed reply is held until it ends, since its text
//! may turn out to be a call.
//!
//! Not yet: other tool types (web search, file search, computer use),
//! `previous_response_id` and conversations (no state is kept), images and
//! files, reasoning; each is refused with a 400 naming it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::StreamExt;
use lucid_engine::{ChatMessage, FunctionCall, Role, StopReason, ToolCall};
use lucid_scheduler::{Event, Grammar, Request};
use serde_json::Value;

use super::params::{compile, refuse_unknown, sampling};
use super::tools::{ToolUse, tool_use};
use super::wire::*;
use crate::body::ApiJson;
use crate::error::ApiError;
use crate::generate;
use crate::prompt;
use crate::state::{AppState, now_secs};

pub(super) async fn responses(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ResponsesRequest>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    refuse_unknown(&req.other)?;
    refuse_unsupported(&req)?;
    if req.max_output_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_output_tokens",
            "max_output_tokens must be at least 1",
        ));
    }
    let (tools, choice) = chat_shaped_tools(req.tools.as_ref(), req.tool_choice.as_ref())?;
    let tool_use = tool_use(tools.as_ref(), choice.as_ref(), req.parallel_tool_calls)?;
    let conversation = conversation(req.instructions.as_deref(), &req.input)?;
    let lm = state
        .require_local_model(&req.model, "/v1/responses")
        .await?;
    let mut params = sampling(
        req.temperature,
        req.top_p,
        None,
        None,
        None,
        None,
        None,
        None,
    )?;
    prompt::apply_defaults(&lm, &mut params, req.temperature, req.top_p);
    let format = req
        .text
        .as_ref()
        .and_then(|t| t.format.clone())
        .unwrap_or(TextFormat::Text {});
    let forced = tool_use.as_ref().is_some_and(ToolUse::forces_a_call);
    if forced && !matches!(format, TextFormat::Text {}) {
        return Err(ApiError::invalid(
            "text.format",
            "a text format cannot be combined with a tool_choice that asks for a call",
        ));
    }
    let grammar = grammar(&format).await?;
    let shown = tool_use.as_ref().and_then(|t| t.shown.clone());
    let tokens = prompt::chat_tokens_with_tools(&lm, conversation, shown, "input").await?;
    let request = Request {
        prompt: tokens,
        max_tokens: req.max_output_tokens.map(|m| m as usize),
        sampling: params.clone(),
        stop: Vec::new(),
        logprobs: None,
        grammar,
        ignore_eos: false,
    };
    let requests = match tool_use.as_ref().filter(|_| forced) {
        Some(tools) => tools.forced_requests(&state, &lm, &request, 1).await?,
        None => vec![request.clone()],
    };
    let prompt_tokens = request.prompt.len();
    let gens = generate::submit_each(&lm, requests, "input")?;
    let merged = generate::merge(&state, &lm.name, gens, 0);
    // The reply is read for calls only when the model may make them.
    let calls_from: Option<Arc<ToolUse>> = tool_use.filter(ToolUse::may_call).map(Arc::new);

    let item_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let shell = ResponseObject {
        id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
        object: "response",
        created_at: now_secs(),
        status: "in_progress",
        error: None,
        incomplete_details: None,
        instructions: req.instructions.clone(),
        max_output_tokens: req.max_output_tokens,
        model: req.model.clone(),
        output: Vec::new(),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        temperature: params.temperature,
        top_p: params.top_p,
        tool_choice: req
            .tool_choice
            .clone()
            .filter(|c| !c.is_null())
            .unwrap_or_else(|| Value::from("auto")),
        tools: req
            .tools
            .as_ref()
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        text: TextOut { format },
        truncation: "disabled",
        store: false,
        usage: None,
    };

    if !req.stream.unwrap_or(false) {
        let mut collected = generate::collect(merged, 1).await?;
        let Some(c) = collected.pop() else {
            return Err(ApiError::internal("the generation ended without a reply"));
        };
        let Some(f) = c.finished else {
            return Err(ApiError::cut_off());
        };
        let (content, calls) = read(calls_from.as_deref(), c.text);
        let done = finished(
            shell,
            &item_id,
            content,
            calls,
            f.reason,
            prompt_tokens,
            f.usage.completion_tokens,
            f.usage.cached_tokens,
        );
        return Ok(axum::Json(done).into_response());
    }

    // Streamed. Text the model may turn into calls is held until the reply
    // ends, then sent as the items it became; otherwise it is sent as it
    // comes.
    let held = calls_from.is_some();
    let mut seq = Sequencer::default();
    let mut out: VecDeque<SseEvent> = [
        ResponseEvent::Created {
            response: shell.clone(),
        },
        ResponseEvent::InProgress {
            response: shell.clone(),
        },
    ]
    .iter()
    .map(|e| seq.event(e))
    .collect();
    if !held {
        out.extend(message_opened(&item_id, 0).iter().map(|e| seq.event(e)));
    }
    let mut text = String::new();
    let body = generate::drive(merged, out, move |event, out| {
        let delta = |text: String| ResponseEvent::OutputTextDelta {
            item_id: item_id.clone(),
            output_index: 0,
            content_index: 0,
            delta: text,
            logprobs: Vec::new(),
        };
        match event {
            Some((_, Event::Token(t))) if !t.text.is_empty() => {
                text.push_str(&t.text);
                if !held {
                    out.push_back(seq.event(&delta(t.text)));
                }
            }
            Some((_, Event::Finished(f))) => {
                if !f.tail.is_empty() {
                    text.push_str(&f.tail);
                    if !held {
                        out.push_back(seq.event(&delta(f.tail)));
                    }
                }
                if f.reason == StopReason::Cancelled {
                    out.push_back(seq.event(&failed(&shell, &ApiError::cut_off())));
                    return;
                }
                let (content, calls) = read(calls_from.as_deref(), std::mem::take(&mut text));
                let done = finished(
                    shell.clone(),
                    &item_id,
                    content,
                    calls,
                    f.reason,
                    prompt_tokens,
                    f.usage.completion_tokens,
                    f.usage.cached_tokens,
                );
                for (index, item) in done.output.iter().enumerate() {
                    for e in item_events(item, index, !held) {
                        out.push_back(seq.event(&e));
                    }
                }
                out.push_back(seq.event(&if done.status == "completed" {
                    ResponseEvent::Completed { response: done }
                } else {
                    ResponseEvent::Incomplete { response: done }
                }));
            }
            Some((_, Event::Failed(e))) => {
                let e = ApiError::from_scheduler(e, "input");
                out.push_back(seq.event(&failed(&shell, &e)));
            }
            Some((_, Event::Token(_))) | None => {}
        }
    })
    .map(Ok::<_, Infallible>);
    Ok(Sse::new(body.boxed()).into_response())
}

/// The reply's text and calls: read for calls when the model may make them.
fn read(calls_from: Option<&ToolUse>, text: String) -> (Option<String>, Vec<OutToolCall>) {
    match calls_from {
        Some(tools) => tools.read(&text),
        None => (Some(text), Vec::new()),
    }
}

/// The events that open the message item at `index`: the item in
/// progress, then its empty text part.
fn message_opened(item_id: &str, index: usize) -> [ResponseEvent; 2] {
    [
        ResponseEvent::OutputItemAdded {
            output_index: index,
            item: OutputItem::Message(message(item_id, "in_progress", Vec::new())),
        },
        ResponseEvent::ContentPartAdded {
            item_id: item_id.to_owned(),
            output_index: index,
            content_index: 0,
            part: output_text(String::new()),
        },
    ]
}

/// The events of a finished output item, after its text deltas when they
/// were streamed (`opened`), or whole when it was held.
fn item_events(item: &OutputItem, index: usize, opened: bool) -> Vec<ResponseEvent> {
    let mut events = Vec::new();
    match item {
        OutputItem::Message(m) => {
            let text: String = m.content.iter().map(|p| p.text.as_str()).collect();
            if !opened {
                events.extend(message_opened(&m.id, index));
                events.push(ResponseEvent::OutputTextDelta {
                    item_id: m.id.clone(),
                    output_index: index,
                    content_index: 0,
                    delta: text.clone(),
                    logprobs: Vec::new(),
                });
            }
            events.push(ResponseEvent::OutputTextDone {
                item_id: m.id.clone(),
                output_index: index,
                content_index: 0,
                text: text.clone(),
                logprobs: Vec::new(),
            });
            events.push(ResponseEvent::ContentPartDone {
                item_id: m.id.clone(),
                output_index: index,
                content_index: 0,
                part: output_text(text),
            });
        }
        OutputItem::FunctionCall(call) => {
            events.push(ResponseEvent::OutputItemAdded {
                output_index: index,
                item: OutputItem::FunctionCall(FunctionCallItem {
                    arguments: String::new(),
                    status: "in_progress",
                    ..call.clone()
                }),
            });
            events.push(ResponseEvent::FunctionCallArgumentsDelta {
                item_id: call.id.clone(),
                output_index: index,
                delta: call.arguments.clone(),
            });
            events.push(ResponseEvent::FunctionCallArgumentsDone {
                item_id: call.id.clone(),
                output_index: index,
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
        }
    }
    events.push(ResponseEvent::OutputItemDone {
        output_index: index,
        item: item.clone(),
    });
    events
}

/// The Responses API's tools (`{"type": "function", "name", "parameters",
/// …}`) and `tool_choice` (`{"type": "function", "name"}`) in the chat
/// route's shape, so that both routes offer and read tools alike.
fn chat_shaped_tools(
    tools: Option<&Value>,
    choice: Option<&Value>,
) -> Result<(Option<Value>, Option<Value>), ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            let mut shaped = Vec::with_capacity(list.len());
            for (i, tool) in list.iter().enumerate() {
                let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
                if kind != "function" {
                    return Err(ApiError::invalid(
                        format!("tools[{i}].type"),
                        format!(
                            "tools of type `{kind}` are not supported: lucid runs function tools"
                        ),
                    ));
                }
                let Some(fields) = tool.as_object() else {
                    continue;
                };
                if let Some(field) = fields.keys().find(|k| {
                    !matches!(
                        k.as_str(),
                        "type" | "name" | "description" | "parameters" | "strict"
                    )
                }) {
                    return Err(ApiError::invalid(
                        format!("tools[{i}].{field}"),
                        format!("`{field}` is not supported on a function tool"),
                    ));
                }
                let mut function = fields.clone();
                function.remove("type");
                shaped.push(serde_json::json!({"type": "function", "function": function}));
            }
            Some(Value::Array(shaped))
        }
        Some(_) => return Err(ApiError::invalid("tools", "tools must be a list")),
    };
    let choice = match choice {
        Some(c) if c.get("type").and_then(Value::as_str) == Some("function") => {
            let name = c.get("name").cloned().unwrap_or(Value::Null);
            Some(serde_json::json!({"type": "function", "function": {"name": name}}))
        }
        other => other.cloned(),
    };
    Ok((tools, choice))
}

/// Numbers the events of one stream.
#[derive(Default)]
struct Sequencer {
    next: u64,
}

impl Sequencer {
    fn event(&mut self, e: &ResponseEvent) -> SseEvent {
        let mut data = serde_json::to_value(e).unwrap_or_default();
        if let Some(object) = data.as_object_mut() {
            object.insert("sequence_number".into(), self.next.into());
        }
        self.next += 1;
        SseEvent::default().event(e.name()).data(data.to_string())
    }
}

fn output_text(text: String) -> OutputText {
    OutputText {
        kind: "output_text",
        text,
        annotations: Vec::new(),
        logprobs: Vec::new(),
    }
}

fn message(id: &str, status: &'static str, content: Vec<OutputText>) -> OutputMessage {
    OutputMessage {
        kind: "message",
        id: id.to_owned(),
        status,
        role: "assistant",
        content,
    }
}

/// The response once the generation ended: `completed` when the model
/// stopped, `incomplete` when the token limit or the context did. Its
/// output is the reply's text as a message (unless it was only calls),
/// then a `function_call` item per call.
#[allow(clippy::too_many_arguments)]
fn finished(
    mut response: ResponseObject,
    item_id: &str,
    content: Option<String>,
    calls: Vec<OutToolCall>,
    reason: StopReason,
    prompt_tokens: usize,
    output_tokens: usize,
    cached: usize,
) -> ResponseObject {
    let complete = matches!(reason, StopReason::EndOfGeneration | StopReason::StopString);
    response.status = if complete { "completed" } else { "incomplete" };
    response.incomplete_details = (!complete).then_some(IncompleteDetails {
        reason: "max_output_tokens",
    });
    response.output = Vec::with_capacity(1 + calls.len());
    if content.is_some() || calls.is_empty() {
        let text = content.unwrap_or_default();
        response.output.push(OutputItem::Message(message(
            item_id,
            response.status,
            vec![output_text(text)],
        )));
    }
    for call in calls {
        response
            .output
            .push(OutputItem::FunctionCall(FunctionCallItem {
                kind: "function_call",
                id: format!("fc_{}", uuid::Uuid::new_v4().simple()),
                call_id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
                status: "completed",
            }));
    }
    response.usage = Some(ResponseUsage {
        input_tokens: prompt_tokens,
        input_tokens_details: InputTokensDetails {
            cached_tokens: cached,
        },
        output_tokens,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: 0,
        },
        total_tokens: prompt_tokens + output_tokens,
    });
    response
}

fn failed(shell: &ResponseObject, e: &ApiError) -> ResponseEvent {
    let mut response = shell.clone();
    response.status = "failed";
    response.error = Some(ResponseError {
        code: "server_error",
        message: e.message.clone(),
    });
    ResponseEvent::Failed { response }
}

async fn grammar(format: &TextFormat) -> Result<Option<Arc<Grammar>>, ApiError> {
    match format {
        TextFormat::Text {} => Ok(None),
        TextFormat::JsonObject {} => Ok(Some(Arc::new(Grammar::any_object()))),
        TextFormat::JsonSchema { schema: None, .. } => Err(ApiError::invalid(
            "text.format.schema",
            "a json_schema format needs a `schema`",
        )),
        TextFormat::JsonSchema {
            schema: Some(schema),
            ..
        } => compile(lucid_scheduler::Json::from(schema), "text.format.schema").await,
    }
}

/// The engine's conversation from `instructions` and `input`.
fn conversation(
    instructions: Option<&str>,
    input: &ResponsesInput,
) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out = Vec::new();
    if let Some(text) = instructions.filter(|t| !t.is_empty()) {
        out.push(ChatMessage::new(Role::System, text));
    }
    let items = match input {
        ResponsesInput::Text(text) => {
            out.push(ChatMessage::new(Role::User, text.clone()));
            return Ok(out);
        }
        ResponsesInput::Items(items) => items,
    };
    if items.is_empty() {
        return Err(ApiError::invalid("input", "input must not be empty"));
    }
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        match item.kind.as_deref() {
            None | Some("message") => {}
            Some("function_call") => {
                function_call(item, &at, &mut out)?;
                continue;
            }
            Some("function_call_output") => {
                out.push(function_call_output(item, &at)?);
                continue;
            }
            Some(kind) => {
                return Err(ApiError::invalid(
                    format!("{at}.type"),
                    format!("input items of type `{kind}` are not supported; send messages"),
                ));
            }
        }
        refuse_other(item, &at)?;
        if let Some(field) = [
            ("call_id", item.call_id.is_some()),
            ("name", item.name.is_some()),
            ("arguments", item.arguments.is_some()),
            ("output", item.output.as_ref().is_some_and(|o| !o.is_null())),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
        {
            return Err(ApiError::invalid(
                format!("{at}.{field}"),
                format!("`{field}` is not supported on an input message"),
            ));
        }
        let role = match item.role.as_deref() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("system" | "developer") => Role::System,
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("{at}.role"),
                    format!("role `{other}` is not supported (user, assistant, system, developer)"),
                ));
            }
            None => {
                return Err(ApiError::invalid(
                    format!("{at}.role"),
                    "a message needs a role",
                ));
            }
        };
        let text = match &item.content {
            None => String::new(),
            Some(ItemContent::Text(t)) => t.clone(),
            Some(ItemContent::Parts(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.kind.as_str(), &p.text) {
                        ("input_text" | "output_text" | "text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                format!("{at}.content[{j}]"),
                                format!(
                                    "content parts of type `{kind}` are not supported; send text"
                                ),
                            ));
                        }
                    }
                }
                text
            }
        };
        out.push(ChatMessage::new(role, text));
    }
    Ok(out)
}

/// An item's fields that no item type has: refused by name. An item's
/// `id` and `status` (from an earlier response's output) say nothing to
/// the model.
fn refuse_other(item: &InputItem, at: &str) -> Result<(), ApiError> {
    match item
        .other
        .iter()
        .find(|(k, v)| !v.is_null() && !matches!(k.as_str(), "id" | "status"))
    {
        Some((field, _)) => Err(ApiError::invalid(
            format!("{at}.{field}"),
            format!("`{field}` is not supported on an input item"),
        )),
        None => Ok(()),
    }
}

/// A `function_call` item (a call an earlier response made): added to the
/// assistant message just before it, or as an assistant message of its own.
fn function_call(item: &InputItem, at: &str, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    refuse_other(item, at)?;
    if item.role.is_some() || item.content.is_some() || item.output.is_some() {
        return Err(ApiError::invalid(
            at,
            "a function_call item has `call_id`, `name` and `arguments`",
        ));
    }
    let field = |value: &Option<String>, name: &str| {
        value.clone().ok_or_else(|| {
            ApiError::invalid(format!("{at}.{name}"), format!("`{name}` is required"))
        })
    };
    let arguments: Value =
        serde_json::from_str(&field(&item.arguments, "arguments")?).map_err(|e| {
            ApiError::invalid(
                format!("{at}.arguments"),
                format!("the arguments are not JSON: {e}"),
            )
        })?;
    let call = ToolCall {
        id: field(&item.call_id, "call_id")?,
        kind: "function".into(),
        function: FunctionCall {
            name: field(&item.name, "name")?,
            arguments,
        },
    };
    match out.last_mut() {
        Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
        _ => {
            let mut m = ChatMessage::new(Role::Assistant, String::new());
            m.tool_calls.push(call);
            out.push(m);
        }
    }
    Ok(())
}

/// A `function_call_output` item: a tool's result for the model.
fn function_call_output(item: &InputItem, at: &str) -> Result<ChatMessage, ApiError> {
    refuse_other(item, at)?;
    if item.role.is_some()
        || item.content.is_some()
        || item.name.is_some()
        || item.arguments.is_some()
    {
        return Err(ApiError::invalid(
            at,
            "a function_call_output item has `call_id` and `output`",
        ));
    }
    let call_id = item
        .call_id
        .clone()
        .ok_or_else(|| ApiError::invalid(format!("{at}.call_id"), "`call_id` is required"))?;
    let output = match &item.output {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => {
            return Err(ApiError::invalid(
                format!("{at}.output"),
                "`output` is required",
            ));
        }
        Some(other) => other.to_string(),
    };
    let mut message = ChatMessage::new(Role::Tool, output);
    message.tool_call_id = Some(call_id);
    Ok(message)
}

/// What lucid does not offer yet, refused by name; the values that ask for
/// what it does (no reasoning, no truncation) pass.
fn refuse_unsupported(req: &ResponsesRequest) -> Result<(), ApiError> {
    if let Some(o) = &req.stream_options {
        if o.include_usage.is_some() {
            return Err(ApiError::invalid(
                "stream_options.include_usage",
                "`include_usage` is the chat route's: a response always has its usage",
            ));
        }
        crate::body::refuse_extra(&o.other, "stream_options")?;
    }
    if let Some(reasoning) = req.reasoning.as_ref().filter(|r| !r.is_null()) {
        let effort = reasoning.get("effort").and_then(Value::as_str);
        if reasoning.as_object().is_none_or(|o| o.len() > 1)
            || !matches!(effort, None | Some("none"))
        {
            return Err(ApiError::invalid(
                "reasoning",
                "reasoning is not supported: lucid's models do not reason apart from their reply",
            ));
        }
    }
    if let Some(t) = req.truncation.as_deref().filter(|t| *t != "disabled") {
        return Err(ApiError::invalid(
            "truncation",
            format!(
                "truncation `{t}` is not supported: a prompt longer than the context is refused"
            ),
        ));
    }
    if let Some(text) = &req.text
        && let Some((field, _)) = text.other.iter().find(|(_, v)| !v.is_null())
    {
        return Err(ApiError::invalid(
            format!("text.{field}"),
            format!("`text.{field}` is not supported"),
        ));
    }
    Ok(())
}
