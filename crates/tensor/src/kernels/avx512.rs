//! AVX-512 VNNI kernels: tiles of up to four weight rows × four activation
//! rows, two 32-value blocks per instruction.
//!
//! A 512-bit register holds a pair of blocks `i`, `j = i + 1` in value
//! order. The activations come split ([`SplitActs`]): each row's 8-bit
//! values contiguous, and per pair of blocks their scales `d` and
//! `s = d · Σq / 8` in one 16-byte group, so that a pair's activation scales
//! are one load and two permutes shared by every weight row. A weight
//! block's half-precision scales are converted together with its pair's in
//! one instruction.
//!
//! Weight values are made unsigned (nibbles as stored, Q8_0 and IQ4_NL's
//! looked-up values with their sign bit flipped) so that `vpdpbusd`
//! multiplies them with the signed activations in one step; the offsets this
//! adds (8 for Q4_0, 16 for Q5_0, 128 for Q8_0 and IQ4_NL)
//! are taken back through `s`, and Q4_1's minimum enters the same way. Each
//! output lane then accumulates `d_w · (d_a · dot − offset · s)`; the eight
//! lanes of a block sum to the block's product.
//!
//! The arithmetic per lane, and so every result to the last bit, is the
//! same whatever the instruction sequence that loads and unpacks the
//! blocks: the golden tests against llama.cpp see the rounding, not the
//! shuffles.

#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use crate::blocks::*;

/// Activations for the AVX-512 kernels; see the module docs.
#[derive(Debug, Default)]
pub struct SplitActs {
    /// Per row, its values; a row with an odd number of blocks is padded
    /// with a zero block.
    pub q: Vec<i8>,
    /// Per row, per pair of blocks `(i, j)`: `[d_i, d_j, s_i / 8, s_j / 8]`
    /// (zero for the padding block).
    pub ds: Vec<f32>,
    /// Values per row.
    pub n: usize,
}

impl SplitActs {
    /// Pairs of blocks per row.
    fn pairs(&self) -> usize {
        (self.n / 32).div_ceil(2)
    }

    /// Splits Q8_0 (or Q8_1) activation rows in ggml's layout.
    pub fn fill(&mut self, blocks: &[u8], n: usize, q8_1: bool) {
        let nb = n / 32;
        let block_bytes = if q8_1 { 36 } else { 34 };
        let rows = blocks.len() / (nb * block_bytes).max(1);
        self.n = n;
        let pairs = self.pairs();
        // Cleared first: a padding block must read as zero.
        self.q.clear();
        self.q.resize(rows * pairs * 64, 0);
        self.ds.clear();
        self.ds.resize(rows * pairs * 4, 0.0);
        for (b, chunk) in blocks.chunks_exact(block_bytes).enumerate() {
            let (row, k) = (b / nb, b % nb);
            let (p, second) = (row * pairs + k / 2, k % 2);
            let d = f16_at([chunk[0], chunk[1]]);
            let qs: &[i8] = bytemuck::cast_slice(&chunk[block_bytes - 32..]);
            let at = 64 * p + 32 * second;
            self.q[at..at + 32].copy_from_slice(qs);
            // Q8_1 stores d·Σq as a half; use that value, as llama.cpp does.
            let s = if q8_1 {
                f16_at([chunk[2], chunk[3]])
            } else {
                d * qs.iter().map(|&v| v as i32).sum::<i32>() as f32
            };
            self.ds[4 * p + second] = d;
            self.ds[4 * p + 2 + second] = s * 0.125;
        }
    }

    /// Row `t`: its values and its pairs' scales.
    pub fn row(&self, t: usize) -> (&[i8], &[f32]) {
        let pairs = self.pairs();
        (
            &self.q[t * pairs * 64..(t + 1) * pairs * 64],
            &self.ds[t * pairs * 4..(t + 1) * pairs * 4],
        )
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn half(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}

/// The first four bytes of a block (its half-precision scale, and for Q4_1
/// its minimum) as a little-endian word.
#[inline]
fn head<B: bytemuck::Pod>(b: &B) -> i32 {
    let bytes: &[u8] = bytemuck::bytes_of(b);
    i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Halves 0 and 1 of `i`'s head and of `j`'s, as floats `[i0, i1, j0, j1]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn heads(i: i32, j: i32) -> __m512 {
    _mm512_castps128_ps512(_mm_cvtph_ps(_mm_set_epi32(0, 0, j, i)))
}

/// `[v[I] ×8 | v[J] ×8]`: float `I` over block `i`'s lanes, `J` over `j`'s.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
fn spread<const I: i32, const J: i32>(v: __m512) -> __m512 {
    _mm512_permutexvar_ps(
        _mm512_set_epi32(J, J, J, J, J, J, J, J, I, I, I, I, I, I, I, I),
        v,
    )
}

/// The nibbles of two Q4-style blocks as 64 unsigned bytes in value order:
/// low nibbles (values 0..16) of `a`, its high nibbles (16..32), then `b`'s.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
fn nibbles(a: &[u8; 16], b: &[u8; 16]) -> __m512i {
    // SAFETY: both are 16 readable bytes.
    let v = unsafe { _mm256_loadu2_m128i(b.as_ptr().cast(), a.as_ptr().cast()) };
    // [a lo, b lo, a hi, b hi] in 128-bit lanes, then lanes 1 and 2 swapped.
    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v), _mm256_srli_epi16::<4>(v));
    let z = _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z);
    _mm512_and_si512(z, _mm512_set1_epi8(0x0f))
}

/// One weight row's pair of blocks, prepared: unsigned values in value order,
/// the scales spread over their lanes, and for Q4_1 the minimums.
#[derive(Clone, Copy)]
pub struct WPair {
    q: __m512i,
    d: __m512,
    m: __m512,
}

/// A tile kernel: `out[r][t] = dot(w[r], a[t])` for a tile of rows and
/// tokens. `$pairs` counts a row's pairs of blocks and `$get` prepares one;
/// `$offset` is what making the weights unsigned added to them (`None` for
/// Q4_1, whose minimum enters through `m`).
macro_rules! tile_kernel {
    ($name:ident, $item:ty, $pairs:ident, $get:ident, $offset:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma,avx2")]
        pub unsafe fn $name<const R: usize, const T: usize>(
            w: [&[$item]; R],
            a: [(&[i8], &[f32]); T],
            out: &mut [[f32; 4]; 4],
        ) {
            let offset: Option<f32> = $offset;
            let np = $pairs(w[0]);
            let mut acc = [[_mm512_setzero_ps(); T]; R];
            for p in 0..np {
                let mut aq = [_mm512_setzero_si512(); T];
                let mut ad = [_mm512_setzero_ps(); T];
                let mut as8 = [_mm512_setzero_ps(); T];
                for t in 0..T {
                    let (q, ds) = a[t];
                    // SAFETY: pair p's 64 values and 4 scales are inside the row
                    // (padded to whole pairs).
                    let v = unsafe {
                        aq[t] = _mm512_loadu_si512(q.as_ptr().add(64 * p).cast());
                        _mm512_castps128_ps512(_mm_loadu_ps(ds.as_ptr().add(4 * p)))
                    };
                    ad[t] = spread::<0, 1>(v);
                    as8[t] = spread::<2, 3>(v);
                    if let Some(o) = offset {
                        as8[t] = _mm512_mul_ps(as8[t], _mm512_set1_ps(o));
                    }
                }
                for r in 0..R {
                    let wp = $get(w[r], p);
                    for t in 0..T {
                        let dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(
                            _mm512_setzero_si512(),
                            wp.q,
                            aq[t],
                        ));
                        if offset.is_some() {
                            // d_w · (d_a · dot − offset · s)
                            let x = _mm512_fmsub_ps(dot, ad[t], as8[t]);
                            acc[r][t] = _mm512_fmadd_ps(x, wp.d, acc[r][t]);
                        } else {
                            // d_w · d_a · dot + m_w · s
                            let x = _mm512_fmadd_ps(wp.m, as8[t], acc[r][t]);
                            acc[r][t] = _mm512_fmadd_ps(dot, _mm512_mul_ps(wp.d, ad[t]), x);
                        }
                    }
                }
            }
            for r in 0..R {
                for t in 0..T {
                    out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
                }
            }
        }
    };
}

/// Pairs of blocks in a row of blocks (a lone last block makes a pair).
#[inline]
fn block_pairs<B>(w: &[B]) -> usize {
    w.len().div_ceil(2)
}

/// Pairs in a row prepared by the `prepare_*` functions below.
#[inline]
fn prepared_pairs(w: &[WPair]) -> usize {
    w.len()
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prepared(w: &[WPair], p: usize) -> WPair {
    w[p]
}

/// `$get` for rows of blocks: pair `p` prepared as it is read, the row's
/// lines ahead of it prefetched.
macro_rules! pair_of_blocks {
    ($name:ident, $block:ty, $prep:ident) => {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
        fn $name(w: &[$block], p: usize) -> WPair {
            // A lone last block pairs with itself; the activations' zero
            // padding block cancels the second copy.
            let i = 2 * p;
            let j = (i + 1).min(w.len() - 1);
            // Both ends of the pair: every line of the row, ahead.
            let at = (&w[i] as *const $block).cast::<u8>();
            super::prefetch_ahead(at);
            super::prefetch_ahead(at.wrapping_add(2 * size_of::<$block>() - 1));
            $prep(&w[i], &w[j])
        }
    };
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q4_0(a: &BlockQ4_0, b: &BlockQ4_0) -> WPair {
    WPair {
        q: nibbles(&a.qs, &b.qs),
        d: spread::<0, 2>(heads(head(a), head(b))),
        m: _mm512_setzero_ps(),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q4_1(a: &BlockQ4_1, b: &BlockQ4_1) -> WPair {
    let h = heads(head(a), head(b));
    WPair {
        q: nibbles(&a.qs, &b.qs),
        d: spread::<0, 2>(h),
        m: spread::<1, 3>(h),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q5_0(a: &BlockQ5_0, b: &BlockQ5_0) -> WPair {
    let (ha, hb) = (
        u32::from_le_bytes(a.qh) as u64,
        u32::from_le_bytes(b.qh) as u64,
    );
    // The fifth bits, one per value, in value order.
    let high = ha | hb << 32;
    let q = nibbles(&a.qs, &b.qs);
    WPair {
        q: _mm512_mask_add_epi8(q, high, q, _mm512_set1_epi8(0x10)),
        d: spread::<0, 2>(heads(head(a), head(b))),
        m: _mm512_setzero_ps(),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q8_0(a: &BlockQ8_0, b: &BlockQ8_0) -> WPair {
    // SAFETY: 32 readable bytes each.
    let (x, y) = unsafe {
        (
            _mm256_loadu_si256(a.qs.as_ptr().cast()),
            _mm256_loadu_si256(b.qs.as_ptr().cast()),
        )
    };
    let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x), y);
    WPair {
        // Flipping the sign bit adds 128: the values become unsigned.
        q: _mm512_xor_si512(q, _mm512_set1_epi8(-128)),
        d: spread::<0, 2>(heads(head(a), head(b))),
        m: _mm512_setzero_ps(),
    }
}

/// The IQ4_NL table in every 128-bit lane, for `vpshufb`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
fn iq4nl_table() -> __m512i {
    // SAFETY: the table is 16 readable bytes.
    _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_iq4nl(a: &BlockIQ4NL, b: &BlockIQ4NL) -> WPair {
    let values = _mm512_shuffle_epi8(iq4nl_table(), nibbles(&a.qs, &b.qs));
    WPair {
        // The table's values with their sign bit flipped: unsigned, plus 128,
        // as Q8_0's.
        q: _mm512_xor_si512(values, _mm512_set1_epi8(-128)),
        d: spread::<0, 2>(heads(head(a), head(b))),
        m: _mm512_setzero_ps(),
    }
}

pair_of_blocks!(pair_q4_0, BlockQ4_0, prep_q4_0);
pair_of_blocks!(pair_q4_1, BlockQ4_1, prep_q4_1);
pair_of_blocks!(pair_q5_0, BlockQ5_0, prep_q5_0);
pair_of_blocks!(pair_q8_0, BlockQ8_0, prep_q8_0);
pair_of_blocks!(pair_iq4nl, BlockIQ4NL, prep_iq4nl);

tile_kernel!(tile_q4_0, BlockQ4_0, block_pairs, pair_q4_0, Some(8.0));
tile_kernel!(tile_q4_1, BlockQ4_1, block_pairs, pair_q4_1, None);
tile_kernel!(tile_q5_0, BlockQ5_0, block_pairs, pair_q5_0, Some(16.0));
tile_kernel!(tile_q8_0, BlockQ8_0, block_pairs, pair_q8_0, Some(128.0));
tile_kernel!(tile_iq4nl, BlockIQ4NL, block_pairs, pair_iq4nl, Some(128.0));

// The same kernels over rows prepared once by `prepare_*`, for products with
// many tokens: each row's pairs are then unpacked once instead of once per
// four tokens. Same arithmetic, same results to the last bit.
tile_kernel!(
    tile_q4_0_prepared,
    WPair,
    prepared_pairs,
    prepared,
    Some(8.0)
);
tile_kernel!(tile_q4_1_prepared, WPair, prepared_pairs, prepared, None);
tile_kernel!(
    tile_q5_0_prepared,
    WPair,
    prepared_pairs,
    prepared,
    Some(16.0)
);
tile_kernel!(
    tile_q8_0_prepared,
    WPair,
    prepared_pairs,
    prepared,
    Some(128.0)
);
tile_kernel!(
    tile_iq4nl_prepared,
    WPair,
    prepared_pairs,
    prepared,
    Some(128.0)
);

/// Appends a row of 32-value blocks' pairs, prepared, to `out`.
macro_rules! prepare_fn {
    ($name:ident, $block:ty, $get:ident) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
        pub fn $name(row: &[$block], out: &mut Vec<WPair>) {
            for p in 0..block_pairs(row) {
                out.push($get(row, p));
            }
        }
    };
}

prepare_fn!(prepare_q4_0, BlockQ4_0, pair_q4_0);
prepare_fn!(prepare_q4_1, BlockQ4_1, pair_q4_1);
prepare_fn!(prepare_q5_0, BlockQ5_0, pair_q5_0);
prepare_fn!(prepare_q8_0, BlockQ8_0, pair_q8_0);
prepare_fn!(prepare_iq4nl, BlockIQ4NL, pair_iq4nl);

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

/// A k-quant block (256 values) prepared for the tiles: its values unsigned
/// in four 64-value chunks as the activations come, per chunk the 16-bit
/// scale of each lane pair, and per 16-value group the integer that
/// multiplies the group's activation sum (`bsums`): Q4_K's minimum, Q6_K's
/// scale (its values carry an offset of 32).
#[derive(Clone, Copy)]
pub struct KBlock {
    q: [__m512i; 4],
    s: [__m512i; 4],
    m: [i32; 16],
    d: f32,
    dmin: f32,
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q4k(wb: &BlockQ4K) -> KBlock {
    let low = _mm512_set1_epi8(0x0f);
    let mut sc = [0i16; 8];
    let mut m = [0i32; 16];
    for g in 0..8 {
        let (s, mn) = crate::quant::scale_min_k4(g, &wb.scales);
        sc[g] = s as i16;
        m[2 * g] = mn as i32;
        m[2 * g + 1] = mn as i32;
    }
    let mut q = [_mm512_setzero_si512(); 4];
    let mut s = [_mm512_setzero_si512(); 4];
    for c in 0..4 {
        // SAFETY: 32 readable bytes.
        let v = unsafe { _mm256_loadu_si256(wb.qs[32 * c..].as_ptr().cast()) };
        q[c] = _mm512_and_si512(
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v), _mm256_srli_epi16::<4>(v)),
            low,
        );
        s[c] = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(sc[2 * c])),
            _mm256_set1_epi16(sc[2 * c + 1]),
        );
    }
    KBlock {
        q,
        s,
        m,
        d: half(wb.d),
        dmin: half(wb.dmin),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_q6k(wb: &BlockQ6K) -> KBlock {
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
    // SAFETY: 16 readable scale bytes.
    let scales = _mm512_cvtepi8_epi16(unsafe {
        _mm256_zextsi128_si256(_mm_loadu_si128(wb.scales.as_ptr().cast()))
    });
    let mut q = [_mm512_setzero_si512(); 4];
    let mut s = [_mm512_setzero_si512(); 4];
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
        let hh = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qh), _mm256_srli_epi16::<2>(qh));
        // Values 0..63 of groups (q1 | q2) and (q3 | q4).
        q[2 * h] = _mm512_or_si512(
            _mm512_and_si512(l, low),
            _mm512_slli_epi16::<4>(_mm512_and_si512(hh, three)),
        );
        q[2 * h + 1] = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi16::<4>(l), low),
            _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srli_epi16::<4>(hh), three)),
        );
        // Scales of this half: 8 groups of 16 values, in value order.
        for k in 0..2 {
            s[2 * h + k] = _mm512_permutexvar_epi16(
                _mm512_add_epi16(idx[k], _mm512_set1_epi16(8 * h as i16)),
                scales,
            );
        }
    }
    KBlock {
        q,
        s,
        m: wb.scales.map(i32::from),
        d: half(wb.d),
        dmin: 0.0,
    }
}

/// A k-quant tile kernel; `$get(row, i)` gives block `i` of a row prepared.
/// Q4_K (`$q6k` false): `d_a · (d · Σ − dmin · Σ m·bsum)`; Q6_K:
/// `d · d_a · (Σ − 32 · Σ m·bsum)`.
macro_rules! tile_k {
    ($name:ident, $item:ty, $get:ident, $q6k:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma,avx2")]
        pub unsafe fn $name<const R: usize, const T: usize>(
            w: [&[$item]; R],
            a: [(&[i8], &[f32], &[i32]); T],
            out: &mut [[f32; 4]; 4],
        ) {
            let nb = w[0].len();
            let mut acc = [[0f32; T]; R];
            for i in 0..nb {
                let mut aq = [[_mm512_setzero_si512(); 4]; T];
                for t in 0..T {
                    for c in 0..4 {
                        aq[t][c] = unsafe { load64(a[t].0, 256 * i + 64 * c) };
                    }
                }
                for r in 0..R {
                    let wb = $get(w[r], i);
                    let mut sumi = [_mm512_setzero_si512(); T];
                    for c in 0..4 {
                        for t in 0..T {
                            let p = _mm512_maddubs_epi16(wb.q[c], aq[t][c]);
                            sumi[t] = _mm512_add_epi32(sumi[t], _mm512_madd_epi16(p, wb.s[c]));
                        }
                    }
                    for t in 0..T {
                        let (_, ad, bs) = a[t];
                        let bs = &bs[16 * i..16 * i + 16];
                        let mut offset = 0i32;
                        for g in 0..16 {
                            offset += wb.m[g] * bs[g];
                        }
                        let isum = _mm512_reduce_add_epi32(sumi[t]);
                        acc[r][t] += if $q6k {
                            wb.d * ad[i] * (isum - 32 * offset) as f32
                        } else {
                            ad[i] * (wb.d * isum as f32 - wb.dmin * offset as f32)
                        };
                    }
                }
            }
            for r in 0..R {
                out[r][..T].copy_from_slice(&acc[r]);
            }
        }
    };
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn block_q4k(w: &[BlockQ4K], i: usize) -> KBlock {
    prep_q4k(&w[i])
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn block_q6k(w: &[BlockQ6K], i: usize) -> KBlock {
    prep_q6k(&w[i])
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prepared_k(w: &[KBlock], i: usize) -> KBlock {
    w[i]
}

tile_k!(tile_q4k, BlockQ4K, block_q4k, false);
tile_k!(tile_q6k, BlockQ6K, block_q6k, true);
tile_k!(tile_q4k_prepared, KBlock, prepared_k, false);
tile_k!(tile_q6k_prepared, KBlock, prepared_k, true);

/// Appends a row of k-quant blocks, prepared, to `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
pub fn prepare_q4k(row: &[BlockQ4K], out: &mut Vec<KBlock>) {
    out.extend(row.iter().map(|b| prep_q4k(b)));
}

/// Appends a row of k-quant blocks, prepared, to `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
pub fn prepare_q6k(row: &[BlockQ6K], out: &mut Vec<KBlock>) {
    out.extend(row.iter().map(|b| prep_q6k(b)));
}

// ---------------------------------------------------------------------------
// IQ4_XS against the split Q8_K activations. Its table values times its group
// scales fit 16 bits (127 · 32), so a block is prepared once as 16-bit
// products of value and scale, and `vpdpwssd` multiplies them with the
// activations widened to 16 bits and sums pairs into 32 bits: exact integer
// arithmetic with no offset to take back (the values are signed, and Q4_K's
// unsigned `maddubs` route would overflow 16 bits with them made unsigned).
// ---------------------------------------------------------------------------

/// An IQ4_XS block prepared for the tiles: per group of 32 values, each
/// value times the group's scale as an i16, in value order.
#[derive(Clone, Copy)]
pub struct XsBlock {
    v: [__m512i; 8],
    d: f32,
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prep_iq4xs(wb: &BlockIQ4XS) -> XsBlock {
    let table = iq4nl_table();
    let groups: &[[u8; 16]; 8] = bytemuck::cast_ref(&wb.qs);
    let mut v = [_mm512_setzero_si512(); 8];
    for p in 0..4 {
        // Groups 2p and 2p + 1, 64 signed values in value order.
        let q = _mm512_shuffle_epi8(table, nibbles(&groups[2 * p], &groups[2 * p + 1]));
        let lo = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(q));
        let hi = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64::<1>(q));
        v[2 * p] = _mm512_mullo_epi16(lo, _mm512_set1_epi16(wb.scale(2 * p) as i16));
        v[2 * p + 1] = _mm512_mullo_epi16(hi, _mm512_set1_epi16(wb.scale(2 * p + 1) as i16));
    }
    XsBlock { v, d: half(wb.d) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn block_iq4xs(w: &[BlockIQ4XS], i: usize) -> XsBlock {
    let at = (&w[i] as *const BlockIQ4XS).cast::<u8>();
    super::prefetch_ahead(at);
    super::prefetch_ahead(at.wrapping_add(size_of::<BlockIQ4XS>() - 1));
    prep_iq4xs(&w[i])
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
fn prepared_xs(w: &[XsBlock], i: usize) -> XsBlock {
    w[i]
}

/// An IQ4_XS tile kernel; `$get(row, i)` gives block `i` of a row prepared.
/// Per block, row and token an exact integer sum, then
/// `acc += (d_w · d_a) · sum` in each of sixteen float lanes.
macro_rules! tile_xs {
    ($name:ident, $item:ty, $get:ident) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma,avx2")]
        pub unsafe fn $name<const R: usize, const T: usize>(
            w: [&[$item]; R],
            a: [(&[i8], &[f32], &[i32]); T],
            out: &mut [[f32; 4]; 4],
        ) {
            let nb = w[0].len();
            let mut acc = [[_mm512_setzero_ps(); T]; R];
            for i in 0..nb {
                let wb: [XsBlock; R] = std::array::from_fn(|r| $get(w[r], i));
                let mut sum = [[_mm512_setzero_si512(); T]; R];
                for c in 0..4 {
                    // This chunk's 64 activations of each token, widened.
                    let mut aw = [[_mm512_setzero_si512(); 2]; T];
                    for t in 0..T {
                        // SAFETY: block i's 256 values are inside the row.
                        let q = unsafe { load64(a[t].0, 256 * i + 64 * c) };
                        aw[t] = [
                            _mm512_cvtepi8_epi16(_mm512_castsi512_si256(q)),
                            _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64::<1>(q)),
                        ];
                    }
                    for r in 0..R {
                        let (w0, w1) = (wb[r].v[2 * c], wb[r].v[2 * c + 1]);
                        for t in 0..T {
                            let s = _mm512_dpwssd_epi32(sum[r][t], w0, aw[t][0]);
                            sum[r][t] = _mm512_dpwssd_epi32(s, w1, aw[t][1]);
                        }
                    }
                }
                for r in 0..R {
                    for t in 0..T {
                        let d = _mm512_set1_ps(wb[r].d * a[t].1[i]);
                        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][t]), d, acc[r][t]);
                    }
                }
            }
            for r in 0..R {
                for t in 0..T {
                    out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
                }
            }
        }
    };
}

tile_xs!(tile_iq4xs, BlockIQ4XS, block_iq4xs);
tile_xs!(tile_iq4xs_prepared, XsBlock, prepared_xs);

/// Appends a row of IQ4_XS blocks, prepared, to `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")]
pub fn prepare_iq4xs(row: &[BlockIQ4XS], out: &mut Vec<XsBlock>) {
    out.extend(row.iter().map(|b| prep_iq4xs(b)));
}

/// Weight rows in one packed panel of [`gemm_f32`]: two registers of
/// sixteen lanes.
pub const F32_PANEL_ROWS: usize = 32;

/// `out[t][j] = Σ_k panel[k · 32 + j] · a[t · stride + k]` for the 32 weight
/// rows of a packed panel (k-major: value `k` of every row together) and `T`
/// tokens, `k` from 0 to `k_len`: each output lane is one chain of fused
/// multiply-adds in `k` order starting from zero, the arithmetic of
/// [`super::scalar::dot_f32_fused`], so its bits depend on neither `T` nor the
/// instruction set. No horizontal sums: a lane is an output.
///
/// # Safety
/// The CPU has AVX-512F and FMA; `panel` holds `32 · k_len` values and `a`
/// holds `(T - 1) · stride + k_len`.
#[target_feature(enable = "avx512f,fma,avx2")]
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
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let w = panel.as_ptr();
    let x: [*const f32; T] = std::array::from_fn(|t| a.as_ptr().wrapping_add(t * stride));
    for k in 0..k_len {
        // SAFETY: k < k_len: inside the panel and every token's row.
        unsafe {
            let w0 = _mm512_loadu_ps(w.add(k * F32_PANEL_ROWS));
            let w1 = _mm512_loadu_ps(w.add(k * F32_PANEL_ROWS + 16));
            for t in 0..T {
                let xv = _mm512_set1_ps(*x[t].add(k));
                acc[t][0] = _mm512_fmadd_ps(w0, xv, acc[t][0]);
                acc[t][1] = _mm512_fmadd_ps(w1, xv, acc[t][1]);
            }
        }
    }
    for t in 0..T {
        // SAFETY: out[t] holds 32 values.
        unsafe {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t][0]);
            _mm512_storeu_ps(out[t].as_mut_ptr().add(16), acc[t][1]);
        }
    }
}

/// Sixteen rows of sixteen values, transposed: `out[c]` holds value `c` of
/// every row. Four rounds of shuffles: pairs of rows interleaved, then
/// quadruples, then 128-bit lanes twice.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4j + m], lane L: rows 4j..4j+3, value 4L + m.
    let mut u = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        u[4 * j] = _mm512_shuffle_ps::<0x44>(t[4 * j], t[4 * j + 2]);
        u[4 * j + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * j], t[4 * j + 2]);
        u[4 * j + 2] = _mm512_shuffle_ps::<0x44>(t[4 * j + 1], t[4 * j + 3]);
        u[4 * j + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * j + 1], t[4 * j + 3]);
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for m in 0..4 {
        let v_even = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
        let v_odd = _mm512_shuffle_f32x4::<0xDD>(u[m], u[4 + m]);
        let w_even = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
        let w_odd = _mm512_shuffle_f32x4::<0xDD>(u[8 + m], u[12 + m]);
        out[m] = _mm512_shuffle_f32x4::<0x88>(v_even, w_even);
        out[8 + m] = _mm512_shuffle_f32x4::<0xDD>(v_even, w_even);
        out[4 + m] = _mm512_shuffle_f32x4::<0x88>(v_odd, w_odd);
        out[12 + m] = _mm512_shuffle_f32x4::<0xDD>(v_odd, w_odd);
    }
    out
}

/// [`super::pack_f32_panel`] for 32-row panels: `out[k · 32 + j]` is value
/// `k` of `rows[j]`, zero for `j` past the rows given; sixteen rows by
/// sixteen values transposed in registers at a time.
///
/// # Safety
/// The CPU has AVX-512F; every row holds `k_len` values, there are at most
/// 32 rows and `out` holds `32 · k_len` values.
#[target_feature(enable = "avx512f,avx2")]
pub unsafe fn pack_f32(rows: &[&[f32]], k_len: usize, out: &mut [f32]) {
    debug_assert!(rows.len() <= F32_PANEL_ROWS && out.len() >= F32_PANEL_ROWS * k_len);
    debug_assert!(rows.iter().all(|r| r.len() >= k_len));
    let o = out.as_mut_ptr();
    for half in 0..2 {
        let first = 16 * half;
        let mut k0 = 0;
        while k0 + 16 <= k_len {
            let r: [__m512; 16] = std::array::from_fn(|i| match rows.get(first + i) {
                Some(row) => {
                    // The same values of the next panel's rows, read next.
                    super::prefetch_line(row.as_ptr().wrapping_add(k0 + 32 * k_len));
                    // SAFETY: k0 + 16 <= k_len <= the row's length.
                    unsafe { _mm512_loadu_ps(row.as_ptr().add(k0)) }
                }
                None => _mm512_setzero_ps(),
            });
            for (c, col) in transpose16(r).into_iter().enumerate() {
                // SAFETY: (k0 + c) · 32 + first + 16 <= 32 · k_len.
                unsafe { _mm512_storeu_ps(o.add((k0 + c) * F32_PANEL_ROWS + first), col) };
            }
            k0 += 16;
        }
        for k in k0..k_len {
            for i in 0..16 {
                let v = rows.get(first + i).map_or(0.0, |row| row[k]);
                // SAFETY: as above.
                unsafe { *o.add(k * F32_PANEL_ROWS + first + i) = v };
            }
        }
    }
}
