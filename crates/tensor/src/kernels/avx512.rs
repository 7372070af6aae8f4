//! AVX-512 VNNI kernels: tiles of up to four weight rows × four activation
//! rows, two 32-value blocks per instruction.
//!
//! The activations come split ([`SplitActs`]): each row's 8-bit values
//! contiguous, and per block its scale `d` and `s = d · Σq`. Weight values are
//! made unsigned (nibbles as stored, Q8_0 with its sign bit flipped) so that
//! `vpdpbusd` multiplies them with the signed activations in one step; the
//! offsets this adds (8 for Q4_0, 16 for Q5_0, 128 for Q8_0) are taken back
//! through `s`, and Q4_1's minimum enters the same way. Each output lane
//! then accumulates `d_w · (d_a · dot − offset · s/8)`; the eight lanes of a
//! block sum to the block's product.

#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use crate::blocks::*;

/// Activations for the AVX-512 kernels; see the module docs.
#[derive(Debug, Default)]
pub struct SplitActs {
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    /// Values per row.
    pub n: usize,
}

impl SplitActs {
    /// Splits Q8_0 (or Q8_1) activation rows in ggml's layout.
    pub fn fill(&mut self, blocks: &[u8], n: usize, q8_1: bool) {
        let nb = n / 32;
        let block_bytes = if q8_1 { 36 } else { 34 };
        let rows = blocks.len() / (nb * block_bytes).max(1);
        self.n = n;
        self.q.resize(rows * n, 0);
        self.d.resize(rows * nb, 0.0);
        self.s.resize(rows * nb, 0.0);
        for (b, chunk) in blocks.chunks_exact(block_bytes).enumerate() {
            let d = f16_at([chunk[0], chunk[1]]);
            let qs: &[i8] = bytemuck::cast_slice(&chunk[block_bytes - 32..]);
            self.q[b * 32..b * 32 + 32].copy_from_slice(qs);
            self.d[b] = d;
            // Q8_1 stores d·Σq as a half; use that value, as llama.cpp does.
            self.s[b] = if q8_1 {
                f16_at([chunk[2], chunk[3]])
            } else {
                d * qs.iter().map(|&v| v as i32).sum::<i32>() as f32
            };
        }
    }

    pub fn row(&self, t: usize) -> (&[i8], &[f32], &[f32]) {
        let nb = self.n / 32;
        (
            &self.q[t * self.n..(t + 1) * self.n],
            &self.d[t * nb..(t + 1) * nb],
            &self.s[t * nb..(t + 1) * nb],
        )
    }
}

/// `[a ×8 | b ×8]`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn pair(a: f32, b: f32) -> __m512 {
    _mm512_insertf32x8::<1>(_mm512_set1_ps(a), _mm256_set1_ps(b))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn half(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}

/// 64 activation bytes of blocks `i` and `i + 1` (the second zero when
/// `two` is false).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
unsafe fn act_pair(q: &[i8], i: usize, two: bool) -> __m512i {
    // SAFETY: block i (and i + 1 when `two`) are inside `q`.
    unsafe {
        if two {
            _mm512_loadu_si512(q.as_ptr().add(32 * i).cast())
        } else {
            _mm512_zextsi256_si512(_mm256_loadu_si256(q.as_ptr().add(32 * i).cast()))
        }
    }
}

/// Nibbles of two Q4-style blocks as 64 unsigned bytes in value order:
/// low nibbles of block i, high nibbles of block i, then block i + 1.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
fn nibble_pair(a: &[u8; 16], b: &[u8; 16]) -> __m512i {
    // SAFETY: both are 16 readable bytes.
    let (x, y) = unsafe {
        (
            _mm_loadu_si128(a.as_ptr().cast()),
            _mm_loadu_si128(b.as_ptr().cast()),
        )
    };
    let v = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_set_m128i(x, x)),
        _mm256_set_m128i(y, y),
    );
    let shifted = _mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
    _mm512_and_si512(shifted, _mm512_set1_epi8(0x0f))
}

/// 32 bits into 32 bytes of `set` where the bit is set, else 0 (as __m256i).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
fn bits_to_bytes(bits: u32, set: i8) -> __m256i {
    _mm256_maskz_set1_epi8(bits, set)
}

/// One weight row's two blocks, prepared: unsigned values, scale pair, and
/// the second pair (the offset for Q4_0/Q5_0/Q8_0, the minimum for Q4_1).
struct WPair {
    q: __m512i,
    d: __m512,
    m: __m512,
}

macro_rules! tile_kernel {
    ($name:ident, $block:ty, $prep:ident, $min_is_offset:expr) => {
        /// `out[r][t] = dot(w[r], a[t])` for a tile of rows and tokens.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma,avx2")]
        pub unsafe fn $name<const R: usize, const T: usize>(
            w: [&[$block]; R],
            a: [(&[i8], &[f32], &[f32]); T],
            out: &mut [[f32; 4]; 4],
        ) {
            let nb = w[0].len();
            let mut acc = [[_mm512_setzero_ps(); T]; R];
            let mut i = 0;
            while i < nb {
                let two = i + 1 < nb;
                let j = if two { i + 1 } else { i };
                let mut aq = [_mm512_setzero_si512(); T];
                let mut ad = [_mm512_setzero_ps(); T];
                let mut as8 = [_mm512_setzero_ps(); T];
                for t in 0..T {
                    let (q, d, s) = a[t];
                    aq[t] = unsafe { act_pair(q, i, two) };
                    let (d1, s1) = if two { (d[j], s[j]) } else { (0.0, 0.0) };
                    ad[t] = pair(d[i], d1);
                    // Eight lanes carry one block: each takes an eighth of its sum.
                    as8[t] = pair(s[i] * 0.125, s1 * 0.125);
                }
                for r in 0..R {
                    let wp = $prep(&w[r][i], &w[r][j], two);
                    for t in 0..T {
                        let dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(
                            _mm512_setzero_si512(),
                            wp.q,
                            aq[t],
                        ));
                        if $min_is_offset {
                            // d_w · (d_a · dot − offset · s/8)
                            let x = _mm512_fmsub_ps(dot, ad[t], _mm512_mul_ps(wp.m, as8[t]));
                            acc[r][t] = _mm512_fmadd_ps(x, wp.d, acc[r][t]);
                        } else {
                            // d_w · d_a · dot + m_w · s/8
                            let x = _mm512_fmadd_ps(wp.m, as8[t], acc[r][t]);
                            acc[r][t] = _mm512_fmadd_ps(dot, _mm512_mul_ps(wp.d, ad[t]), x);
                        }
                    }
                }
                i += 2;
            }
            for r in 0..R {
                for t in 0..T {
                    out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
                }
            }
        }
    };
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q4_0(a: &BlockQ4_0, b: &BlockQ4_0, two: bool) -> WPair {
    let q = nibble_pair(&a.qs, &b.qs);
    let q = if two {
        q
    } else {
        _mm512_zextsi256_si512(_mm512_castsi512_si256(q))
    };
    WPair {
        q,
        d: pair(half(a.d), if two { half(b.d) } else { 0.0 }),
        m: _mm512_set1_ps(8.0),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q4_1(a: &BlockQ4_1, b: &BlockQ4_1, two: bool) -> WPair {
    let q = nibble_pair(&a.qs, &b.qs);
    let q = if two {
        q
    } else {
        _mm512_zextsi256_si512(_mm512_castsi512_si256(q))
    };
    let (d1, m1) = if two {
        (half(b.d), half(b.m))
    } else {
        (0.0, 0.0)
    };
    WPair {
        q,
        d: pair(half(a.d), d1),
        m: pair(half(a.m), m1),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q5_0(a: &BlockQ5_0, b: &BlockQ5_0, two: bool) -> WPair {
    let q = nibble_pair(&a.qs, &b.qs);
    let ha = bits_to_bytes(u32::from_le_bytes(a.qh), 0x10);
    let hb = bits_to_bytes(u32::from_le_bytes(b.qh), 0x10);
    let q = _mm512_or_si512(q, _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ha), hb));
    let q = if two {
        q
    } else {
        _mm512_zextsi256_si512(_mm512_castsi512_si256(q))
    };
    WPair {
        q,
        d: pair(half(a.d), if two { half(b.d) } else { 0.0 }),
        m: _mm512_set1_ps(16.0),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q8_0(a: &BlockQ8_0, b: &BlockQ8_0, two: bool) -> WPair {
    // SAFETY: 32 readable bytes each.
    let (x, y) = unsafe {
        (
            _mm256_loadu_si256(a.qs.as_ptr().cast()),
            _mm256_loadu_si256(b.qs.as_ptr().cast()),
        )
    };
    let y = if two { y } else { _mm256_set1_epi8(-128) };
    // Flipping the sign bit adds 128: the values become unsigned.
    let q = _mm512_xor_si512(
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x), y),
        _mm512_set1_epi8(-128),
    );
    WPair {
        q,
        d: pair(half(a.d), if two { half(b.d) } else { 0.0 }),
        m: _mm512_set1_ps(128.0),
    }
}

tile_kernel!(tile_q4_0, BlockQ4_0, prep_q4_0, true);
tile_kernel!(tile_q4_1, BlockQ4_1, prep_q4_1, false);
tile_kernel!(tile_q5_0, BlockQ5_0, prep_q5_0, true);
tile_kernel!(tile_q8_0, BlockQ8_0, prep_q8_0, true);

// ---------------------------------------------------------------------------
// k-quants. Activations are Q8_K split the same way: values contiguous, one
// scale per 256 values, and the sums of each 16 values (`bsums`) for the
// offsets and minimums.
// ---------------------------------------------------------------------------

/// Q8_K activations for the AVX-512 kernels.
#[derive(Debug, Default)]
pub struct SplitActsK {
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub bsums: Vec<i32>,
    pub n: usize,
}

impl SplitActsK {
    /// Splits Q8_K activation rows in ggml's layout.
    pub fn fill(&mut self, blocks: &[u8], n: usize) {
        let nb = n / 256;
        let rows = blocks.len() / (nb * 292).max(1);
        self.n = n;
        self.q.resize(rows * n, 0);
        self.d.resize(rows * nb, 0.0);
        self.bsums.resize(rows * nb * 16, 0);
        let blocks: &[BlockQ8K] = bytemuck::cast_slice(blocks);
        for (b, blk) in blocks.iter().enumerate() {
            self.q[b * 256..b * 256 + 256].copy_from_slice(&blk.qs);
            self.d[b] = blk.scale();
            for g in 0..16 {
                self.bsums[b * 16 + g] = blk.bsum(g) as i32;
            }
        }
    }

    pub fn row(&self, t: usize) -> (&[i8], &[f32], &[i32]) {
        let nb = self.n / 256;
        (
            &self.q[t * self.n..(t + 1) * self.n],
            &self.d[t * nb..(t + 1) * nb],
            &self.bsums[t * nb * 16..(t + 1) * nb * 16],
        )
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
unsafe fn load64(q: &[i8], at: usize) -> __m512i {
    // SAFETY: the caller passes 64 readable values at `at`.
    unsafe { _mm512_loadu_si512(q.as_ptr().add(at).cast()) }
}

/// `out[r][t] = dot(w[r], a[t])` for Q4_K weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma,avx2")]
pub unsafe fn tile_q4k<const R: usize, const T: usize>(
    w: [&[BlockQ4K]; R],
    a: [(&[i8], &[f32], &[i32]); T],
    out: &mut [[f32; 4]; 4],
) {
    let nb = w[0].len();
    let low = _mm512_set1_epi8(0x0f);
    let mut acc = [[0f32; T]; R];
    for i in 0..nb {
        let mut aq = [[_mm512_setzero_si512(); 4]; T];
        for t in 0..T {
            for c in 0..4 {
                aq[t][c] = unsafe { load64(a[t].0, 256 * i + 64 * c) };
            }
        }
        for r in 0..R {
            let wb = &w[r][i];
            let mut sc = [0i16; 8];
            let mut mn = [0i32; 8];
            for g in 0..8 {
                let (s, m) = crate::quant::scale_min_k4(g, &wb.scales);
                sc[g] = s as i16;
                mn[g] = m as i32;
            }
            let (d, dmin) = (half(wb.d), half(wb.dmin));
            let mut sumi = [_mm512_setzero_si512(); T];
            for c in 0..4 {
                // SAFETY: 32 readable bytes.
                let q = unsafe { _mm256_loadu_si256(wb.qs[32 * c..].as_ptr().cast()) };
                let wq = _mm512_and_si512(
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q), _mm256_srli_epi16::<4>(q)),
                    low,
                );
                let s = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_set1_epi16(sc[2 * c])),
                    _mm256_set1_epi16(sc[2 * c + 1]),
                );
                for t in 0..T {
                    let p = _mm512_maddubs_epi16(wq, aq[t][c]);
                    sumi[t] = _mm512_add_epi32(sumi[t], _mm512_madd_epi16(p, s));
                }
            }
            for t in 0..T {
                let (_, ad, bs) = a[t];
                let bs = &bs[16 * i..16 * i + 16];
                let mut summs = 0i32;
                for g in 0..8 {
                    summs += mn[g] * (bs[2 * g] + bs[2 * g + 1]);
                }
                let isum = _mm512_reduce_add_epi32(sumi[t]);
                acc[r][t] += ad[i] * (d * isum as f32 - dmin * summs as f32);
            }
        }
    }
    for r in 0..R {
        out[r][..T].copy_from_slice(&acc[r]);
    }
}

/// `out[r][t] = dot(w[r], a[t])` for Q6_K weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma,avx2")]
pub unsafe fn tile_q6k<const R: usize, const T: usize>(
    w: [&[BlockQ6K]; R],
    a: [(&[i8], &[f32], &[i32]); T],
    out: &mut [[f32; 4]; 4],
) {
    let nb = w[0].len();
    let low = _mm512_set1_epi8(0x0f);
    let three = _mm512_set1_epi8(3);
    // i16 lane k of a 64-value vector covers values 2k, 2k+1: group k / 8.
    let idx = [
        _mm512_set_epi16(
            3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
            0, 0, 0,
        ),
        _mm512_set_epi16(
            7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4,
            4, 4, 4,
        ),
    ];
    let mut acc = [[0f32; T]; R];
    for i in 0..nb {
        let mut aq = [[_mm512_setzero_si512(); 4]; T];
        for t in 0..T {
            for c in 0..4 {
                aq[t][c] = unsafe { load64(a[t].0, 256 * i + 64 * c) };
            }
        }
        for r in 0..R {
            let wb = &w[r][i];
            let d = half(wb.d);
            // SAFETY: 16 readable scale bytes.
            let scales = _mm512_cvtepi8_epi16(unsafe {
                _mm256_zextsi128_si256(_mm_loadu_si128(wb.scales.as_ptr().cast()))
            });
            let mut sumi = [_mm512_setzero_si512(); T];
            for h in 0..2 {
                // SAFETY: in-bounds 32-byte loads.
                let (ql0, ql1, qh) = unsafe {
                    (
                        _mm256_loadu_si256(wb.ql[64 * h..].as_ptr().cast()),
                        _mm256_loadu_si256(wb.ql[64 * h + 32..].as_ptr().cast()),
                        _mm256_loadu_si256(wb.qh[32 * h..].as_ptr().cast()),
                    )
                };
                let l = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ql0), ql1);
                let hh =
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qh), _mm256_srli_epi16::<2>(qh));
                // Values 0..63 of groups (q1 | q2) and (q3 | q4).
                let v12 = _mm512_or_si512(
                    _mm512_and_si512(l, low),
                    _mm512_slli_epi16::<4>(_mm512_and_si512(hh, three)),
                );
                let v34 = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(l), low),
                    _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srli_epi16::<4>(hh), three)),
                );
                // Scales of this half: 8 groups of 16 values, in value order.
                let s_half = _mm512_permutexvar_epi16(
                    _mm512_add_epi16(idx[0], _mm512_set1_epi16(8 * h as i16)),
                    scales,
                );
                let s_half2 = _mm512_permutexvar_epi16(
                    _mm512_add_epi16(idx[1], _mm512_set1_epi16(8 * h as i16)),
                    scales,
                );
                for t in 0..T {
                    let p12 = _mm512_maddubs_epi16(v12, aq[t][2 * h]);
                    let p34 = _mm512_maddubs_epi16(v34, aq[t][2 * h + 1]);
                    sumi[t] = _mm512_add_epi32(
                        sumi[t],
                        _mm512_add_epi32(
                            _mm512_madd_epi16(p12, s_half),
                            _mm512_madd_epi16(p34, s_half2),
                        ),
                    );
                }
            }
            for t in 0..T {
                let (_, ad, bs) = a[t];
                let bs = &bs[16 * i..16 * i + 16];
                let mut offset = 0i32;
                for g in 0..16 {
                    offset += wb.scales[g] as i32 * bs[g];
                }
                let isum = _mm512_reduce_add_epi32(sumi[t]);
                acc[r][t] += d * ad[i] * (isum - 32 * offset) as f32;
            }
        }
    }
    for r in 0..R {
        out[r][..T].copy_from_slice(&acc[r]);
    }
}
