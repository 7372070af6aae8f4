//! One tester for every weight type: each instruction set's kernels against
//! the scalar reference, and the reference against plain f32 arithmetic on
//! the dequantized values, on random data.

#![allow(clippy::unwrap_used)]

use lucid_tensor::blocks::f16_bytes;
use lucid_tensor::kernels::{self, ActRows, Isa, dot_type};
use lucid_tensor::quant::{can_quantize, dequantize_row, quantize_row};
use lucid_tensor::{Activations, DType, ThreadPool, WeightMatrix, matmul};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every weight type lucid multiplies: every type it knows but the
/// activation formats, so that a type added to `DType` is tested here
/// without being named.
fn weight_types() -> impl Iterator<Item = DType> {
    DType::ALL.into_iter().filter(|t| kernels::can_multiply(*t))
}

#[test]
fn the_weight_types_tested_are_every_readable_type_but_the_activation_formats() {
    let tested: Vec<DType> = weight_types().collect();
    assert_eq!(tested.len(), DType::ALL.len() - 2);
    assert!(tested.contains(&DType::IQ4NL) && tested.contains(&DType::IQ4XS));
    assert!(!tested.contains(&DType::Q8_1) && !tested.contains(&DType::Q8K));
}

fn random_f32(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A random row of `n` values of `dtype`: quantized from random floats where
/// lucid can write the type, else random bits with sane scales.
fn random_row(rng: &mut StdRng, dtype: DType, n: usize) -> Vec<u8> {
    let mut row = vec![0u8; dtype.row_bytes(n).unwrap()];
    if can_quantize(dtype) {
        quantize_row(dtype, &random_f32(rng, n), &mut row);
        return row;
    }
    rng.fill(&mut row[..]);
    // Overwrite the f16 scales with small finite values.
    let scale_offsets: &[usize] = match dtype {
        DType::Q2K => &[80, 82],
        DType::Q3K => &[108],
        DType::Q5K => &[0, 2],
        DType::Q6K => &[208],
        DType::IQ4NL | DType::IQ4XS => &[0],
        _ => unreachable!(),
    };
    for block in row.chunks_exact_mut(dtype.block_bytes()) {
        for &o in scale_offsets {
            let v = rng.random_range(0.001f32..0.05);
            block[o..o + 2].copy_from_slice(&f16_bytes(v));
        }
    }
    row
}

fn prepare(isa: Isa, wtype: DType, x: &[f32], n: usize) -> Activations {
    let mut a = Activations::new();
    a.prepare(isa, wtype, x, n);
    a
}

#[test]
fn every_isa_matches_the_scalar_reference() {
    let mut rng = StdRng::seed_from_u64(7);
    for wtype in weight_types() {
        let n = 1024;
        let w = random_row(&mut rng, wtype, n);
        let x = random_f32(&mut rng, 4 * n);
        let reference_acts = prepare(Isa::Scalar, wtype, &x, n);
        let expect: Vec<f32> = (0..4)
            .map(|t| kernels::dot_scalar(wtype, n, &w, reference_acts.rows(), t))
            .collect();
        for isa in Isa::available() {
            // Activations quantized by this ISA must equal the reference's.
            let acts = prepare(isa, wtype, &x, n);
            match (acts.rows(), reference_acts.rows()) {
                (ActRows::Blocks { data: a, .. }, ActRows::Blocks { data: b, .. }) => {
                    assert_eq!(a, b, "{wtype} activations quantized by {}", isa.name())
                }
                (ActRows::F32 { data: a, .. }, ActRows::F32 { data: b, .. }) => assert_eq!(a, b),
                _ => panic!("activation formats differ"),
            }
            for nt in 1..=4 {
                let mut out = vec![0f32; nt];
                kernels::dot_rows(isa, wtype, n, &w, acts.rows(), 4 - nt, &mut out);
                for (k, got) in out.iter().enumerate() {
                    let want = expect[4 - nt + k];
                    let tol = 1e-4 * (1.0 + want.abs());
                    assert!(
                        (got - want).abs() <= tol,
                        "{wtype} on {} with {nt} rows: {got} vs {want}",
                        isa.name()
                    );
                }
            }
        }
    }
}

#[test]
fn reference_dot_matches_f32_arithmetic_on_dequantized_values() {
    let mut rng = StdRng::seed_from_u64(11);
    for wtype in weight_types() {
        let n = 512;
        let w = random_row(&mut rng, wtype, n);
        let x = random_f32(&mut rng, n);
        let acts = prepare(Isa::Scalar, wtype, &x, n);
        let got = kernels::dot_scalar(wtype, n, &w, acts.rows(), 0);
        // The exact answer for these activations once quantized.
        let mut wf = vec![0f32; n];
        dequantize_row(wtype, &w, &mut wf);
        let mut af = vec![0f32; n];
        match acts.rows() {
            ActRows::Blocks { dtype, data, .. } => dequantize_row(dtype, data, &mut af),
            ActRows::F32 { data, .. } => af.copy_from_slice(data),
        }
        let want: f64 = wf.iter().zip(&af).map(|(a, b)| *a as f64 * *b as f64).sum();
        let scale: f64 = wf
            .iter()
            .zip(&af)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum();
        let err = (got as f64 - want).abs();
        // Q8_1's stored sum is a half, which limits the precision of the
        // min term for Q4_1 and Q5_1.
        let tol = 1e-3 * scale.max(1.0);
        assert!(
            err <= tol,
            "{wtype}: {got} vs {want} (error {err}, tolerance {tol})"
        );
        // And the quantized product is close to the unquantized one.
        let exact: f64 = wf.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (got as f64 - exact).abs() <= 0.02 * scale.max(1.0),
            "{wtype}: {got} vs unquantized {exact}"
        );
    }
}

#[test]
fn matmul_on_the_pool_matches_row_by_row_dots() {
    let mut rng = StdRng::seed_from_u64(3);
    let pool = ThreadPool::new(3);
    for wtype in weight_types() {
        let (rows, cols) = (37, 256);
        let data: Vec<u8> = (0..rows)
            .flat_map(|_| random_row(&mut rng, wtype, cols))
            .collect();
        let w = WeightMatrix {
            dtype: wtype,
            rows,
            cols,
            data: &data,
        };
        // One token (decode), a tile and a row of prepared rows, and enough
        // tokens for every type's tiles (IQ4_XS's start above 8).
        for n_tokens in [1, 5, 9] {
            let x = random_f32(&mut rng, n_tokens * cols);
            for isa in Isa::available() {
                let acts = prepare(isa, wtype, &x, cols);
                let mut y = vec![0f32; n_tokens * rows];
                matmul(&pool, isa, w, &acts, &mut y);
                for t in 0..n_tokens {
                    for r in 0..rows {
                        let want = kernels::dot_scalar(wtype, cols, w.row(r), acts.rows(), t);
                        let got = y[t * rows + r];
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{wtype} {t},{r}"
                        );
                    }
                }
            }
        }
    }
}

/// f32 weights run in packed panels on AVX2 and AVX-512 (32 or 16 rows,
/// up to 10 or 6 tokens a kernel call, tokens in blocks of 64): every output
/// must be the fused reference's bits (one multiply-add per value, in
/// order), whatever the number of tokens and rows it was computed with, on
/// both instruction sets alike; the scalar instruction set gives its own
/// reference. A row count that is no multiple of the panel and a row length
/// that is no multiple of the vector width exercise the tails; a bias is
/// added to the product's very bits.
#[test]
fn f32_weights_give_the_fused_references_bits_whatever_the_batch() {
    let mut rng = StdRng::seed_from_u64(11);
    let pool = ThreadPool::new(2);
    let (rows, cols) = (37, 100);
    let data: Vec<u8> = (0..rows)
        .flat_map(|_| random_row(&mut rng, DType::F32, cols))
        .collect();
    let weights: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let w = WeightMatrix {
        dtype: DType::F32,
        rows,
        cols,
        data: &data,
    };
    let bias = random_f32(&mut rng, rows);
    for n_tokens in [1, 3, 13, 70] {
        let x = random_f32(&mut rng, n_tokens * cols);
        for isa in Isa::available() {
            let packed = kernels::f32_panels(isa, DType::F32).is_some();
            assert_eq!(packed, isa != Isa::Scalar, "{}", isa.name());
            let acts = prepare(isa, DType::F32, &x, cols);
            let mut y = vec![0f32; n_tokens * rows];
            matmul(&pool, isa, w, &acts, &mut y);
            let mut yb = vec![0f32; n_tokens * rows];
            lucid_tensor::matmuls(
                &pool,
                isa,
                &mut [lucid_tensor::MatmulJob {
                    w,
                    x: &acts,
                    out: &mut yb,
                    bias: Some(&bias),
                }],
            );
            for t in 0..n_tokens {
                let xt = &x[t * cols..(t + 1) * cols];
                for r in 0..rows {
                    let got = y[t * rows + r];
                    let scalar = kernels::dot_scalar(DType::F32, cols, w.row(r), acts.rows(), t);
                    let want = if packed {
                        kernels::scalar::dot_f32_fused(&weights[r * cols..(r + 1) * cols], xt)
                    } else {
                        scalar
                    };
                    let at = format!("{} tokens={n_tokens} ({t}, {r})", isa.name());
                    assert_eq!(got.to_bits(), want.to_bits(), "{at}");
                    assert!((got - scalar).abs() <= 1e-4 * (1.0 + scalar.abs()), "{at}");
                    let with_bias = yb[t * rows + r];
                    assert_eq!(with_bias.to_bits(), (got + bias[r]).to_bits(), "{at}");
                }
            }
        }
    }
}

/// Panels packed by register transposes hold what the one-value-at-a-time
/// reference writes: full and partial panels, row lengths with and without
/// a tail, over a buffer that held something else before.
#[test]
fn f32_panels_pack_as_the_reference_does() {
    let mut rng = StdRng::seed_from_u64(12);
    for isa in Isa::available() {
        let Some(panels) = kernels::f32_panels(isa, DType::F32) else {
            continue;
        };
        for k_len in [16, 40, 100] {
            for n_rows in [1, 7, panels.rows / 2 + 1, panels.rows] {
                let rows: Vec<Vec<u8>> = (0..n_rows)
                    .map(|_| random_row(&mut rng, DType::F32, k_len))
                    .collect();
                let refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
                let mut got = vec![f32::NAN; panels.rows * k_len];
                kernels::pack_f32_panel(isa, panels, &refs, k_len, &mut got);
                let mut want = vec![f32::NAN; panels.rows * k_len];
                kernels::pack_f32_panel_reference(&refs, panels.rows, k_len, &mut want);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{} k={k_len} rows={n_rows}",
                    isa.name()
                );
            }
        }
    }
}

#[test]
fn dot_types_are_what_llama_cpp_uses() {
    assert_eq!(dot_type(DType::Q4_1), DType::Q8_1);
    assert_eq!(dot_type(DType::Q5_0), DType::Q8_0);
    assert_eq!(dot_type(DType::Q6K), DType::Q8K);
    assert_eq!(dot_type(DType::F16), DType::F32);
    // ggml's type traits: IQ4_NL's vec_dot_type is Q8_0, IQ4_XS's Q8_K.
    assert_eq!(dot_type(DType::IQ4NL), DType::Q8_0);
    assert_eq!(dot_type(DType::IQ4XS), DType::Q8K);
}

#[cfg(x86_kernels)]
#[test]
fn avx512_tiles_match_the_scalar_reference() {
    if !Isa::available().contains(&Isa::Avx512) {
        eprintln!("this CPU (or LUCID_ISA) rules out AVX-512 VNNI: nothing to test");
        return;
    }
    let mut rng = StdRng::seed_from_u64(5);
    for wtype in [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q8_0,
        DType::IQ4NL,
        DType::Q4K,
        DType::Q6K,
        DType::IQ4XS,
    ] {
        assert!(kernels::has_tiles(Isa::Avx512, wtype, 16));
        // An odd number of blocks exercises the single-block tail.
        let sizes = if wtype.block_len() == 256 {
            [256, 1024]
        } else {
            [32 * 7, 1024]
        };
        for n in sizes {
            let rows: Vec<Vec<u8>> = (0..4).map(|_| random_row(&mut rng, wtype, n)).collect();
            let x = random_f32(&mut rng, 4 * n);
            let acts = prepare(Isa::Avx512, wtype, &x, n);
            let reference = prepare(Isa::Scalar, wtype, &x, n);
            let mut split = kernels::TileActs::default();
            match acts.rows() {
                ActRows::Blocks {
                    data,
                    dtype: DType::Q8K,
                    ..
                } => split.k.fill(data, n),
                ActRows::Blocks { data, dtype, .. } => {
                    split.blocks.fill(data, n, dtype == DType::Q8_1)
                }
                ActRows::F32 { .. } => unreachable!(),
            }
            for nr in [1, 4] {
                for nt in 1..=4 {
                    let refs: Vec<&[u8]> = rows[..nr].iter().map(Vec::as_slice).collect();
                    let mut out = [[0f32; 4]; 4];
                    kernels::tile(wtype, &refs, &split, 4 - nt, nt, &mut out);
                    if kernels::PreparedRows::supports(wtype) {
                        // Rows unpacked once give the same bits.
                        let mut prepared = kernels::PreparedRows::default();
                        prepared.prepare(wtype, &refs);
                        let mut again = [[0f32; 4]; 4];
                        prepared.tile(&split, 4 - nt, nt, &mut again);
                        for r in 0..nr {
                            for t in 0..nt {
                                assert_eq!(
                                    again[r][t].to_bits(),
                                    out[r][t].to_bits(),
                                    "{wtype} n={n} prepared tile {nr}x{nt} [{r}][{t}]"
                                );
                            }
                        }
                    }
                    for r in 0..nr {
                        for t in 0..nt {
                            let want = kernels::dot_scalar(
                                wtype,
                                n,
                                &rows[r],
                                reference.rows(),
                                4 - nt + t,
                            );
                            let got = out[r][t];
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{wtype} n={n} tile {nr}x{nt} [{r}][{t}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn instruction_sets_are_named_and_ordered() {
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
        assert_eq!(Isa::from_name(&isa.name().to_uppercase()), Some(isa));
    }
    assert_eq!(Isa::from_name("avx512"), Some(Isa::Avx512));
    assert_eq!(Isa::from_name("sse2"), None);
    let available = Isa::available();
    assert_eq!(available[0], Isa::Scalar);
    assert!(available.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(available.last().copied(), Some(Isa::current()));
    assert!(Isa::current() <= Isa::best());
    eprintln!(
        "kernels on this CPU: {}; this process uses {}",
        available
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(", "),
        Isa::current().name()
    );
}

/// Asking for an instruction set the CPU lacks runs the best it has: safe
/// code cannot reach an illegal instruction through an `Isa` value.
#[test]
fn an_isa_the_cpu_lacks_is_lowered_to_what_it_has() {
    let best = Isa::best();
    assert_eq!(Isa::Avx512.usable(), best);
    assert_eq!(Isa::Avx2.usable(), Isa::Avx2.min(best));
    assert_eq!(Isa::Scalar.usable(), Isa::Scalar);
    // And the kernels asked for the top one agree with the scalar ones.
    let n = 256;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut top = vec![0u8; DType::Q8_0.row_bytes(n).unwrap()];
    let mut scalar = top.clone();
    kernels::quantize_rows(Isa::Avx512, DType::Q8_0, &x, n, &mut top);
    kernels::quantize_rows(Isa::Scalar, DType::Q8_0, &x, n, &mut scalar);
    assert_eq!(top, scalar);
}
