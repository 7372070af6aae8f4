//! The key/value cache of one sequence.
//!
//! Rows are appended as the sequence grows: for each layer, one row of keys
//! and one of values per position, `n_kv_heads * head_dim` values each, so a
//! head's key at a position is a contiguous slice. Sliding-window layers keep
//! every row; attention looks only at the window.
//!
//! Keys and values are stored in half precision for models whose weights
//! are half precision or quantized, as llama.cpp stores them by default: it
//! halves the cache's memory and keeps lucid's numbers close to llama.cpp's
//! (rounding keys and values is the largest single difference between an
//! f32 and an f16 cache). Models with f32 weights keep an f32 cache, so that
//! they compute what their reference implementation computes.

use lucid_tensor::ops;

/// How a cache stores keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvPrecision {
    /// IEEE half precision.
    F16,
    F32,
}

/// Rows of keys or of values, in the cache's precision.
#[derive(Clone, Debug)]
pub enum KvRows {
    /// Half-precision bits.
    F16(Vec<u16>),
    F32(Vec<f32>),
}

impl KvRows {
    fn new(precision: KvPrecision) -> KvRows {
        match precision {
            KvPrecision::F16 => KvRows::F16(Vec::new()),
            KvPrecision::F32 => KvRows::F32(Vec::new()),
        }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        match self {
            KvRows::F16(v) => v.len(),
            KvRows::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn extend(&mut self, x: &[f32]) {
        match self {
            KvRows::F16(v) => ops::extend_f16(v, x),
            KvRows::F32(v) => v.extend_from_slice(x),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            KvRows::F16(v) => v.truncate(n),
            KvRows::F32(v) => v.truncate(n),
        }
    }

    fn reserve(&mut self, n: usize) {
        match self {
            KvRows::F16(v) => v.reserve(n),
            KvRows::F32(v) => v.reserve(n),
        }
    }

    /// The rows as the attention kernel reads them.
    pub fn view(&self) -> lucid_tensor::attention::KvView<'_> {
        match self {
            KvRows::F16(v) => lucid_tensor::attention::KvView::F16(v),
            KvRows::F32(v) => lucid_tensor::attention::KvView::F32(v),
        }
    }

    /// `q · row[start..start + q.len()]`.
    #[inline]
    pub fn dot(&self, start: usize, q: &[f32]) -> f32 {
        match self {
            KvRows::F16(v) => ops::dot_f16(q, &v[start..start + q.len()]),
            KvRows::F32(v) => ops::dot(q, &v[start..start + q.len()]),
        }
    }

    /// `out += alpha * row[start..start + out.len()]`.
    #[inline]
    pub fn axpy(&self, alpha: f32, start: usize, out: &mut [f32]) {
        match self {
            KvRows::F16(v) => ops::axpy_f16(alpha, &v[start..start + out.len()], out),
            KvRows::F32(v) => ops::axpy(alpha, &v[start..start + out.len()], out),
        }
    }
}

/// Keys and values of one layer.
#[derive(Clone, Debug)]
pub struct LayerCache {
    pub k: KvRows,
    pub v: KvRows,
}

/// The cache of one sequence: what the model has already read.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    pub(crate) k_width: usize,
    pub(crate) v_width: usize,
    len: usize,
    limit: usize,
    precision: KvPrecision,
}

impl KvCache {
    /// An empty cache for `n_layers` layers holding at most `limit` positions.
    pub fn new(
        n_layers: usize,
        k_width: usize,
        v_width: usize,
        limit: usize,
        precision: KvPrecision,
    ) -> KvCache {
        let layer = LayerCache {
            k: KvRows::new(precision),
            v: KvRows::new(precision),
        };
        KvCache {
            layers: vec![layer; n_layers],
            k_width,
            v_width,
            len: 0,
            limit,
            precision,
        }
    }

    pub fn precision(&self) -> KvPrecision {
        self.precision
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache may hold (the context length).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Forgets every position from `len` on, keeping the ones before: used
    /// to reuse a shared prompt prefix or to step back.
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.len);
        for l in &mut self.layers {
            l.k.truncate(len * self.k_width);
            l.v.truncate(len * self.v_width);
        }
        self.len = len;
    }

    /// Forgets everything, keeping the memory for reuse.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Bytes of keys and values held.
    pub fn memory_bytes(&self) -> usize {
        self.len * self.bytes_per_position()
    }

    /// Bytes one position takes.
    pub fn bytes_per_position(&self) -> usize {
        let bytes = match self.precision {
            KvPrecision::F16 => 2,
            KvPrecision::F32 => 4,
        };
        (self.k_width + self.v_width) * bytes * self.layers.len()
    }

    /// Reserves room for `n` more positions in every layer.
    pub(crate) fn reserve(&mut self, n: usize) {
        for l in &mut self.layers {
            l.k.reserve(n * self.k_width);
            l.v.reserve(n * self.v_width);
        }
    }

    /// Marks `n` appended positions as part of the sequence; every layer must
    /// have appended its rows.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
        debug_assert!(
            self.layers
                .iter()
                .all(|l| l.k.len() == self.len * self.k_width)
        );
    }
}
