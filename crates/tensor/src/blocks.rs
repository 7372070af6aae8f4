//! The ggml block structs, byte for byte.
//!
//! Every field is a byte array so that every block has alignment 1: a block
//! slice can then be viewed directly in a memory-mapped file at any offset,
//! without copying. Half-precision scales are stored little-endian.

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::dtype::QK_K;

/// Reads a little-endian IEEE half stored in two bytes.
#[inline(always)]
pub fn f16_at(b: [u8; 2]) -> f32 {
    f16::from_bits(u16::from_le_bytes(b)).to_f32()
}

/// Stores `v` as a little-endian IEEE half.
#[inline(always)]
pub fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

/// 32 values: `d * (q - 8)` with 4-bit `q`.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    /// Low nibbles hold values 0..16, high nibbles values 16..32.
    pub qs: [u8; 16],
}

/// 32 values: `d * q + m` with 4-bit `q`.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; 16],
}

/// 32 values: `d * (q - 16)` with 5-bit `q`; the fifth bits are in `qh`.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 values: `d * q + m` with 5-bit `q`.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 values: `d * q` with 8-bit `q`.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; 32],
}

/// 32 values `d * q`, plus `s = d * sum(q)` so that a dot product with a
/// block that has a minimum needs no second pass.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: [u8; 2],
    pub s: [u8; 2],
    pub qs: [i8; 32],
}

/// 256 values in 16 groups of 16, each with a 4-bit scale and a 4-bit min.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}

/// 256 values in 16 groups of 16 with 6-bit scales; 3-bit values.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}

/// 256 values in 8 groups of 32, each with a 6-bit scale and min.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// Like Q4_K with a fifth bit per value in `qh`.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// 256 values in 16 groups of 16 with 8-bit scales; 6-bit values.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}

/// The sixteen values a 4-bit index of IQ4_NL and IQ4_XS stands for
/// (ggml's `kvalues_iq4nl`): a non-linear grid, denser near zero, where
/// weights are.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// 32 values: `d * KVALUES_IQ4NL[q]` with 4-bit `q`, nibbles laid out as
/// Q4_0's.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockIQ4NL {
    pub d: [u8; 2],
    pub qs: [u8; 16],
}

/// 256 values in 8 groups of 32, each `d * (ls - 32) * KVALUES_IQ4NL[q]`
/// with a 6-bit group scale `ls`: its low four bits in `scales_l` (two
/// groups a byte, the even group in the low nibble), its high two bits in
/// `scales_h` (a little-endian u16, two bits a group). Each group's nibbles
/// are laid out as a Q4_0 block's.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockIQ4XS {
    pub d: [u8; 2],
    pub scales_h: [u8; 2],
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

impl BlockIQ4XS {
    /// The 6-bit scale of group `g` (0..8), with its offset of 32 taken
    /// away: -32..31.
    #[inline(always)]
    pub fn scale(&self, g: usize) -> i32 {
        let low = (self.scales_l[g / 2] >> (4 * (g % 2))) & 0xf;
        let high = (u16::from_le_bytes(self.scales_h) >> (2 * g)) & 3;
        (low as i32 | (high as i32) << 4) - 32
    }
}

/// The activation format that k-quant weights are multiplied with: 256
/// values `d * q` with a float scale and the sums of each group of 16.
#[derive(Clone, Copy, Pod, Zeroable, Debug)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    pub bsums: [[u8; 2]; QK_K / 16],
}

impl BlockQ8K {
    #[inline(always)]
    pub fn scale(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    #[inline(always)]
    pub fn bsum(&self, i: usize) -> i16 {
        i16::from_le_bytes(self.bsums[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn block_structs_have_ggml_sizes() {
        let sizes = [
            (DType::Q4_0, size_of::<BlockQ4_0>()),
            (DType::Q4_1, size_of::<BlockQ4_1>()),
            (DType::Q5_0, size_of::<BlockQ5_0>()),
            (DType::Q5_1, size_of::<BlockQ5_1>()),
            (DType::Q8_0, size_of::<BlockQ8_0>()),
            (DType::Q8_1, size_of::<BlockQ8_1>()),
            (DType::Q2K, size_of::<BlockQ2K>()),
            (DType::Q3K, size_of::<BlockQ3K>()),
            (DType::Q4K, size_of::<BlockQ4K>()),
            (DType::Q5K, size_of::<BlockQ5K>()),
            (DType::Q6K, size_of::<BlockQ6K>()),
            (DType::Q8K, size_of::<BlockQ8K>()),
            (DType::IQ4NL, size_of::<BlockIQ4NL>()),
            (DType::IQ4XS, size_of::<BlockIQ4XS>()),
        ];
        for (t, size) in sizes {
            assert_eq!(size, t.block_bytes(), "{t}");
        }
    }
}
