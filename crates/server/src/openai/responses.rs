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
//! Not yet: tools and function-call items, `previous_response_id` and
//! conversations (no state is kept), images and files, reasoning; each is
//! refused with a 400 naming it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::StreamExt;
use lucid_engine::{ChatMessage, Role, StopReason};
use lucid_scheduler::{Event, Grammar, Request};
use serde_json::Value;

use super::params::{compile, refuse_unknown, sampling};
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
        .unwrap_or(TextFormat::Text);
    let grammar = grammar(&format).await?;
    let tokens = prompt::chat_tokens(&lm, conversation, "input").await?;
    let request = Request {
        prompt: tokens,
        max_tokens: req.max_output_tokens.map(|m| m as usize),
        sampling: params.clone(),
        stop: Vec::new(),
        logprobs: None,
        grammar,
        ignore_eos: false,
    };
    let prompt_tokens = request.prompt.len();
    let gens = generate::submit_n(&lm, &request, 1, "input")?;
    let merged = generate::merge(&state, &lm.name, gens, 0);

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
        tool_choice: "auto",
        tools: Vec::new(),
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
        let done = finished(
            shell,
            &item_id,
            c.text,
            f.reason,
            prompt_tokens,
            f.usage.completion_tokens,
            f.usage.cached_tokens,
        );
        return Ok(axum::Json(done).into_response());
    }

    let in_progress = message(&item_id, "in_progress", Vec::new());
    let mut seq = Sequencer::default();
    let out: VecDeque<SseEvent> = [
        ResponseEvent::Created {
            response: shell.clone(),
        },
        ResponseEvent::InProgress {
            response: shell.clone(),
        },
        ResponseEvent::OutputItemAdded {
            output_index: 0,
            item: in_progress,
        },
        ResponseEvent::ContentPartAdded {
            item_id: item_id.clone(),
            output_index: 0,
            content_index: 0,
            part: output_text(String::new()),
        },
    ]
    .iter()
    .map(|e| seq.event(e))
    .collect();
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
                out.push_back(seq.event(&delta(t.text)));
            }
            Some((_, Event::Finished(f))) => {
                if !f.tail.is_empty() {
                    text.push_str(&f.tail);
                    out.push_back(seq.event(&delta(f.tail)));
                }
                if f.reason == StopReason::Cancelled {
                    out.push_back(seq.event(&failed(&shell, &ApiError::cut_off())));
                    return;
                }
                let done = finished(
                    shell.clone(),
                    &item_id,
                    text.clone(),
                    f.reason,
                    prompt_tokens,
                    f.usage.completion_tokens,
                    f.usage.cached_tokens,
                );
                let item = done.output[0].clone();
                out.push_back(seq.event(&ResponseEvent::OutputTextDone {
                    item_id: item_id.clone(),
                    output_index: 0,
                    content_index: 0,
                    text: text.clone(),
                    logprobs: Vec::new(),
                }));
                out.push_back(seq.event(&ResponseEvent::ContentPartDone {
                    item_id: item_id.clone(),
                    output_index: 0,
                    content_index: 0,
                    part: output_text(text.clone()),
                }));
                out.push_back(seq.event(&ResponseEvent::OutputItemDone {
                    output_index: 0,
                    item,
                }));
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
/// stopped, `incomplete` when the token limit or the context did.
fn finished(
    mut response: ResponseObject,
    item_id: &str,
    text: String,
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
    response.output = vec![message(item_id, response.status, vec![output_text(text)])];
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
        TextFormat::Text => Ok(None),
        TextFormat::JsonObject => Ok(Some(Arc::new(Grammar::any_object()))),
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
            Some(kind @ ("function_call" | "function_call_output")) => {
                return Err(ApiError::invalid(
                    format!("{at}.type"),
                    format!("`{kind}` items are not supported: lucid has no tool calling yet"),
                ));
            }
            Some(kind) => {
                return Err(ApiError::invalid(
                    format!("{at}.type"),
                    format!("input items of type `{kind}` are not supported; send messages"),
                ));
            }
        }
        // An item's `id` and `status` (from an earlier response's output)
        // say nothing to the model.
        if let Some(field) = item
            .other
            .iter()
            .find(|(k, v)| !v.is_null() && !matches!(k.as_str(), "id" | "status"))
            .map(|(k, _)| k)
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

/// What lucid does not offer yet, refused by name; the values that ask for
/// what it does (no tools, no reasoning, no truncation) pass.
fn refuse_unsupported(req: &ResponsesRequest) -> Result<(), ApiError> {
    let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
    if req
        .tools
        .as_ref()
        .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(ApiError::invalid("tools", "lucid has no tool calling yet"));
    }
    if set(&req.tool_choice) && req.tool_choice.as_ref().and_then(Value::as_str) != Some("none") {
        return Err(ApiError::invalid(
            "tool_choice",
            "lucid has no tool calling yet",
        ));
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
