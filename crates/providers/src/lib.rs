//! One request, response and stream type for every kind of model: the local
//! engine and vendors' APIs (OpenAI, Anthropic, Gemini, OpenAI-compatible endpoints).
//!
//! The CLI and the server speak [`ChatRequest`], [`ChatResponse`] and
//! [`ChatEvent`] and never a vendor's JSON. Each vendor's wire format lives in
//! exactly one module ([`openai`], [`anthropic`], [`gemini`]); the
//! OpenAI-compatible endpoints reuse [`openai`] with their own base URL and name.
//! A [`Router`] turns a model string such as `openai:gpt-4o-mini` into a
//! provider and a vendor model name, and applies retries and fallbacks.
//!
//! The local engine knows nothing of this crate: whoever wires it in implements
//! [`Provider`] for it (see that trait's docs) and hands it to
//! [`Router::set_local`], so a bare model name such as `llama3.2:1b` reaches it.
//!
//! Keys are held in [`Secret`], whose `Debug` and `Display` print `***`; every
//! message that comes back from a server is scrubbed of the key before it is put
//! into an error or a log line.

pub mod anthropic;
pub mod config;
pub mod error;
pub mod gemini;
mod http;
pub mod model_ref;
pub mod openai;
pub mod provider;
pub mod retry;
pub mod router;
pub mod secret;
pub mod sse;
pub mod types;

pub use anthropic::AnthropicProvider;
pub use config::{Config, ConfigError, HttpSettings};
pub use error::{Attempt, ProviderError, TimeoutPhase};
pub use gemini::GeminiProvider;
pub use model_ref::ModelRef;
pub use openai::OpenAiProvider;
pub use provider::{ChatStream, Provider, async_trait, collect_stream};
pub use retry::RetryPolicy;
pub use router::Router;
pub use secret::Secret;
pub use types::{
    ChatEvent, ChatRequest, ChatResponse, FinishReason, Message, Role, SamplingParams,
    TokenLogprob, TopLogprob, Usage,
};
