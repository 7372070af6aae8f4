//! `POST /v1/embeddings`: texts (or token ids) to vectors on a local model,
//! as floats or as base64 (what the OpenAI SDKs ask for by default and
//! decode themselves).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::wire::*;
use crate::body::ApiJson;
use crate::embed::{self, Input, Settings};
use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn embeddings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    // `user` is the one field besides those applied: who asks, metadata.
    if let Some((key, _)) = req.other.iter().find(|(_, v)| !v.is_null()) {
        return Err(ApiError::invalid(
            key,
            format!(
                "`{key}` is not supported: lucid does not know this field of /v1/embeddings, \
                 and ignoring it could change the vectors"
            ),
        ));
    }
    let (inputs, lone) = match req.input {
        EmbeddingInput::Text(t) => (vec![Input::Text(t)], true),
        EmbeddingInput::Tokens(ids) => (vec![Input::Tokens(ids)], true),
        EmbeddingInput::Texts(ts) => (ts.into_iter().map(Input::Text).collect(), false),
        EmbeddingInput::TokenLists(l) => (l.into_iter().map(Input::Tokens).collect(), false),
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid(
            "input",
            "input must not be an empty list",
        ));
    }
    embed::check_count(inputs.len(), "input")?;
    let lm = state
        .require_local_model(&req.model, "/v1/embeddings")
        .await?;
    let settings = Settings {
        dimensions: embed::check_dimensions(&lm, req.dimensions)?,
        ..Settings::default()
    };
    let out = embed::embed(&state, &lm, inputs, lone, settings, "input").await?;
    let base64 = req.encoding_format == Some(EncodingFormat::Base64);
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingObject {
            object: "embedding",
            index,
            embedding: if base64 {
                EmbeddingVector::Base64(embed::base64_f32(&v))
            } else {
                EmbeddingVector::Float(v)
            },
        })
        .collect();
    let res = axum::Json(EmbeddingList {
        object: "list",
        data,
        model: req.model,
        usage: EmbeddingUsage {
            prompt_tokens: out.tokens,
            total_tokens: out.tokens,
        },
    })
    .into_response();
    Ok(embed::with_truncated(res, out.truncated))
}
