//! What can go wrong reading, querying or writing a GGUF file.
//!
//! A GGUF file usually comes from the internet, so everything in it is
//! untrusted input. Every error names the file it is about (when there is one)
//! and says precisely what is wrong and where, so that a user with a corrupt
//! download can tell it apart from a bug in lucid.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error from this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The operating system refused to open, map, or write the file.
    #[error("{}: cannot {action}: {error}", origin(.path))]
    Io {
        path: Option<PathBuf>,
        /// What lucid was doing: "open", "memory-map", "write", ...
        action: &'static str,
        error: io::Error,
    },

    /// The bytes are not a GGUF file that lucid can read.
    #[error("{}: {context}: {problem} (at byte {offset})", origin(.path))]
    Format {
        path: Option<PathBuf>,
        /// Where in the file the bad bytes are.
        offset: u64,
        /// Which part of the file was being read: "header",
        /// "metadata key `general.name`", "tensor `output.weight`", ...
        context: String,
        problem: FormatError,
    },

    /// A metadata key that the caller requires is absent.
    #[error("{}: metadata key `{key}` is missing", origin(.path))]
    MissingKey { path: Option<PathBuf>, key: String },

    /// A metadata key holds a value of another type than the caller asked for.
    #[error("{}: metadata key `{key}` holds {found}, expected {expected}", origin(.path))]
    WrongType {
        path: Option<PathBuf>,
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    /// A metadata key holds an integer that the requested type cannot hold.
    #[error("{}: metadata key `{key}` holds {value}, which does not fit in {target}", origin(.path))]
    OutOfRange {
        path: Option<PathBuf>,
        key: String,
        value: String,
        target: &'static str,
    },

    /// The writer was given a tensor it cannot store.
    #[error("tensor `{name}`: {reason}")]
    InvalidTensor { name: String, reason: String },

    /// The writer was given metadata it cannot store.
    #[error("metadata key `{key}`: {reason}")]
    InvalidMetadata { key: String, reason: String },
}

/// What is wrong with the bytes of a GGUF file. [`GgufError::Format`] adds
/// the file, the offset and the part of the file being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file ends (or the declared length reaches) past what is left.
    #[error("{what} needs {needed} bytes but only {available} are left in the file")]
    Truncated {
        what: &'static str,
        needed: u64,
        available: u64,
    },

    /// A count that could not possibly fit in the rest of the file.
    #[error(
        "{count} {what} of at least {min_bytes} bytes each cannot fit in the {available} bytes left in the file"
    )]
    TooMany {
        what: &'static str,
        count: u64,
        min_bytes: u64,
        available: u64,
    },

    #[error("not a GGUF file: it starts with {found:02x?}, not the magic \"GGUF\"")]
    BadMagic { found: [u8; 4] },

    #[error("GGUF version {version} is not supported (lucid reads versions 2 and 3)")]
    UnsupportedVersion { version: u32 },

    /// The version field only makes sense read big-endian.
    #[error(
        "the version field reads 0x{version:08x}: this is a byte-swapped (big-endian) GGUF file, and lucid only reads little-endian ones"
    )]
    BigEndian { version: u32 },

    #[error("unknown metadata value type {id}")]
    UnknownValueType { id: u32 },

    #[error("arrays are nested more than {limit} deep")]
    NestedTooDeep { limit: usize },

    #[error("a bool is stored as byte {byte}, not 0 or 1")]
    InvalidBool { byte: u8 },

    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str },

    #[error("duplicate metadata key `{key}`")]
    DuplicateKey { key: String },

    #[error("general.alignment must be an unsigned integer, found {found}")]
    AlignmentType { found: &'static str },

    #[error("general.alignment {value} is not a non-zero power of two that fits in u32")]
    BadAlignment { value: i128 },

    #[error("duplicate tensor name `{name}`")]
    DuplicateTensor { name: String },

    #[error("{n_dims} dimensions, but GGUF allows at most {}", crate::MAX_DIMS)]
    TooManyDims { n_dims: u32 },

    #[error("unknown or unsupported tensor type id {id}")]
    UnknownTensorType { id: u32 },

    #[error("a row of {row_len} {dtype} values is not a whole number of {block_len}-value blocks")]
    PartialBlock {
        dtype: lucid_tensor::DType,
        row_len: u64,
        block_len: usize,
    },

    #[error("shape {shape:?} has more elements than ggml can index")]
    ElementCountOverflow { shape: Vec<u64> },

    #[error("shape {shape:?} of {dtype} takes more bytes than memory can address")]
    SizeOverflow {
        dtype: lucid_tensor::DType,
        shape: Vec<u64>,
    },

    #[error("data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset { offset: u64, alignment: usize },

    /// Tensor data that reaches past the end of the file.
    #[error("data at bytes {start}..{end} of the file runs past its end ({file_size} bytes)")]
    DataOutOfBounds {
        start: u128,
        end: u128,
        file_size: u64,
    },
}

/// How an error names its file: the path, or a stand-in for bytes that did
/// not come from a file.
fn origin(path: &Option<PathBuf>) -> impl fmt::Display + '_ {
    struct Origin<'a>(&'a Option<PathBuf>);
    impl fmt::Display for Origin<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(path) => write!(f, "{}", path.display()),
                None => f.write_str("in-memory GGUF"),
            }
        }
    }
    Origin(path)
}
