//! AVX2 + FMA + F16C dot products over quantized rows.
//!
//! Each kernel computes the dot products of one weight row with `NT`
//! activation rows at once (NT = 1 for decoding, up to 4 in prompt
//! processing), so a weight block is unpacked once and used `NT` times.
//! Callers must have checked that the CPU has these features; see
//! [`super::Isa::detect`].

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

use crate::blocks::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn half(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}

/// Sixteen bytes of nibbles into 32 bytes: low nibbles first, then high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: qs is 16 readable bytes; loadu has no alignment requirement.
    let tmp = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// 32 bits into 32 bytes: 0xff where the bit is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bits_to_bytes(bits: u32) -> __m256i {
    let shuffle = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0x0000000000000000,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuffle);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Sum of products of unsigned and signed bytes, in eight i32 lanes as floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_us8(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
}

/// Sum of products of signed bytes, in eight i32 lanes as floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    mul_sum_us8(ax, sy)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32(qs: &[i8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes, unaligned load.
    unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
}

/// `out[t] = dot(w, a[t])` for Q4_0 weights and Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_0<const NT: usize>(w: &[BlockQ4_0], a: [&[BlockQ8_0]; NT], out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); NT];
    for (i, wb) in w.iter().enumerate() {
        let dw = half(wb.d);
        // SAFETY: the features are enabled; the block is in bounds.
        let qx = unsafe { _mm256_sub_epi8(nibbles(&wb.qs), _mm256_set1_epi8(8)) };
        for t in 0..NT {
            let ab = &a[t][i];
            let d = _mm256_set1_ps(dw * half(ab.d));
            let qy = unsafe { load32(&ab.qs) };
            acc[t] = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc[t]);
        }
    }
    for t in 0..NT {
        out[t] = hsum(acc[t]);
    }
}

/// `out[t] = dot(w, a[t])` for Q4_1 weights and Q8_1 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_1<const NT: usize>(w: &[BlockQ4_1], a: [&[BlockQ8_1]; NT], out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); NT];
    let mut mins = [0f32; NT];
    for (i, wb) in w.iter().enumerate() {
        let (dw, mw) = (half(wb.d), half(wb.m));
        let qx = unsafe { nibbles(&wb.qs) };
        for t in 0..NT {
            let ab = &a[t][i];
            mins[t] += mw * half(ab.s);
            let d = _mm256_set1_ps(dw * half(ab.d));
            let qy = unsafe { load32(&ab.qs) };
            acc[t] = _mm256_fmadd_ps(d, mul_sum_us8(qx, qy), acc[t]);
        }
    }
    for t in 0..NT {
        out[t] = hsum(acc[t]) + mins[t];
    }
}

/// `out[t] = dot(w, a[t])` for Q5_0 weights and Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q5_0<const NT: usize>(w: &[BlockQ5_0], a: [&[BlockQ8_0]; NT], out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); NT];
    for (i, wb) in w.iter().enumerate() {
        let dw = half(wb.d);
        // (q | h << 4) - 16 is the nibble when h is set, else the nibble with
        // its top four bits set.
        let high = _mm256_andnot_si256(
            bits_to_bytes(u32::from_le_bytes(wb.qh)),
            _mm256_set1_epi8(-16),
        );
        let qx = unsafe { _mm256_or_si256(nibbles(&wb.qs), high) };
        for t in 0..NT {
            let ab = &a[t][i];
            let d = _mm256_set1_ps(dw * half(ab.d));
            let qy = unsafe { load32(&ab.qs) };
            acc[t] = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc[t]);
        }
    }
    for t in 0..NT {
        out[t] = hsum(acc[t]);
    }
}

/// `out[t] = dot(w, a[t])` for Q5_1 weights and Q8_1 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q5_1<const NT: usize>(w: &[BlockQ5_1], a: [&[BlockQ8_1]; NT], out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); NT];
    let mut mins = [0f32; NT];
    for (i, wb) in w.iter().enumerate() {
        let (dw, mw) = (half(wb.d), half(wb.m));
        let high = _mm256_and_si256(
            bits_to_bytes(u32::from_le_bytes(wb.qh)),
            _mm256_set1_epi8(0x10),
        );
        let qx = unsafe { _mm256_or_si256(nibbles(&wb.qs), high) };
        for t in 0..NT {
            let ab = &a[t][i];
            mins[t] += mw * half(ab.s);
            let d = _mm256_set1_ps(dw * half(ab.d));
            let qy = unsafe { load32(&ab.qs) };
            acc[t] = _mm256_fmadd_ps(d, mul_sum_us8(qx, qy), acc[t]);
        }
    }
    for t in 0..NT {
        out[t] = hsum(acc[t]) + mins[t];
    }
}

/// `out[t] = dot(w, a[t])` for Q8_0 weights and Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q8_0<const NT: usize>(w: &[BlockQ8_0], a: [&[BlockQ8_0]; NT], out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); NT];
    for (i, wb) in w.iter().enumerate() {
        let dw = half(wb.d);
        let qx = unsafe { load32(&wb.qs) };
        for t in 0..NT {
            let ab = &a[t][i];
            let d = _mm256_set1_ps(dw * half(ab.d));
            let qy = unsafe { load32(&ab.qs) };
            acc[t] = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc[t]);
        }
    }
    for t in 0..NT {
        out[t] = hsum(acc[t]);
    }
}

/// `out[t] = dot(w, a[t])` for f32 weights and activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32<const NT: usize>(w: &[f32], a: [&[f32]; NT], out: &mut [f32]) {
    let n = w.len();
    let mut acc = [_mm256_setzero_ps(); NT];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n and every row has n values.
        let wv = unsafe { _mm256_loadu_ps(w.as_ptr().add(i)) };
        for t in 0..NT {
            let av = unsafe { _mm256_loadu_ps(a[t].as_ptr().add(i)) };
            acc[t] = _mm256_fmadd_ps(wv, av, acc[t]);
        }
        i += 8;
    }
    for t in 0..NT {
        let mut s = hsum(acc[t]);
        for j in i..n {
            s += w[j] * a[t][j];
        }
        out[t] = s;
    }
}

/// `out[t] = dot(w, a[t])` for f16 weights (as raw halves) and f32 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16<const NT: usize>(w: &[[u8; 2]], a: [&[f32]; NT], out: &mut [f32]) {
    let n = w.len();
    let mut acc = [_mm256_setzero_ps(); NT];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: eight halves (16 bytes) are in bounds.
        let wv = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i).cast())) };
        for t in 0..NT {
            let av = unsafe { _mm256_loadu_ps(a[t].as_ptr().add(i)) };
            acc[t] = _mm256_fmadd_ps(wv, av, acc[t]);
        }
        i += 8;
    }
    for t in 0..NT {
        let mut s = hsum(acc[t]);
        for j in i..n {
            s += half(w[j]) * a[t][j];
        }
        out[t] = s;
    }
}

/// `out[t] = dot(w, a[t])` for bf16 weights and f32 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_bf16<const NT: usize>(w: &[[u8; 2]], a: [&[f32]; NT], out: &mut [f32]) {
    let n = w.len();
    let mut acc = [_mm256_setzero_ps(); NT];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: eight bf16 values are in bounds; a bf16 is the top half of an f32.
        let raw = unsafe { _mm_loadu_si128(w.as_ptr().add(i).cast()) };
        let wv = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw)));
        for t in 0..NT {
            let av = unsafe { _mm256_loadu_ps(a[t].as_ptr().add(i)) };
            acc[t] = _mm256_fmadd_ps(wv, av, acc[t]);
        }
        i += 8;
    }
    for t in 0..NT {
        let mut s = hsum(acc[t]);
        for j in i..n {
            s += half::bf16::from_le_bytes(w[j]).to_f32() * a[t][j];
        }
        out[t] = s;
    }
}

/// Quantizes a row of f32 to Q8_0 (as [`crate::quant`] describes).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(32).zip(y) {
        let (d, q) = unsafe { quantize_block32(x) };
        b.d = crate::blocks::f16_bytes(d);
        b.qs = q;
    }
}

/// Quantizes a row of f32 to Q8_1.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (x, b) in x.chunks_exact(32).zip(y) {
        let (d, q) = unsafe { quantize_block32(x) };
        let sum: i32 = q.iter().map(|&v| v as i32).sum();
        b.d = crate::blocks::f16_bytes(d);
        b.s = crate::blocks::f16_bytes(sum as f32 * d);
        b.qs = q;
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block32(x: &[f32]) -> (f32, [i8; 32]) {
    // SAFETY: the caller passes a chunk of exactly 32 values.
    let v = unsafe {
        [
            _mm256_loadu_ps(x.as_ptr()),
            _mm256_loadu_ps(x.as_ptr().add(8)),
            _mm256_loadu_ps(x.as_ptr().add(16)),
            _mm256_loadu_ps(x.as_ptr().add(24)),
        ]
    };
    let sign = _mm256_set1_ps(-0.0);
    let mut amax = _mm256_andnot_ps(sign, v[0]);
    for vi in &v[1..] {
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, *vi));
    }
    let lo = _mm256_castps256_ps128(amax);
    let hi = _mm256_extractf128_ps::<1>(amax);
    let m = _mm_max_ps(lo, hi);
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    let amax = _mm_cvtss_f32(m);
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let mut q = [0i8; 32];
    let mut ints = [_mm256_setzero_si256(); 4];
    for (k, vi) in v.iter().enumerate() {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(*vi, id),
        );
        ints[k] = _mm256_cvtps_epi32(r);
    }
    // Pack 32 i32 into 32 i8 in order.
    let p01 = _mm256_packs_epi32(ints[0], ints[1]);
    let p23 = _mm256_packs_epi32(ints[2], ints[3]);
    let p = _mm256_packs_epi16(p01, p23);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: q is 32 writable bytes.
    unsafe { _mm256_storeu_si256(q.as_mut_ptr().cast(), p) };
    (d, q)
}

// ---------------------------------------------------------------------------
// k-quants against Q8_K activations. Each 256-value block is worked in
// integer arithmetic: unsigned weight values times signed activations with
// `maddubs` (pairs into i16), times the group scales with `madd` (into i32).
// Offsets that make the values unsigned (Q3_K's 4, Q6_K's 32) and the minimums
// of Q2_K/Q4_K/Q5_K are folded in afterwards through the activations' group
// sums (`bsums`), so the inner loops stay unsigned.
// ---------------------------------------------------------------------------

/// Sixteen i16 lanes: `lo` for the first eight, `hi` for the last eight.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn split_scale(lo: i16, hi: i16) -> __m256i {
    _mm256_setr_epi16(
        lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi,
    )
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32u(b: &[u8]) -> __m256i {
    debug_assert!(b.len() >= 32);
    // SAFETY: the caller passes at least 32 bytes.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32i(b: &[i8]) -> __m256i {
    debug_assert!(b.len() >= 32);
    // SAFETY: as above.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Horizontal sum of eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// `out[t] = dot(w, a[t])` for Q4_K weights.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k<const NT: usize>(w: &[BlockQ4K], a: [&[BlockQ8K]; NT], out: &mut [f32]) {
    let mut acc = [0f32; NT];
    let low = _mm256_set1_epi8(0x0f);
    for (i, wb) in w.iter().enumerate() {
        let mut sc = [0i16; 8];
        let mut mn = [0i32; 8];
        for g in 0..8 {
            let (s, m) = crate::quant::scale_min_k4(g, &wb.scales);
            sc[g] = s as i16;
            mn[g] = m as i32;
        }
        let (d, dmin) = (half(wb.d), half(wb.dmin));
        let mut sumi = [_mm256_setzero_si256(); NT];
        for c in 0..4 {
            let q = unsafe { load32u(&wb.qs[32 * c..]) };
            let q_lo = _mm256_and_si256(q, low);
            let q_hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
            let s_lo = _mm256_set1_epi16(sc[2 * c]);
            let s_hi = _mm256_set1_epi16(sc[2 * c + 1]);
            for t in 0..NT {
                let ab = &a[t][i];
                let p_lo = _mm256_maddubs_epi16(q_lo, unsafe { load32i(&ab.qs[64 * c..]) });
                let p_hi = _mm256_maddubs_epi16(q_hi, unsafe { load32i(&ab.qs[64 * c + 32..]) });
                let p =
                    _mm256_add_epi32(_mm256_madd_epi16(s_lo, p_lo), _mm256_madd_epi16(s_hi, p_hi));
                sumi[t] = _mm256_add_epi32(sumi[t], p);
            }
        }
        for t in 0..NT {
            let ab = &a[t][i];
            let mut summs = 0i32;
            for g in 0..8 {
                summs += mn[g] * (ab.bsum(2 * g) as i32 + ab.bsum(2 * g + 1) as i32);
            }
            acc[t] += ab.scale() * (d * hsum_i32(sumi[t]) as f32 - dmin * summs as f32);
        }
    }
    out[..NT].copy_from_slice(&acc);
}

/// `out[t] = dot(w, a[t])` for Q5_K weights.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q5k<const NT: usize>(w: &[BlockQ5K], a: [&[BlockQ8K]; NT], out: &mut [f32]) {
    let mut acc = [0f32; NT];
    let low = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    for (i, wb) in w.iter().enumerate() {
        let mut sc = [0i16; 8];
        let mut mn = [0i32; 8];
        for g in 0..8 {
            let (s, m) = crate::quant::scale_min_k4(g, &wb.scales);
            sc[g] = s as i16;
            mn[g] = m as i32;
        }
        let (d, dmin) = (half(wb.d), half(wb.dmin));
        let qh = unsafe { load32u(&wb.qh) };
        let mut sumi = [_mm256_setzero_si256(); NT];
        for c in 0..4 {
            let q = unsafe { load32u(&wb.qs[32 * c..]) };
            // The fifth bits of groups 2c and 2c+1 are bits 2c and 2c+1 of qh.
            let h = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32));
            let h_lo = _mm256_slli_epi16::<4>(_mm256_and_si256(h, one));
            let h_hi = _mm256_slli_epi16::<3>(_mm256_and_si256(h, _mm256_set1_epi8(2)));
            let q_lo = _mm256_or_si256(_mm256_and_si256(q, low), h_lo);
            let q_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), low), h_hi);
            let s_lo = _mm256_set1_epi16(sc[2 * c]);
            let s_hi = _mm256_set1_epi16(sc[2 * c + 1]);
            for t in 0..NT {
                let ab = &a[t][i];
                let p_lo = _mm256_maddubs_epi16(q_lo, unsafe { load32i(&ab.qs[64 * c..]) });
                let p_hi = _mm256_maddubs_epi16(q_hi, unsafe { load32i(&ab.qs[64 * c + 32..]) });
                let p =
                    _mm256_add_epi32(_mm256_madd_epi16(s_lo, p_lo), _mm256_madd_epi16(s_hi, p_hi));
                sumi[t] = _mm256_add_epi32(sumi[t], p);
            }
        }
        for t in 0..NT {
            let ab = &a[t][i];
            let mut summs = 0i32;
            for g in 0..8 {
                summs += mn[g] * (ab.bsum(2 * g) as i32 + ab.bsum(2 * g + 1) as i32);
            }
            acc[t] += ab.scale() * (d * hsum_i32(sumi[t]) as f32 - dmin * summs as f32);
        }
    }
    out[..NT].copy_from_slice(&acc);
}

/// `out[t] = dot(w, a[t])` for Q6_K weights.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q6k<const NT: usize>(w: &[BlockQ6K], a: [&[BlockQ8K]; NT], out: &mut [f32]) {
    let mut acc = [0f32; NT];
    let low = _mm256_set1_epi8(0x0f);
    let three = _mm256_set1_epi8(3);
    for (i, wb) in w.iter().enumerate() {
        let d = half(wb.d);
        let mut sumi = [_mm256_setzero_si256(); NT];
        for h in 0..2 {
            let ql0 = unsafe { load32u(&wb.ql[64 * h..]) };
            let ql1 = unsafe { load32u(&wb.ql[64 * h + 32..]) };
            let qh = unsafe { load32u(&wb.qh[32 * h..]) };
            // Unsigned values 0..63; the offset of 32 is folded in below.
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, low),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(qh, three)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, low),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(qh), three)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(qh), three)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(qh), three)),
                ),
            ];
            for (k, qk) in q.iter().enumerate() {
                let s = split_scale(
                    wb.scales[8 * h + 2 * k] as i16,
                    wb.scales[8 * h + 2 * k + 1] as i16,
                );
                for t in 0..NT {
                    let ab = &a[t][i];
                    let p =
                        _mm256_maddubs_epi16(*qk, unsafe { load32i(&ab.qs[128 * h + 32 * k..]) });
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(s, p));
                }
            }
        }
        for t in 0..NT {
            let ab = &a[t][i];
            let mut offset = 0i32;
            for g in 0..16 {
                offset += wb.scales[g] as i32 * ab.bsum(g) as i32;
            }
            acc[t] += d * ab.scale() * (hsum_i32(sumi[t]) - 32 * offset) as f32;
        }
    }
    out[..NT].copy_from_slice(&acc);
}

/// `out[t] = dot(w, a[t])` for Q2_K weights.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q2k<const NT: usize>(w: &[BlockQ2K], a: [&[BlockQ8K]; NT], out: &mut [f32]) {
    let mut acc = [0f32; NT];
    let three = _mm256_set1_epi8(3);
    for (i, wb) in w.iter().enumerate() {
        let (d, dmin) = (half(wb.d), half(wb.dmin));
        let mut sumi = [_mm256_setzero_si256(); NT];
        for h in 0..2 {
            let q = unsafe { load32u(&wb.qs[32 * h..]) };
            for j in 0..4 {
                let v =
                    _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), three);
                let g = 8 * h + 2 * j;
                let s = split_scale((wb.scales[g] & 0xf) as i16, (wb.scales[g + 1] & 0xf) as i16);
                for t in 0..NT {
                    let ab = &a[t][i];
                    let p = _mm256_maddubs_epi16(v, unsafe { load32i(&ab.qs[128 * h + 32 * j..]) });
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(s, p));
                }
            }
        }
        for t in 0..NT {
            let ab = &a[t][i];
            let mut summs = 0i32;
            for g in 0..16 {
                summs += (wb.scales[g] >> 4) as i32 * ab.bsum(g) as i32;
            }
            acc[t] += ab.scale() * (d * hsum_i32(sumi[t]) as f32 - dmin * summs as f32);
        }
    }
    out[..NT].copy_from_slice(&acc);
}

/// `out[t] = dot(w, a[t])` for Q3_K weights.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q3k<const NT: usize>(w: &[BlockQ3K], a: [&[BlockQ8K]; NT], out: &mut [f32]) {
    let mut acc = [0f32; NT];
    let three = _mm256_set1_epi8(3);
    let one = _mm256_set1_epi8(1);
    for (i, wb) in w.iter().enumerate() {
        let d = half(wb.d);
        let scales = crate::quant::q3k_scales(&wb.scales);
        let hm = unsafe { load32u(&wb.hmask) };
        let mut sumi = [_mm256_setzero_si256(); NT];
        for h in 0..2 {
            let q = unsafe { load32u(&wb.qs[32 * h..]) };
            for j in 0..4 {
                // Value + 4 = low two bits + 4 × high bit, in 0..7.
                let low2 =
                    _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), three);
                let hbit = _mm256_and_si256(
                    _mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * h + j) as i32)),
                    one,
                );
                let v = _mm256_or_si256(low2, _mm256_slli_epi16::<2>(hbit));
                let g = 8 * h + 2 * j;
                let s = split_scale(scales[g] as i16, scales[g + 1] as i16);
                for t in 0..NT {
                    let ab = &a[t][i];
                    let p = _mm256_maddubs_epi16(v, unsafe { load32i(&ab.qs[128 * h + 32 * j..]) });
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(s, p));
                }
            }
        }
        for t in 0..NT {
            let ab = &a[t][i];
            let mut offset = 0i32;
            for g in 0..16 {
                offset += scales[g] as i32 * ab.bsum(g) as i32;
            }
            acc[t] += d * ab.scale() * (hsum_i32(sumi[t]) - 4 * offset) as f32;
        }
    }
    out[..NT].copy_from_slice(&acc);
}

/// Quantizes a row of f32 to Q8_K, value for value as the scalar reference
/// (which is ggml's): scale from the signed value of largest magnitude (the
/// first one), round half to even, sums of each 16 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8k(x: &[f32], y: &mut [BlockQ8K]) {
    let sign = _mm256_set1_ps(-0.0);
    for (x, b) in x.chunks_exact(crate::dtype::QK_K).zip(y) {
        let mut amax = _mm256_setzero_ps();
        for c in x.chunks_exact(8) {
            // SAFETY: eight readable values.
            let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
        }
        let m = _mm_max_ps(
            _mm256_castps256_ps128(amax),
            _mm256_extractf128_ps::<1>(amax),
        );
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let amax = _mm_cvtss_f32(m);
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let is = _mm256_set1_ps(iscale);
        let mut q = [0i32; 256];
        for (k, c) in x.chunks_exact(8).enumerate() {
            // SAFETY: eight readable values and eight writable i32s.
            unsafe {
                let v = _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), is);
                let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                let i = _mm256_min_epi32(_mm256_cvtps_epi32(r), _mm256_set1_epi32(127));
                _mm256_storeu_si256(q.as_mut_ptr().add(8 * k).cast(), i);
            }
        }
        for (o, v) in b.qs.iter_mut().zip(q.iter()) {
            *o = *v as i8;
        }
        for g in 0..16 {
            let sum: i32 = q[16 * g..16 * g + 16].iter().sum();
            b.bsums[g] = (sum as i16).to_le_bytes();
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}

// ---------------------------------------------------------------------------
// IQ4_NL and IQ4_XS: 4-bit indices into a table of sixteen signed values
// (`KVALUES_IQ4NL`), looked up sixteen at a time with `pshufb`. The values
// are signed, so products go through the sign trick of `mul_sum_i8`: their
// magnitudes (at most 127) times the activations with the weights' signs.
// ---------------------------------------------------------------------------

/// The IQ4_NL table in both 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4nl_table() -> __m256i {
    // SAFETY: the table is 16 readable bytes.
    _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) })
}

/// Sixteen bytes of 4-bit indices into 32 table values in value order: the
/// low nibbles' values, then the high nibbles'.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_values(table: __m256i, qs: &[u8; 16]) -> __m256i {
    // SAFETY: as for `nibbles`.
    _mm256_shuffle_epi8(table, unsafe { nibbles(qs) })
}

/// Products of signed bytes summed in pairs: sixteen i16 lanes. No pair
/// saturates when `x` is at most 127 in magnitude (the table's values).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_add_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// `out[t] = dot(w, a[t])` for IQ4_NL weights and Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_iq4nl<const NT: usize>(w: &[BlockIQ4NL], a: [&[BlockQ8_0]; NT], out: &mut [f32]) {
    let table = iq4nl_table();
    let mut acc = [_mm256_setzero_ps(); NT];
    for (i, wb) in w.iter().enumerate() {
        let dw = half(wb.d);
        // SAFETY: the features are enabled; the block is in bounds.
        let qx = unsafe { iq4_values(table, &wb.qs) };
        for t in 0..NT {
            let ab = &a[t][i];
            let d = _mm256_set1_ps(dw * half(ab.d));
            let qy = unsafe { load32(&ab.qs) };
            acc[t] = _mm256_fmadd_ps(d, mul_sum_i8(qx, qy), acc[t]);
        }
    }
    for t in 0..NT {
        out[t] = hsum(acc[t]);
    }
}

/// `out[t] = dot(w, a[t])` for IQ4_XS weights and Q8_K activations: per
/// block an exact integer sum with the group scales applied in 16-bit
/// lanes (`madd`), then one float multiply, so every result equals the
/// scalar reference's to the last bit.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_iq4xs<const NT: usize>(w: &[BlockIQ4XS], a: [&[BlockQ8K]; NT], out: &mut [f32]) {
    let table = iq4nl_table();
    let mut acc = [0f32; NT];
    for (i, wb) in w.iter().enumerate() {
        let d = half(wb.d);
        let groups: &[[u8; 16]; 8] = bytemuck::cast_ref(&wb.qs);
        let mut sumi = [_mm256_setzero_si256(); NT];
        for (g, qs) in groups.iter().enumerate() {
            // SAFETY: the features are enabled; 16 readable bytes.
            let qx = unsafe { iq4_values(table, qs) };
            let s = _mm256_set1_epi16(wb.scale(g) as i16);
            for t in 0..NT {
                let qy = unsafe { load32i(&a[t][i].qs[32 * g..]) };
                let p = _mm256_madd_epi16(mul_add_i8(qx, qy), s);
                sumi[t] = _mm256_add_epi32(sumi[t], p);
            }
        }
        for t in 0..NT {
            acc[t] += d * a[t][i].scale() * hsum_i32(sumi[t]) as f32;
        }
    }
    out[..NT].copy_from_slice(&acc);
}

/// Weight rows in one packed panel of [`gemm_f32`]: two registers of eight
/// lanes.
pub const F32_PANEL_ROWS: usize = 16;

/// `out[t][j] = Σ_k panel[k · 16 + j] · a[t · stride + k]` for the 16 weight
/// rows of a packed panel (k-major) and `T` tokens: each output lane is one
/// chain of fused multiply-adds in `k` order starting from zero, the
/// arithmetic of [`super::scalar::dot_f32_fused`] (and so the same bits as
/// the AVX-512 kernel's).
///
/// # Safety
/// The CPU has AVX2 and FMA; `panel` holds `16 · k_len` values and `a`
/// holds `(T - 1) · stride + k_len`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_f32<const T: usize>(
    panel: &[f32],
    k_len: usize,
    a: &[f32],
    stride: usize,
    out: &mut [[f32; F32_PANEL_ROWS]],
) {
    debug_assert!(panel.len() >= F32_PANEL_ROWS * k_len);
    debug_assert!(T == 0 || a.len() >= (T - 1) * stride + k_len);
    debug_assert!(out.len() >= T);
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    let w = panel.as_ptr();
    let x: [*const f32; T] = std::array::from_fn(|t| a.as_ptr().wrapping_add(t * stride));
    for k in 0..k_len {
        // SAFETY: k < k_len: inside the panel and every token's row.
        unsafe {
            let w0 = _mm256_loadu_ps(w.add(k * F32_PANEL_ROWS));
            let w1 = _mm256_loadu_ps(w.add(k * F32_PANEL_ROWS + 8));
            for t in 0..T {
                let xv = _mm256_broadcast_ss(&*x[t].add(k));
                acc[t][0] = _mm256_fmadd_ps(w0, xv, acc[t][0]);
                acc[t][1] = _mm256_fmadd_ps(w1, xv, acc[t][1]);
            }
        }
    }
    for t in 0..T {
        // SAFETY: out[t] holds 16 values.
        unsafe {
            _mm256_storeu_ps(out[t].as_mut_ptr(), acc[t][0]);
            _mm256_storeu_ps(out[t].as_mut_ptr().add(8), acc[t][1]);
        }
    }
}

/// Eight rows of eight values, transposed: `out[c]` holds value `c` of
/// every row.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let mut t = [_mm256_setzero_ps(); 8];
    for i in 0..4 {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4j + m], lane L: rows 4j..4j+3, value 4L + m.
    let mut u = [_mm256_setzero_ps(); 8];
    for j in 0..2 {
        u[4 * j] = _mm256_shuffle_ps::<0x44>(t[4 * j], t[4 * j + 2]);
        u[4 * j + 1] = _mm256_shuffle_ps::<0xEE>(t[4 * j], t[4 * j + 2]);
        u[4 * j + 2] = _mm256_shuffle_ps::<0x44>(t[4 * j + 1], t[4 * j + 3]);
        u[4 * j + 3] = _mm256_shuffle_ps::<0xEE>(t[4 * j + 1], t[4 * j + 3]);
    }
    let mut out = [_mm256_setzero_ps(); 8];
    for m in 0..4 {
        out[m] = _mm256_permute2f128_ps::<0x20>(u[m], u[4 + m]);
        out[4 + m] = _mm256_permute2f128_ps::<0x31>(u[m], u[4 + m]);
    }
    out
}

/// [`super::pack_f32_panel`] for 16-row panels: `out[k · 16 + j]` is value
/// `k` of `rows[j]`, zero for `j` past the rows given; eight rows by eight
/// values transposed in registers at a time.
///
/// # Safety
/// The CPU has AVX2; every row holds `k_len` values, there are at most 16
/// rows and `out` holds `16 · k_len` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pack_f32(rows: &[&[f32]], k_len: usize, out: &mut [f32]) {
    debug_assert!(rows.len() <= F32_PANEL_ROWS && out.len() >= F32_PANEL_ROWS * k_len);
    debug_assert!(rows.iter().all(|r| r.len() >= k_len));
    let o = out.as_mut_ptr();
    for half in 0..2 {
        let first = 8 * half;
        let mut k0 = 0;
        while k0 + 8 <= k_len {
            let r: [__m256; 8] = std::array::from_fn(|i| match rows.get(first + i) {
                Some(row) => {
                    // The same values of the next panel's rows, read next.
                    super::prefetch_line(row.as_ptr().wrapping_add(k0 + 16 * k_len));
                    // SAFETY: k0 + 8 <= k_len <= the row's length.
                    unsafe { _mm256_loadu_ps(row.as_ptr().add(k0)) }
                }
                None => _mm256_setzero_ps(),
            });
            for (c, col) in transpose8(r).into_iter().enumerate() {
                // SAFETY: (k0 + c) · 16 + first + 8 <= 16 · k_len.
                unsafe { _mm256_storeu_ps(o.add((k0 + c) * F32_PANEL_ROWS + first), col) };
            }
            k0 += 8;
        }
        for k in k0..k_len {
            for i in 0..8 {
                let v = rows.get(first + i).map_or(0.0, |row| row[k]);
                // SAFETY: as above.
                unsafe { *o.add(k * F32_PANEL_ROWS + first + i) = v };
            }
        }
    }
}
