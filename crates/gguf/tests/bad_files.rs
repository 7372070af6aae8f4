//! Truncated, corrupt and hostile files: each gives the right error, naming
//! what is wrong and where, and none panics or allocates what the file
//! cannot hold.

mod common;

use common::{Raw, small_file};
use lucid_gguf::{Bytes, DType, FormatError, GgufError, GgufFile};

/// Parses `raw`, which must fail with a format error; returns its problem,
/// offset and full message.
fn fail(raw: &Raw) -> (FormatError, u64, String) {
    match raw.parse() {
        Ok(f) => panic!("parsed a bad file: {f:?}"),
        Err(err @ GgufError::Format { .. }) => {
            let message = err.to_string();
            let GgufError::Format {
                problem, offset, ..
            } = err
            else {
                unreachable!()
            };
            (problem, offset, message)
        }
        Err(err) => panic!("not a format error: {err}"),
    }
}

/// Checks that `raw` fails with exactly `message`.
fn check(raw: Raw, message: &str) -> FormatError {
    let (problem, _, actual) = fail(&raw);
    assert_eq!(actual, message);
    problem
}

const HUGE: u64 = 1 << 60;

#[test]
fn empty_and_short_files() {
    check(
        Raw::default(),
        "in-memory GGUF: header: magic needs 4 bytes but only 0 are left in the file (at byte 0)",
    );
    check(
        Raw::default().bytes(b"GGUF\x03\x00"),
        "in-memory GGUF: header: version needs 4 bytes but only 2 are left in the file (at byte 4)",
    );
}

#[test]
fn wrong_magic() {
    let p = check(
        Raw::default().bytes(b"GGML").u32(3).u64(0).u64(0),
        "in-memory GGUF: header: not a GGUF file: it starts with [47, 47, 4d, 4c], not the magic \"GGUF\" (at byte 0)",
    );
    assert_eq!(p, FormatError::BadMagic { found: *b"GGML" });
}

#[test]
fn unsupported_versions() {
    let version = |v: u32| Raw::default().bytes(b"GGUF").u32(v).u64(0).u64(0);
    check(
        version(1),
        "in-memory GGUF: header: GGUF version 1 is not supported (lucid reads versions 2 and 3) (at byte 4)",
    );
    assert_eq!(
        fail(&version(0)).0,
        FormatError::UnsupportedVersion { version: 0 }
    );
    assert_eq!(
        fail(&version(4)).0,
        FormatError::UnsupportedVersion { version: 4 }
    );
    // Version 3 written big-endian.
    let p = check(
        version(0x0300_0000),
        "in-memory GGUF: header: the version field reads 0x03000000: this is a byte-swapped \
         (big-endian) GGUF file, and lucid only reads little-endian ones (at byte 4)",
    );
    assert_eq!(
        p,
        FormatError::BigEndian {
            version: 0x0300_0000
        }
    );
    // Version 2 reads the same as 3.
    let f = version(2).parse().unwrap();
    assert_eq!(f.version(), 2);
}

#[test]
fn absurd_counts() {
    check(
        Raw::header(0, HUGE),
        "in-memory GGUF: header: 1152921504606846976 metadata entries of at least 13 bytes each \
         cannot fit in the 0 bytes left in the file (at byte 16)",
    );
    let p = check(
        Raw::header(u64::MAX, 0).zeros(100),
        "in-memory GGUF: header: 18446744073709551615 tensor infos of at least 24 bytes each \
         cannot fit in the 100 bytes left in the file (at byte 8)",
    );
    assert!(matches!(
        p,
        FormatError::TooMany {
            what: "tensor infos",
            ..
        }
    ));
    // Enough room for either count alone, but not for both.
    let p = fail(&Raw::header(4, 4).zeros(4 * 13 + 3 * 24)).0;
    assert!(
        matches!(
            p,
            FormatError::TooMany {
                what: "tensor infos",
                count: 4,
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn absurd_string_lengths() {
    let p = check(
        Raw::header(0, 1).u64(HUGE).bytes(b"key").zeros(13),
        "in-memory GGUF: metadata entry 0: metadata key needs 1152921504606846976 bytes but only 16 \
         are left in the file (at byte 32)",
    );
    assert_eq!(
        p,
        FormatError::Truncated {
            what: "metadata key",
            needed: HUGE,
            available: 16
        }
    );
    check(
        Raw::header(0, 1).str("k").u32(8).u64(u64::MAX).zeros(16),
        "in-memory GGUF: metadata key `k`: string value needs 18446744073709551615 bytes but only \
         16 are left in the file (at byte 45)",
    );
    check(
        Raw::header(1, 0).u64(HUGE).zeros(40),
        "in-memory GGUF: tensor info 0: tensor name needs 1152921504606846976 bytes but only 40 \
         are left in the file (at byte 32)",
    );
}

#[test]
fn absurd_array_lengths() {
    check(
        Raw::header(0, 1).str("k").u32(9).u32(4).u64(HUGE).zeros(64),
        "in-memory GGUF: metadata key `k`: 1152921504606846976 array elements of at least 4 bytes \
         each cannot fit in the 64 bytes left in the file (at byte 41)",
    );
    // Strings take at least their length: 9 of them cannot fit in 64 bytes.
    let p = fail(&Raw::header(0, 1).str("k").u32(9).u32(8).u64(9).zeros(64)).0;
    assert!(
        matches!(
            p,
            FormatError::TooMany {
                count: 9,
                min_bytes: 8,
                available: 64,
                ..
            }
        ),
        "{p:?}"
    );
    // An overflowing byte count is the same error, not a wrapped-around small one.
    let p = fail(
        &Raw::header(0, 1)
            .str("k")
            .u32(9)
            .u32(10)
            .u64(1 << 61)
            .zeros(64),
    )
    .0;
    assert!(matches!(
        p,
        FormatError::TooMany {
            count: 0x2000_0000_0000_0000,
            min_bytes: 8,
            ..
        }
    ));
    // The length of a nested array is checked the same way.
    let raw = Raw::header(0, 1)
        .str("k")
        .u32(9)
        .u32(9)
        .u64(1)
        .u32(0)
        .u64(HUGE)
        .zeros(8);
    assert!(matches!(
        fail(&raw).0,
        FormatError::TooMany { count: HUGE, .. }
    ));
}

#[test]
fn unknown_value_types() {
    check(
        Raw::header(0, 1).str("k").u32(13).u32(0),
        "in-memory GGUF: metadata key `k`: unknown metadata value type 13 (at byte 33)",
    );
    check(
        Raw::header(0, 1).str("k").u32(9).u32(0xffff_ffff).u64(0),
        "in-memory GGUF: metadata key `k`: unknown metadata value type 4294967295 (at byte 37)",
    );
}

#[test]
fn nesting_too_deep() {
    // Nine levels: one more than allowed.
    let mut raw = Raw::header(0, 1).str("k").u32(9);
    for _ in 0..8 {
        raw = raw.u32(9).u64(1);
    }
    let raw = raw.u32(0).u64(1).u8(0);
    let (p, _, message) = fail(&raw);
    assert_eq!(p, FormatError::NestedTooDeep { limit: 8 });
    assert!(
        message.contains("metadata key `k`: arrays are nested more than 8 deep"),
        "{message}"
    );
    // A million levels: an error, not a stack overflow.
    let mut raw = Raw::header(0, 1).str("k").u32(9);
    for _ in 0..1_000_000 {
        raw = raw.u32(9).u64(1);
    }
    assert_eq!(fail(&raw).0, FormatError::NestedTooDeep { limit: 8 });
}

#[test]
fn bad_bools() {
    check(
        Raw::header(0, 1).str("k").u32(7).u8(2),
        "in-memory GGUF: metadata key `k`: a bool is stored as byte 2, not 0 or 1 (at byte 37)",
    );
    let raw = Raw::header(0, 1)
        .str("k")
        .u32(9)
        .u32(7)
        .u64(3)
        .bytes(&[0, 1, 255]);
    let (p, offset, _) = fail(&raw);
    assert_eq!((p, offset), (FormatError::InvalidBool { byte: 255 }, 51));
}

#[test]
fn invalid_utf8() {
    check(
        Raw::header(0, 1).u64(3).bytes(b"a\xffb").u32(0).u8(0),
        "in-memory GGUF: metadata entry 0: metadata key is not valid UTF-8 (at byte 33)",
    );
    check(
        Raw::header(0, 1).str("k").u32(8).u64(2).bytes(b"\xc3\x28"),
        "in-memory GGUF: metadata key `k`: string value is not valid UTF-8 (at byte 45)",
    );
    let raw = Raw::header(0, 1)
        .str("k")
        .u32(9)
        .u32(8)
        .u64(2)
        .str("ok")
        .u64(1)
        .bytes(b"\x80");
    assert_eq!(
        fail(&raw).0,
        FormatError::InvalidUtf8 {
            what: "string in array"
        }
    );
    assert_eq!(fail(&raw).1, 67);
    // Each half of "é" alone: valid together, but each string must be valid
    // on its own, and the error points at the first.
    let raw = Raw::header(0, 1)
        .str("k")
        .u32(9)
        .u32(8)
        .u64(2)
        .u64(1)
        .bytes(b"\xc3")
        .u64(1)
        .bytes(b"\xa9");
    let (p, offset, _) = fail(&raw);
    assert_eq!(
        (p, offset),
        (
            FormatError::InvalidUtf8 {
                what: "string in array"
            },
            57
        )
    );
    let raw = Raw::header(1, 0)
        .u64(1)
        .bytes(b"\xfe")
        .u32(1)
        .u64(1)
        .u32(0)
        .u64(0)
        .pad(32)
        .zeros(32);
    let (p, _, message) = fail(&raw);
    assert_eq!(
        p,
        FormatError::InvalidUtf8 {
            what: "tensor name"
        }
    );
    assert!(
        message.contains("tensor info 0: tensor name is not valid UTF-8"),
        "{message}"
    );
}

#[test]
fn duplicates() {
    check(
        Raw::header(0, 2).kv_u32("k", 1).kv_u32("k", 2),
        "in-memory GGUF: metadata key `k`: duplicate metadata key `k` (at byte 41)",
    );
    check(
        Raw::header(2, 0)
            .tensor("t", &[1], 0, 0)
            .tensor("t", &[1], 0, 32)
            .pad(32)
            .zeros(64),
        "in-memory GGUF: tensor `t`: duplicate tensor name `t` (at byte 57)",
    );
}

#[test]
fn bad_alignment() {
    for (v, message) in [
        (
            0,
            "general.alignment 0 is not a non-zero power of two that fits in u32",
        ),
        (
            48,
            "general.alignment 48 is not a non-zero power of two that fits in u32",
        ),
    ] {
        let raw = Raw::header(0, 1).kv_u32("general.alignment", v);
        assert_eq!(
            fail(&raw).2,
            format!("in-memory GGUF: metadata key `general.alignment`: {message} (at byte 49)")
        );
    }
    let raw = Raw::header(0, 1)
        .str("general.alignment")
        .u32(10)
        .u64(1 << 32);
    assert_eq!(fail(&raw).0, FormatError::BadAlignment { value: 1 << 32 });
    let raw = Raw::header(0, 1).str("general.alignment").u32(8).str("32");
    assert_eq!(fail(&raw).0, FormatError::AlignmentType { found: "string" });
}

/// A file with one tensor info and `data` bytes of data after the padding.
fn one_tensor(dims: &[u64], dtype: u32, offset: u64, data: usize) -> Raw {
    Raw::header(1, 0)
        .tensor("w", dims, dtype, offset)
        .pad(32)
        .zeros(data)
}

#[test]
fn bad_tensor_shapes_and_types() {
    check(
        one_tensor(&[1, 1, 1, 1, 1], 0, 0, 32),
        "in-memory GGUF: tensor `w`: 5 dimensions, but GGUF allows at most 4 (at byte 33)",
    );
    let p = fail(&Raw::header(1, 0).str("w").u32(u32::MAX).zeros(64)).0;
    assert_eq!(p, FormatError::TooManyDims { n_dims: u32::MAX });
    check(
        one_tensor(&[1 << 32, 1 << 32], 0, 0, 32),
        "in-memory GGUF: tensor `w`: shape [4294967296, 4294967296] has more elements than ggml \
         can index (at byte 33)",
    );
    // A zero-sized dimension does not hide an overflow of the others.
    let p = fail(&one_tensor(&[0, 1 << 32, 1 << 32], 0, 0, 32)).0;
    assert!(matches!(p, FormatError::ElementCountOverflow { .. }));
    // Fits in i64 as elements, but not in memory as bytes.
    check(
        one_tensor(&[1 << 62], 0, 0, 32),
        "in-memory GGUF: tensor `w`: shape [4611686018427387904] of F32 takes more bytes than \
         memory can address (at byte 33)",
    );
    check(
        one_tensor(&[32], 4, 0, 32),
        "in-memory GGUF: tensor `w`: unknown or unsupported tensor type id 4 (at byte 45)",
    );
    // A real ggml type (IQ2_XXS) that lucid does not know.
    assert_eq!(
        fail(&one_tensor(&[256], 16, 0, 64)).0,
        FormatError::UnknownTensorType { id: 16 }
    );
    let p = check(
        one_tensor(&[33, 2], DType::Q4_0.ggml_id(), 0, 64),
        "in-memory GGUF: tensor `w`: a row of 33 Q4_0 values is not a whole number of 32-value \
         blocks (at byte 33)",
    );
    assert_eq!(
        p,
        FormatError::PartialBlock {
            dtype: DType::Q4_0,
            row_len: 33,
            block_len: 32
        }
    );
}

#[test]
fn bad_tensor_offsets() {
    // Header 24 + name 9 + n_dims 4 + dim 8 + type 4 + offset 8 = 57, padded to 64.
    check(
        one_tensor(&[8], 0, 16, 64),
        "in-memory GGUF: tensor `w`: data offset 16 is not a multiple of the alignment 32 (at byte 49)",
    );
    let p = check(
        one_tensor(&[8], 0, 32, 32),
        "in-memory GGUF: tensor `w`: data at bytes 96..128 of the file runs past its end (96 bytes) \
         (at byte 49)",
    );
    assert_eq!(
        p,
        FormatError::DataOutOfBounds {
            start: 96,
            end: 128,
            file_size: 96
        }
    );
    // Offsets that would overflow 64-bit arithmetic.
    let p = fail(&one_tensor(&[8], 0, u64::MAX - 31, 32)).0;
    assert!(
        matches!(p, FormatError::DataOutOfBounds { file_size: 96, .. }),
        "{p:?}"
    );
    // Partly past the end.
    let p = fail(&one_tensor(&[8], 0, 0, 31)).0;
    assert_eq!(
        p,
        FormatError::DataOutOfBounds {
            start: 64,
            end: 96,
            file_size: 95
        }
    );
    // No room even for the padding before the data.
    let raw = Raw::header(1, 0).tensor("w", &[0], 0, 0);
    check(
        raw,
        "in-memory GGUF: data section: padding before the tensor data needs 7 bytes but only 0 are \
         left in the file (at byte 57)",
    );
}

#[test]
fn zero_sized_tensor_at_the_end_is_fine() {
    let f = one_tensor(&[0, 3], 0, 0, 0).parse().unwrap();
    let t = &f.tensors()[0];
    // Header 24 + name 9 + n_dims 4 + dims 16 + type 4 + offset 8 = 65, padded to 96.
    assert_eq!(
        (t.offset, t.n_bytes, t.n_elements(), t.n_rows()),
        (96, 0, 0, 3)
    );
    assert!(f.tensor_bytes(t).is_empty());
}

#[test]
fn errors_of_opened_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, b"GGUF\x01\x00\x00\x00").unwrap();
    let err = GgufFile::open(&path).unwrap_err();
    assert!(matches!(&err, GgufError::Format { path: Some(p), .. } if *p == path));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: header: GGUF version 1 is not supported (lucid reads versions 2 and 3) (at byte 4)",
            path.display()
        )
    );
    // An empty file can be mapped, and is too short.
    std::fs::write(&path, b"").unwrap();
    let err = GgufFile::open(&path).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("magic needs 4 bytes but only 0 are left in the file (at byte 0)")
    );
    // A folder is not a file.
    let err = GgufFile::open(dir.path()).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }), "{err}");
}

/// Cutting the small file at every byte before the end of its last tensor's
/// data gives an error that says it is too short; cutting it in the padding
/// after that gives the same file minus some padding.
#[test]
fn truncated_at_every_offset() {
    let bytes = Bytes::from(small_file());
    let whole = GgufFile::from_bytes(bytes.clone()).unwrap();
    let data_offset = whole.data_offset() as usize;
    let data_end = whole
        .tensors()
        .iter()
        .map(|t| t.offset as usize + t.n_bytes)
        .max()
        .unwrap();
    for cut in 0..bytes.len() {
        match GgufFile::from_bytes(bytes.slice(..cut)) {
            Ok(f) => {
                assert!(cut >= data_end, "a file cut at {cut} parsed");
                assert_eq!(f.metadata(), whole.metadata());
                assert_eq!(f.tensors(), whole.tensors());
            }
            Err(err) => {
                assert!(cut < data_end, "cut at {cut}: {err}");
                let GgufError::Format {
                    problem, offset, ..
                } = &err
                else {
                    panic!("cut at {cut}: {err}");
                };
                assert!(*offset <= cut as u64, "cut at {cut}: {err}");
                let too_short = if cut < data_offset {
                    matches!(
                        problem,
                        FormatError::Truncated { .. } | FormatError::TooMany { .. }
                    )
                } else {
                    matches!(problem, FormatError::DataOutOfBounds { .. })
                };
                assert!(too_short, "cut at {cut}: {err}");
            }
        }
    }
}
