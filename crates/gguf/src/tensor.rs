//! Descriptions of the tensors a GGUF file holds: name, shape, type and
//! where their bytes are.

use lucid_tensor::DType;

/// One tensor of a GGUF file. Made by the reader, which has checked that the
/// shape, type and byte range are consistent and inside the file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `shape[0]` (ggml's `ne0`) is the length of a
    /// contiguous row, the innermost dimension. A matrix of `n` rows of
    /// length `k` has shape `[k, n]`, the reverse of PyTorch's `[n, k]`.
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Where the data starts, in bytes from the start of the file.
    pub offset: u64,
    /// Length of the data in bytes.
    pub n_bytes: usize,
}

impl TensorInfo {
    /// Number of values: the product of the shape (1 for a scalar).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Length of one row, `shape[0]` (1 for a scalar).
    pub fn row_len(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of `shape[1..]`.
    pub fn n_rows(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}
