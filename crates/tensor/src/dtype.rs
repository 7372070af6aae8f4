//! Element types of tensors, as ggml lays them out in memory.
//!
//! Quantized types store values in blocks: a block of `block_len` values takes
//! `block_bytes` bytes and carries its own scale (and sometimes minimum). A
//! row of a quantized matrix is a whole number of blocks.

use std::fmt;

/// The element type of a tensor. The discriminants are ggml's type ids, the
/// numbers that GGUF files store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    IQ4NL = 20,
    IQ4XS = 23,
    BF16 = 30,
}

/// Values per block of the k-quant formats.
pub const QK_K: usize = 256;

impl DType {
    /// Every type lucid knows, in ggml id order.
    pub const ALL: [DType; 17] = [
        DType::F32,
        DType::F16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q8_1,
        DType::Q2K,
        DType::Q3K,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
        DType::Q8K,
        DType::IQ4NL,
        DType::IQ4XS,
        DType::BF16,
    ];

    /// The type with ggml's id `id`, if lucid knows it.
    pub fn from_ggml_id(id: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|t| *t as u32 == id)
    }

    /// ggml's id for this type.
    pub fn ggml_id(self) -> u32 {
        self as u32
    }

    /// The name ggml and llama.cpp print for this type.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q8_1 => "Q8_1",
            DType::Q2K => "Q2_K",
            DType::Q3K => "Q3_K",
            DType::Q4K => "Q4_K",
            DType::Q5K => "Q5_K",
            DType::Q6K => "Q6_K",
            DType::Q8K => "Q8_K",
            DType::IQ4NL => "IQ4_NL",
            DType::IQ4XS => "IQ4_XS",
        }
    }

    /// Number of values in one block (1 for plain float types).
    pub fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q8_0
            | DType::Q8_1
            | DType::IQ4NL => 32,
            DType::Q2K
            | DType::Q3K
            | DType::Q4K
            | DType::Q5K
            | DType::Q6K
            | DType::Q8K
            | DType::IQ4XS => QK_K,
        }
    }

    /// Bytes taken by one block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => 2 + 16,
            DType::Q4_1 => 2 + 2 + 16,
            DType::Q5_0 => 2 + 4 + 16,
            DType::Q5_1 => 2 + 2 + 4 + 16,
            DType::Q8_0 => 2 + 32,
            DType::Q8_1 => 2 + 2 + 32,
            DType::Q2K => QK_K / 16 + QK_K / 4 + 2 + 2,
            DType::Q3K => QK_K / 8 + QK_K / 4 + 12 + 2,
            DType::Q4K => 2 + 2 + 12 + QK_K / 2,
            DType::Q5K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            DType::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
            DType::Q8K => 4 + QK_K + QK_K / 16 * 2,
            DType::IQ4NL => 2 + 16,
            DType::IQ4XS => 2 + 2 + QK_K / 64 + QK_K / 2,
        }
    }

    /// Whether values are stored in scaled blocks rather than one float each.
    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes taken by a row of `n` values, or `None` when `n` is not a whole
    /// number of blocks or the size overflows.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_len()) {
            return None;
        }
        (n / self.block_len()).checked_mul(self.block_bytes())
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Block sizes as ggml's `ggml_type_size` reports them.
    #[test]
    fn block_sizes_match_ggml() {
        let expect = [
            (DType::F32, 1, 4),
            (DType::F16, 1, 2),
            (DType::BF16, 1, 2),
            (DType::Q4_0, 32, 18),
            (DType::Q4_1, 32, 20),
            (DType::Q5_0, 32, 22),
            (DType::Q5_1, 32, 24),
            (DType::Q8_0, 32, 34),
            (DType::Q8_1, 32, 36),
            (DType::Q2K, 256, 84),
            (DType::Q3K, 256, 110),
            (DType::Q4K, 256, 144),
            (DType::Q5K, 256, 176),
            (DType::Q6K, 256, 210),
            (DType::Q8K, 256, 292),
            (DType::IQ4NL, 32, 18),
            (DType::IQ4XS, 256, 136),
        ];
        for (t, len, bytes) in expect {
            assert_eq!((t.block_len(), t.block_bytes()), (len, bytes), "{t}");
            assert_eq!(DType::from_ggml_id(t.ggml_id()), Some(t));
        }
        assert_eq!(DType::from_ggml_id(4), None);
        assert_eq!(DType::from_ggml_id(20), Some(DType::IQ4NL));
        assert_eq!(DType::from_ggml_id(23), Some(DType::IQ4XS));
        // IQ2_XXS and the other i-quants lucid does not read.
        assert_eq!(DType::from_ggml_id(16), None);
    }

    #[test]
    fn row_bytes_rejects_partial_blocks() {
        assert_eq!(DType::Q4_1.row_bytes(576), Some(18 * 20));
        assert_eq!(DType::Q4K.row_bytes(640), None);
        assert_eq!(DType::F32.row_bytes(usize::MAX), None);
    }
}
