//! Ollama's embedding routes: `POST /api/embed` (texts to vectors, with
//! `truncate` and `dimensions`) and the older `POST /api/embeddings` (one
//! `prompt`). Both run through [`crate::embed`], as `/v1/embeddings` does,
//! so the three give the same vectors.
//!
//! Options that steer generation (sampling, `num_predict`) and those that
//! tune Ollama's runtime ask nothing of an embedding and are accepted;
//! `num_ctx` is applied (an input longer than it is cut, or refused without
//! `truncate`); any other option is refused by name.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::wire::*;
use super::{RUNTIME_OPTIONS, keep_alive};
use crate::body::ApiJson;
use crate::embed::{self, Input, Settings};
use crate::error::{ApiError, OllamaError};
use crate::state::{AppState, LocalModel};

/// Options of `/api/chat` and `/api/generate` that lucid refuses there (it
/// does not sample that way) but that ask nothing of an embedding.
const SAMPLING_ONLY_OPTIONS: &[&str] = &[
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "typical_p",
    "tfs_z",
    "penalize_newline",
];

/// The tokens an input may have under `options.num_ctx`, checking the
/// other options.
fn read_options(options: Option<&Options>) -> Result<Option<usize>, ApiError> {
    let Some(o) = options else {
        return Ok(None);
    };
    for (key, _) in o.other.iter().filter(|(_, v)| !v.is_null()) {
        if RUNTIME_OPTIONS.contains(&key.as_str()) || SAMPLING_ONLY_OPTIONS.contains(&key.as_str())
        {
            continue;
        }
        return Err(ApiError::invalid(
            format!("options.{key}"),
            format!("option `{key}` is not supported: lucid does not apply it"),
        ));
    }
    match o.num_ctx {
        None => Ok(None),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(
                    "options.num_ctx",
                    format!("num_ctx must be a positive number of tokens, not {n}"),
                )
            }),
    }
}

fn refuse_unknown(other: &serde_json::Map<String, serde_json::Value>) -> Result<(), ApiError> {
    match other.iter().find(|(_, v)| !v.is_null()) {
        Some((key, _)) => Err(ApiError::invalid(
            key,
            format!(
                "`{key}` is not supported: lucid does not know this field, and ignoring it \
                 could change the vectors"
            ),
        )),
        None => Ok(()),
    }
}

/// The model a request names, loaded, with its `keep_alive` applied, and
/// how long loading took.
async fn model(
    state: &AppState,
    name: &str,
    keep: Option<&serde_json::Value>,
) -> Result<(LocalModel, Duration), ApiError> {
    let keep = keep_alive(keep)?;
    let started = Instant::now();
    let lm = state.require_local_model(name, "/api/embed").await?;
    let load = started.elapsed();
    if let Some(keep) = keep {
        state.keep_alive(&lm.name, keep);
    }
    Ok((lm, load))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(super) async fn embed_handler(
    State(state): State<AppState>,
    body: Result<ApiJson<EmbedRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    let ApiJson(req) = body?;
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down().into());
    }
    refuse_unknown(&req.other)?;
    let num_ctx = read_options(req.options.as_ref())?;
    // As Ollama: an empty text is no input, and a request without input
    // loads the model and answers with no vectors.
    let (texts, lone) = match req.input {
        None => (Vec::new(), true),
        Some(EmbedInput::Text(t)) if t.is_empty() => (Vec::new(), true),
        Some(EmbedInput::Text(t)) => (vec![t], true),
        Some(EmbedInput::Texts(ts)) => (ts, false),
    };
    embed::check_count(texts.len(), "input")?;
    let (lm, load) = model(&state, &req.model, req.keep_alive.as_ref()).await?;
    let settings = Settings {
        truncate: req.truncate.unwrap_or(true),
        max_tokens: num_ctx,
        dimensions: embed::check_dimensions(&lm, req.dimensions)?,
    };
    if texts.is_empty() {
        return Ok(axum::Json(EmbedResponse {
            model: req.model,
            embeddings: Vec::new(),
            total_duration: nanos(started.elapsed()),
            load_duration: nanos(load),
            prompt_eval_count: 0,
        })
        .into_response());
    }
    let inputs = texts.into_iter().map(Input::Text).collect();
    let out = embed::embed(&state, &lm, inputs, lone, settings, "input").await?;
    let res = axum::Json(EmbedResponse {
        model: req.model,
        embeddings: out.vectors,
        total_duration: nanos(started.elapsed()),
        load_duration: nanos(load),
        prompt_eval_count: out.tokens,
    })
    .into_response();
    Ok(embed::with_truncated(res, out.truncated))
}

/// The older route: one `prompt`, one vector (none for an empty prompt, as
/// Ollama answers).
pub(super) async fn embeddings_handler(
    State(state): State<AppState>,
    body: Result<ApiJson<EmbeddingsRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let ApiJson(req) = body?;
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down().into());
    }
    refuse_unknown(&req.other)?;
    let num_ctx = read_options(req.options.as_ref())?;
    let (lm, _) = model(&state, &req.model, req.keep_alive.as_ref()).await?;
    let prompt = req.prompt.unwrap_or_default();
    if prompt.is_empty() {
        return Ok(axum::Json(EmbeddingsResponse {
            embedding: Vec::new(),
        })
        .into_response());
    }
    let settings = Settings {
        max_tokens: num_ctx,
        ..Settings::default()
    };
    let out = embed::embed(
        &state,
        &lm,
        vec![Input::Text(prompt)],
        true,
        settings,
        "prompt",
    )
    .await?;
    let res = axum::Json(EmbeddingsResponse {
        embedding: out.vectors.into_iter().next().unwrap_or_default(),
    })
    .into_response();
    Ok(embed::with_truncated(res, out.truncated))
}
