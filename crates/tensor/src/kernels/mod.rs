//! Dot products between weight rows and activation rows, chosen at run time
//! for the CPU at hand.
//!
//! Weights stay in their file's format. Activations are converted once per
//! matrix product into the format each weight type multiplies with
//! ([`dot_type`]): 8-bit blocks for quantized weights, as llama.cpp does, so
//! the inner loops are integer dot products.

#[cfg(x86_kernels)]
pub mod avx2;
#[cfg(x86_kernels)]
pub mod avx512;
pub mod scalar;

use std::sync::OnceLock;

use bytemuck::cast_slice;

use crate::blocks::*;
use crate::dtype::DType;

/// The instruction set the kernels use, ordered from the reference up: an
/// instruction set can run whatever a lower one can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust: the reference.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// AVX2 plus AVX-512 (F, BW, VL, DQ) with VNNI: tiled kernels for the
    /// 32-value block types, AVX2 for the rest.
    Avx512,
}

/// The environment variable that caps the instruction set, by [`Isa::name`]
/// (`scalar`, `avx2`, `avx512-vnni`): how the tests run every kernel path on
/// one machine, and how a user rules out a path they suspect.
pub const ISA_VAR: &str = "LUCID_ISA";

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn best() -> Isa {
        #[cfg(x86_kernels)]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            let avx512 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vnni");
            return if avx512 { Isa::Avx512 } else { Isa::Avx2 };
        }
        Isa::Scalar
    }

    /// The best instruction set this CPU supports, capped by `LUCID_ISA`
    /// when that names one ([`Isa::from_name`]). A cap above what the CPU
    /// has, or a name lucid does not know, leaves the best.
    pub fn detect() -> Isa {
        let best = Isa::best();
        match std::env::var(ISA_VAR).ok().and_then(|v| Isa::from_name(&v)) {
            Some(cap) => cap.min(best),
            None => best,
        }
    }

    /// The instruction set called `name` ([`Isa::name`], or `avx512`), in
    /// any case.
    pub fn from_name(name: &str) -> Option<Isa> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx512-vnni" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// `self`, lowered to what this CPU has. Every public entry point that
    /// takes an `Isa` runs the kernels of `isa.usable()`, so safe code that
    /// asks for an instruction set the CPU lacks gets the best it has, never
    /// an illegal instruction.
    pub fn usable(self) -> Isa {
        static HARDWARE: OnceLock<Isa> = OnceLock::new();
        self.min(*HARDWARE.get_or_init(Isa::best))
    }

    /// Whether the AVX2 kernels can run.
    pub fn has_avx2(self) -> bool {
        self >= Isa::Avx2
    }

    /// The instruction set detected once for this process.
    pub fn current() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(Isa::detect)
    }

    /// Every instruction set this CPU can run, up to the `LUCID_ISA` cap,
    /// the reference first: with `LUCID_ISA=avx2` an AVX-512 machine tests
    /// what an AVX2-only one has.
    pub fn available() -> Vec<Isa> {
        let cap = Isa::detect();
        [Isa::Scalar, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|isa| *isa <= cap)
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512-vnni",
        }
    }
}

/// The format activations take when multiplied with weights of type `w`.
pub fn dot_type(w: DType) -> DType {
    match w {
        DType::F32 | DType::F16 | DType::BF16 => DType::F32,
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 | DType::IQ4NL => DType::Q8_0,
        DType::Q4_1 | DType::Q5_1 | DType::Q8_1 => DType::Q8_1,
        DType::Q2K
        | DType::Q3K
        | DType::Q4K
        | DType::Q5K
        | DType::Q6K
        | DType::Q8K
        | DType::IQ4XS => DType::Q8K,
    }
}

/// Whether lucid can multiply weights of type `w`.
pub fn can_multiply(w: DType) -> bool {
    !matches!(w, DType::Q8_1 | DType::Q8K)
}

/// Converts `x` (rows of `n` values) into `dtype`, the result of
/// [`dot_type`], writing `out` (rows of `dtype.row_bytes(n)` bytes).
pub fn quantize_rows(isa: Isa, dtype: DType, x: &[f32], n: usize, out: &mut [u8]) {
    quantize_rows_usable(isa.usable(), dtype, x, n, out);
}

/// [`quantize_rows`] for an `isa` that already went through
/// [`Isa::usable`] (the per-row calls of a matrix product, which lowers it
/// once).
pub(crate) fn quantize_rows_usable(isa: Isa, dtype: DType, x: &[f32], n: usize, out: &mut [u8]) {
    let row_bytes = dtype.row_bytes(n).unwrap_or(0);
    for (x, out) in x.chunks_exact(n).zip(out.chunks_exact_mut(row_bytes)) {
        match (isa, dtype) {
            #[cfg(x86_kernels)]
            // SAFETY: `isa` went through `Isa::usable`: the CPU has the features.
            (Isa::Avx2 | Isa::Avx512, DType::Q8_0) => unsafe {
                avx2::quantize_q8_0(x, bytemuck::cast_slice_mut(out))
            },
            #[cfg(x86_kernels)]
            (Isa::Avx2 | Isa::Avx512, DType::Q8_1) => unsafe {
                avx2::quantize_q8_1(x, bytemuck::cast_slice_mut(out))
            },
            #[cfg(x86_kernels)]
            (Isa::Avx2 | Isa::Avx512, DType::Q8K) => unsafe {
                avx2::quantize_q8k(x, bytemuck::cast_slice_mut(out))
            },
            _ => crate::quant::quantize_row(dtype, x, out),
        }
    }
}

/// Activation rows in the format of [`dot_type`]: `f32` values, or blocks.
#[derive(Clone, Copy, Debug)]
pub enum ActRows<'a> {
    F32 {
        data: &'a [f32],
        n: usize,
    },
    Blocks {
        dtype: DType,
        data: &'a [u8],
        row_bytes: usize,
    },
}

impl ActRows<'_> {
    pub fn n_rows(&self) -> usize {
        match *self {
            ActRows::F32 { data, n } => data.len() / n.max(1),
            ActRows::Blocks {
                data, row_bytes, ..
            } => data.len() / row_bytes.max(1),
        }
    }
}

/// `out[t] = dot(w_row, a[first + t])` for `t < out.len()` (at most 4),
/// where `w_row` is one row of `n` values of type `wtype`.
pub fn dot_rows(
    isa: Isa,
    wtype: DType,
    n: usize,
    w_row: &[u8],
    a: ActRows<'_>,
    first: usize,
    out: &mut [f32],
) {
    dot_rows_usable(isa.usable(), wtype, n, w_row, a, first, out);
}

/// [`dot_rows`] for an `isa` that already went through [`Isa::usable`]:
/// the matrix product's inner loop, which lowers it once per product.
pub(crate) fn dot_rows_usable(
    isa: Isa,
    wtype: DType,
    n: usize,
    w_row: &[u8],
    a: ActRows<'_>,
    first: usize,
    out: &mut [f32],
) {
    match out.len() {
        1 => dot_rows_nt::<1>(isa, wtype, n, w_row, a, first, out),
        2 => dot_rows_nt::<2>(isa, wtype, n, w_row, a, first, out),
        3 => dot_rows_nt::<3>(isa, wtype, n, w_row, a, first, out),
        4 => dot_rows_nt::<4>(isa, wtype, n, w_row, a, first, out),
        k => panic!("dot_rows takes 1 to 4 activation rows, not {k}"),
    }
}

/// How f32 weights are multiplied on an instruction set with vector
/// kernels: in packed panels of `rows` weight rows, `k`-major (value `k` of
/// every row together, [`pack_f32_panel`]), against up to `tokens` tokens
/// per kernel call ([`gemm_f32`]). Each lane of a register is then one
/// output, so no output ends in a horizontal sum, and each output is one
/// chain of fused multiply-adds in order ([`scalar::dot_f32_fused`]), the
/// same bits whatever the batch and on AVX2 and AVX-512 alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F32Panels {
    pub rows: usize,
    pub tokens: usize,
}

/// The most rows and tokens any instruction set's [`F32Panels`] has: the
/// size of a caller's buffers.
pub const F32_PANEL_MAX_ROWS: usize = 32;
pub const F32_PANEL_MAX_TOKENS: usize = 10;
#[cfg(x86_kernels)]
const _: () = assert!(
    avx512::F32_PANEL_ROWS <= F32_PANEL_MAX_ROWS && avx2::F32_PANEL_ROWS <= F32_PANEL_MAX_ROWS
);

/// The packed panels f32 weights use on `isa`, or `None` where weights of
/// type `wtype` go row by row (every other type, and the scalar reference).
pub fn f32_panels(isa: Isa, wtype: DType) -> Option<F32Panels> {
    match (isa.usable(), wtype) {
        #[cfg(x86_kernels)]
        (Isa::Avx512, DType::F32) => Some(F32Panels {
            rows: avx512::F32_PANEL_ROWS,
            tokens: F32_PANEL_MAX_TOKENS,
        }),
        #[cfg(x86_kernels)]
        (Isa::Avx2, DType::F32) => Some(F32Panels {
            rows: avx2::F32_PANEL_ROWS,
            tokens: 6,
        }),
        _ => None,
    }
}

/// Writes one panel of `panels.rows` rows to `out`: `out[k * rows + j]` is
/// value `k` of `rows[j]` (f32 as stored, `k_len` values), zero for `j`
/// past the rows given. Transposed in registers on the instruction sets
/// that pack; [`pack_f32_panel_reference`] says what it must give.
///
/// Panics if `panels` is not [`f32_panels`]`(isa, F32)`, or on rows
/// shorter than `k_len` or more than a panel.
pub fn pack_f32_panel(isa: Isa, panels: F32Panels, rows: &[&[u8]], k_len: usize, out: &mut [f32]) {
    assert_eq!(
        Some(panels),
        f32_panels(isa, DType::F32),
        "pack_f32_panel: not this ISA's panels"
    );
    assert!(
        rows.len() <= panels.rows,
        "pack_f32_panel: more rows than a panel"
    );
    let n_rows = rows.len();
    let rows: [&[f32]; F32_PANEL_MAX_ROWS] =
        std::array::from_fn(|j| rows.get(j).map_or(&[][..], |r| cast_slice(r)));
    let rows = &rows[..n_rows];
    assert!(
        rows.iter().all(|r| r.len() >= k_len),
        "pack_f32_panel: rows too short"
    );
    assert!(
        out.len() >= panels.rows * k_len,
        "pack_f32_panel: output too small"
    );
    let _panel = out;
    #[cfg(x86_kernels)]
    match isa.usable() {
        // SAFETY: the ISA is usable and the sizes were checked above.
        Isa::Avx512 => unsafe { avx512::pack_f32(rows, k_len, _panel) },
        Isa::Avx2 => unsafe { avx2::pack_f32(rows, k_len, _panel) },
        Isa::Scalar => unreachable!(),
    }
}

/// What [`pack_f32_panel`] writes, computed one value at a time.
pub fn pack_f32_panel_reference(rows: &[&[u8]], panel_rows: usize, k_len: usize, out: &mut [f32]) {
    let panel = &mut out[..panel_rows * k_len];
    panel.fill(0.0);
    for (j, row) in rows.iter().take(panel_rows).enumerate() {
        for (k, v) in row.chunks_exact(4).take(k_len).enumerate() {
            panel[k * panel_rows + j] = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        }
    }
}

/// `out[t * panels.rows + j] = dot(row j, token first + t)` for the rows of
/// one packed `panel` ([`pack_f32_panel`], `k_len` values a row) and `nt`
/// tokens (1 to `panels.tokens`) of f32 activations.
///
/// Panics if `panels` is not [`f32_panels`]`(isa, F32)`, or on sizes that
/// do not fit.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    isa: Isa,
    panels: F32Panels,
    panel: &[f32],
    k_len: usize,
    a: ActRows<'_>,
    first: usize,
    nt: usize,
    out: &mut [f32],
) {
    let ActRows::F32 { data, n } = a else {
        panic!("f32 weights need f32 activations");
    };
    assert_eq!(
        n, k_len,
        "gemm_f32: activation rows of {n}, weights of {k_len}"
    );
    assert!(
        (1..=panels.tokens).contains(&nt),
        "gemm_f32: 1 to {} tokens, not {nt}",
        panels.tokens
    );
    assert!(
        data.len() >= (first + nt) * n,
        "gemm_f32: too few activation rows"
    );
    assert!(
        panel.len() >= panels.rows * k_len,
        "gemm_f32: panel too short"
    );
    assert!(out.len() >= nt * panels.rows, "gemm_f32: output too small");
    assert_eq!(
        Some(panels),
        f32_panels(isa, DType::F32),
        "gemm_f32: not this ISA's panels"
    );
    let a = &data[first * n..];
    #[cfg(x86_kernels)]
    {
        macro_rules! call {
            ($isa:ident, $width:expr, $($t:literal)*) => {{
                let out: &mut [[f32; $width]] = bytemuck::cast_slice_mut(&mut out[..nt * $width]);
                match nt {
                    // SAFETY: the ISA is usable (`f32_panels` lowers it) and
                    // the sizes were checked above.
                    $($t => unsafe { $isa::gemm_f32::<$t>(panel, k_len, a, n, out) },)*
                    _ => unreachable!(),
                }
            }};
        }
        match isa.usable() {
            Isa::Avx512 => call!(avx512, 32, 1 2 3 4 5 6 7 8 9 10),
            Isa::Avx2 => call!(avx2, 16, 1 2 3 4 5 6),
            Isa::Scalar => unreachable!(),
        }
    }
    #[cfg(not(x86_kernels))]
    {
        let _ = (a, out);
        unreachable!("no packed panels without x86 kernels")
    }
}

fn f32_rows<'a, const NT: usize>(a: ActRows<'a>, first: usize) -> [&'a [f32]; NT] {
    match a {
        ActRows::F32 { data, n } => {
            std::array::from_fn(|t| &data[(first + t) * n..(first + t + 1) * n])
        }
        ActRows::Blocks { dtype, .. } => panic!("f32 weights need f32 activations, not {dtype}"),
    }
}

fn block_rows<'a, B: bytemuck::Pod, const NT: usize>(
    a: ActRows<'a>,
    first: usize,
) -> [&'a [B]; NT] {
    match a {
        ActRows::Blocks {
            data, row_bytes, ..
        } => std::array::from_fn(|t| {
            cast_slice(&data[(first + t) * row_bytes..(first + t + 1) * row_bytes])
        }),
        ActRows::F32 { .. } => panic!("quantized weights need quantized activations"),
    }
}

#[inline]
fn dot_rows_nt<const NT: usize>(
    isa: Isa,
    wtype: DType,
    n: usize,
    w: &[u8],
    a: ActRows<'_>,
    first: usize,
    out: &mut [f32],
) {
    #[cfg(x86_kernels)]
    if isa.has_avx2() {
        // SAFETY: these ISAs are only chosen when the CPU has the features.
        unsafe {
            match wtype {
                DType::F32 => return avx2::dot_f32::<NT>(cast_slice(w), f32_rows(a, first), out),
                DType::F16 => return avx2::dot_f16::<NT>(cast_slice(w), f32_rows(a, first), out),
                DType::BF16 => return avx2::dot_bf16::<NT>(cast_slice(w), f32_rows(a, first), out),
                DType::Q4_0 => {
                    return avx2::dot_q4_0::<NT>(cast_slice(w), block_rows(a, first), out);
                }
                DType::Q4_1 => {
                    return avx2::dot_q4_1::<NT>(cast_slice(w), block_rows(a, first), out);
                }
                DType::Q5_0 => {
                    return avx2::dot_q5_0::<NT>(cast_slice(w), block_rows(a, first), out);
                }
                DType::Q5_1 => {
                    return avx2::dot_q5_1::<NT>(cast_slice(w), block_rows(a, first), out);
                }
                DType::Q8_0 => {
                    return avx2::dot_q8_0::<NT>(cast_slice(w), block_rows(a, first), out);
                }
                DType::Q2K => return avx2::dot_q2k::<NT>(cast_slice(w), block_rows(a, first), out),
                DType::Q3K => return avx2::dot_q3k::<NT>(cast_slice(w), block_rows(a, first), out),
                DType::Q4K => return avx2::dot_q4k::<NT>(cast_slice(w), block_rows(a, first), out),
                DType::Q5K => return avx2::dot_q5k::<NT>(cast_slice(w), block_rows(a, first), out),
                DType::Q6K => return avx2::dot_q6k::<NT>(cast_slice(w), block_rows(a, first), out),
                DType::IQ4NL => {
                    return avx2::dot_iq4nl::<NT>(cast_slice(w), block_rows(a, first), out);
                }
                DType::IQ4XS => {
                    return avx2::dot_iq4xs::<NT>(cast_slice(w), block_rows(a, first), out);
                }
                _ => {}
            }
        }
    }
    let _ = isa;
    for (t, o) in out.iter_mut().enumerate().take(NT) {
        *o = dot_scalar(wtype, n, w, a, first + t);
    }
}

/// The reference dot product of a weight row with activation row `t`.
pub fn dot_scalar(wtype: DType, _n: usize, w: &[u8], a: ActRows<'_>, t: usize) -> f32 {
    match wtype {
        DType::F32 => {
            let [a] = f32_rows::<1>(a, t);
            w.chunks_exact(4)
                .zip(a)
                .map(|(w, a)| f32::from_le_bytes([w[0], w[1], w[2], w[3]]) * a)
                .sum()
        }
        DType::F16 => {
            let [a] = f32_rows::<1>(a, t);
            w.chunks_exact(2)
                .zip(a)
                .map(|(w, a)| half::f16::from_le_bytes([w[0], w[1]]).to_f32() * a)
                .sum()
        }
        DType::BF16 => {
            let [a] = f32_rows::<1>(a, t);
            w.chunks_exact(2)
                .zip(a)
                .map(|(w, a)| half::bf16::from_le_bytes([w[0], w[1]]).to_f32() * a)
                .sum()
        }
        DType::Q4_0 => scalar::dot_q4_0_q8_0(cast_slice(w), block_rows::<BlockQ8_0, 1>(a, t)[0]),
        DType::Q4_1 => scalar::dot_q4_1_q8_1(cast_slice(w), block_rows::<BlockQ8_1, 1>(a, t)[0]),
        DType::Q5_0 => scalar::dot_q5_0_q8_0(cast_slice(w), block_rows::<BlockQ8_0, 1>(a, t)[0]),
        DType::Q5_1 => scalar::dot_q5_1_q8_1(cast_slice(w), block_rows::<BlockQ8_1, 1>(a, t)[0]),
        DType::Q8_0 => scalar::dot_q8_0_q8_0(cast_slice(w), block_rows::<BlockQ8_0, 1>(a, t)[0]),
        DType::Q2K => scalar::dot_q2k_q8k(cast_slice(w), block_rows::<BlockQ8K, 1>(a, t)[0]),
        DType::Q3K => scalar::dot_q3k_q8k(cast_slice(w), block_rows::<BlockQ8K, 1>(a, t)[0]),
        DType::Q4K => scalar::dot_q4k_q8k(cast_slice(w), block_rows::<BlockQ8K, 1>(a, t)[0]),
        DType::Q5K => scalar::dot_q5k_q8k(cast_slice(w), block_rows::<BlockQ8K, 1>(a, t)[0]),
        DType::Q6K => scalar::dot_q6k_q8k(cast_slice(w), block_rows::<BlockQ8K, 1>(a, t)[0]),
        DType::IQ4NL => scalar::dot_iq4nl_q8_0(cast_slice(w), block_rows::<BlockQ8_0, 1>(a, t)[0]),
        DType::IQ4XS => scalar::dot_iq4xs_q8k(cast_slice(w), block_rows::<BlockQ8K, 1>(a, t)[0]),
        DType::Q8_1 | DType::Q8K => panic!("{wtype} is an activation format, not a weight format"),
    }
}

/// How far ahead of the weights being read the matrix products prefetch.
/// Decoding streams every weight from memory once per token; the hardware
/// prefetcher alone keeps too few lines in flight for one core to reach the
/// memory's bandwidth (about 11 GB/s instead of 30 on the development
/// machine, `examples/kernel_bench.rs`). A matrix's rows are contiguous and
/// a thread works through a contiguous range of them (see
/// [`crate::matmuls`]), so 12 KiB ahead is, but near the range's end, what
/// the thread reads next.
pub const PREFETCH_BYTES: usize = 12 * 1024;

/// Asks for the cache line at `at`; nothing off x86-64.
#[inline(always)]
pub fn prefetch_line<T>(at: *const T) {
    #[cfg(x86_kernels)]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint with no architectural effect: it
        // faults on no address, mapped or not.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>()) };
    }
    #[cfg(not(x86_kernels))]
    let _ = at;
}

/// Asks for the cache line [`PREFETCH_BYTES`] past `at`; nothing off x86-64.
#[inline(always)]
pub fn prefetch_ahead<T>(at: *const T) {
    #[cfg(x86_kernels)]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let ahead = at.cast::<i8>().wrapping_add(PREFETCH_BYTES);
        // SAFETY: a prefetch is a hint with no architectural effect: it
        // faults on no address, mapped or not.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead) };
    }
    #[cfg(not(x86_kernels))]
    let _ = at;
}

/// Whether [`tile`] handles weights of type `w` with `isa` for a product
/// with `n_tokens` activation rows. The k-quant tiles pay off only with
/// several rows; for one, the AVX2 kernels are faster. IQ4_XS's pay off only
/// over rows unpacked once ([`PreparedRows`]) for more than two tiles of
/// tokens, unpacking its blocks into 16-bit products being costly
/// (`examples/kernel_bench.rs`, one thread, matrix in cache: AVX2 is about 8%
/// faster with 8 tokens, the tiles 8% faster with 16 and 25 to 40% with 32
/// to 128).
pub fn has_tiles(isa: Isa, w: DType, n_tokens: usize) -> bool {
    isa.usable() == Isa::Avx512
        && match w {
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q8_0 | DType::IQ4NL => true,
            DType::Q4K | DType::Q6K => n_tokens > 1,
            DType::IQ4XS => n_tokens > 8,
            _ => false,
        }
}

/// Activations split for the AVX-512 tiles: 32-value blocks or k-quant blocks.
#[cfg(x86_kernels)]
#[derive(Debug, Default)]
pub struct TileActs {
    pub blocks: avx512::SplitActs,
    pub k: avx512::SplitActsK,
}

/// Runs tile kernel `$kernel` on `$r4` (four rows, else one) rows given by
/// `$w(k)` and `$nt` (1 to 4) activation rows given by `$a(t)`.
#[cfg(x86_kernels)]
macro_rules! run_tile {
    ($kernel:ident, $r4:expr, $nt:expr, $w:expr, $a:expr, $out:expr) => {{
        let (w, a) = ($w, $a);
        // SAFETY: only reached after `Isa::usable` (or the assert in `tile`)
        // said the CPU has AVX-512 VNNI.
        unsafe {
            match ($r4, $nt) {
                (true, 1) => avx512::$kernel::<4, 1>([w(0), w(1), w(2), w(3)], [a(0)], $out),
                (true, 2) => avx512::$kernel::<4, 2>([w(0), w(1), w(2), w(3)], [a(0), a(1)], $out),
                (true, 3) => {
                    avx512::$kernel::<4, 3>([w(0), w(1), w(2), w(3)], [a(0), a(1), a(2)], $out)
                }
                (true, _) => avx512::$kernel::<4, 4>(
                    [w(0), w(1), w(2), w(3)],
                    [a(0), a(1), a(2), a(3)],
                    $out,
                ),
                (false, 1) => avx512::$kernel::<1, 1>([w(0)], [a(0)], $out),
                (false, 2) => avx512::$kernel::<1, 2>([w(0)], [a(0), a(1)], $out),
                (false, 3) => avx512::$kernel::<1, 3>([w(0)], [a(0), a(1), a(2)], $out),
                (false, _) => avx512::$kernel::<1, 4>([w(0)], [a(0), a(1), a(2), a(3)], $out),
            }
        }
    }};
}

/// `out[r][t] = dot(rows[r], acts row first + t)` for `rows.len()` (1 or 4)
/// weight rows and `nt` (1 to 4) activation rows, with the AVX-512 kernels.
/// Only for types where [`has_tiles`] holds.
#[cfg(x86_kernels)]
pub fn tile(
    wtype: DType,
    rows: &[&[u8]],
    acts: &TileActs,
    first: usize,
    nt: usize,
    out: &mut [[f32; 4]; 4],
) {
    assert!(
        Isa::Avx512.usable() == Isa::Avx512,
        "AVX-512 VNNI tiles on a CPU without them"
    );
    let r4 = rows.len() == 4;
    macro_rules! go {
        ($kernel:ident, $block:ty, $acts:expr) => {
            run_tile!(
                $kernel,
                r4,
                nt,
                |k: usize| -> &[$block] { cast_slice(rows[k.min(rows.len() - 1)]) },
                |t: usize| $acts.row(first + t.min(nt - 1)),
                out
            )
        };
    }
    match wtype {
        DType::Q4_0 => go!(tile_q4_0, BlockQ4_0, acts.blocks),
        DType::Q4_1 => go!(tile_q4_1, BlockQ4_1, acts.blocks),
        DType::Q5_0 => go!(tile_q5_0, BlockQ5_0, acts.blocks),
        DType::Q8_0 => go!(tile_q8_0, BlockQ8_0, acts.blocks),
        DType::IQ4NL => go!(tile_iq4nl, BlockIQ4NL, acts.blocks),
        DType::Q4K => go!(tile_q4k, BlockQ4K, acts.k),
        DType::Q6K => go!(tile_q6k, BlockQ6K, acts.k),
        DType::IQ4XS => go!(tile_iq4xs, BlockIQ4XS, acts.k),
        other => panic!("no AVX-512 tile kernel for {other}"),
    }
}

/// Weight rows unpacked once for the AVX-512 tiles, for a product with many
/// tokens: [`tile`] unpacks a row's blocks again for every four tokens,
/// which in a long prompt's products costs about as much as the
/// multiplications.
#[cfg(x86_kernels)]
#[derive(Default)]
pub struct PreparedRows {
    dtype: Option<DType>,
    /// 32-value block types: pairs of blocks.
    pairs: Vec<avx512::WPair>,
    /// k-quants: blocks.
    kblocks: Vec<avx512::KBlock>,
    /// IQ4_XS: blocks.
    xs: Vec<avx512::XsBlock>,
    per_row: usize,
    rows: usize,
}

#[cfg(x86_kernels)]
impl std::fmt::Debug for PreparedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRows")
            .field("dtype", &self.dtype)
            .field("rows", &self.rows)
            .finish()
    }
}

#[cfg(x86_kernels)]
impl PreparedRows {
    /// Whether weights of type `w` can be prepared.
    pub fn supports(w: DType) -> bool {
        matches!(
            w,
            DType::Q4_0
                | DType::Q4_1
                | DType::Q5_0
                | DType::Q8_0
                | DType::IQ4NL
                | DType::Q4K
                | DType::Q6K
                | DType::IQ4XS
        )
    }

    /// Unpacks `rows` (1 or 4, each a row of `wtype` blocks), replacing what
    /// was held. Only for the CPU with AVX-512 VNNI and the types
    /// [`PreparedRows::supports`].
    pub fn prepare(&mut self, wtype: DType, rows: &[&[u8]]) {
        assert!(
            is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw"),
            "AVX-512 VNNI tiles on a CPU without them"
        );
        self.pairs.clear();
        self.kblocks.clear();
        self.xs.clear();
        self.dtype = Some(wtype);
        self.rows = rows.len();
        for row in rows {
            // SAFETY: the CPU has the features (asserted above; std caches
            // the detection).
            unsafe {
                match wtype {
                    DType::Q4_0 => avx512::prepare_q4_0(cast_slice(row), &mut self.pairs),
                    DType::Q4_1 => avx512::prepare_q4_1(cast_slice(row), &mut self.pairs),
                    DType::Q5_0 => avx512::prepare_q5_0(cast_slice(row), &mut self.pairs),
                    DType::Q8_0 => avx512::prepare_q8_0(cast_slice(row), &mut self.pairs),
                    DType::IQ4NL => avx512::prepare_iq4nl(cast_slice(row), &mut self.pairs),
                    DType::Q4K => avx512::prepare_q4k(cast_slice(row), &mut self.kblocks),
                    DType::Q6K => avx512::prepare_q6k(cast_slice(row), &mut self.kblocks),
                    DType::IQ4XS => avx512::prepare_iq4xs(cast_slice(row), &mut self.xs),
                    other => panic!("no prepared AVX-512 tiles for {other}"),
                }
            }
        }
        // Only one of the three holds anything.
        self.per_row = (self.pairs.len() + self.kblocks.len() + self.xs.len()) / rows.len().max(1);
    }

    fn row<'a, X>(&self, items: &'a [X], k: usize) -> &'a [X] {
        let k = k.min(self.rows - 1);
        &items[k * self.per_row..(k + 1) * self.per_row]
    }

    /// [`tile`] on the prepared rows: the same results to the last bit.
    pub fn tile(&self, acts: &TileActs, first: usize, nt: usize, out: &mut [[f32; 4]; 4]) {
        let r4 = self.rows == 4;
        let w = |k: usize| self.row(&self.pairs, k);
        let a = |t: usize| acts.blocks.row(first + t.min(nt - 1));
        let wk = |k: usize| self.row(&self.kblocks, k);
        let wx = |k: usize| self.row(&self.xs, k);
        let ak = |t: usize| acts.k.row(first + t.min(nt - 1));
        match self.dtype {
            Some(DType::Q4_0) => run_tile!(tile_q4_0_prepared, r4, nt, w, a, out),
            Some(DType::Q4_1) => run_tile!(tile_q4_1_prepared, r4, nt, w, a, out),
            Some(DType::Q5_0) => run_tile!(tile_q5_0_prepared, r4, nt, w, a, out),
            Some(DType::Q8_0) => run_tile!(tile_q8_0_prepared, r4, nt, w, a, out),
            Some(DType::IQ4NL) => run_tile!(tile_iq4nl_prepared, r4, nt, w, a, out),
            Some(DType::Q4K) => run_tile!(tile_q4k_prepared, r4, nt, wk, ak, out),
            Some(DType::Q6K) => run_tile!(tile_q6k_prepared, r4, nt, wk, ak, out),
            Some(DType::IQ4XS) => run_tile!(tile_iq4xs_prepared, r4, nt, wx, ak, out),
            other => panic!("no prepared AVX-512 tiles for {other:?}"),
        }
    }
}
