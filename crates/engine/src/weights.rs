//! Weights as the model file stores them, and the loader that checks each
//! one against what a model family expects.
//!
//! A [`Weight`] keeps its bytes in the file's memory map (GGUF) or in the
//! buffer a converter produced; nothing is copied on load except the small
//! vectors (norms, biases) that the forward pass wants as `f32`.

use lucid_gguf::{Bytes, GgufFile};
use lucid_tensor::quant::dequantize_row;
use lucid_tensor::{DType, WeightMatrix, kernels};

use crate::error::{EngineError, Result};
use crate::kv_cache::KvPrecision;

/// One stored tensor. `shape` is in ggml order: `shape[0]` is the length of
/// a row (the input features of a matrix), `shape[1]` the number of rows.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Bytes,
}

impl Weight {
    /// The weight as a matrix of `shape[1..]` rows of `shape[0]` values.
    pub fn matrix(&self) -> WeightMatrix<'_> {
        let cols = self.shape.first().copied().unwrap_or(1);
        let rows = self.shape.iter().skip(1).product();
        WeightMatrix {
            dtype: self.dtype,
            rows,
            cols,
            data: &self.data,
        }
    }

    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// All values as `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        let m = self.matrix();
        let mut out = vec![0f32; m.rows * m.cols];
        for r in 0..m.rows {
            dequantize_row(self.dtype, m.row(r), &mut out[r * m.cols..(r + 1) * m.cols]);
        }
        out
    }

    /// Row `r` as `f32` values written into `out`.
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        dequantize_row(self.dtype, self.matrix().row(r), out);
    }
}

/// Where a model's tensors come from: a GGUF file, or a Hugging Face
/// checkpoint whose tensors were renamed into GGUF's names.
pub trait WeightSource {
    /// A name for error messages (usually the file path).
    fn source_name(&self) -> String;
    fn weight(&self, name: &str) -> Option<Weight>;
}

impl WeightSource for GgufFile {
    fn source_name(&self) -> String {
        self.path().map_or_else(
            || "<in-memory GGUF>".to_string(),
            |p| p.display().to_string(),
        )
    }

    fn weight(&self, name: &str) -> Option<Weight> {
        let info = self.tensor(name)?;
        Some(Weight {
            name: info.name.clone(),
            dtype: info.dtype,
            shape: info.shape.clone(),
            data: self.tensor_bytes(info),
        })
    }
}

/// Fetches tensors by name and checks their shapes and types, so that the
/// forward pass can index them without further checks.
pub struct Loader<'a> {
    source: &'a dyn WeightSource,
    /// Whether every matrix loaded so far is f32.
    all_f32: std::cell::Cell<bool>,
}

impl<'a> Loader<'a> {
    pub fn new(source: &'a dyn WeightSource) -> Loader<'a> {
        Loader {
            source,
            all_f32: std::cell::Cell::new(true),
        }
    }

    pub fn source_name(&self) -> String {
        self.source.source_name()
    }

    fn shape_error(&self, w: &Weight, expected: &[usize]) -> EngineError {
        EngineError::TensorShape {
            source_name: self.source.source_name(),
            name: w.name.clone(),
            expected: expected.to_vec(),
            found: w.shape.clone(),
        }
    }

    /// Whether the source has a tensor of this name.
    pub fn has(&self, name: &str) -> bool {
        self.source.weight(name).is_some()
    }

    /// A matrix of `rows` rows of `cols` values, in a type lucid can multiply.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Weight> {
        self.opt_matrix(name, rows, cols)?
            .ok_or_else(|| self.missing(name))
    }

    pub fn opt_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Option<Weight>> {
        let Some(w) = self.source.weight(name) else {
            return Ok(None);
        };
        let trailing_ones = w.shape.iter().skip(2).all(|&d| d == 1);
        if w.shape.len() < 2 || w.shape[0] != cols || w.shape[1] != rows || !trailing_ones {
            return Err(self.shape_error(&w, &[cols, rows]));
        }
        self.multipliable(w).map(Some)
    }

    /// `w` if lucid can multiply its type, noting whether it is f32 for
    /// [`Loader::kv_precision`].
    fn multipliable(&self, w: Weight) -> Result<Weight> {
        if !kernels::can_multiply(w.dtype) {
            return Err(EngineError::TensorType {
                source_name: self.source.source_name(),
                name: w.name,
                dtype: w.dtype,
            });
        }
        if w.dtype != DType::F32 {
            self.all_f32.set(false);
        }
        Ok(w)
    }

    /// A stack of `n` matrices of `rows` rows of `cols` values (GGUF's
    /// `ffn_*_exps`, shape `[cols, rows, n]`), as one weight per matrix
    /// sharing the stack's bytes.
    pub fn experts(&self, name: &str, n: usize, rows: usize, cols: usize) -> Result<Vec<Weight>> {
        let w = self.source.weight(name).ok_or_else(|| self.missing(name))?;
        if w.shape != [cols, rows, n] {
            return Err(self.shape_error(&w, &[cols, rows, n]));
        }
        let w = self.multipliable(w)?;
        let bytes = w.data.len() / n.max(1);
        Ok((0..n)
            .map(|e| Weight {
                name: format!("{name}[{e}]"),
                dtype: w.dtype,
                shape: vec![cols, rows],
                data: w.data.slice(e * bytes..(e + 1) * bytes),
            })
            .collect())
    }

    /// The KV cache precision for the matrices loaded so far: f32 when all
    /// are f32 (a reference-precision model), else half precision.
    pub fn kv_precision(&self) -> KvPrecision {
        if self.all_f32.get() {
            KvPrecision::F32
        } else {
            KvPrecision::F16
        }
    }

    /// A vector of `len` values, converted to `f32`.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.opt_vector(name, len)?
            .ok_or_else(|| self.missing(name))
    }

    pub fn opt_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        let Some(w) = self.source.weight(name) else {
            return Ok(None);
        };
        if w.n_elements() != len || w.shape.first() != Some(&len) {
            return Err(self.shape_error(&w, &[len]));
        }
        if w.dtype.is_quantized() {
            return Err(EngineError::TensorType {
                source_name: self.source.source_name(),
                name: w.name,
                dtype: w.dtype,
            });
        }
        Ok(Some(w.to_f32()))
    }

    fn missing(&self, name: &str) -> EngineError {
        EngineError::MissingTensor {
            source_name: self.source.source_name(),
            name: name.to_string(),
        }
    }
}
