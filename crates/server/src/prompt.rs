//! From messages or a raw prompt to the token ids a local model reads.
//!
//! Prompts are built by `lucid_engine::prompt`, as the CLI and the glass
//! box build them: the model's default system message when the
//! conversation has none, its chat template, its BOS rule. Its default
//! sampling settings apply where a request gives none ([`apply_defaults`]).
//!
//! Both the rendering and the tokenization cost time in proportion to what
//! the request sent, so they run on tokio's blocking pool, never on the
//! async workers that answer every other request; and a text too long to
//! fit the context whatever its tokens is refused by its byte length before
//! it is tokenized (no token is longer than [`LocalModel::max_token_bytes`]).

use lucid_engine::ChatMessage;

use crate::error::ApiError;
use crate::state::LocalModel;

/// The prompt tokens of a conversation; `param` names the request field
/// for errors.
pub async fn chat_tokens(
    model: &LocalModel,
    messages: Vec<ChatMessage>,
    param: &str,
) -> Result<Vec<u32>, ApiError> {
    conversation_tokens(model, messages, None, String::new(), param).await
}

/// The prompt tokens of a conversation that offers `tools` (OpenAI's list;
/// `None`: none offered, though earlier calls and results may be in it).
pub async fn chat_tokens_with_tools(
    model: &LocalModel,
    messages: Vec<ChatMessage>,
    tools: Option<serde_json::Value>,
    param: &str,
) -> Result<Vec<u32>, ApiError> {
    conversation_tokens(model, messages, tools, String::new(), param).await
}

/// The prompt tokens of a conversation offering `tools`, whose reply
/// begins with `prefill` (Anthropic's last assistant message: the model
/// goes on from there).
pub async fn conversation_tokens(
    model: &LocalModel,
    messages: Vec<ChatMessage>,
    tools: Option<serde_json::Value>,
    prefill: String,
    param: &str,
) -> Result<Vec<u32>, ApiError> {
    let m = model.clone();
    let p = param.to_owned();
    blocking("preparing the prompt", move || {
        let mut text = m
            .model
            .chat_text_with_tools(&messages, tools.as_ref())
            .map_err(|e| {
                ApiError::invalid(
                    &p,
                    format!("The chat template cannot render these messages: {e}"),
                )
            })?;
        text.push_str(&prefill);
        fits_by_length(&m, &text, &p)?;
        m.model
            .encode_prompt(&text)
            .map_err(|e| ApiError::invalid(&p, format!("Cannot tokenize the prompt: {e}")))
    })
    .await
}

/// The tokens of raw completion prompts (BOS added as the model asks).
pub async fn raw_tokens(
    model: &LocalModel,
    prompts: Vec<String>,
    param: &str,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let m = model.clone();
    let p = param.to_owned();
    blocking("preparing the prompt", move || {
        for text in &prompts {
            fits_by_length(&m, text, &p)?;
        }
        prompts
            .iter()
            .map(|text| {
                m.model
                    .raw_prompt(text)
                    .map_err(|e| ApiError::invalid(&p, format!("Cannot tokenize the prompt: {e}")))
            })
            .collect()
    })
    .await
}

/// The model's default sampling settings where the request gave none
/// (`temperature`, `top_p`: what the request set).
pub fn apply_defaults(
    model: &LocalModel,
    sampling: &mut lucid_engine::SamplingParams,
    temperature: Option<f32>,
    top_p: Option<f32>,
) {
    let d = &model.model.defaults;
    if let (None, Some(t)) = (temperature, d.temperature) {
        sampling.temperature = t;
    }
    if let (None, Some(p)) = (top_p, d.top_p) {
        sampling.top_p = p;
    }
}

/// Runs `f` on the blocking pool: request-sized work (rendering,
/// tokenizing, compiling a schema) never runs on the async workers.
/// `what` names the work in the 500 if the task itself fails.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("{what} failed: {e}")))?
}

/// Refuses a text that has more bytes than the context could hold even if
/// every token were as long as the model's longest.
fn fits_by_length(model: &LocalModel, text: &str, param: &str) -> Result<(), ApiError> {
    let limit = model.scheduler.context_limit();
    let at_least = text.len().div_ceil(model.max_token_bytes.max(1));
    if at_least >= limit {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(
                param,
                format!(
                    "The prompt is {} bytes, at least {at_least} tokens (no token of this model \
                     is longer than {} bytes), and the context holds {limit}",
                    text.len(),
                    model.max_token_bytes
                ),
            )
        });
    }
    Ok(())
}

/// The text of one token, for log-probabilities.
pub fn token_text(model: &lucid_engine::LoadedModel, id: u32) -> (String, Vec<u8>) {
    let bytes = model.tokenizer.token_bytes(id);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}
