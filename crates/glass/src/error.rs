//! What can go wrong while explaining a prompt: a request outside the
//! model's shape or the caller's bounds, or a failure of the engine.

use lucid_engine::EngineError;
use lucid_tokenizer::TokenizerError;

#[derive(Debug, thiserror::Error)]
pub enum GlassError {
    /// Boxed: the engine's error is large, and this one travels through
    /// every step of a run.
    #[error(transparent)]
    Engine(Box<EngineError>),

    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),

    #[error("the prompt is empty: there is nothing to explain")]
    EmptyPrompt,

    #[error("layer {layer} does not exist: the model has {n_layers} layers (0 to {})", n_layers.saturating_sub(1))]
    LayerOutOfRange { layer: usize, n_layers: usize },

    #[error("head {head} does not exist: the model has {n_heads} heads per layer (0 to {})", n_heads.saturating_sub(1))]
    HeadOutOfRange { head: usize, n_heads: usize },

    #[error("{what} must be at least 1")]
    Zero { what: &'static str },

    #[error("{what} is {requested}, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        requested: usize,
        limit: usize,
    },

    #[error("{prompt} prompt tokens plus {steps} steps exceed the model's context of {context}")]
    ContextTooSmall {
        prompt: usize,
        steps: usize,
        context: usize,
    },

    #[error("the forward pass left no logits for the last position")]
    NoLogits,

    #[error("the model's forward pass did not report {point}")]
    MissingHook { point: String },

    #[error(
        "{architecture} is an embedding model (an encoder): it predicts no tokens; \
         give it two texts or more to compare them (the semantic view)"
    )]
    NotAGenerator { architecture: String },

    #[error("the semantic view compares texts: give at least 2, not {given}")]
    TooFewTexts { given: usize },

    #[error("pair ({a}, {b}) names a text that does not exist: there are {texts} (0 to {})", texts.saturating_sub(1))]
    PairOutOfRange { a: usize, b: usize, texts: usize },

    #[error("the model's pass gave {got} hidden-state values for text {index}, not {expected}")]
    HiddenStates {
        index: usize,
        got: usize,
        expected: usize,
    },
}

impl From<EngineError> for GlassError {
    fn from(e: EngineError) -> Self {
        GlassError::Engine(Box::new(e))
    }
}

pub type Result<T, E = GlassError> = std::result::Result<T, E>;
