//! Tensors and the CPU kernels that do lucid's arithmetic.
//!
//! This crate knows the ggml block formats (what a Q4_1 block holds and how it
//! turns back into numbers), the dot products and matrix products over them,
//! and the thread pool they run on. It knows nothing of model files, model
//! families or tokens: a model is built on top of it, not inside it.

pub mod attention;
pub mod blocks;
pub mod dtype;
pub mod kernels;
mod kquant;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;

pub use dtype::DType;
pub use kernels::Isa;
pub use matmul::{Activations, MatmulJob, WeightMatrix, matmul, matmuls, matmuls_iter};
pub use pool::ThreadPool;
