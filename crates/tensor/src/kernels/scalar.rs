//! Scalar dot products: the reference every SIMD kernel is tested against.
//!
//! Each follows ggml's generic kernel: integer sums within a block, one float
//! multiply-add per block.

use crate::blocks::*;
use crate::dtype::QK_K;
use crate::quant::{q3k_scales, scale_min_k4};

pub fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    w.iter().zip(a).map(|(w, a)| w * a).sum()
}

/// `dot(w, a)` as the packed f32 kernels compute each output: one fused
/// multiply-add per value, in order, from zero. Their results are these bits.
pub fn dot_f32_fused(w: &[f32], a: &[f32]) -> f32 {
    w.iter().zip(a).fold(0.0, |s, (w, a)| w.mul_add(*a, s))
}

pub fn dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let mut s = 0i32;
        for j in 0..16 {
            s += ((w.qs[j] & 0xf) as i32 - 8) * a.qs[j] as i32;
            s += ((w.qs[j] >> 4) as i32 - 8) * a.qs[j + 16] as i32;
        }
        sum += s as f32 * f16_at(w.d) * f16_at(a.d);
    }
    sum
}

pub fn dot_q4_1_q8_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let mut s = 0i32;
        for j in 0..16 {
            s += (w.qs[j] & 0xf) as i32 * a.qs[j] as i32;
            s += (w.qs[j] >> 4) as i32 * a.qs[j + 16] as i32;
        }
        sum += s as f32 * f16_at(w.d) * f16_at(a.d) + f16_at(w.m) * f16_at(a.s);
    }
    sum
}

pub fn dot_q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let qh = u32::from_le_bytes(w.qh);
        let mut s = 0i32;
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            s += (((w.qs[j] & 0xf) | h0) as i32 - 16) * a.qs[j] as i32;
            s += (((w.qs[j] >> 4) | h1) as i32 - 16) * a.qs[j + 16] as i32;
        }
        sum += s as f32 * f16_at(w.d) * f16_at(a.d);
    }
    sum
}

pub fn dot_q5_1_q8_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let qh = u32::from_le_bytes(w.qh);
        let mut s = 0i32;
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            s += ((w.qs[j] & 0xf) | h0) as i32 * a.qs[j] as i32;
            s += ((w.qs[j] >> 4) | h1) as i32 * a.qs[j + 16] as i32;
        }
        sum += s as f32 * f16_at(w.d) * f16_at(a.d) + f16_at(w.m) * f16_at(a.s);
    }
    sum
}

pub fn dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let s: i32 =
            w.qs.iter()
                .zip(&a.qs)
                .map(|(&x, &y)| x as i32 * y as i32)
                .sum();
        sum += s as f32 * f16_at(w.d) * f16_at(a.d);
    }
    sum
}

pub fn dot_q2k_q8k(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let mut summs = 0i32;
        for j in 0..16 {
            summs += a.bsum(j) as i32 * (w.scales[j] >> 4) as i32;
        }
        let mut isum = 0i32;
        let mut is = 0;
        let mut qa = 0;
        for half in 0..2 {
            let q = &w.qs[half * 32..half * 32 + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let d = (w.scales[is] & 0xf) as i32;
                    is += 1;
                    let mut s = 0i32;
                    for l in 0..16 {
                        s += a.qs[qa + l] as i32 * ((q[l + 16 * part] >> shift) & 3) as i32;
                    }
                    qa += 16;
                    isum += d * s;
                }
            }
        }
        let d = a.scale() * f16_at(w.d);
        let dmin = a.scale() * f16_at(w.dmin);
        sum += d * isum as f32 - dmin * summs as f32;
    }
    sum
}

pub fn dot_q3k_q8k(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let scales = q3k_scales(&w.scales);
        let mut isum = 0i32;
        let mut is = 0;
        let mut qa = 0;
        let mut m = 1u8;
        for half in 0..2 {
            let q = &w.qs[half * 32..half * 32 + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let mut s = 0i32;
                    for l in 0..16 {
                        let i = l + 16 * part;
                        let low = ((q[i] >> shift) & 3) as i32;
                        let high = if w.hmask[i] & m != 0 { 0 } else { 4 };
                        s += a.qs[qa + l] as i32 * (low - high);
                    }
                    qa += 16;
                    isum += scales[is] as i32 * s;
                    is += 1;
                }
                m <<= 1;
            }
        }
        sum += f16_at(w.d) * a.scale() * isum as f32;
    }
    sum
}

pub fn dot_q4k_q8k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        let mut summs = 0i32;
        for g in 0..4 {
            let q = &w.qs[g * 32..g * 32 + 32];
            for (part, shift) in [(0, 0), (1, 4)] {
                let (sc, m) = scale_min_k4(2 * g + part, &w.scales);
                let base = g * 64 + part * 32;
                let mut s = 0i32;
                for l in 0..32 {
                    s += ((q[l] >> shift) & 0xf) as i32 * a.qs[base + l] as i32;
                }
                isum += sc as i32 * s;
                let bsum = a.bsum(base / 16) as i32 + a.bsum(base / 16 + 1) as i32;
                summs += m as i32 * bsum;
            }
        }
        sum += a.scale() * (f16_at(w.d) * isum as f32 - f16_at(w.dmin) * summs as f32);
    }
    sum
}

pub fn dot_q5k_q8k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        let mut summs = 0i32;
        for g in 0..4 {
            let q = &w.qs[g * 32..g * 32 + 32];
            for (part, shift) in [(0, 0), (1, 4)] {
                let (sc, m) = scale_min_k4(2 * g + part, &w.scales);
                let hbit = 1u8 << (2 * g + part);
                let base = g * 64 + part * 32;
                let mut s = 0i32;
                for l in 0..32 {
                    let h = if w.qh[l] & hbit != 0 { 16 } else { 0 };
                    s += (((q[l] >> shift) & 0xf) as i32 + h) * a.qs[base + l] as i32;
                }
                isum += sc as i32 * s;
                let bsum = a.bsum(base / 16) as i32 + a.bsum(base / 16 + 1) as i32;
                summs += m as i32 * bsum;
            }
        }
        sum += a.scale() * (f16_at(w.d) * isum as f32 - f16_at(w.dmin) * summs as f32);
    }
    sum
}

pub fn dot_q6k_q8k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        for half in 0..2 {
            let ql = &w.ql[half * 64..half * 64 + 64];
            let qh = &w.qh[half * 32..half * 32 + 32];
            let sc = &w.scales[half * 8..half * 8 + 8];
            let qa = &a.qs[half * 128..half * 128 + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                isum += sc[is] as i32 * q1 * qa[l] as i32;
                isum += sc[is + 2] as i32 * q2 * qa[l + 32] as i32;
                isum += sc[is + 4] as i32 * q3 * qa[l + 64] as i32;
                isum += sc[is + 6] as i32 * q4 * qa[l + 96] as i32;
            }
        }
        sum += f16_at(w.d) * a.scale() * isum as f32;
    }
    sum
}

pub fn dot_iq4nl_q8_0(w: &[BlockIQ4NL], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let mut s = 0i32;
        for j in 0..16 {
            s += KVALUES_IQ4NL[(w.qs[j] & 0xf) as usize] as i32 * a.qs[j] as i32;
            s += KVALUES_IQ4NL[(w.qs[j] >> 4) as usize] as i32 * a.qs[j + 16] as i32;
        }
        sum += s as f32 * f16_at(w.d) * f16_at(a.d);
    }
    sum
}

/// Integer sums over the whole 256-value block, scales included (at most
/// 8 · 32 · 127 · 127 · 32 in magnitude, well inside an i32), then one float
/// multiply-add, as llama.cpp's x86 kernel does; its generic kernel adds a
/// float per group of 32 instead, which differs only in rounding.
pub fn dot_iq4xs_q8k(w: &[BlockIQ4XS], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        for g in 0..8 {
            let q = &w.qs[16 * g..16 * g + 16];
            let qa = &a.qs[32 * g..32 * g + 32];
            let mut s = 0i32;
            for j in 0..16 {
                s += KVALUES_IQ4NL[(q[j] & 0xf) as usize] as i32 * qa[j] as i32;
                s += KVALUES_IQ4NL[(q[j] >> 4) as usize] as i32 * qa[j + 16] as i32;
            }
            isum += w.scale(g) * s;
        }
        sum += f16_at(w.d) * a.scale() * isum as f32;
    }
    sum
}

/// Sums of the groups of 16 are what the k-quant kernels read from Q8_K; this
/// checks that the type's constant is what they assume.
const _: () = assert!(QK_K == 256);
