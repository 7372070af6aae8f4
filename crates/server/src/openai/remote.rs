//! `POST /v1/chat/completions` for a `provider:model` name, through the
//! provider router, in OpenAI's wire format.

use std::convert::Infallible;

use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use lucid_engine::{ChatMessage, Role};
use lucid_providers::{ChatEvent, ChatRequest};

use super::wire::*;
use crate::error::ApiError;
use crate::state::{AppState, now_secs};

use super::{FINGERPRINT, sse, sse_json};

/// A chat with a vendor's model (or a compatible endpoint) through the
/// provider router.
#[allow(clippy::too_many_arguments)]
pub(super) async fn remote_chat(
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
    if !matches!(req.response_format, None | Some(ResponseFormat::Text {})) {
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
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.into_iter().enumerate() {
        let role = match m.role {
            Role::System => lucid_providers::Role::System,
            Role::User => lucid_providers::Role::User,
            Role::Assistant if m.tool_calls.is_empty() => lucid_providers::Role::Assistant,
            Role::Assistant | Role::Tool => {
                return Err(ApiError::invalid(
                    format!("messages[{i}]"),
                    "tool calls and results are only supported for local models",
                ));
            }
        };
        messages.push(lucid_providers::Message {
            role,
            content: m.content,
        });
    }
    let chat = ChatRequest {
        model: req.model.clone(),
        messages,
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
                    content: Some(r.text),
                    refusal: None,
                    tool_calls: Vec::new(),
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
                tool_calls: None,
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
                            tool_calls: None,
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
                                tool_calls: None,
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
