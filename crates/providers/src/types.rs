//! The vocabulary shared by every provider: requests, responses and stream
//! events, with no trace of any vendor's JSON.
//!
//! These types are deliberately not `Serialize`: the server has its own
//! serializable counterparts, and each adapter has private wire structs, so
//! that exactly one module knows each wire format.

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person's turn.
    User,
    /// The model's turn.
    Assistant,
}

impl Role {
    /// The lower-case name used by OpenAI-style APIs and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Sampling parameters. Every field is optional so that "not set" (the
/// provider's default) is distinct from any value; an adapter maps each set
/// field to its vendor's parameter or rejects the request with
/// [`ProviderError::UnsupportedParameter`](crate::ProviderError::UnsupportedParameter),
/// never dropping one silently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    pub top_p: Option<f32>,
    /// Sample among the `top_k` most likely tokens.
    pub top_k: Option<u32>,
    /// The most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Stop generating when any of these strings is produced (empty: none).
    pub stop: Vec<String>,
    /// Seed for reproducible sampling.
    pub seed: Option<i64>,
    /// Penalty for tokens that already appeared at all.
    pub presence_penalty: Option<f32>,
    /// Penalty proportional to how often tokens already appeared.
    pub frequency_penalty: Option<f32>,
    /// Return the log-probability of each generated token together with this
    /// many most likely alternatives (`Some(0)`: the chosen token's only).
    pub logprobs: Option<u8>,
}

/// A chat request, the same for every provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The model. Given to a [`Router`](crate::Router), a model string such as
    /// `openai:gpt-4o-mini` or a bare local name; given to a provider directly,
    /// that provider's own model name (`gpt-4o-mini`).
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Sampling parameters.
    pub params: SamplingParams,
    /// Whether the caller wants a stream. Providers do not read it: `chat`
    /// never streams and `chat_stream` always does. It travels with the
    /// request so that a front end (the server) can decide which to call.
    pub stream: bool,
}

impl ChatRequest {
    /// A non-streaming request with default sampling parameters.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            params: SamplingParams::default(),
            stream: false,
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished its turn, or produced a stop sequence.
    Stop,
    /// The token limit was reached.
    Length,
    /// The provider withheld or cut the output (safety, recitation, refusal).
    ContentFilter,
    /// The model asked to call a tool.
    ToolCalls,
    /// Any other reason, as the vendor spelled it.
    Other(String),
}

impl FinishReason {
    /// OpenAI's spelling (`stop`, `length`, `content_filter`, `tool_calls`),
    /// or the vendor's own for any other reason.
    pub fn name(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::Other(name) => name,
        }
    }
}

/// Token counts as reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt (including any cached prompt tokens).
    pub prompt_tokens: u32,
    /// Tokens generated (including any hidden reasoning tokens).
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt and completion together.
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// One likely alternative at a generated position.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
}

/// The log-probability of one generated token and its most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The generated token's text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The most likely alternatives, most likely first.
    pub top: Vec<TopLogprob>,
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The model that answered, as the provider names it (may be more
    /// specific than the one asked for, or a fallback's).
    pub model: String,
    /// The generated text.
    pub text: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Token counts, when the provider reported them.
    pub usage: Option<Usage>,
    /// Per-token log-probabilities, when asked for and provided.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// One item of a streamed answer: any number of deltas, then one finish.
///
/// An OpenAI-style SSE stream maps onto it chunk by chunk (the `[DONE]`
/// sentinel and the final usage chunk become `Finish`), and so does a local
/// engine that yields tokens and then a stop reason.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// More generated text (never empty).
    Delta {
        /// The new text.
        text: String,
        /// Log-probabilities of the tokens in `text`, when asked for.
        logprobs: Option<Vec<TokenLogprob>>,
    },
    /// The end of the answer; nothing follows it.
    Finish {
        /// Why generation stopped.
        reason: FinishReason,
        /// Token counts, when the provider reported them.
        usage: Option<Usage>,
    },
}
