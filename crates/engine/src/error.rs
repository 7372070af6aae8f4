//! The engine's error type: every failure names what was wrong with which
//! model, tensor or request.

use lucid_tensor::DType;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] lucid_gguf::GgufError),

    #[error(transparent)]
    Tokenizer(#[from] lucid_tokenizer::TokenizerError),

    #[error(
        "{arch} is an encoder: it turns text into embeddings and does not predict \
         tokens, so it cannot generate or score text (embed with it instead)"
    )]
    NotAGenerator { arch: &'static str },

    #[error("{arch} has no classification head: it cannot score or rerank")]
    NotAClassifier { arch: &'static str },

    #[error(
        "an encoder reads each sequence whole in one pass, but a sequence came with \
         {cached} tokens already in its cache"
    )]
    EncoderContinuation { cached: usize },

    #[error("{path}: {message}")]
    Open { path: String, message: String },

    #[error(
        "{what} needs {} of memory, but {} is available: close other programs, \
         use a smaller model or quantization, or set LUCID_MEMORY_LIMIT (a size, or 'none') \
         to plan with another amount",
        crate::memory::human(*needed),
        crate::memory::human(*available)
    )]
    NotEnoughMemory {
        what: String,
        needed: u64,
        available: u64,
    },

    #[error("{source_name}: architecture '{arch}' is not supported (lucid runs: {known})")]
    UnsupportedArchitecture {
        source_name: String,
        arch: String,
        known: String,
    },

    #[error("{source_name}: tensor '{name}' is missing")]
    MissingTensor { source_name: String, name: String },

    #[error("{source_name}: tensor '{name}' has shape {found:?}, expected {expected:?}")]
    TensorShape {
        source_name: String,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("{source_name}: tensor '{name}' is {dtype}, which lucid cannot use there")]
    TensorType {
        source_name: String,
        name: String,
        dtype: DType,
    },

    #[error("{source_name}: tensor '{name}' is stored as {stored}, which lucid cannot use")]
    UnsupportedTensorType {
        source_name: String,
        name: String,
        stored: String,
    },

    #[error(
        "lucid cannot convert weights to {dtype}; it writes F32, F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0, Q4_1 and Q4_K"
    )]
    QuantizeType { dtype: DType },

    #[error("{source_name}: {message}")]
    Config {
        source_name: String,
        message: String,
    },

    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange { id: u32, vocab: usize },

    #[error(
        "the context is full: {used} tokens plus {adding} new ones exceed the limit of {limit}"
    )]
    ContextFull {
        used: usize,
        adding: usize,
        limit: usize,
    },

    #[error("the prompt is empty: nothing to run the model on")]
    EmptyPrompt,

    #[error("chat template: {0}")]
    Template(String),

    #[error("invalid sampling parameter: {0}")]
    Sampling(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
