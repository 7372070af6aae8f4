//! Google Gemini (`POST {base}/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, header `x-goog-api-key`).
//!
//! This is the only module that knows the Gemini JSON: `contents` with roles
//! `user` and `model` and their `parts`, `systemInstruction`,
//! `generationConfig`, `candidates[].content.parts[].text`, `finishReason`,
//! `usageMetadata`, and the `{"error":{"code","message","status"}}` body. A
//! streamed answer is a sequence of whole `GenerateContentResponse` objects,
//! one per SSE event, ended by the server closing the connection.
//!
//! Parameter mapping, all into `generationConfig`: `temperature`, `topP`,
//! `topK`, `maxOutputTokens`, `stopSequences` (at most 5), `seed` (32-bit),
//! `presencePenalty`, `frequencyPenalty`, and `logprobs: Some(n)` as
//! `responseLogprobs: true, logprobs: n` (n ≤ 20). Nothing is dropped: every
//! field has a Gemini counterpart, and values outside Gemini's limits are
//! rejected. System messages must come before the conversation; each becomes
//! a part of `systemInstruction`.

use std::collections::VecDeque;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, GEMINI, HttpSettings};
use crate::http::{BodyReader, ErrorBody, HttpClient, key_header};
use crate::sse::{EventMapper, SseEvent};
use crate::{
    ChatEvent, ChatRequest, ChatResponse, ChatStream, FinishReason, Provider, ProviderError, Role,
    SamplingParams, Secret, TokenLogprob, TopLogprob, Usage, async_trait,
};

const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
/// Gemini's limit on stop sequences.
const MAX_STOP: usize = 5;
/// Gemini's limit on top log-probabilities per token.
const MAX_LOGPROBS: u8 = 20;

/// A Gemini API client, named `gemini`.
#[derive(Debug)]
pub struct GeminiProvider {
    http: HttpClient,
    key: Option<HeaderValue>,
    key_env: String,
}

impl GeminiProvider {
    /// A client for `settings.base_url` (the root that `/models/...` is
    /// appended to, version included: `.../v1beta`).
    pub fn new(settings: HttpSettings) -> Result<Self, ConfigError> {
        let name = GEMINI.name;
        let key = settings
            .api_key
            .as_ref()
            .map(|k| key_header(name, "", k))
            .transpose()?;
        let key_env = settings
            .api_key_env
            .clone()
            .unwrap_or_else(|| GEMINI.key_envs.join(" or "));
        Ok(GeminiProvider {
            http: HttpClient::new(name, &settings)?,
            key,
            key_env,
        })
    }

    async fn send(&self, req: &ChatRequest, stream: bool) -> Result<BodyReader, ProviderError> {
        let model = model_path(&req.model)?;
        let body = request_body(req)?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ProviderError::protocol(GEMINI.name, format!("cannot encode the request: {e}"))
        })?;
        let key = self
            .key
            .clone()
            .ok_or_else(|| ProviderError::MissingApiKey {
                provider: GEMINI.name.to_owned(),
                env_var: self.key_env.clone(),
            })?;
        let mut headers = HeaderMap::new();
        headers.insert(X_GOOG_API_KEY, key);
        let path = if stream {
            format!("/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("/models/{model}:generateContent")
        };
        self.http.post_json(&path, headers, body, parse_error).await
    }
}

#[async_trait]
impl Provider for GeminiProvider {
    fn name(&self) -> &str {
        GEMINI.name
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let wire: WireResponse = self.send(req, false).await?.json().await?;
        let model = wire
            .model_version
            .clone()
            .unwrap_or_else(|| req.model.clone());
        let usage = wire.usage_metadata.as_ref().map(WireUsage::usage);
        let piece = Piece::from_wire(wire, self.http.secret())?;
        let finish_reason = piece.reason.ok_or_else(|| {
            ProviderError::protocol(GEMINI.name, "the candidate has no finishReason")
        })?;
        Ok(ChatResponse {
            model,
            text: piece.text,
            finish_reason,
            usage,
            logprobs: piece.logprobs,
        })
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = self.send(req, true).await?.streaming();
        let mapper = StreamMapper {
            secret: self.http.secret().cloned(),
            reason: None,
            usage: None,
        };
        Ok(crate::sse::chat_stream(body, mapper))
    }
}

/// The model's path segment: `models/` is optional in the name, and only
/// characters that need no escaping in a URL path are accepted.
fn model_path(model: &str) -> Result<&str, ProviderError> {
    let name = model.strip_prefix("models/").unwrap_or(model);
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(ProviderError::InvalidModel {
            input: model.to_owned(),
            reason: "a Gemini model name has only letters, digits, `-`, `.` and `_`".to_owned(),
        });
    }
    Ok(name)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    contents: Vec<WireContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireSystem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<WireGenerationConfig<'a>>,
}

#[derive(Debug, Serialize)]
struct WireContent<'a> {
    role: &'static str,
    parts: Vec<WirePart<'a>>,
}

#[derive(Debug, Serialize)]
struct WireSystem<'a> {
    parts: Vec<WirePart<'a>>,
}

#[derive(Debug, Serialize)]
struct WirePart<'a> {
    text: &'a str,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<u8>,
}

fn request_body(req: &ChatRequest) -> Result<WireRequest<'_>, ProviderError> {
    let provider = GEMINI.name;
    let p = &req.params;
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
    let seed = p
        .seed
        .map(|s| {
            i32::try_from(s).map_err(|_| {
                ProviderError::unsupported(
                    provider,
                    "seed",
                    format!("the seed must fit in 32 bits, {s} does not"),
                )
            })
        })
        .transpose()?;
    if p.logprobs.is_some_and(|n| n > MAX_LOGPROBS) {
        return Err(ProviderError::unsupported(
            provider,
            "logprobs",
            format!("at most {MAX_LOGPROBS} top log-probabilities per token are returned"),
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
            "system text is the single systemInstruction here; put every system message before the conversation",
        ));
    }
    let system: Vec<WirePart<'_>> = req.messages[..leading_system]
        .iter()
        .map(|m| WirePart { text: &m.content })
        .collect();
    let config = WireGenerationConfig {
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        max_output_tokens: p.max_tokens,
        stop_sequences: &p.stop,
        seed,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
        response_logprobs: p.logprobs.map(|_| true),
        logprobs: p.logprobs,
    };
    Ok(WireRequest {
        contents: req.messages[leading_system..]
            .iter()
            .map(|m| WireContent {
                role: if m.role == Role::Assistant {
                    "model"
                } else {
                    "user"
                },
                parts: vec![WirePart { text: &m.content }],
            })
            .collect(),
        system_instruction: (!system.is_empty()).then_some(WireSystem { parts: system }),
        generation_config: (*p != SamplingParams::default()).then_some(config),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    #[serde(default)]
    usage_metadata: Option<WireUsage>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    prompt_feedback: Option<WirePromptFeedback>,
    /// Set instead of the rest when a stream fails part way.
    #[serde(default)]
    error: Option<WireStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    #[serde(default)]
    content: Option<WireCandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs_result: Option<WireLogprobsResult>,
}

#[derive(Debug, Deserialize)]
struct WireCandidateContent {
    #[serde(default)]
    parts: Vec<WireCandidatePart>,
}

#[derive(Debug, Deserialize)]
struct WireCandidatePart {
    #[serde(default)]
    text: Option<String>,
    /// Thinking models mark their reasoning parts; they are not the answer.
    #[serde(default)]
    thought: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

impl WireUsage {
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: u32::try_from(self.prompt_token_count).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(
                self.candidates_token_count + self.thoughts_token_count,
            )
            .unwrap_or(u32::MAX),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLogprobsResult {
    #[serde(default)]
    top_candidates: Vec<WireTopCandidates>,
    #[serde(default)]
    chosen_candidates: Vec<WireLogCandidate>,
}

#[derive(Debug, Deserialize)]
struct WireTopCandidates {
    #[serde(default)]
    candidates: Vec<WireLogCandidate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLogCandidate {
    #[serde(default)]
    token: String,
    #[serde(default)]
    log_probability: f32,
}

#[derive(Debug, Deserialize)]
struct WireErrorBody {
    error: WireStatus,
}

#[derive(Debug, Deserialize)]
struct WireStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<WireErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct WireErrorDetail {
    #[serde(default)]
    reason: Option<String>,
}

fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    // The body may be one status object or, from the streaming endpoint, an
    // array holding one.
    let wire: WireErrorBody = serde_json::from_slice(body)
        .or_else(|_| {
            serde_json::from_slice::<Vec<WireErrorBody>>(body)
                .map_err(|_| ())
                .and_then(|v| v.into_iter().next().ok_or(()))
        })
        .ok()?;
    let unauthorized = wire
        .error
        .details
        .iter()
        .any(|d| d.reason.as_deref() == Some("API_KEY_INVALID"));
    let message = match wire.error.status {
        Some(status) => format!("{status}: {}", wire.error.message),
        None => wire.error.message,
    };
    Some(ErrorBody {
        message,
        unauthorized,
    })
}

/// Maps `finishReason`.
fn finish_reason(raw: &str) -> FinishReason {
    match raw {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_owned()),
    }
}

/// What one response object (a whole answer, or one streamed chunk) carries.
struct Piece {
    text: String,
    reason: Option<FinishReason>,
    logprobs: Option<Vec<TokenLogprob>>,
}

impl Piece {
    fn from_wire(wire: WireResponse, secret: Option<&Secret>) -> Result<Piece, ProviderError> {
        if let Some(err) = wire.error {
            let kind = err.status.unwrap_or_else(|| "error".to_owned());
            let message = secret.map_or(err.message.clone(), |s| s.redact(&err.message));
            let retryable = matches!(
                kind.as_str(),
                "UNAVAILABLE" | "INTERNAL" | "RESOURCE_EXHAUSTED" | "DEADLINE_EXCEEDED"
            );
            return Err(ProviderError::Upstream {
                provider: GEMINI.name.to_owned(),
                kind,
                message,
                retryable,
            });
        }
        let Some(candidate) = wire.candidates.into_iter().next() else {
            // A blocked prompt gets no candidates, only the reason.
            return match wire.prompt_feedback.and_then(|f| f.block_reason) {
                Some(_) => Ok(Piece {
                    text: String::new(),
                    reason: Some(FinishReason::ContentFilter),
                    logprobs: None,
                }),
                None => Ok(Piece {
                    text: String::new(),
                    reason: None,
                    logprobs: None,
                }),
            };
        };
        let text = candidate
            .content
            .map(|c| {
                c.parts
                    .into_iter()
                    .filter(|p| !p.thought)
                    .filter_map(|p| p.text)
                    .collect()
            })
            .unwrap_or_default();
        let logprobs = candidate.logprobs_result.map(|r| {
            r.chosen_candidates
                .into_iter()
                .enumerate()
                .map(|(i, chosen)| TokenLogprob {
                    token: chosen.token,
                    logprob: chosen.log_probability,
                    top: r
                        .top_candidates
                        .get(i)
                        .map(|t| {
                            t.candidates
                                .iter()
                                .map(|c| TopLogprob {
                                    token: c.token.clone(),
                                    logprob: c.log_probability,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        });
        Ok(Piece {
            text,
            reason: candidate.finish_reason.as_deref().map(finish_reason),
            logprobs,
        })
    }
}

struct StreamMapper {
    secret: Option<Secret>,
    reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl EventMapper for StreamMapper {
    fn on_event(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, ProviderError> {
        let wire: WireResponse = serde_json::from_str(&event.data).map_err(|e| {
            ProviderError::protocol(GEMINI.name, format!("malformed stream event: {e}"))
        })?;
        if let Some(u) = &wire.usage_metadata {
            self.usage = Some(u.usage());
        }
        let piece = Piece::from_wire(wire, self.secret.as_ref())?;
        let logprobs = piece.logprobs.filter(|lp| !lp.is_empty());
        if !piece.text.is_empty() || logprobs.is_some() {
            out.push_back(ChatEvent::Delta {
                text: piece.text,
                logprobs,
            });
        }
        if piece.reason.is_some() {
            self.reason = piece.reason;
        }
        Ok(false)
    }

    fn on_eof(&mut self, out: &mut VecDeque<ChatEvent>) -> Result<(), ProviderError> {
        let reason = self.reason.take().ok_or_else(|| {
            ProviderError::protocol(GEMINI.name, "the stream ended before a finishReason")
        })?;
        out.push_back(ChatEvent::Finish {
            reason,
            usage: self.usage.take(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn check(messages: Vec<Message>, params: SamplingParams, expect: &str) {
        let r = ChatRequest {
            model: "gemini-1.5-flash".into(),
            messages,
            params,
            stream: false,
        };
        let got = match request_body(&r) {
            Ok(body) => serde_json::to_string(&body).unwrap(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn maps_every_parameter() {
        check(
            vec![
                Message::system("Be brief."),
                Message::user("Hi"),
                Message::assistant("Hello"),
                Message::user("Bye"),
            ],
            SamplingParams {
                temperature: Some(0.7),
                top_p: Some(0.9),
                top_k: Some(40),
                max_tokens: Some(64),
                stop: vec!["END".into()],
                seed: Some(7),
                presence_penalty: Some(0.5),
                frequency_penalty: Some(0.25),
                logprobs: Some(2),
            },
            r#"{"contents":[{"role":"user","parts":[{"text":"Hi"}]},{"role":"model","parts":[{"text":"Hello"}]},{"role":"user","parts":[{"text":"Bye"}]}],"systemInstruction":{"parts":[{"text":"Be brief."}]},"generationConfig":{"temperature":0.7,"topP":0.9,"topK":40,"maxOutputTokens":64,"stopSequences":["END"],"seed":7,"presencePenalty":0.5,"frequencyPenalty":0.25,"responseLogprobs":true,"logprobs":2}}"#,
        );
        check(
            vec![Message::user("Hi")],
            SamplingParams::default(),
            r#"{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}"#,
        );
    }

    #[test]
    fn rejects_values_beyond_gemini_limits() {
        let msgs = || vec![Message::user("Hi")];
        check(
            msgs(),
            SamplingParams {
                stop: vec!["x".into(); 6],
                ..Default::default()
            },
            "error: gemini does not support `stop`: at most 5 stop sequences are accepted, 6 were given",
        );
        check(
            msgs(),
            SamplingParams {
                seed: Some(1 << 40),
                ..Default::default()
            },
            "error: gemini does not support `seed`: the seed must fit in 32 bits, 1099511627776 does not",
        );
        check(
            msgs(),
            SamplingParams {
                logprobs: Some(21),
                ..Default::default()
            },
            "error: gemini does not support `logprobs`: at most 20 top log-probabilities per token are returned",
        );
        check(
            vec![Message::user("Hi"), Message::system("late")],
            SamplingParams::default(),
            "error: gemini does not support `messages`: system text is the single systemInstruction here; put every system message before the conversation",
        );
    }

    #[test]
    fn model_names_are_path_safe() {
        assert_eq!(
            model_path("models/gemini-1.5-flash").unwrap(),
            "gemini-1.5-flash"
        );
        assert!(model_path("gemini/../x").is_err());
        assert!(model_path("a?b").is_err());
    }

    #[test]
    fn invalid_key_body_means_unauthorized() {
        let body = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        let parsed = parse_error(body).unwrap();
        assert!(parsed.unauthorized);
        assert_eq!(
            parsed.message,
            "INVALID_ARGUMENT: API key not valid. Please pass a valid API key."
        );
    }
}
