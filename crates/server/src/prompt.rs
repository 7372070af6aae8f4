//! From messages or a raw prompt to the token ids a local model reads.
//!
//! Chat messages go through the model's own chat template (ChatML when the
//! model has none, see `lucid_engine::chat`). BOS is added the way the model's
//! tokenizer asks for it, unless the template already wrote it, as the CLI's
//! `lucid run` does.

use lucid_engine::{ChatMessage, LoadedModel};

use crate::error::ApiError;

/// The prompt tokens of a conversation; `param` names the request field
/// for errors.
pub fn chat_tokens(
    model: &LoadedModel,
    messages: &[ChatMessage],
    param: &str,
) -> Result<Vec<u32>, ApiError> {
    let text = model.template.render(messages, true).map_err(|e| {
        ApiError::invalid(
            param,
            format!("The chat template cannot render these messages: {e}"),
        )
    })?;
    let writes_bos = model
        .tokenizer
        .bos()
        .and_then(|b| model.tokenizer.token_text(b))
        .is_some_and(|b| !b.is_empty() && text.starts_with(b));
    model
        .tokenizer
        .encode(&text, !writes_bos, true)
        .map_err(|e| ApiError::invalid(param, format!("Cannot tokenize the prompt: {e}")))
}

/// The tokens of a raw completion prompt (BOS added as the model asks).
pub fn raw_tokens(model: &LoadedModel, prompt: &str, param: &str) -> Result<Vec<u32>, ApiError> {
    model
        .tokenizer
        .encode(prompt, true, true)
        .map_err(|e| ApiError::invalid(param, format!("Cannot tokenize the prompt: {e}")))
}

/// The text of one token, for log-probabilities.
pub fn token_text(model: &LoadedModel, id: u32) -> (String, Vec<u8>) {
    let bytes = model.tokenizer.token_bytes(id);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}
