//! What a local model is given, in llama-server's shapes, so that users can
//! see it exactly: `POST /tokenize` (text to token ids, optionally with each
//! token's text), `POST /detokenize` (ids to text) and
//! `POST /apply-template` (messages to the prompt text the chat template
//! and the model's defaults make, as every chat route builds it).
//!
//! Each takes an optional `model`; without one the server's only model is
//! meant. Tokenizing runs on the blocking pool, as prompts do.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::ApiJson;
use crate::error::ApiError;
use crate::openai::wire::Message;
use crate::prompt::blocking;
use crate::state::{AppState, LocalModel};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/apply-template", post(apply_template))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    content: String,
    /// Add BOS (and EOS) where the model asks for them.
    #[serde(default)]
    add_special: bool,
    /// Read special tokens written in the text (`<|im_start|>`) as tokens.
    #[serde(default = "yes")]
    parse_special: bool,
    /// Each token's text beside its id.
    #[serde(default)]
    with_pieces: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    tokens: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyTemplateRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Message>,
}

/// The model a request names, or the only one served.
async fn model(state: &AppState, name: Option<&str>) -> Result<LocalModel, ApiError> {
    let names = state.model_names();
    match (name, names.as_slice()) {
        (Some(name), _) => state.require_model(name).await,
        (None, [only]) => state.require_model(only).await,
        (None, _) => Err(ApiError::invalid(
            "model",
            format!(
                "model is required: this server serves {}",
                state.model_names().join(", ")
            ),
        )),
    }
}

async fn tokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Response, ApiError> {
    let m = model(&state, req.model.as_deref()).await?;
    blocking("tokenizing", move || {
        let tokenizer = &m.model.tokenizer;
        let ids = tokenizer
            .encode(&req.content, req.add_special, req.parse_special)
            .map_err(|e| ApiError::invalid("content", format!("Cannot tokenize it: {e}")))?;
        if !req.with_pieces {
            return Ok(axum::Json(json!({ "tokens": ids })).into_response());
        }
        // A piece that is not whole UTF-8 (part of a character) is given as
        // its bytes, as llama-server does.
        let pieces: Vec<Value> = ids
            .iter()
            .map(|&id| {
                let bytes = tokenizer.token_bytes(id);
                let piece = match String::from_utf8(bytes) {
                    Ok(text) => json!(text),
                    Err(e) => json!(e.into_bytes()),
                };
                json!({ "id": id, "piece": piece })
            })
            .collect();
        Ok(axum::Json(json!({ "tokens": pieces })).into_response())
    })
    .await
}

async fn detokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DetokenizeRequest>,
) -> Result<Response, ApiError> {
    let m = model(&state, req.model.as_deref()).await?;
    let vocab = m.model.tokenizer.vocab_size();
    if let Some(i) = req.tokens.iter().position(|&id| id as usize >= vocab) {
        return Err(ApiError::invalid(
            format!("tokens[{i}]"),
            format!(
                "token id {} is outside the vocabulary ({vocab} tokens)",
                req.tokens[i]
            ),
        ));
    }
    blocking("tokenizing", move || {
        let content = m.model.tokenizer.decode(&req.tokens, false);
        Ok(axum::Json(json!({ "content": content })).into_response())
    })
    .await
}

async fn apply_template(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ApplyTemplateRequest>,
) -> Result<Response, ApiError> {
    let m = model(&state, req.model.as_deref()).await?;
    let messages = crate::openai::messages(&req.messages)?;
    blocking("tokenizing", move || {
        let prompt = m.model.chat_text(&messages).map_err(|e| {
            ApiError::invalid(
                "messages",
                format!("The chat template cannot render these messages: {e}"),
            )
        })?;
        Ok(axum::Json(json!({ "prompt": prompt })).into_response())
    })
    .await
}
