//! Hugging Face checkpoint directories: `config.json`, the weights in
//! safetensors files (one file, or shards listed in
//! `model.safetensors.index.json`) and `tokenizer.json`.
//!
//! The safetensors files are memory-mapped and each tensor is handed out as a
//! [`Bytes`](lucid_gguf::Bytes) slice of its map, so f32, f16 and bf16 weights that need no
//! change are used where they lie, as GGUF weights are.
//!
//! lucid runs Hugging Face checkpoints by restating them in GGUF's terms: a
//! family's [`Architecture::convert_hf`](crate::arch::Architecture::convert_hf)
//! turns `config.json` into the metadata keys and the tensors into the names
//! (transposed, split or reordered where needed) that llama.cpp's converter
//! writes, giving a [`Converted`] model. The family then loads that exactly
//! as it loads a GGUF file, so each family has one loading path, and `lucid
//! quantize` writes exactly what lucid would run.

//!
//! The module by job: `checkpoint` finds and maps the files, `config`
//! reads `config.json`, `convert` restates tensors in GGUF's terms. The
//! tokenizer's restatement (`tokenizer.ggml.*` from `tokenizer.json`) is
//! `lucid_tokenizer::to_gguf`.

mod checkpoint;
mod config;
mod convert;

pub use checkpoint::HfCheckpoint;
pub use config::{HfConfig, activation_by_name, activation_name};
pub use convert::{Converted, f32_vector, map_f32, reorder_chunks, stack, transpose};
