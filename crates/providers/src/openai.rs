//! OpenAI Chat Completions (`POST {base}/chat/completions`), for OpenAI itself
//! and for OpenAI-compatible endpoints (vLLM, TGI, llama.cpp's server,
//! Ollama's `/v1`, lucid's own server).
//!
//! This is the only module that knows the Chat Completions JSON: the request
//! (`messages`, sampling fields, `stream_options.include_usage`), the
//! `chat.completion` object, the `chat.completion.chunk` stream with
//! `choices[].delta` and the closing `data: [DONE]`, and the
//! `{"error": {"message", "type", "code"}}` error body.
//!
//! Parameter mapping, OpenAI: `temperature`, `top_p`, `seed`,
//! `presence_penalty`, `frequency_penalty` as is; `max_tokens` as
//! `max_completion_tokens` (the name current models require); `stop` as `stop`
//! (at most 4); `logprobs: Some(n)` as `logprobs: true, top_logprobs: n`
//! (n ≤ 20); `top_k` is rejected, as the API has none. Compatible endpoints get
//! the same fields, except `max_tokens` under its original name (what those
//! servers read) and `top_k` sent as the `top_k` extension that vLLM,
//! llama.cpp and lucid's server accept; no limit on stop sequences or
//! `top_logprobs` is assumed for them.

use std::collections::VecDeque;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, HttpSettings, OPENAI};
use crate::http::{ErrorBody, HttpClient, key_header};
use crate::sse::{EventMapper, SseEvent};
use crate::{
    ChatEvent, ChatRequest, ChatResponse, ChatStream, FinishReason, Provider, ProviderError,
    Secret, TokenLogprob, TopLogprob, Usage, async_trait,
};

/// OpenAI's limit on stop sequences.
const MAX_STOP: usize = 4;
/// OpenAI's limit on `top_logprobs`.
const MAX_TOP_LOGPROBS: u8 = 20;

/// Which server is on the other end; the two differ in a few fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    OpenAi,
    Compat,
}

/// A Chat Completions client: OpenAI, or an OpenAI-compatible endpoint.
#[derive(Debug)]
pub struct OpenAiProvider {
    name: String,
    flavor: Flavor,
    http: HttpClient,
    auth: Option<HeaderValue>,
    /// The variable named when a needed key is missing; `None`: no key needed.
    key_env: Option<String>,
}

impl OpenAiProvider {
    /// OpenAI itself, named `openai`. A key is required.
    pub fn openai(settings: HttpSettings) -> Result<Self, ConfigError> {
        let key_env = settings
            .api_key_env
            .clone()
            .unwrap_or_else(|| OPENAI.key_envs.join(" or "));
        OpenAiProvider::build(
            OPENAI.name.to_owned(),
            Flavor::OpenAi,
            settings,
            Some(key_env),
        )
    }

    /// An OpenAI-compatible endpoint, named `compat:NAME`. A key is sent when
    /// there is one, and required only if `settings.api_key_env` names where
    /// it should have come from.
    pub fn compat(name: &str, settings: HttpSettings) -> Result<Self, ConfigError> {
        let key_env = settings.api_key_env.clone();
        OpenAiProvider::build(format!("compat:{name}"), Flavor::Compat, settings, key_env)
    }

    fn build(
        name: String,
        flavor: Flavor,
        settings: HttpSettings,
        key_env: Option<String>,
    ) -> Result<Self, ConfigError> {
        let auth = settings
            .api_key
            .as_ref()
            .map(|k| key_header(&name, "Bearer ", k))
            .transpose()?;
        let http = HttpClient::new(&name, &settings)?;
        Ok(OpenAiProvider {
            name,
            flavor,
            http,
            auth,
            key_env,
        })
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        match (&self.auth, &self.key_env) {
            (Some(auth), _) => {
                headers.insert(AUTHORIZATION, auth.clone());
            }
            (None, Some(env_var)) => {
                return Err(ProviderError::MissingApiKey {
                    provider: self.name.clone(),
                    env_var: env_var.clone(),
                });
            }
            (None, None) => {}
        }
        Ok(headers)
    }

    async fn send(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<crate::http::BodyReader, ProviderError> {
        let body = request_body(&self.name, self.flavor, req, stream)?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ProviderError::protocol(&self.name, format!("cannot encode the request: {e}"))
        })?;
        let headers = self.headers()?;
        self.http
            .post_json("/chat/completions", headers, body, parse_error)
            .await
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let wire: WireResponse = self.send(req, false).await?.json().await?;
        response_from_wire(&self.name, &req.model, wire)
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = self.send(req, true).await?.streaming();
        let mapper = StreamMapper {
            provider: self.name.clone(),
            secret: self.http.secret().cloned(),
            reason: None,
            usage: None,
        };
        Ok(crate::sse::chat_stream(body, mapper))
    }
}

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u8>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

fn request_body<'a>(
    provider: &str,
    flavor: Flavor,
    req: &'a ChatRequest,
    stream: bool,
) -> Result<WireRequest<'a>, ProviderError> {
    let p = &req.params;
    if flavor == Flavor::OpenAi {
        if p.top_k.is_some() {
            return Err(ProviderError::unsupported(
                provider,
                "top_k",
                "the Chat Completions API has no top_k; use top_p or temperature instead",
            ));
        }
        if p.stop.len() > MAX_STOP {
            return Err(ProviderError::unsupported(
                provider,
                "stop",
                format!(
                    "at most {MAX_STOP} stop sequences are accepted, {} were given",
                    p.stop.len()
                ),
            ));
        }
        if p.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return Err(ProviderError::unsupported(
                provider,
                "logprobs",
                format!("at most {MAX_TOP_LOGPROBS} top log-probabilities per token are returned"),
            ));
        }
    }
    let (max_tokens, max_completion_tokens) = match flavor {
        Flavor::OpenAi => (None, p.max_tokens),
        Flavor::Compat => (p.max_tokens, None),
    };
    Ok(WireRequest {
        model: &req.model,
        messages: req
            .messages
            .iter()
            .map(|m| WireMessage {
                role: m.role.as_str(),
                content: &m.content,
            })
            .collect(),
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        max_tokens,
        max_completion_tokens,
        stop: &p.stop,
        seed: p.seed,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
        logprobs: p.logprobs.map(|_| true),
        top_logprobs: p.logprobs,
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    })
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireContent>,
    #[serde(default)]
    delta: Option<WireContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<WireLogprobs>,
}

/// `choices[].message` of a completion, or `choices[].delta` of a chunk.
#[derive(Debug, Deserialize)]
struct WireContent {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    content: Option<Vec<WireTokenLogprob>>,
}

#[derive(Debug, Deserialize)]
struct WireTokenLogprob {
    token: String,
    logprob: f32,
    #[serde(default)]
    top_logprobs: Vec<WireTopLogprob>,
}

#[derive(Debug, Deserialize)]
struct WireTopLogprob {
    token: String,
    logprob: f32,
}

#[derive(Debug, Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireErrorBody {
    error: WireError,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

impl WireError {
    fn kind(&self) -> String {
        match (&self.kind, &self.code) {
            (Some(k), _) => k.clone(),
            (None, Some(serde_json::Value::String(c))) => c.clone(),
            (None, Some(c)) => c.to_string(),
            (None, None) => "error".to_owned(),
        }
    }
}

fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    let wire: WireErrorBody = serde_json::from_slice(body).ok()?;
    Some(ErrorBody {
        message: wire.error.message.unwrap_or_default(),
        unauthorized: false,
    })
}

fn usage(u: WireUsage) -> Usage {
    Usage {
        prompt_tokens: u32::try_from(u.prompt_tokens).unwrap_or(u32::MAX),
        completion_tokens: u32::try_from(u.completion_tokens).unwrap_or(u32::MAX),
    }
}

fn logprobs(lp: WireLogprobs) -> Option<Vec<TokenLogprob>> {
    let content = lp.content?;
    Some(
        content
            .into_iter()
            .map(|t| TokenLogprob {
                token: t.token,
                logprob: t.logprob,
                top: t
                    .top_logprobs
                    .into_iter()
                    .map(|a| TopLogprob {
                        token: a.token,
                        logprob: a.logprob,
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// Maps Chat Completions' `finish_reason`.
fn finish_reason(raw: &str) -> FinishReason {
    match raw {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        other => FinishReason::Other(other.to_owned()),
    }
}

fn response_from_wire(
    provider: &str,
    requested: &str,
    wire: WireResponse,
) -> Result<ChatResponse, ProviderError> {
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::protocol(provider, "the response has no choices"))?;
    let message = choice
        .message
        .ok_or_else(|| ProviderError::protocol(provider, "the choice has no message"))?;
    let reason = choice
        .finish_reason
        .as_deref()
        .map(finish_reason)
        .ok_or_else(|| ProviderError::protocol(provider, "the choice has no finish_reason"))?;
    let (text, reason) = match (message.content, message.refusal) {
        (Some(text), _) => (text, reason),
        (None, Some(refusal)) => (refusal, FinishReason::ContentFilter),
        (None, None) => (String::new(), reason),
    };
    Ok(ChatResponse {
        model: wire.model.unwrap_or_else(|| requested.to_owned()),
        text,
        finish_reason: reason,
        usage: wire.usage.map(usage),
        logprobs: choice.logprobs.and_then(logprobs),
    })
}

/// Maps `chat.completion.chunk` events; `finish_reason` and the usage-only
/// chunk are held until `[DONE]` so that they become one `Finish`.
struct StreamMapper {
    provider: String,
    secret: Option<Secret>,
    reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamMapper {
    fn finish(&mut self, out: &mut VecDeque<ChatEvent>) -> Result<(), ProviderError> {
        let reason = self.reason.take().ok_or_else(|| {
            ProviderError::protocol(
                &self.provider,
                "the stream ended before any choice had a finish_reason",
            )
        })?;
        out.push_back(ChatEvent::Finish {
            reason,
            usage: self.usage.take(),
        });
        Ok(())
    }
}

impl EventMapper for StreamMapper {
    fn on_event(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, ProviderError> {
        if event.data.trim() == "[DONE]" {
            self.finish(out)?;
            return Ok(true);
        }
        let chunk: WireChunk = serde_json::from_str(&event.data).map_err(|e| {
            ProviderError::protocol(&self.provider, format!("malformed stream event: {e}"))
        })?;
        if let Some(err) = chunk.error {
            let kind = err.kind();
            let message = err.message.unwrap_or_default();
            let message = self
                .secret
                .as_ref()
                .map_or(message.clone(), |s| s.redact(&message));
            let retryable = matches!(
                kind.as_str(),
                "server_error" | "overloaded_error" | "rate_limit_exceeded"
            );
            return Err(ProviderError::Upstream {
                provider: self.provider.clone(),
                kind,
                message,
                retryable,
            });
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(usage(u));
        }
        if let Some(choice) = chunk.choices.into_iter().next() {
            let text = choice
                .delta
                .and_then(|d| d.content.or(d.refusal))
                .unwrap_or_default();
            let lp = choice
                .logprobs
                .and_then(logprobs)
                .filter(|lp| !lp.is_empty());
            if !text.is_empty() || lp.is_some() {
                out.push_back(ChatEvent::Delta { text, logprobs: lp });
            }
            if let Some(reason) = choice.finish_reason {
                self.reason = Some(finish_reason(&reason));
            }
        }
        Ok(false)
    }

    fn on_eof(&mut self, out: &mut VecDeque<ChatEvent>) -> Result<(), ProviderError> {
        // Some compatible servers close the stream without `[DONE]`; once a
        // finish_reason has been seen, the answer is complete all the same.
        self.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, SamplingParams};

    fn req(params: SamplingParams) -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![Message::system("Be brief."), Message::user("Hi")],
            params,
            stream: false,
        }
    }

    fn check(flavor: Flavor, params: SamplingParams, stream: bool, expect: &str) {
        let r = req(params);
        let got = match request_body("openai", flavor, &r, stream) {
            Ok(body) => serde_json::to_string(&body).unwrap(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn maps_every_parameter() {
        let all = SamplingParams {
            temperature: Some(0.7),
            top_p: Some(0.9),
            top_k: None,
            max_tokens: Some(64),
            stop: vec!["\n\n".into()],
            seed: Some(42),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(-0.5),
            logprobs: Some(3),
        };
        check(
            Flavor::OpenAi,
            all.clone(),
            false,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"temperature":0.7,"top_p":0.9,"max_completion_tokens":64,"stop":["\n\n"],"seed":42,"presence_penalty":0.5,"frequency_penalty":-0.5,"logprobs":true,"top_logprobs":3}"#,
        );
        check(
            Flavor::Compat,
            SamplingParams {
                top_k: Some(40),
                ..all
            },
            true,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"temperature":0.7,"top_p":0.9,"top_k":40,"max_tokens":64,"stop":["\n\n"],"seed":42,"presence_penalty":0.5,"frequency_penalty":-0.5,"logprobs":true,"top_logprobs":3,"stream":true,"stream_options":{"include_usage":true}}"#,
        );
    }

    #[test]
    fn rejects_what_openai_lacks() {
        check(
            Flavor::OpenAi,
            SamplingParams {
                top_k: Some(40),
                ..Default::default()
            },
            false,
            "error: openai does not support `top_k`: the Chat Completions API has no top_k; use top_p or temperature instead",
        );
        check(
            Flavor::OpenAi,
            SamplingParams {
                stop: vec!["a".into(); 5],
                ..Default::default()
            },
            false,
            "error: openai does not support `stop`: at most 4 stop sequences are accepted, 5 were given",
        );
        check(
            Flavor::OpenAi,
            SamplingParams {
                logprobs: Some(21),
                ..Default::default()
            },
            false,
            "error: openai does not support `logprobs`: at most 20 top log-probabilities per token are returned",
        );
    }
}
