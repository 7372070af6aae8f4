//! Writing k-quant blocks.
//!
//! llama.cpp searches for the best scale of each group; lucid uses the plain
//! min/max scale, which gives a valid file that llama.cpp reads, with a
//! slightly larger error than llama.cpp's own quantizer.

use crate::blocks::{BlockQ4K, f16_bytes};
use crate::dtype::QK_K;

pub(crate) fn quantize_q4k(x: &[f32], y: &mut [BlockQ4K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y) {
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        for (g, xs) in x.chunks_exact(32).enumerate() {
            let lo = xs.iter().copied().fold(0.0f32, f32::min);
            let hi = xs.iter().copied().fold(f32::MIN, f32::max);
            scales[g] = (hi - lo) / 15.0;
            mins[g] = -lo;
        }
        let max_scale = scales.iter().copied().fold(0.0f32, f32::max);
        let max_min = mins.iter().copied().fold(0.0f32, f32::max);
        let d = max_scale / 63.0;
        let dmin = max_min / 63.0;
        let mut ls = [0u8; 8];
        let mut lm = [0u8; 8];
        for g in 0..8 {
            ls[g] = if d > 0.0 {
                (scales[g] / d).round().min(63.0) as u8
            } else {
                0
            };
            lm[g] = if dmin > 0.0 {
                (mins[g] / dmin).round().min(63.0) as u8
            } else {
                0
            };
        }
        // The stored scales are halves, so quantize against them.
        let d16 = crate::blocks::f16_at(f16_bytes(d));
        let dmin16 = crate::blocks::f16_at(f16_bytes(dmin));
        let mut q = [0u8; QK_K];
        for g in 0..8 {
            let scale = d16 * ls[g] as f32;
            let min = dmin16 * lm[g] as f32;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for l in 0..32 {
                let v = ((x[g * 32 + l] + min) * inv).round();
                q[g * 32 + l] = v.clamp(0.0, 15.0) as u8;
            }
        }
        b.d = f16_bytes(d);
        b.dmin = f16_bytes(dmin);
        for j in 0..4 {
            b.scales[j] = ls[j] | ((ls[j + 4] >> 4) << 6);
            b.scales[j + 4] = lm[j] | ((lm[j + 4] >> 4) << 6);
            b.scales[j + 8] = (ls[j + 4] & 0xf) | ((lm[j + 4] & 0xf) << 4);
        }
        for g in 0..4 {
            for l in 0..32 {
                b.qs[g * 32 + l] = q[g * 64 + l] | (q[g * 64 + 32 + l] << 4);
            }
        }
    }
}
