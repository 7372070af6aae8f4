//! What can go wrong building a tokenizer or encoding text.
//!
//! A vocabulary comes from a downloaded file, so every error says which key,
//! token or line is bad, for a user to tell a broken download from a bug.

use std::path::PathBuf;

/// An error from this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// Reading a GGUF metadata key failed: absent when required, or of the
    /// wrong type.
    #[error(transparent)]
    Gguf(#[from] lucid_gguf::GgufError),

    /// `tokenizer.ggml.model` names a tokenizer lucid does not implement.
    #[error("unsupported tokenizer model `{0}` (lucid knows `gpt2` and `llama`)")]
    UnsupportedModel(String),

    /// `tokenizer.ggml.pre` names a pre-tokenizer lucid does not know. llama.cpp
    /// refuses such a file too, rather than guess at how to split the text.
    #[error("unknown pre-tokenizer `{0}` (tokenizer.ggml.pre)")]
    UnsupportedPreTokenizer(String),

    /// A length to cut a text to leaves no room for the text between the
    /// special tokens the model adds.
    #[error("cannot cut a text to {max_tokens} tokens: the model adds {added} special tokens")]
    TooShortToTruncate { max_tokens: usize, added: usize },

    /// Joining two texts into one input needs the post-processor of a
    /// Hugging Face `tokenizer.json`.
    #[error(
        "this tokenizer has no template for joining a pair of texts (tokenizer.json's post_processor)"
    )]
    NoPairTemplate,

    /// The vocabulary has no tokens.
    #[error("the vocabulary is empty")]
    EmptyVocab,

    /// Two tokens have the same text, so text cannot map back to one id.
    #[error("token {second} has the same text as token {first}: {text:?}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },

    /// A per-token array (scores, token types) is shorter than the token list.
    #[error("`{key}` has {len} entries but the vocabulary has {n_tokens} tokens")]
    ArrayTooShort {
        key: &'static str,
        len: usize,
        n_tokens: usize,
    },

    /// A BPE merge rule is not two tokens separated by one space.
    #[error("merge rule {index} is malformed: {line:?} (expected two tokens separated by a space)")]
    BadMerge { index: usize, line: String },

    /// A BPE merge rule or a merge result names text that is not a token.
    #[error("merge rule {index} ({line:?}) uses or makes a token that is not in the vocabulary")]
    MergeNotInVocab { index: usize, line: String },

    /// An id given by metadata or configuration is not in the vocabulary.
    #[error("{what} id {id} is out of range (vocabulary of {n_tokens} tokens)")]
    IdOutOfRange {
        what: &'static str,
        id: u32,
        n_tokens: usize,
    },

    /// The model asks for a BOS or EOS token on encode but names none.
    #[error("the model asks to add a {0} token but has none")]
    MissingSpecial(&'static str),

    /// A byte of the input has no token and there is no unknown token to
    /// stand for it.
    #[error("no token for byte 0x{0:02X} and no unknown token")]
    NoTokenForByte(u8),

    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A Hugging Face `tokenizer.json` or `tokenizer_config.json` could not be
    /// parsed or used.
    #[error("{}: {message}", path.display())]
    HfFile { path: PathBuf, message: String },

    /// The `tokenizers` library failed while building or encoding.
    #[error("tokenizers: {0}")]
    Backend(String),
}
