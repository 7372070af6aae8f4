//! Anthropic Messages (`POST {base}/v1/messages`, headers `x-api-key` and
//! `anthropic-version`).
//!
//! This is the only module that knows the Messages JSON: `system` as a
//! top-level field, a required `max_tokens`, `content` blocks in the answer,
//! the named SSE events (`message_start`, `content_block_start`,
//! `content_block_delta` with `text_delta`, `content_block_stop`,
//! `message_delta` with the stop reason and output usage, `message_stop`,
//! `ping`, `error`) and the `{"type":"error","error":{"type","message"}}` body.
//!
//! Parameter mapping: `temperature` (0–1 here, so larger values are rejected
//! rather than clamped), `top_p`, `top_k` as is; `stop` as `stop_sequences`;
//! `max_tokens` as is, or [`DEFAULT_MAX_TOKENS`] when unset because the API
//! requires it; `seed`, `presence_penalty`, `frequency_penalty` and
//! `logprobs` are rejected, as the API has none of them. System messages must
//! come before the conversation; they are joined into `system`.

use std::collections::VecDeque;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::{ANTHROPIC, ConfigError, HttpSettings};
use crate::http::{BodyReader, ErrorBody, HttpClient, key_header};
use crate::sse::{EventMapper, SseEvent};
use crate::{
    ChatEvent, ChatRequest, ChatResponse, ChatStream, FinishReason, Provider, ProviderError, Role,
    Secret, Usage, async_trait,
};

/// The `anthropic-version` header sent unless configured otherwise.
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when the request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// An Anthropic Messages client, named `anthropic`.
#[derive(Debug)]
pub struct AnthropicProvider {
    http: HttpClient,
    key: Option<HeaderValue>,
    key_env: String,
    version: HeaderValue,
    default_max_tokens: u32,
}

impl AnthropicProvider {
    /// A client for `settings.base_url` (the root that `/v1/messages` is
    /// appended to).
    pub fn new(settings: HttpSettings) -> Result<Self, ConfigError> {
        let name = ANTHROPIC.name;
        let key = settings
            .api_key
            .as_ref()
            .map(|k| key_header(name, "", k))
            .transpose()?;
        let key_env = settings
            .api_key_env
            .clone()
            .unwrap_or_else(|| ANTHROPIC.key_envs.join(" or "));
        Ok(AnthropicProvider {
            http: HttpClient::new(name, &settings)?,
            key,
            key_env,
            version: HeaderValue::from_static(DEFAULT_VERSION),
            default_max_tokens: DEFAULT_MAX_TOKENS,
        })
    }

    /// Sends another `anthropic-version`.
    pub fn with_version(mut self, version: &str) -> Result<Self, ConfigError> {
        self.version = HeaderValue::from_str(version).map_err(|_| ConfigError::Invalid {
            path: None,
            message: format!(
                "anthropic: `{version}` cannot be sent as the anthropic-version header"
            ),
        })?;
        Ok(self)
    }

    /// Uses another `max_tokens` for requests that set none.
    pub fn with_default_max_tokens(mut self, max_tokens: u32) -> Self {
        self.default_max_tokens = max_tokens;
        self
    }

    async fn send(&self, req: &ChatRequest, stream: bool) -> Result<BodyReader, ProviderError> {
        let body = request_body(req, stream, self.default_max_tokens)?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ProviderError::protocol(ANTHROPIC.name, format!("cannot encode the request: {e}"))
        })?;
        let key = self
            .key
            .clone()
            .ok_or_else(|| ProviderError::MissingApiKey {
                provider: ANTHROPIC.name.to_owned(),
                env_var: self.key_env.clone(),
            })?;
        let mut headers = HeaderMap::new();
        headers.insert(X_API_KEY, key);
        headers.insert(ANTHROPIC_VERSION, self.version.clone());
        self.http
            .post_json("/v1/messages", headers, body, parse_error)
            .await
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        ANTHROPIC.name
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let wire: WireResponse = self.send(req, false).await?.json().await?;
        let text: String = wire
            .content
            .into_iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text)
            .collect();
        let reason = wire
            .stop_reason
            .as_deref()
            .map(stop_reason)
            .ok_or_else(|| {
                ProviderError::protocol(ANTHROPIC.name, "the message has no stop_reason")
            })?;
        Ok(ChatResponse {
            model: wire.model.unwrap_or_else(|| req.model.clone()),
            text,
            finish_reason: reason,
            usage: wire.usage.map(|u| Usage {
                prompt_tokens: u.prompt(),
                completion_tokens: to_u32(u.output_tokens),
            }),
            logprobs: None,
        })
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = self.send(req, true).await?.streaming();
        let mapper = StreamMapper {
            secret: self.http.secret().cloned(),
            started: false,
            prompt_tokens: None,
            completion_tokens: None,
            reason: None,
        };
        Ok(crate::sse::chat_stream(body, mapper))
    }
}

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

fn request_body(
    req: &ChatRequest,
    stream: bool,
    default_max_tokens: u32,
) -> Result<WireRequest<'_>, ProviderError> {
    let provider = ANTHROPIC.name;
    let p = &req.params;
    let none_here = |param: &str, what: &str| {
        ProviderError::unsupported(provider, param, format!("the Messages API has no {what}"))
    };
    if p.seed.is_some() {
        return Err(none_here(
            "seed",
            "seed; sampling cannot be made reproducible",
        ));
    }
    if p.presence_penalty.is_some() {
        return Err(none_here("presence_penalty", "presence penalty"));
    }
    if p.frequency_penalty.is_some() {
        return Err(none_here("frequency_penalty", "frequency penalty"));
    }
    if p.logprobs.is_some() {
        return Err(none_here("logprobs", "log-probabilities"));
    }
    if let Some(t) = p.temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(ProviderError::unsupported(
            provider,
            "temperature",
            format!("Anthropic accepts temperature from 0.0 to 1.0, {t} was given"),
        ));
    }
    let leading_system = req
        .messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    if req.messages[leading_system..]
        .iter()
        .any(|m| m.role == Role::System)
    {
        return Err(ProviderError::unsupported(
            provider,
            "messages",
            "system text is a single top-level field here; put every system message before the conversation",
        ));
    }
    let system: Vec<&str> = req.messages[..leading_system]
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    Ok(WireRequest {
        model: &req.model,
        max_tokens: p.max_tokens.unwrap_or(default_max_tokens),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages: req.messages[leading_system..]
            .iter()
            .map(|m| WireMessage {
                role: m.role.as_str(),
                content: &m.content,
            })
            .collect(),
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        stop_sequences: &p.stop,
        stream,
    })
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// All prompt tokens: cached ones are reported apart from `input_tokens`.
    fn prompt(&self) -> u32 {
        to_u32(
            self.input_tokens.unwrap_or(0)
                + self.cache_creation_input_tokens.unwrap_or(0)
                + self.cache_read_input_tokens.unwrap_or(0),
        )
    }
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        delta: WireMessageDelta,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Error {
        error: WireError,
    },
    /// `ping`, `content_block_start`, `content_block_stop`, and any event
    /// type added later: the API's versioning policy says clients must
    /// tolerate new ones.
    #[serde(other)]
    Ignored,
}

#[derive(Debug, Deserialize)]
struct WireStartMessage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireMessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireErrorBody {
    error: WireError,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    let wire: WireErrorBody = serde_json::from_slice(body).ok()?;
    Some(ErrorBody {
        message: format!("{}: {}", wire.error.kind, wire.error.message),
        unauthorized: false,
    })
}

/// Maps `stop_reason`.
fn stop_reason(raw: &str) -> FinishReason {
    match raw {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

struct StreamMapper {
    secret: Option<Secret>,
    started: bool,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    reason: Option<FinishReason>,
}

impl EventMapper for StreamMapper {
    fn on_event(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, ProviderError> {
        let provider = ANTHROPIC.name;
        let wire: WireEvent = serde_json::from_str(&event.data).map_err(|e| {
            let name = event.event.as_deref().unwrap_or("message");
            ProviderError::protocol(provider, format!("malformed `{name}` event: {e}"))
        })?;
        match wire {
            WireEvent::MessageStart { message } => {
                self.started = true;
                if let Some(u) = message.usage {
                    self.prompt_tokens = Some(u.prompt());
                    self.completion_tokens = Some(to_u32(u.output_tokens));
                }
            }
            WireEvent::ContentBlockDelta { delta } => {
                if !self.started {
                    return Err(ProviderError::protocol(
                        provider,
                        "content_block_delta before message_start",
                    ));
                }
                // Only text is an answer; thinking and tool-input deltas are not.
                if delta.kind == "text_delta"
                    && let Some(text) = delta.text.filter(|t| !t.is_empty())
                {
                    out.push_back(ChatEvent::Delta {
                        text,
                        logprobs: None,
                    });
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(r) = delta.stop_reason {
                    self.reason = Some(stop_reason(&r));
                }
                if let Some(u) = usage {
                    self.completion_tokens = Some(to_u32(u.output_tokens));
                    if u.input_tokens.is_some() {
                        self.prompt_tokens = Some(u.prompt());
                    }
                }
            }
            WireEvent::MessageStop {} => {
                let reason = self.reason.take().ok_or_else(|| {
                    ProviderError::protocol(
                        provider,
                        "message_stop without a stop_reason in message_delta",
                    )
                })?;
                let usage = match (self.prompt_tokens, self.completion_tokens) {
                    (Some(prompt_tokens), Some(completion_tokens)) => Some(Usage {
                        prompt_tokens,
                        completion_tokens,
                    }),
                    _ => None,
                };
                out.push_back(ChatEvent::Finish { reason, usage });
                return Ok(true);
            }
            WireEvent::Error { error } => {
                let message = self
                    .secret
                    .as_ref()
                    .map_or(error.message.clone(), |s| s.redact(&error.message));
                let retryable = matches!(
                    error.kind.as_str(),
                    "overloaded_error" | "api_error" | "rate_limit_error"
                );
                return Err(ProviderError::Upstream {
                    provider: provider.to_owned(),
                    kind: error.kind,
                    message,
                    retryable,
                });
            }
            WireEvent::Ignored => {}
        }
        Ok(false)
    }

    fn on_eof(&mut self, _out: &mut VecDeque<ChatEvent>) -> Result<(), ProviderError> {
        Err(ProviderError::protocol(
            ANTHROPIC.name,
            "the stream ended before message_stop",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, SamplingParams};

    fn check(messages: Vec<Message>, params: SamplingParams, expect: &str) {
        let r = ChatRequest {
            model: "claude-3-5-haiku-latest".into(),
            messages,
            params,
            stream: false,
        };
        let got = match request_body(&r, true, DEFAULT_MAX_TOKENS) {
            Ok(body) => serde_json::to_string(&body).unwrap(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect);
    }

    fn convo() -> Vec<Message> {
        vec![
            Message::system("Be brief."),
            Message::system("Be kind."),
            Message::user("Hi"),
            Message::assistant("Hello"),
            Message::user("Bye"),
        ]
    }

    #[test]
    fn maps_parameters_and_system() {
        check(
            convo(),
            SamplingParams {
                temperature: Some(0.5),
                top_p: Some(0.9),
                top_k: Some(40),
                max_tokens: Some(100),
                stop: vec!["END".into()],
                ..Default::default()
            },
            r#"{"model":"claude-3-5-haiku-latest","max_tokens":100,"system":"Be brief.\n\nBe kind.","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"Bye"}],"temperature":0.5,"top_p":0.9,"top_k":40,"stop_sequences":["END"],"stream":true}"#,
        );
        check(
            vec![Message::user("Hi")],
            SamplingParams::default(),
            r#"{"model":"claude-3-5-haiku-latest","max_tokens":4096,"messages":[{"role":"user","content":"Hi"}],"stream":true}"#,
        );
    }

    #[test]
    fn rejects_what_anthropic_lacks() {
        let p = |f: fn(&mut SamplingParams)| {
            let mut p = SamplingParams::default();
            f(&mut p);
            p
        };
        check(
            convo(),
            p(|p| p.seed = Some(1)),
            "error: anthropic does not support `seed`: the Messages API has no seed; sampling cannot be made reproducible",
        );
        check(
            convo(),
            p(|p| p.presence_penalty = Some(1.0)),
            "error: anthropic does not support `presence_penalty`: the Messages API has no presence penalty",
        );
        check(
            convo(),
            p(|p| p.frequency_penalty = Some(1.0)),
            "error: anthropic does not support `frequency_penalty`: the Messages API has no frequency penalty",
        );
        check(
            convo(),
            p(|p| p.logprobs = Some(0)),
            "error: anthropic does not support `logprobs`: the Messages API has no log-probabilities",
        );
        check(
            convo(),
            p(|p| p.temperature = Some(1.5)),
            "error: anthropic does not support `temperature`: Anthropic accepts temperature from 0.0 to 1.0, 1.5 was given",
        );
        check(
            vec![Message::user("Hi"), Message::system("late")],
            SamplingParams::default(),
            "error: anthropic does not support `messages`: system text is a single top-level field here; put every system message before the conversation",
        );
    }
}
