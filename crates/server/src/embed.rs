//! What the embedding and reranking routes share: inputs turned into the
//! token ids a model reads (on the blocking pool), checked with errors that
//! name the request field, queued on the model's scheduler (whose passes
//! embedding requests share between generation steps), and the vectors
//! cut to `dimensions`.
//!
//! Texts are cut to the most tokens the model reads, as sentence-transformers
//! and the OpenAI-compatible servers cut them; how many inputs were cut is
//! sent back in the `x-lucid-truncated` header ([`TRUNCATED_HEADER`]).
//! Token ids a client tokenized itself are never cut: too many is a 400.

use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use axum::response::Response;
use lucid_engine::embed;
use lucid_scheduler::{EmbedRequest, EmbedTask};

use crate::error::ApiError;
use crate::prompt::blocking;
use crate::state::{AppState, LocalModel};

/// The most inputs (texts, or documents to rank) in one request: OpenAI's
/// limit for `/v1/embeddings`.
pub const MAX_INPUTS: usize = 2048;

/// The response header that says how many inputs were cut to fit.
pub const TRUNCATED_HEADER: &str = "x-lucid-truncated";

/// One input to embed.
#[derive(Debug, Clone)]
pub enum Input {
    Text(String),
    /// Ids of the model's vocabulary, read as they are.
    Tokens(Vec<u32>),
}

/// How to read the inputs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Cut a text that is too long (else refuse it).
    pub truncate: bool,
    /// A smaller limit on tokens per input than the model's (Ollama's
    /// `num_ctx`).
    pub max_tokens: Option<usize>,
    /// Keep only the first this many values of each vector.
    pub dimensions: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            truncate: true,
            max_tokens: None,
            dimensions: None,
        }
    }
}

/// The vectors of a request's inputs, in order.
#[derive(Debug)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read, all inputs together.
    pub tokens: usize,
    /// How many inputs were cut to fit.
    pub truncated: usize,
    /// From the inputs' arrival to their vectors.
    pub took: Duration,
}

/// The most tokens one input may have on `model`: what its embedding
/// configuration says (sentence-transformers' `max_seq_length`), within the
/// context the server runs it with.
pub fn max_tokens(model: &LocalModel) -> usize {
    let m = &model.model;
    embed::max_tokens(m.model.as_ref(), &m.embedding).min(model.scheduler.context_limit())
}

/// Checks `dimensions` against the model's vector width.
pub fn check_dimensions(
    model: &LocalModel,
    dimensions: Option<i64>,
) -> Result<Option<usize>, ApiError> {
    let Some(d) = dimensions else {
        return Ok(None);
    };
    let width = model.model.model.info().d_model;
    match usize::try_from(d) {
        Ok(d) if (1..=width).contains(&d) => Ok(Some(d)),
        _ => Err(ApiError::invalid(
            "dimensions",
            format!(
                "dimensions must be between 1 and {width} (the width of {}'s vectors), not {d}",
                model.name
            ),
        )),
    }
}

/// Refuses a request with more than [`MAX_INPUTS`] inputs in `param`.
pub fn check_count(n: usize, param: &str) -> Result<(), ApiError> {
    if n > MAX_INPUTS {
        return Err(ApiError::invalid(
            param,
            format!("{param} has {n} entries; at most {MAX_INPUTS} are taken in one request"),
        ));
    }
    Ok(())
}

/// The field of input `i` for errors: `input` for a lone input, else `input[i]`.
fn at(param: &str, i: usize, lone: bool) -> String {
    if lone {
        param.to_owned()
    } else {
        format!("{param}[{i}]")
    }
}

fn too_long(param: String, message: String) -> ApiError {
    ApiError {
        code: Some("context_length_exceeded"),
        ..ApiError::invalid(param, message)
    }
}

/// Embeds `inputs` (found in the request's `param`; `lone`: a single input,
/// not a list) with `model`: tokenized on the blocking pool, run on the
/// model's scheduler, each vector cut to `settings.dimensions`.
pub async fn embed(
    state: &AppState,
    model: &LocalModel,
    inputs: Vec<Input>,
    lone: bool,
    settings: Settings,
    param: &str,
) -> Result<Embedded, ApiError> {
    let started = Instant::now();
    check_count(inputs.len(), param)?;
    let limit = settings
        .max_tokens
        .map_or(max_tokens(model), |m| m.min(max_tokens(model)));
    let m = model.clone();
    let p = param.to_owned();
    let tokenized = blocking("tokenizing the inputs", move || {
        tokenize(&m, inputs, lone, limit, settings.truncate, &p)
    })
    .await?;
    let truncated = tokenized.iter().filter(|t| t.1).count();
    let ids: Vec<Vec<u32>> = tokenized.into_iter().map(|t| t.0).collect();
    let tokens = ids.iter().map(Vec::len).sum();
    let n = ids.len();
    let mut vectors = run(
        model,
        EmbedRequest {
            task: EmbedTask::Embed,
            inputs: ids,
            types: Vec::new(),
        },
        param,
    )
    .await?;
    if let Some(d) = settings.dimensions {
        let normalize = model.model.embedding.normalize;
        for v in &mut vectors {
            embed::truncate_dimensions(v, d, normalize);
        }
    }
    state.metrics().embedded(&model.name, "embed", n, tokens);
    state.served_models().renew(&model.name);
    Ok(Embedded {
        vectors,
        tokens,
        truncated,
        took: started.elapsed(),
    })
}

/// Each input's ids and whether it was cut.
fn tokenize(
    model: &LocalModel,
    inputs: Vec<Input>,
    lone: bool,
    limit: usize,
    truncate: bool,
    param: &str,
) -> Result<Vec<(Vec<u32>, bool)>, ApiError> {
    let lm = &model.model;
    let vocab = lm.tokenizer.vocab_size();
    // The model's own settings, cut at the limit of this request.
    let config = embed_config(lm, limit);
    let mut out = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let field = || at(param, i, lone);
        match input {
            Input::Text(text) => {
                if text.is_empty() {
                    return Err(ApiError::invalid(
                        field(),
                        format!("{} must not be an empty string", field()),
                    ));
                }
                let t = embed::tokenize(&lm.tokenizer, lm.model.as_ref(), &config, &text)
                    .map_err(|e| ApiError::invalid(field(), format!("Cannot tokenize it: {e}")))?;
                if t.truncated && !truncate {
                    let full = lm
                        .tokenizer
                        .encode(&text, true, true)
                        .map_or(0, |v| v.len());
                    return Err(too_long(
                        field(),
                        format!(
                            "{} is {full} tokens, and {} reads at most {limit}",
                            field(),
                            model.name
                        ),
                    ));
                }
                out.push((t.ids, t.truncated));
            }
            Input::Tokens(ids) => {
                if ids.is_empty() {
                    return Err(ApiError::invalid(
                        field(),
                        format!("{} must not be an empty list of token ids", field()),
                    ));
                }
                if let Some(j) = ids.iter().position(|&id| id as usize >= vocab) {
                    return Err(ApiError::invalid(
                        format!("{}[{j}]", field()),
                        format!(
                            "token id {} is outside the vocabulary of {} ({vocab} tokens)",
                            ids[j], model.name
                        ),
                    ));
                }
                if ids.len() > limit {
                    return Err(too_long(
                        field(),
                        format!(
                            "{} is {} tokens, and {} reads at most {limit}; token ids are \
                             never cut, send fewer",
                            field(),
                            ids.len(),
                            model.name
                        ),
                    ));
                }
                out.push((ids, false));
            }
        }
    }
    Ok(out)
}

/// The model's embedding settings with inputs cut at `limit` tokens.
fn embed_config(model: &lucid_engine::LoadedModel, limit: usize) -> embed::EmbeddingConfig {
    embed::EmbeddingConfig {
        max_tokens: Some(limit),
        ..model.embedding.clone()
    }
}

/// A cross-encoder's relevance scores of `documents` for `query`.
#[derive(Debug)]
pub struct Scored {
    /// The classification head's first output per document, before any
    /// activation.
    pub scores: Vec<f32>,
    pub tokens: usize,
    pub truncated: usize,
}

/// Scores each of `documents` for `query` with `model`'s classification
/// head (a cross-encoder): each pair joined as the model's tokenizer joins
/// two texts and cut to the model's limit, longest text first.
pub async fn rerank(
    state: &AppState,
    model: &LocalModel,
    query: String,
    documents: Vec<String>,
) -> Result<Scored, ApiError> {
    if model.model.model.n_labels().is_none() {
        return Err(ApiError {
            code: Some("model_not_supported"),
            ..ApiError::invalid(
                "model",
                format!(
                    "{} has no classification head ({}): it cannot rerank; a reranker is a \
                     cross-encoder such as BertForSequenceClassification",
                    model.name,
                    model.model.model.info().architecture
                ),
            )
        });
    }
    check_count(documents.len(), "documents")?;
    let limit = max_tokens(model);
    let m = model.clone();
    let pairs = blocking("tokenizing the documents", move || {
        let tokenizer = &m.model.tokenizer;
        documents
            .iter()
            .enumerate()
            .map(|(i, d)| {
                tokenizer.encode_pair(&query, d, limit).map_err(|e| {
                    ApiError::invalid(
                        format!("documents[{i}]"),
                        format!("Cannot tokenize the query with this document: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    let truncated = pairs.iter().filter(|p| p.truncated).count();
    let tokens = pairs.iter().map(|p| p.ids.len()).sum();
    let n = pairs.len();
    let (inputs, types) = pairs.into_iter().map(|p| (p.ids, p.types)).unzip();
    let outputs = run(
        model,
        EmbedRequest {
            task: EmbedTask::Classify,
            inputs,
            types,
        },
        "documents",
    )
    .await?;
    let scores = outputs
        .iter()
        .map(|v| v.first().copied().unwrap_or(f32::NAN))
        .collect();
    state.metrics().embedded(&model.name, "rerank", n, tokens);
    state.served_models().renew(&model.name);
    Ok(Scored {
        scores,
        tokens,
        truncated,
    })
}

/// Queues `req` on the model's scheduler and waits for its vectors.
async fn run(
    model: &LocalModel,
    req: EmbedRequest,
    param: &str,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let rx = model
        .scheduler
        .embed(req)
        .map_err(|e| ApiError::from_scheduler(e, param))?;
    match rx.await {
        Ok(result) => result.map_err(|e| ApiError::from_scheduler(e, param)),
        // The scheduler dropped the request unanswered: it stopped.
        Err(_) => Err(ApiError::shutting_down()),
    }
}

/// Sets [`TRUNCATED_HEADER`] on `res`.
pub fn with_truncated(mut res: Response, truncated: usize) -> Response {
    if let Ok(v) = HeaderValue::from_str(&truncated.to_string()) {
        res.headers_mut().insert(TRUNCATED_HEADER, v);
    }
    res
}

/// Little-endian float32 bytes in standard base64 (with padding): the
/// `encoding_format: "base64"` form of a vector, which the OpenAI SDKs
/// decode with `np.frombuffer(base64.b64decode(s), dtype="float32")`.
pub fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_floats_matches_the_standard_encoding() {
        // 1.0f32 is 00 00 80 3f; -2.5 is 00 00 20 c0.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.5]), "AACAPwAAIMA=");
        assert_eq!(base64_f32(&[]), "");
        // Three floats: 12 bytes, no padding.
        assert_eq!(base64_f32(&[0.0, 0.0, 0.0]), "AAAAAAAAAAAAAAAA");
    }
}
