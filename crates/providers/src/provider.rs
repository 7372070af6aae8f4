//! The [`Provider`] trait: what the router, the CLI and the server call, and
//! what every backend (a vendor's API, an OpenAI-compatible endpoint, the
//! local engine) implements.

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::{ChatEvent, ChatRequest, ChatResponse, ProviderError, TokenLogprob};

/// Re-exported so that an implementation outside this crate can write
/// `#[lucid_providers::async_trait]` without depending on `async-trait` itself.
pub use async_trait::async_trait;

/// A streamed answer: deltas, then one [`ChatEvent::Finish`], or an error
/// that ends it. Dropping the stream cancels the request: for HTTP providers
/// it closes the connection, so the vendor stops generating.
pub type ChatStream = BoxStream<'static, Result<ChatEvent, ProviderError>>;

/// A source of chat completions.
///
/// The trait is object safe (the router holds `Arc<dyn Provider>`), which is
/// why it uses [`macro@async_trait`]. To plug in a backend from another crate, such
/// as the local engine:
///
/// ```
/// use futures::stream::{self, StreamExt};
/// use lucid_providers::{
///     async_trait, ChatEvent, ChatRequest, ChatResponse, ChatStream, FinishReason, Provider,
///     ProviderError, Usage,
/// };
///
/// struct Echo;
///
/// #[async_trait]
/// impl Provider for Echo {
///     fn name(&self) -> &str {
///         "local"
///     }
///
///     async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
///         // `req.model` is the bare local name, e.g. `llama3.2:1b`.
///         let text = req.messages.last().map(|m| m.content.clone()).unwrap_or_default();
///         Ok(ChatResponse {
///             model: req.model.clone(),
///             text,
///             finish_reason: FinishReason::Stop,
///             usage: Some(Usage { prompt_tokens: 1, completion_tokens: 1 }),
///             logprobs: None,
///         })
///     }
///
///     async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
///         // A real engine would feed a channel from its scheduler and wrap the
///         // receiver; when the stream is dropped, the engine sees the channel
///         // close and stops generating.
///         let text = req.messages.last().map(|m| m.content.clone()).unwrap_or_default();
///         let events = vec![
///             Ok(ChatEvent::Delta { text, logprobs: None }),
///             Ok(ChatEvent::Finish { reason: FinishReason::Stop, usage: None }),
///         ];
///         Ok(stream::iter(events).boxed())
///     }
/// }
///
/// let mut router = lucid_providers::Router::new();
/// router.set_local(std::sync::Arc::new(Echo));
/// ```
///
/// Implementations must not send an empty [`ChatEvent::Delta`], must end a
/// successful stream with exactly one [`ChatEvent::Finish`], and must end the
/// stream after yielding an error.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider's name as it appears in errors and logs (`openai`,
    /// `compat:uni`, `local`).
    fn name(&self) -> &str;

    /// Generates a complete answer.
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError>;

    /// Starts a streamed answer. An error before the stream exists (bad
    /// status, connection refused) comes back here; a failure later comes as
    /// the stream's last item.
    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError>;
}

/// Reads a stream to its end and assembles the [`ChatResponse`] it amounts
/// to, under the given model name. A stream that ends without
/// [`ChatEvent::Finish`] is a protocol error of `provider`.
pub async fn collect_stream(
    provider: &str,
    model: &str,
    mut stream: ChatStream,
) -> Result<ChatResponse, ProviderError> {
    let mut text = String::new();
    let mut logprobs: Option<Vec<TokenLogprob>> = None;
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Delta {
                text: t,
                logprobs: lp,
            } => {
                text.push_str(&t);
                if let Some(lp) = lp {
                    logprobs.get_or_insert_with(Vec::new).extend(lp);
                }
            }
            ChatEvent::Finish { reason, usage } => {
                return Ok(ChatResponse {
                    model: model.to_owned(),
                    text,
                    finish_reason: reason,
                    usage,
                    logprobs,
                });
            }
        }
    }
    Err(ProviderError::protocol(
        provider,
        "the stream ended without a finish event",
    ))
}
