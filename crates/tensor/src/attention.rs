//! The attention of a group of query heads that share one key/value head
//! (grouped-query attention) for one token: scores against every key it may
//! see, softmax, and the weighted sum of values.
//!
//! Each key and value row is read once for the whole group, in one
//! target-feature function, which is what makes attention cheap next to the
//! matrix products even over a 512-token prompt.

use std::ops::RangeInclusive;

#[cfg(x86_kernels)]
use crate::kernels::Isa;
use crate::ops;

/// Key or value rows of one layer's cache.
#[derive(Clone, Copy, Debug)]
pub enum KvView<'a> {
    /// Half-precision bits.
    F16(&'a [u16]),
    F32(&'a [f32]),
}

/// One group of query heads for one token.
#[derive(Clone, Debug)]
pub struct GroupQuery<'a> {
    /// The group's query heads, one after another (`heads × head_dim`).
    pub q: &'a [f32],
    pub k: KvView<'a>,
    pub v: KvView<'a>,
    /// Values per cache row (all key/value heads of a position).
    pub stride: usize,
    /// Where this key/value head starts within a row.
    pub offset: usize,
    pub head_dim: usize,
    /// The positions the token sees.
    pub keys: RangeInclusive<usize>,
    pub scale: f32,
    pub softcap: Option<f32>,
}

/// Writes each head's attention output into `out` (`heads × head_dim`),
/// using `scores` (resized as needed) for the probabilities, which it leaves
/// there: `scores[h * n + j]` for head `h` and the `j`-th visible key.
pub fn attend_group(g: &GroupQuery<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
    let heads = g.q.len() / g.head_dim.max(1);
    let n = g.keys.clone().count();
    scores.clear();
    scores.resize(heads * n, 0.0);
    #[cfg(x86_kernels)]
    if Isa::current().has_avx2() && g.head_dim.is_multiple_of(8) {
        // SAFETY: the CPU has AVX2, FMA and F16C.
        unsafe {
            match heads {
                1 => avx2::attend::<1>(g, scores, out),
                2 => avx2::attend::<2>(g, scores, out),
                3 => avx2::attend::<3>(g, scores, out),
                4 => avx2::attend::<4>(g, scores, out),
                8 => avx2::attend::<8>(g, scores, out),
                _ => generic(g, heads, n, scores, out),
            }
        }
        return;
    }
    generic(g, heads, n, scores, out);
}

fn key(view: KvView<'_>, at: usize, i: usize) -> f32 {
    match view {
        KvView::F16(v) => half::f16::from_bits(v[at + i]).to_f32(),
        KvView::F32(v) => v[at + i],
    }
}

/// The reference: plain loops.
fn generic(g: &GroupQuery<'_>, heads: usize, n: usize, scores: &mut [f32], out: &mut [f32]) {
    let hd = g.head_dim;
    for h in 0..heads {
        let q = &g.q[h * hd..(h + 1) * hd];
        let row = &mut scores[h * n..(h + 1) * n];
        for (s, j) in row.iter_mut().zip(g.keys.clone()) {
            let at = j * g.stride + g.offset;
            let mut x = q
                .iter()
                .enumerate()
                .map(|(i, qi)| qi * key(g.k, at, i))
                .sum::<f32>()
                * g.scale;
            if let Some(cap) = g.softcap {
                x = cap * (x / cap).tanh();
            }
            *s = x;
        }
        ops::softmax(row);
        let o = &mut out[h * hd..(h + 1) * hd];
        o.fill(0.0);
        for (p, j) in row.iter().zip(g.keys.clone()) {
            let at = j * g.stride + g.offset;
            for (i, oi) in o.iter_mut().enumerate() {
                *oi += p * key(g.v, at, i);
            }
        }
    }
}

#[cfg(x86_kernels)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{GroupQuery, KvView};

    /// Eight values of row `at + c` as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(view: KvView<'_>, at: usize) -> __m256 {
        // SAFETY: the caller keeps `at + 8` inside the rows.
        unsafe {
            match view {
                KvView::F16(v) => _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(at).cast())),
                KvView::F32(v) => _mm256_loadu_ps(v.as_ptr().add(at)),
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn attend<const G: usize>(g: &GroupQuery<'_>, scores: &mut [f32], out: &mut [f32]) {
        let hd = g.head_dim;
        let n = g.keys.clone().count();
        let first = *g.keys.start();
        let len = match g.k {
            KvView::F16(v) => v.len(),
            KvView::F32(v) => v.len(),
        };
        assert!(
            n == 0 || (first + n - 1) * g.stride + g.offset + hd <= len,
            "attention reads past the cache"
        );
        assert!(g.q.len() >= G * hd && out.len() >= G * hd && scores.len() >= G * n);
        // Scores: each key row once for the whole group. Two keys at a time
        // when the group is small, so that eight sums are in flight instead
        // of four (an FMA's latency covers two issues); each key's sum is
        // computed exactly as alone.
        let pair = G <= 4;
        let mut jj = 0;
        while jj < n {
            let two = pair && jj + 1 < n;
            let at = [
                (first + jj) * g.stride + g.offset,
                (first + jj + usize::from(two)) * g.stride + g.offset,
            ];
            let mut acc = [[_mm256_setzero_ps(); G]; 2];
            let mut c = 0;
            while c < hd {
                for k in 0..1 + usize::from(two) {
                    // SAFETY: bounds checked above.
                    let kv = unsafe { load8(g.k, at[k] + c) };
                    for h in 0..G {
                        let qv = unsafe { _mm256_loadu_ps(g.q.as_ptr().add(h * hd + c)) };
                        acc[k][h] = _mm256_fmadd_ps(qv, kv, acc[k][h]);
                    }
                }
                c += 8;
            }
            for k in 0..1 + usize::from(two) {
                for h in 0..G {
                    let mut x = hsum(acc[k][h]) * g.scale;
                    if let Some(cap) = g.softcap {
                        x = cap * (x / cap).tanh();
                    }
                    scores[h * n + jj + k] = x;
                }
            }
            jj += 1 + usize::from(two);
        }
        for h in 0..G {
            crate::ops::softmax(&mut scores[h * n..(h + 1) * n]);
        }
        // Values: sixteen dimensions at a time (eight when the group is
        // large), every key, the whole group; each output is the same sum
        // in the same order whatever the width.
        let wide = G <= 4 && hd.is_multiple_of(16);
        let step = if wide { 16 } else { 8 };
        let mut c = 0;
        while c < hd {
            let mut acc = [[_mm256_setzero_ps(); G]; 2];
            for jj in 0..n {
                let at = (first + jj) * g.stride + g.offset;
                // SAFETY: bounds checked above (values have the keys' shape).
                let vv = unsafe { load8(g.v, at + c) };
                let vw = if wide {
                    // SAFETY: c + 16 <= hd when `wide`.
                    unsafe { load8(g.v, at + c + 8) }
                } else {
                    vv
                };
                for h in 0..G {
                    let p = _mm256_set1_ps(scores[h * n + jj]);
                    acc[0][h] = _mm256_fmadd_ps(p, vv, acc[0][h]);
                    if wide {
                        acc[1][h] = _mm256_fmadd_ps(p, vw, acc[1][h]);
                    }
                }
            }
            for h in 0..G {
                // SAFETY: h * hd + c + step <= G * hd <= out.len().
                unsafe {
                    _mm256_storeu_ps(out.as_mut_ptr().add(h * hd + c), acc[0][h]);
                    if wide {
                        _mm256_storeu_ps(out.as_mut_ptr().add(h * hd + c + 8), acc[1][h]);
                    }
                }
            }
            c += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_path_matches_the_reference() {
        // Even and odd key counts (keys go in pairs for small groups), head
        // sizes with and without a whole number of sixteen-wide steps.
        for (hd, keys) in [(64, 3..=30), (24, 0..=36)] {
            check_against_reference(hd, keys);
        }
    }

    fn check_against_reference(hd: usize, keys: RangeInclusive<usize>) {
        let (kv_heads, positions) = (2, 37);
        let n = keys.clone().count();
        let stride = hd * kv_heads;
        let kf: Vec<f32> = (0..positions * stride)
            .map(|i| ((i * 13) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let vf: Vec<f32> = (0..positions * stride)
            .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
            .collect();
        let mut k16 = Vec::new();
        let mut v16 = Vec::new();
        ops::extend_f16(&mut k16, &kf);
        ops::extend_f16(&mut v16, &vf);
        for heads in [1, 2, 3, 4, 5, 8] {
            let q: Vec<f32> = (0..heads * hd).map(|i| (i as f32 * 0.1).sin()).collect();
            for (k, v) in [
                (KvView::F32(&kf), KvView::F32(&vf)),
                (KvView::F16(&k16), KvView::F16(&v16)),
            ] {
                let g = GroupQuery {
                    q: &q,
                    k,
                    v,
                    stride,
                    offset: hd,
                    head_dim: hd,
                    keys: keys.clone(),
                    scale: 0.125,
                    softcap: Some(30.0),
                };
                let (mut s1, mut s2) = (Vec::new(), Vec::new());
                let (mut o1, mut o2) = (vec![0.0; heads * hd], vec![0.0; heads * hd]);
                attend_group(&g, &mut s1, &mut o1);
                s2.resize(heads * n, 0.0);
                generic(&g, heads, n, &mut s2, &mut o2);
                for (a, b) in o1.iter().zip(&o2) {
                    assert!((a - b).abs() < 1e-5, "{heads} heads: {a} vs {b}");
                }
                for (a, b) in s1.iter().zip(&s2) {
                    assert!((a - b).abs() < 1e-6);
                }
            }
        }
    }
}
