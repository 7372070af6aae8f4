//! lucid's dequantization against llama.cpp's, bit for bit: random blocks of
//! every type lucid reads as weights, with the values gguf-py's
//! `gguf.quants.dequantize` made of them
//! (`scripts/goldens/quants/make_dequant_goldens.py`, which follows
//! ggml-quants.c operation for operation in float32).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use lucid_tensor::DType;
use lucid_tensor::quant::dequantize_row;

/// One golden file: a row of `dtype` and what gguf-py made of it.
struct Golden {
    dtype: DType,
    row: Vec<u8>,
    values: Vec<f32>,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/goldens/quants")
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Reads `<TYPE>.bin`: `b"LQDG"`, version 1, the ggml type id, the number of
/// values, the number of row bytes, the row, then one f32 per value.
fn golden(dtype: DType) -> Golden {
    let path = golden_dir().join(format!("{}.bin", dtype.name()));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..4], b"LQDG", "{}: not a golden", path.display());
    assert_eq!(u32_at(&bytes, 4), 1, "{}: format version", path.display());
    assert_eq!(
        u32_at(&bytes, 8),
        dtype.ggml_id(),
        "{}: type",
        path.display()
    );
    let n = u32_at(&bytes, 12) as usize;
    let row_bytes = u32_at(&bytes, 16) as usize;
    assert_eq!(dtype.row_bytes(n), Some(row_bytes), "{dtype}: row size");
    let body = &bytes[20..];
    assert_eq!(body.len(), row_bytes + 4 * n, "{}: length", path.display());
    let (row, values) = body.split_at(row_bytes);
    Golden {
        dtype,
        row: row.to_vec(),
        values: values
            .chunks_exact(4)
            .map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
            .collect(),
    }
}

/// Every type lucid reads but its activation formats, which llama.cpp never
/// stores in a model file and gguf-py cannot dequantize.
fn golden_types() -> impl Iterator<Item = DType> {
    DType::ALL
        .into_iter()
        .filter(|t| !matches!(t, DType::Q8_1 | DType::Q8K))
}

/// The index of the first value whose bits differ, with a message naming the
/// type, the value and its block.
fn first_difference(g: &Golden, got: &[f32]) -> Option<String> {
    let i = got
        .iter()
        .zip(&g.values)
        .position(|(a, b)| a.to_bits() != b.to_bits())?;
    Some(format!(
        "{}: value {i} (block {}) is {:e} ({:#010x}) in lucid, {:e} ({:#010x}) in gguf-py",
        g.dtype,
        i / g.dtype.block_len(),
        got[i],
        got[i].to_bits(),
        g.values[i],
        g.values[i].to_bits()
    ))
}

#[test]
fn dequantization_matches_gguf_py_bit_for_bit() {
    let mut failures = Vec::new();
    for dtype in golden_types() {
        let g = golden(dtype);
        assert!(!g.values.is_empty(), "{dtype}: empty golden");
        let mut got = vec![f32::NAN; g.values.len()];
        dequantize_row(dtype, &g.row, &mut got);
        failures.extend(first_difference(&g, &got));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// There is one golden per type, and each can catch a mistake: no value is
/// NaN or infinite (a NaN's payload would make a bit comparison say more
/// about the platform than about the arithmetic), and the values are not
/// all alike.
#[test]
fn goldens_are_finite_and_cover_every_type() {
    let mut files: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    files.sort();
    let mut expect: Vec<String> = golden_types().map(|t| format!("{t}.bin")).collect();
    expect.sort();
    assert_eq!(files, expect, "one golden per type lucid reads");
    for dtype in golden_types() {
        let g = golden(dtype);
        assert!(
            g.values.iter().all(|v| v.is_finite()),
            "{dtype}: a value is not finite"
        );
        // Random blocks take every index: the values are not all alike.
        let distinct: std::collections::BTreeSet<u32> =
            g.values.iter().map(|v| v.to_bits()).collect();
        assert!(
            distinct.len() > 16,
            "{dtype}: {} distinct values",
            distinct.len()
        );
    }
}
