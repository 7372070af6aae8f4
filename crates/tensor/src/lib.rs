//! Tensors and the CPU kernels that do lucid's arithmetic.
//!
//! This crate knows the ggml block formats (what a Q4_1 block holds and how it
//! turns back into numbers), the dot products and matrix products over them,
//! and the thread pool they run on. It knows nothing of model files, model
//! families or tokens: a model is built on top of it, not inside it.

pub mod dtype;

pub use dtype::DType;
