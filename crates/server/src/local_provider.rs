//! The local engine as a [`Provider`], so the provider router can reach
//! local models by bare name (a fallback to a local model, a client of the
//! router that is not this server).
//!
//! The server's own handlers call the scheduler directly, since they need
//! what the provider interface does not carry (`n`, JSON constraints, token
//! counts per choice).

use futures::StreamExt;
use lucid_engine::{ChatMessage, Role, SamplingParams, StopReason};
use lucid_providers::{
    ChatEvent, ChatRequest, ChatResponse, ChatStream, FinishReason, Provider, ProviderError,
    TokenLogprob, TopLogprob, Usage, async_trait, collect_stream,
};
use lucid_scheduler::{Event, Request};

use crate::prompt;
use crate::state::{LocalModel, Models};

/// The local models behind the [`Provider`] interface.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    models: Models,
}

impl LocalProvider {
    pub fn new(models: Models) -> LocalProvider {
        LocalProvider { models }
    }

    async fn model(&self, name: &str) -> Result<LocalModel, ProviderError> {
        self.models
            .require(name)
            .await
            .map_err(|e| ProviderError::InvalidModel {
                input: name.to_owned(),
                reason: e.message,
            })
    }

    async fn request(&self, m: &LocalModel, req: &ChatRequest) -> Result<Request, ProviderError> {
        let bad = |param: &str, reason: String| ProviderError::UnsupportedParameter {
            provider: "local".into(),
            param: param.into(),
            reason,
        };
        let messages: Vec<ChatMessage> = req
            .messages
            .iter()
            .map(|msg| {
                let role = match msg.role {
                    lucid_providers::Role::System => Role::System,
                    lucid_providers::Role::User => Role::User,
                    lucid_providers::Role::Assistant => Role::Assistant,
                };
                ChatMessage::new(role, msg.content.clone())
            })
            .collect();
        let tokens = prompt::chat_tokens(m, messages, "messages")
            .await
            .map_err(|e| bad("messages", e.message))?;
        let p = &req.params;
        let sampling = SamplingParams {
            temperature: p.temperature.unwrap_or(0.8),
            top_k: p.top_k.map_or(40, |k| k as usize),
            top_p: p.top_p.unwrap_or(0.95),
            presence_penalty: p.presence_penalty.unwrap_or(0.0),
            frequency_penalty: p.frequency_penalty.unwrap_or(0.0),
            seed: p.seed.map(|s| s as u64),
            ..SamplingParams::default()
        };
        let mut sampling = sampling;
        prompt::apply_defaults(m, &mut sampling, p.temperature, p.top_p);
        Ok(Request {
            prompt: tokens,
            max_tokens: p.max_tokens.map(|m| m as usize),
            sampling,
            stop: p.stop.clone(),
            logprobs: p.logprobs.map(usize::from),
            grammar: None,
            ignore_eos: false,
        })
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let stream = self.chat_stream(req).await?;
        collect_stream("local", &req.model, stream).await
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let m = self.model(&req.model).await?;
        let request = self.request(&m, req).await?;
        let generation = m.scheduler.submit(request).map_err(|e| match e {
            lucid_scheduler::SchedulerError::Busy { retry_after, .. } => {
                ProviderError::RateLimited {
                    provider: "local".into(),
                    retry_after: Some(retry_after),
                    message: e.to_string(),
                }
            }
            // An embedding model asked to generate: the model is at fault.
            lucid_scheduler::SchedulerError::Unsupported(_) => {
                ProviderError::UnsupportedParameter {
                    provider: "local".into(),
                    param: "model".into(),
                    reason: e.to_string(),
                }
            }
            other => ProviderError::UnsupportedParameter {
                provider: "local".into(),
                param: "messages".into(),
                reason: other.to_string(),
            },
        })?;
        let model = m.clone();
        let stream = generation.flat_map(move |e| {
            let out: Vec<Result<ChatEvent, ProviderError>> = match e {
                Event::Token(t) => {
                    let logprobs = t.logprobs.map(|lp| {
                        vec![TokenLogprob {
                            token: prompt::token_text(&model.model, t.id).0,
                            logprob: lp.logprob,
                            top: lp
                                .top
                                .iter()
                                .map(|&(id, l)| TopLogprob {
                                    token: prompt::token_text(&model.model, id).0,
                                    logprob: l,
                                })
                                .collect(),
                        }]
                    });
                    if t.text.is_empty() {
                        Vec::new()
                    } else {
                        vec![Ok(ChatEvent::Delta {
                            text: t.text,
                            logprobs,
                        })]
                    }
                }
                Event::Finished(f) if f.reason == lucid_engine::StopReason::Cancelled => {
                    vec![Err(ProviderError::Protocol {
                        provider: "local".into(),
                        detail: "the generation was stopped before it finished (the server is shutting down)"
                            .into(),
                    })]
                }
                Event::Finished(f) if f.reason == StopReason::Cancelled => {
                    vec![Err(ProviderError::Protocol {
                        provider: "local".into(),
                        detail: "the server stopped this generation before it finished \
                                 (it is shutting down); the reply is incomplete"
                            .into(),
                    })]
                }
                Event::Finished(f) => {
                    let mut v = Vec::new();
                    if !f.tail.is_empty() {
                        v.push(Ok(ChatEvent::Delta {
                            text: f.tail.clone(),
                            logprobs: None,
                        }));
                    }
                    v.push(Ok(ChatEvent::Finish {
                        reason: match f.reason {
                            StopReason::MaxTokens | StopReason::ContextFull => {
                                FinishReason::Length
                            }
                            _ => FinishReason::Stop,
                        },
                        usage: Some(Usage {
                            prompt_tokens: f.usage.prompt_tokens as u32,
                            completion_tokens: f.usage.completion_tokens as u32,
                        }),
                    }));
                    v
                }
                Event::Failed(e) => vec![Err(ProviderError::Protocol {
                    provider: "local".into(),
                    detail: e.to_string(),
                })],
            };
            futures::stream::iter(out)
        });
        Ok(stream.boxed())
    }
}
