//! `POST /v1/rerank` (also at `/rerank`): documents ordered by a
//! cross-encoder's relevance to a query, in the shape llama-server, Jina
//! and Cohere share (`query`, `documents`, `top_n`, `return_documents` →
//! `results` of `index` and `relevance_score`, best first).
//!
//! Each query-document pair is joined as the model's tokenizer joins two
//! texts (`[CLS] query [SEP] document [SEP]`, with segment ids) and scored by
//! the model's classification head through the scheduler ([`crate::embed`]).
//! The score is the head's raw output (a logit), as llama-server reports
//! it; sentence-transformers' `CrossEncoder.predict` gives its sigmoid.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use crate::body::{ApiJson, refuse_extra};
use crate::embed;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/rerank", post(rerank))
        .route("/rerank", post(rerank))
}

/// A document: its text, or an object with its `text` (Jina's and Cohere's
/// older shape), whose other keys are refused by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_json::Value")]
struct Document {
    text: String,
    other: serde_json::Map<String, serde_json::Value>,
}

/// Read by hand, for an error that says what a document may be.
impl TryFrom<serde_json::Value> for Document {
    type Error = String;

    fn try_from(v: serde_json::Value) -> Result<Document, String> {
        let what = "a document is a string or an object with a string `text`";
        match v {
            serde_json::Value::String(text) => Ok(Document {
                text,
                other: serde_json::Map::new(),
            }),
            serde_json::Value::Object(mut other) => match other.remove("text") {
                Some(serde_json::Value::String(text)) => Ok(Document { text, other }),
                _ => Err(what.to_owned()),
            },
            _ => Err(what.to_owned()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RerankRequest {
    model: String,
    query: String,
    documents: Vec<Document>,
    /// Only the best this many (all when absent).
    #[serde(default)]
    top_n: Option<i64>,
    /// Each result with its document's text.
    #[serde(default)]
    return_documents: Option<bool>,
    /// Every other field, refused by name.
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct RerankResponse {
    model: String,
    object: &'static str,
    results: Vec<RerankResult>,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct RerankResult {
    index: usize,
    relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<DocumentText>,
}

#[derive(Debug, Serialize)]
struct DocumentText {
    text: String,
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

async fn rerank(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RerankRequest>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    if let Some((key, _)) = req.other.iter().find(|(_, v)| !v.is_null()) {
        return Err(ApiError::invalid(
            key,
            format!(
                "`{key}` is not supported: lucid does not know this field of /v1/rerank, and \
                 ignoring it could change the ranking"
            ),
        ));
    }
    if req.query.is_empty() {
        return Err(ApiError::invalid("query", "query must not be empty"));
    }
    if req.documents.is_empty() {
        return Err(ApiError::invalid(
            "documents",
            "documents must not be an empty list",
        ));
    }
    embed::check_count(req.documents.len(), "documents")?;
    let top_n = match req.top_n {
        None => req.documents.len(),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                ApiError::invalid("top_n", format!("top_n must be at least 1, not {n}"))
            })?
            .min(req.documents.len()),
    };
    let mut texts = Vec::with_capacity(req.documents.len());
    for (i, d) in req.documents.into_iter().enumerate() {
        refuse_extra(&d.other, &format!("documents[{i}]"))?;
        texts.push(d.text);
    }
    let lm = state.require_local_model(&req.model, "/v1/rerank").await?;
    let keep = req.return_documents.unwrap_or(false);
    let kept_texts = if keep { texts.clone() } else { Vec::new() };
    let scored = embed::rerank(&state, &lm, req.query, texts).await?;
    let mut order: Vec<usize> = (0..scored.scores.len()).collect();
    // Best first; equal scores keep the documents' order.
    order.sort_by(|&a, &b| scored.scores[b].total_cmp(&scored.scores[a]));
    let results = order
        .into_iter()
        .take(top_n)
        .map(|index| RerankResult {
            index,
            relevance_score: scored.scores[index],
            document: kept_texts
                .get(index)
                .map(|text| DocumentText { text: text.clone() }),
        })
        .collect();
    let res = axum::Json(RerankResponse {
        model: req.model,
        object: "list",
        results,
        usage: Usage {
            prompt_tokens: scored.tokens,
            total_tokens: scored.tokens,
        },
    })
    .into_response();
    Ok(embed::with_truncated(res, scored.truncated))
}
