//! Element-wise and vector operations of the forward pass on `f32` rows.
//!
//! The attention loops spend their time in [`dot`] and [`axpy`], which have
//! AVX2 versions; the rest run once per token and layer on a few thousand
//! values and are written plainly.

#[cfg(x86_kernels)]
use crate::kernels::Isa;

/// `sum(a[i] * b[i])`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    #[cfg(x86_kernels)]
    if Isa::current().has_avx2() {
        // SAFETY: Avx2 is only detected on CPUs with the features.
        return unsafe { avx2::dot(&a[..n], &b[..n]) };
    }
    a[..n].iter().zip(&b[..n]).map(|(x, y)| x * y).sum()
}

/// `y[i] += alpha * x[i]`.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    #[cfg(x86_kernels)]
    if Isa::current().has_avx2() {
        // SAFETY: as above.
        return unsafe { avx2::axpy(alpha, &x[..n], &mut y[..n]) };
    }
    for (y, x) in y[..n].iter_mut().zip(&x[..n]) {
        *y += alpha * x;
    }
}

/// `sum(a[i] * b[i])` with `b` in IEEE half precision (raw bits).
#[inline]
pub fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    let n = a.len().min(b.len());
    #[cfg(x86_kernels)]
    if Isa::current().has_avx2() {
        // SAFETY: Avx2 is only detected on CPUs with AVX2, FMA and F16C.
        return unsafe { avx2::dot_f16(&a[..n], &b[..n]) };
    }
    a[..n]
        .iter()
        .zip(&b[..n])
        .map(|(x, y)| x * half::f16::from_bits(*y).to_f32())
        .sum()
}

/// `y[i] += alpha * x[i]` with `x` in half precision (raw bits).
#[inline]
pub fn axpy_f16(alpha: f32, x: &[u16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    #[cfg(x86_kernels)]
    if Isa::current().has_avx2() {
        // SAFETY: as above.
        return unsafe { avx2::axpy_f16(alpha, &x[..n], &mut y[..n]) };
    }
    for (y, x) in y[..n].iter_mut().zip(&x[..n]) {
        *y += alpha * half::f16::from_bits(*x).to_f32();
    }
}

/// Appends `x` to `out` in half precision (raw bits), rounding to nearest.
pub fn extend_f16(out: &mut Vec<u16>, x: &[f32]) {
    out.extend(x.iter().map(|v| half::f16::from_f32(*v).to_bits()));
}

/// `y[i] += x[i]`.
pub fn add_assign(y: &mut [f32], x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += x;
    }
}

/// `x[i] *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

/// Root-mean-square normalization of one row: `out = x / rms(x) * weight`,
/// where `weight` is taken as `1 + weight` when `unit_offset` is set (the
/// Gemma convention).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, unit_offset: bool, out: &mut [f32]) {
    let mean_sq = x.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / x.len().max(1) as f64;
    let inv = 1.0 / ((mean_sq as f32) + eps).sqrt();
    let offset = if unit_offset { 1.0 } else { 0.0 };
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * inv * (w + offset);
    }
}

/// Layer normalization of one row: `out = (x - mean) / std * weight + bias`.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = x.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / ((var as f32) + eps).sqrt();
    let mean = mean as f32;
    for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
        *o = (v - mean) * inv * weight[i] + bias.map_or(0.0, |b| b[i]);
    }
}

/// In-place softmax; returns the log of the sum of exponentials of the input.
pub fn softmax(x: &mut [f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    #[cfg(x86_kernels)]
    let sum = if Isa::current().has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { avx2::exp_sub_sum(x, max) }
    } else {
        exp_sub_sum(x, max)
    };
    #[cfg(not(x86_kernels))]
    let sum = exp_sub_sum(x, max);
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
    max + (sum as f32).ln()
}

/// `x[i] = exp(x[i] - max)`; returns the sum.
fn exp_sub_sum(x: &mut [f32], max: f32) -> f64 {
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    sum
}

/// `log(sum(exp(x)))`, computed stably.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let sum: f64 = x.iter().map(|v| ((*v - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// The activation functions that model families use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(x)`.
    Silu,
    /// GELU with the tanh approximation.
    GeluTanh,
    /// GELU with the exact error function.
    GeluErf,
    /// `max(0, x)`.
    Relu,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluTanh => {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
            }
            Activation::GeluErf => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
            Activation::Relu => x.max(0.0),
        }
    }

    /// Applies the activation to every value of `x`.
    pub fn apply_all(self, x: &mut [f32]) {
        #[cfg(x86_kernels)]
        if Isa::current().has_avx2() && self != Activation::Relu {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2::activate(self, x, None) };
        }
        for v in x {
            *v = self.apply(*v);
        }
    }

    /// `gate[i] = act(gate[i]) * up[i]`: the gated linear unit of SwiGLU and
    /// GeGLU.
    pub fn glu(self, gate: &mut [f32], up: &[f32]) {
        #[cfg(x86_kernels)]
        if Isa::current().has_avx2() && self != Activation::Relu {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2::activate(self, gate, Some(up)) };
        }
        for (g, u) in gate.iter_mut().zip(up) {
            *g = self.apply(*g) * u;
        }
    }
}

/// The error function, to f32 precision (Abramowitz and Stegun 7.1.26 is
/// not precise enough for reference comparisons, so this uses f64 and a
/// high-order series/continued fraction split).
pub fn erf(x: f32) -> f32 {
    erf_f64(x as f64) as f32
}

fn erf_f64(x: f64) -> f64 {
    // W. J. Cody's rational approximations, as in many libm implementations,
    // are long; a Taylor series near zero and the complementary function's
    // continued fraction further out give ~1e-15 relative error.
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Taylor series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            // Converges within ~60 terms for |x| < 2.5.
            if add.abs() <= 1e-17 * sum.abs() || n > 200.0 {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if ax > 6.0 {
        1.0
    } else {
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f)
    };
    if x < 0.0 { -r } else { r }
}

#[cfg(x86_kernels)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Activation;

    /// `exp(x)` for eight lanes: range reduction to `2^n · e^r` with
    /// `|r| ≤ ln2/2` and a degree-6 polynomial; relative error about 2e-7.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp(x: __m256) -> __m256 {
        let x = _mm256_max_ps(
            _mm256_min_ps(x, _mm256_set1_ps(88.0)),
            _mm256_set1_ps(-87.0),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        // r = x - n·ln2, with ln2 split in two for precision.
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(p, _mm256_castsi256_ps(pow2))
    }

    /// The exact GELU, `x·(1 + erf(x/√2))/2`, for eight lanes. erf comes
    /// from its complement, `erfc(a) = t·exp(-a² + P(t))` with `t = 1/(1 +
    /// a/2)` and Numerical Recipes' degree-9 polynomial (relative error of
    /// erfc under 1.2e-7 for every `a ≥ 0`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn gelu_erf(v: __m256) -> __m256 {
        const P: [f32; 10] = [
            0.170_872_77,
            -0.822_152_23,
            1.488_515_9,
            -1.135_204,
            0.278_868_07,
            -0.186_288_06,
            0.096_784_18,
            0.374_091_96,
            1.000_023_7,
            -1.265_512_2,
        ];
        let one = _mm256_set1_ps(1.0);
        let z = _mm256_mul_ps(v, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let a = _mm256_andnot_ps(_mm256_set1_ps(-0.0), z);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(a, _mm256_set1_ps(0.5), one));
        let mut p = _mm256_set1_ps(P[0]);
        for &c in &P[1..] {
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(c));
        }
        let erfc = _mm256_mul_ps(t, exp(_mm256_fnmadd_ps(a, a, p)));
        // erf(z) = ±(1 - erfc(|z|)), the sign of z.
        let sign = _mm256_and_ps(z, _mm256_set1_ps(-0.0));
        let erf = _mm256_xor_ps(_mm256_sub_ps(one, erfc), sign);
        _mm256_mul_ps(
            _mm256_mul_ps(v, _mm256_set1_ps(0.5)),
            _mm256_add_ps(one, erf),
        )
    }

    /// `x[i] = exp(x[i] - max)`; returns the sum.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_sub_sum(x: &mut [f32], max: f32) -> f64 {
        let m = _mm256_set1_ps(max);
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= x.len() {
            // SAFETY: i + 8 <= x.len().
            unsafe {
                let e = exp(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), m));
                _mm256_storeu_ps(x.as_mut_ptr().add(i), e);
                acc = _mm256_add_ps(acc, e);
            }
            i += 8;
        }
        let mut lanes = [0f32; 8];
        // SAFETY: eight writable floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut sum: f64 = lanes.iter().map(|&v| v as f64).sum();
        for v in &mut x[i..] {
            *v = (*v - max).exp();
            sum += *v as f64;
        }
        sum
    }

    /// `x[i] = act(x[i])`, times `up[i]` when given. SiLU is `x·σ(x)`; the
    /// tanh GELU is `x·σ(2·√(2/π)·(x + 0.044715x³))`, the same function.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn activate(act: Activation, x: &mut [f32], up: Option<&[f32]>) {
        let n = match up {
            Some(u) => x.len().min(u.len()),
            None => x.len(),
        };
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for x (and up).
            unsafe {
                let v = _mm256_loadu_ps(x.as_ptr().add(i));
                if act == Activation::GeluErf {
                    let mut y = gelu_erf(v);
                    if let Some(u) = up {
                        y = _mm256_mul_ps(y, _mm256_loadu_ps(u.as_ptr().add(i)));
                    }
                    _mm256_storeu_ps(x.as_mut_ptr().add(i), y);
                    i += 8;
                    continue;
                }
                let z = match act {
                    Activation::GeluTanh => {
                        let v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
                        let inner = _mm256_fmadd_ps(v3, _mm256_set1_ps(0.044715), v);
                        _mm256_mul_ps(inner, _mm256_set1_ps(-2.0 * 0.797_884_6))
                    }
                    _ => _mm256_sub_ps(_mm256_setzero_ps(), v),
                };
                let mut y = _mm256_div_ps(v, _mm256_add_ps(one, exp(z)));
                if let Some(u) = up {
                    y = _mm256_mul_ps(y, _mm256_loadu_ps(u.as_ptr().add(i)));
                }
                _mm256_storeu_ps(x.as_mut_ptr().add(i), y);
            }
            i += 8;
        }
        for j in i..n {
            let g = act.apply(x[j]);
            x[j] = match up {
                Some(u) => g * u[j],
                None => g,
            };
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                acc0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    acc0,
                );
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                    acc1,
                );
            }
            i += 16;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                acc0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    acc0,
                );
            }
            i += 8;
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let lo = _mm256_castps256_ps128(acc);
        let hi = _mm256_extractf128_ps::<1>(acc);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        let mut sum = _mm_cvtss_f32(s);
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len();
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                let b0 = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i).cast()));
                let b1 = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i + 8).cast()));
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), b0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), b1, acc1);
            }
            i += 16;
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let lo = _mm256_castps256_ps128(acc);
        let hi = _mm256_extractf128_ps::<1>(acc);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        let mut sum = _mm_cvtss_f32(s);
        for j in i..n {
            sum += a[j] * half::f16::from_bits(b[j]).to_f32();
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16(alpha: f32, x: &[u16], y: &mut [f32]) {
        let n = x.len();
        let av = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i).cast()));
                let yv = _mm256_loadu_ps(y.as_ptr().add(i));
                _mm256_storeu_ps(y.as_mut_ptr().add(i), _mm256_fmadd_ps(av, xv, yv));
            }
            i += 8;
        }
        for j in i..n {
            y[j] += alpha * half::f16::from_bits(x[j]).to_f32();
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len();
        let av = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let yv = _mm256_loadu_ps(y.as_ptr().add(i));
                let r = _mm256_fmadd_ps(av, _mm256_loadu_ps(x.as_ptr().add(i)), yv);
                _mm256_storeu_ps(y.as_mut_ptr().add(i), r);
            }
            i += 8;
        }
        for j in i..n {
            y[j] += alpha * x[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_axpy_match_plain_loops() {
        let a: Vec<f32> = (0..77).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..77).map(|i| (i as f32 * 0.7).cos()).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - want).abs() < 1e-4);
        let mut y = b.clone();
        axpy(0.5, &a, &mut y);
        for i in 0..77 {
            assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
        }
    }

    #[test]
    fn half_precision_dot_and_axpy_match_plain_loops() {
        let a: Vec<f32> = (0..77).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut b = Vec::new();
        extend_f16(&mut b, &a.iter().map(|x| x * 0.5 + 0.1).collect::<Vec<_>>());
        let bf: Vec<f32> = b
            .iter()
            .map(|x| half::f16::from_bits(*x).to_f32())
            .collect();
        let want: f32 = a.iter().zip(&bf).map(|(x, y)| x * y).sum();
        assert!((dot_f16(&a, &b) - want).abs() < 1e-4);
        let mut y = a.clone();
        axpy_f16(2.0, &b, &mut y);
        for i in 0..77 {
            assert!((y[i] - (a[i] + 2.0 * bf[i])).abs() < 1e-6);
        }
    }

    #[test]
    fn vector_activations_match_the_scalar_ones() {
        let x: Vec<f32> = (0..203).map(|i| (i as f32 - 100.0) * 0.11).collect();
        let up: Vec<f32> = (0..203).map(|i| (i as f32 * 0.3).cos()).collect();
        for act in [Activation::Silu, Activation::GeluTanh, Activation::GeluErf] {
            let mut got = x.clone();
            act.apply_all(&mut got);
            let mut gated = x.clone();
            act.glu(&mut gated, &up);
            for i in 0..x.len() {
                let want = act.apply(x[i]);
                assert!(
                    (got[i] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{act:?}({}) = {} vs {want}",
                    x[i],
                    got[i]
                );
                assert!((gated[i] - want * up[i]).abs() <= 1e-6 * (1.0 + want.abs()));
            }
        }
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
            (-1.0, -0.842_700_8),
        ] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn softmax_sums_to_one_and_returns_log_sum_exp() {
        let mut x = vec![1.0, 2.0, 3.0, -1.0];
        let lse = log_sum_exp(&x);
        assert!((softmax(&mut x) - lse).abs() < 1e-6);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
