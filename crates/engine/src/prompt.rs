//! From a conversation or a raw text to the token ids a model reads: the one
//! place where a model's defaults, its chat template and its BOS rule are
//! applied. The CLI, both server APIs and the glass box build their prompts
//! here, so the same question gets the same prompt everywhere.
//!
//! Precedence, the same at every entry point (as Ollama applies a
//! Modelfile): what the request says, then the model's defaults
//! ([`ModelDefaults`], from its catalog entry), then the entry point's own
//! defaults (OpenAI's temperature 1, Ollama's 0.8, ...).

use crate::chat::{ChatMessage, Role};
use crate::error::Result;
use crate::loaded::LoadedModel;

/// What a model is run with when a request does not say: the catalog's
/// `[defaults]` for it (a system message a small model needs to answer
/// well, sampling settings its publisher recommends).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelDefaults {
    /// Put first in a conversation that has no system message.
    pub system: Option<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
}

impl LoadedModel {
    /// The prompt text of a conversation: the model's default system
    /// message first when the conversation has none, then the chat
    /// template, ending where the assistant's reply begins.
    pub fn chat_text(&self, messages: &[ChatMessage]) -> Result<String> {
        self.chat_text_with_tools(messages, None)
    }

    /// [`LoadedModel::chat_text`] for a conversation with tool use: `tools`
    /// (OpenAI's list) go to a template that reads them, and are written
    /// into the conversation for one that does not ([`crate::tools`]), as
    /// are earlier calls and results.
    pub fn chat_text_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
    ) -> Result<String> {
        let mut with = Vec::with_capacity(messages.len() + 1);
        if let Some(system) = &self.defaults.system
            && !messages.iter().any(|m| m.role == Role::System)
        {
            with.push(ChatMessage::new(Role::System, system.clone()));
        }
        with.extend_from_slice(messages);
        if self.template.reads_tools() {
            self.template.render_with_tools(&with, tools, true)
        } else {
            let written = crate::tools::written_in(&with, tools);
            self.template.render(&written, true)
        }
    }

    /// The tokens of a prompt text that went through the chat template:
    /// BOS first as the tokenizer asks, unless the template already wrote
    /// it; special tokens in the text are parsed as such.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let tokenizer = &self.tokenizer;
        let writes_bos = tokenizer
            .bos()
            .and_then(|b| tokenizer.token_text(b))
            .is_some_and(|b| !b.is_empty() && text.starts_with(b));
        Ok(tokenizer.encode(text, !writes_bos, true)?)
    }

    /// [`LoadedModel::chat_text`], tokenized.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        self.encode_prompt(&self.chat_text(messages)?)
    }

    /// A text read as it is, without template or defaults (BOS added as
    /// the tokenizer asks).
    pub fn raw_prompt(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, true, true)?)
    }
}
