//! Reading and writing GGUF, the file format that llama.cpp and most open-weight
//! model releases use: metadata, tensor descriptions and memory-mapped tensor data.
//!
//! [`GgufFile::open`] maps a file and validates all of it up front (versions 2
//! and 3, little-endian): every count, length, type, shape and offset, with
//! checked arithmetic and without allocating for a length before the file has
//! shown it holds that many bytes. Tensor data is never copied: it is handed
//! out as [`Bytes`] slices of the one memory map. [`GgufWriter`] writes v3
//! files, for tests and conversion tools.
//!
//! The format is specified in ggml's `docs/gguf.md`. In short: a header (magic
//! `GGUF`, version, tensor count, metadata count), the metadata as typed
//! key-value pairs, one info per tensor (name, dimensions, type, offset), then
//! the tensor data, starting at the first multiple of the alignment after the
//! infos, with each tensor's offset relative to that start.
//!
//! ```
//! use lucid_gguf::{DType, GgufFile, GgufWriter, Value};
//!
//! let mut w = GgufWriter::new();
//! w.set("general.architecture", "llama".into());
//! w.set("llama.block_count", Value::U32(2));
//! w.add_tensor("output_norm.weight", DType::F32, &[4], &[0; 16])?;
//! let mut bytes = Vec::new();
//! w.write_to(&mut bytes)?;
//!
//! let f = GgufFile::from_bytes(bytes.into())?;
//! assert_eq!(f.general().architecture, Some("llama"));
//! assert_eq!(f.metadata().u32("llama.block_count")?, 2);
//! let norm = f.tensor("output_norm.weight").ok_or("no output_norm.weight")?;
//! assert_eq!((norm.shape.as_slice(), norm.dtype), (&[4][..], DType::F32));
//! assert_eq!(f.tensor_bytes(norm).len(), 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate knows the file format and nothing of what the keys mean to a
//! model family, except for the `general.*` keys every file shares.

mod error;
mod general;
mod metadata;
mod reader;
mod strings;
mod tensor;
mod value;
mod writer;

pub use bytes::Bytes;
pub use lucid_tensor::DType;

pub use error::{FormatError, GgufError};
pub use general::General;
pub use metadata::Metadata;
pub use reader::GgufFile;
pub use strings::StringArray;
pub use tensor::TensorInfo;
pub use value::{Array, Value};
pub use writer::GgufWriter;

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// The metadata key that sets the alignment of tensor data.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;

/// The most dimensions a tensor can have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// How deeply arrays may nest inside a metadata value. The format sets no
/// limit, but no real file nests at all (llama.cpp cannot read nested arrays),
/// and a limit keeps a hostile file from exhausting the stack.
pub const MAX_ARRAY_DEPTH: usize = 8;
