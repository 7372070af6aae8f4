//! Reference (scalar) conversions between `f32` and every block format.
//!
//! These are the definitions the SIMD kernels are tested against. They follow
//! ggml's reference code value for value, so that a row quantized here is
//! the row llama.cpp would write, and a row dequantized here is the row
//! llama.cpp would read.

use bytemuck::{cast_slice, cast_slice_mut};
use half::{bf16, f16};

use crate::blocks::*;
use crate::dtype::{DType, QK_K};

/// Writes the `dst.len()` values stored in `src` (a row of type `dtype`).
///
/// Panics if `src` does not hold exactly `dst.len()` values of `dtype`; the
/// engine checks shapes when it loads a model, so this is a programming error.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    let n = dst.len();
    assert_eq!(
        Some(src.len()),
        dtype.row_bytes(n),
        "{dtype} row of {n} values"
    );
    match dtype {
        DType::F32 => dst.copy_from_slice(cast_slice_f32(src).as_ref()),
        DType::F16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        DType::Q4_0 => dequant_q4_0(cast_slice(src), dst),
        DType::Q4_1 => dequant_q4_1(cast_slice(src), dst),
        DType::Q5_0 => dequant_q5_0(cast_slice(src), dst),
        DType::Q5_1 => dequant_q5_1(cast_slice(src), dst),
        DType::Q8_0 => dequant_q8_0(cast_slice(src), dst),
        DType::Q8_1 => dequant_q8_1(cast_slice(src), dst),
        DType::Q2K => dequant_q2k(cast_slice(src), dst),
        DType::Q3K => dequant_q3k(cast_slice(src), dst),
        DType::Q4K => dequant_q4k(cast_slice(src), dst),
        DType::Q5K => dequant_q5k(cast_slice(src), dst),
        DType::Q6K => dequant_q6k(cast_slice(src), dst),
        DType::Q8K => dequant_q8k(cast_slice(src), dst),
        DType::IQ4NL => dequant_iq4nl(cast_slice(src), dst),
        DType::IQ4XS => dequant_iq4xs(cast_slice(src), dst),
    }
}

/// Reads little-endian f32s from bytes of any alignment.
fn cast_slice_f32(src: &[u8]) -> std::borrow::Cow<'_, [f32]> {
    match bytemuck::try_cast_slice::<u8, f32>(src) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(
            src.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
    }
}

/// Quantizes `src` into `dst` (a row of type `dtype`).
///
/// Every type but Q2_K, Q3_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS can be written
/// ([`can_quantize`]). Panics if `dst` is not the size of `src.len()` values
/// of `dtype`, or if lucid cannot write `dtype`.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) {
    let n = src.len();
    assert_eq!(
        Some(dst.len()),
        dtype.row_bytes(n),
        "{dtype} row of {n} values"
    );
    match dtype {
        DType::F32 => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&s.to_le_bytes());
            }
        }
        DType::F16 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&f16::from_f32(*s).to_le_bytes());
            }
        }
        DType::BF16 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&bf16::from_f32(*s).to_le_bytes());
            }
        }
        DType::Q4_0 => quant_q4_0(src, cast_slice_mut(dst)),
        DType::Q4_1 => quant_q4_1(src, cast_slice_mut(dst)),
        DType::Q5_0 => quant_q5_0(src, cast_slice_mut(dst)),
        DType::Q5_1 => quant_q5_1(src, cast_slice_mut(dst)),
        DType::Q8_0 => quant_q8_0(src, cast_slice_mut(dst)),
        DType::Q8_1 => quant_q8_1(src, cast_slice_mut(dst)),
        DType::Q4K => crate::kquant::quantize_q4k(src, cast_slice_mut(dst)),
        DType::Q8K => quant_q8k(src, cast_slice_mut(dst)),
        DType::Q2K | DType::Q3K | DType::Q5K | DType::Q6K | DType::IQ4NL | DType::IQ4XS => {
            panic!("lucid does not write {dtype}")
        }
    }
}

/// Whether [`quantize_row`] can write `dtype`. The i-quants are read, not
/// written: llama.cpp chooses their scales by a search over the grid that
/// lucid has no use for.
pub fn can_quantize(dtype: DType) -> bool {
    !matches!(
        dtype,
        DType::Q2K | DType::Q3K | DType::Q5K | DType::Q6K | DType::IQ4NL | DType::IQ4XS
    )
}

fn dequant_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_at(b.d);
        for j in 0..16 {
            y[j] = ((b.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            y[j + 16] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

fn dequant_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b.d), f16_at(b.m));
        for j in 0..16 {
            y[j] = (b.qs[j] & 0x0f) as f32 * d + m;
            y[j + 16] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

fn dequant_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_at(b.d);
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            y[j] = (((b.qs[j] & 0x0f) | h0) as i32 - 16) as f32 * d;
            y[j + 16] = (((b.qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

fn dequant_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b.d), f16_at(b.m));
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            y[j] = ((b.qs[j] & 0x0f) | h0) as f32 * d + m;
            y[j + 16] = ((b.qs[j] >> 4) | h1) as f32 * d + m;
        }
    }
}

fn dequant_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_at(b.d);
        for j in 0..32 {
            y[j] = b.qs[j] as f32 * d;
        }
    }
}

fn dequant_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_at(b.d);
        for j in 0..32 {
            y[j] = b.qs[j] as f32 * d;
        }
    }
}

fn dequant_q8k(x: &[BlockQ8K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.scale();
        for j in 0..QK_K {
            y[j] = b.qs[j] as f32 * d;
        }
    }
}

fn dequant_q2k(x: &[BlockQ2K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_at(b.d), f16_at(b.dmin));
        let mut out = 0;
        let mut is = 0;
        for half in 0..2 {
            let q = &b.qs[half * 32..half * 32 + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let sc = b.scales[is];
                    is += 1;
                    let (dl, ml) = (d * (sc & 0xf) as f32, min * (sc >> 4) as f32);
                    for l in 0..16 {
                        y[out] = dl * ((q[l + 16 * part] >> shift) & 3) as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

/// Unpacks Q3_K's twelve bytes of 6-bit scales into sixteen signed scales.
pub(crate) fn q3k_scales(packed: &[u8; 12]) -> [i8; 16] {
    let mut s = [0i8; 16];
    for (j, s) in s.iter_mut().enumerate() {
        let low = if j < 8 {
            packed[j] & 0xf
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        *s = ((low | (high << 4)) as i8) - 32;
    }
    s
}

fn dequant_q3k(x: &[BlockQ3K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_at(b.d);
        let scales = q3k_scales(&b.scales);
        let mut out = 0;
        let mut is = 0;
        let mut m = 1u8;
        for half in 0..2 {
            let q = &b.qs[half * 32..half * 32 + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let dl = d * scales[is] as f32;
                    is += 1;
                    for l in 0..16 {
                        let i = l + 16 * part;
                        let low = ((q[i] >> shift) & 3) as i32;
                        let high = if b.hmask[i] & m != 0 { 0 } else { 4 };
                        y[out] = dl * (low - high) as f32;
                        out += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

/// The scale and min of group `j` (0..8) of a Q4_K or Q5_K block.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn dequant_q4k(x: &[BlockQ4K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_at(b.d), f16_at(b.dmin));
        for g in 0..4 {
            let q = &b.qs[g * 32..g * 32 + 32];
            let (s1, m1) = scale_min_k4(2 * g, &b.scales);
            let (s2, m2) = scale_min_k4(2 * g + 1, &b.scales);
            let (d1, m1) = (d * s1 as f32, min * m1 as f32);
            let (d2, m2) = (d * s2 as f32, min * m2 as f32);
            let y = &mut y[g * 64..g * 64 + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xf) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

fn dequant_q5k(x: &[BlockQ5K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_at(b.d), f16_at(b.dmin));
        for g in 0..4 {
            let ql = &b.qs[g * 32..g * 32 + 32];
            let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
            let (s1, m1) = scale_min_k4(2 * g, &b.scales);
            let (s2, m2) = scale_min_k4(2 * g + 1, &b.scales);
            let (d1, m1) = (d * s1 as f32, min * m1 as f32);
            let (d2, m2) = (d * s2 as f32, min * m2 as f32);
            let y = &mut y[g * 64..g * 64 + 64];
            for l in 0..32 {
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0xf) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

fn dequant_q6k(x: &[BlockQ6K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_at(b.d);
        for half in 0..2 {
            let ql = &b.ql[half * 64..half * 64 + 64];
            let qh = &b.qh[half * 32..half * 32 + 32];
            let sc = &b.scales[half * 8..half * 8 + 8];
            let y = &mut y[half * 128..half * 128 + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}

fn dequant_iq4nl(x: &[BlockIQ4NL], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(32)) {
        let d = f16_at(b.d);
        for j in 0..16 {
            y[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0xf) as usize] as f32;
            y[j + 16] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

fn dequant_iq4xs(x: &[BlockIQ4XS], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_at(b.d);
        for (g, y) in y.chunks_exact_mut(32).enumerate() {
            // The group's scale is rounded to f32 first, then each value
            // multiplied by it, as ggml and gguf-py do.
            let dl = d * b.scale(g) as f32;
            let q = &b.qs[16 * g..16 * g + 16];
            for j in 0..16 {
                y[j] = dl * KVALUES_IQ4NL[(q[j] & 0xf) as usize] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[(q[j] >> 4) as usize] as f32;
            }
        }
    }
}

fn quant_q4_0(x: &[f32], y: &mut [BlockQ4_0]) {
    for (x, b) in x.chunks_exact(32).zip(y) {
        let max = signed_absmax(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        for j in 0..16 {
            let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let q1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
}

fn quant_q4_1(x: &[f32], y: &mut [BlockQ4_1]) {
    for (x, b) in x.chunks_exact(32).zip(y) {
        let min = x.iter().copied().fold(f32::MAX, f32::min);
        let max = x.iter().copied().fold(-f32::MAX, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        b.m = f16_bytes(min);
        for j in 0..16 {
            let q0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
}

fn quant_q5_0(x: &[f32], y: &mut [BlockQ5_0]) {
    for (x, b) in x.chunks_exact(32).zip(y) {
        let max = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        let mut qh = 0u32;
        for j in 0..16 {
            let q0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let q1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
            b.qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= (((q0 & 0x10) >> 4) as u32) << j;
            qh |= (((q1 & 0x10) >> 4) as u32) << (j + 16);
        }
        b.qh = qh.to_le_bytes();
    }
}

fn quant_q5_1(x: &[f32], y: &mut [BlockQ5_1]) {
    for (x, b) in x.chunks_exact(32).zip(y) {
        let min = x.iter().copied().fold(f32::MAX, f32::min);
        let max = x.iter().copied().fold(-f32::MAX, f32::max);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        b.m = f16_bytes(min);
        let mut qh = 0u32;
        for j in 0..16 {
            let q0 = ((x[j] - min) * id + 0.5) as u8;
            let q1 = ((x[j + 16] - min) * id + 0.5) as u8;
            b.qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= (((q0 & 0x10) >> 4) as u32) << j;
            qh |= (((q1 & 0x10) >> 4) as u32) << (j + 16);
        }
        b.qh = qh.to_le_bytes();
    }
}

/// The value of largest magnitude, with its sign.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Activation blocks are quantized as llama.cpp's x86 code does at run time
/// (its scalar reference differs slightly): the inverse scale is `127 / amax`
/// and values round half to even. Matching it keeps lucid's logits close to
/// llama.cpp's.
pub(crate) fn quant_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(32).zip(y) {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = f16_bytes(d);
        for j in 0..32 {
            b.qs[j] = (x[j] * id).round_ties_even() as i8;
        }
    }
}

pub(crate) fn quant_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (x, b) in x.chunks_exact(32).zip(y) {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = f16_bytes(d);
        let mut sum = 0i32;
        for j in 0..32 {
            b.qs[j] = (x[j] * id).round_ties_even() as i8;
            sum += b.qs[j] as i32;
        }
        b.s = f16_bytes(sum as f32 * d);
    }
}

pub(crate) fn quant_q8k(x: &[f32], y: &mut [BlockQ8K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y) {
        let max = signed_absmax(x);
        if max == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for j in 0..QK_K {
            // ggml's nearest_int rounds half to even.
            b.qs[j] = ((iscale * x[j]).round_ties_even() as i32).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let sum: i32 = b.qs[j * 16..j * 16 + 16].iter().map(|&q| q as i32).sum();
            b.bsums[j] = (sum as i16).to_le_bytes();
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_error(dtype: DType, x: &[f32]) -> f32 {
        let mut q = vec![0u8; dtype.row_bytes(x.len()).unwrap()];
        quantize_row(dtype, x, &mut q);
        let mut y = vec![0f32; x.len()];
        dequantize_row(dtype, &q, &mut y);
        x.iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn quantize_then_dequantize_is_close() {
        let x: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        // Largest error: half a quantization step of a block whose range is 4.
        let expect = [
            (DType::F32, 0.0),
            (DType::F16, 1e-3),
            (DType::BF16, 1e-2),
            (DType::Q8_0, 2.0 / 127.0),
            (DType::Q8_1, 2.0 / 127.0),
            (DType::Q8K, 2.0 / 127.0),
            (DType::Q5_0, 2.0 / 16.0 + 1e-3),
            (DType::Q5_1, 4.0 / 31.0 + 1e-3),
            (DType::Q4_0, 2.0 / 8.0 + 1e-3),
            (DType::Q4_1, 4.0 / 15.0 + 1e-3),
            (DType::Q4K, 4.0 / 15.0 + 0.05),
        ];
        for (dtype, bound) in expect {
            let err = roundtrip_error(dtype, &x);
            assert!(err <= bound, "{dtype}: error {err} > {bound}");
        }
    }

    #[test]
    fn q8_1_sum_matches_its_values() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut q = vec![BlockQ8_1::zeroed(); 2];
        quant_q8_1(&x, &mut q);
        for b in &q {
            let sum: i32 = b.qs.iter().map(|&v| v as i32).sum();
            let expect = sum as f32 * f16_at(b.d);
            assert!((f16_at(b.s) - expect).abs() <= expect.abs() * 1e-3 + 1e-3);
        }
    }

    use bytemuck::Zeroable;
}
