//! The OpenAI-compatible API: `GET /v1/models`, `POST /v1/chat/completions`,
//! `POST /v1/completions`, `POST /v1/responses` and `POST /v1/embeddings`;
//! generations are streamed as OpenAI streams them (SSE `data:` chunks, a
//! final chunk with the finish reason, a usage chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`).
//!
//! Local model names run on the scheduler here; `provider:model` names go
//! through the provider router (chat only), so a client can reach OpenAI,
//! Anthropic, Gemini or a compatible endpoint through lucid.
//!
//! By route: `chat`, `completions` and `responses` run local models,
//! `embeddings` turns texts into vectors (through [`crate::embed`]), `remote`
//! translates a chat for the providers, `params` checks OpenAI's request
//! parameters, [`wire`] holds the JSON shapes; this file lists the models
//! and holds what the routes share (usage, log-probabilities, SSE).

mod chat;
mod completions;
mod embeddings;
mod params;
pub(crate) use params::{compile, messages, sampling};
mod remote;
mod responses;
pub(crate) mod tools;
pub mod wire;

use std::convert::Infallible;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::stream::BoxStream;
use lucid_scheduler::TokenLogprobs;

use crate::error::ApiError;
use crate::prompt;
use crate::state::{AppState, LocalModel};
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
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/embeddings", post(embeddings::embeddings))
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
    let m = state.require_model(&model).await?;
    Ok(axum::Json(ModelObject {
        id: m.name.clone(),
        object: "model",
        created: m.created,
        owned_by: "lucid",
    })
    .into_response())
}

pub(super) fn wire_logprobs(model: &LocalModel, id: u32, lp: &TokenLogprobs) -> TokenLogprob {
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

pub(super) fn usage(prompt_tokens: usize, completion_tokens: usize, cached: usize) -> Usage {
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: cached,
        }),
    }
}

pub(super) fn sse_json<T: serde::Serialize>(v: &T) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(v).unwrap_or_default())
}

type SseStream = BoxStream<'static, Result<SseEvent, Infallible>>;

pub(super) fn sse(stream: SseStream) -> Response {
    Sse::new(stream).into_response()
}
