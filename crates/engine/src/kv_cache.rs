//! The key/value cache of one sequence.
//!
//! Rows are appended as the sequence grows: for each layer, one row of keys
//! and one of values per position, `n_kv_heads * head_dim` values each, so a
//! head's key at a position is a contiguous slice. Sliding-window layers keep
//! every row; attention looks only at the window.
//!
//! Keys and values are stored in half precision, as llama.cpp stores them by
//! default: it halves the cache's memory and keeps lucid's numbers close to
//! llama.cpp's (rounding keys and values is the largest single difference
//! between an f32 and an f16 cache).

/// Keys and values of one layer.
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    /// Half-precision bits.
    pub k: Vec<u16>,
    /// Half-precision bits.
    pub v: Vec<u16>,
}

/// The cache of one sequence: what the model has already read.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    pub(crate) k_width: usize,
    pub(crate) v_width: usize,
    len: usize,
    limit: usize,
}

impl KvCache {
    /// An empty cache for `n_layers` layers holding at most `limit` positions.
    pub fn new(n_layers: usize, k_width: usize, v_width: usize, limit: usize) -> KvCache {
        KvCache {
            layers: vec![LayerCache::default(); n_layers],
            k_width,
            v_width,
            len: 0,
            limit,
        }
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
        (self.k_width + self.v_width) * 2 * self.layers.len()
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
