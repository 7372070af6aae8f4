//! A deterministic stand-in for the fuzzer that runs on stable Rust in every
//! `cargo test`: thousands of seeded mutations of a small writer-made file
//! (bit flips, random and boundary values, truncations, deletions,
//! insertions). The reader must never panic; what it accepts must be
//! consistent, and what it rejects must come with a message.

mod common;

use common::{Rng, small_file};
use lucid_gguf::{Bytes, GgufError, GgufFile};

/// Boundary values that hit length, count, type and offset checks.
const INTERESTING_U64: [u64; 14] = [
    0,
    1,
    2,
    7,
    8,
    9,
    13,
    32,
    255,
    1 << 31,
    1 << 32,
    1 << 60,
    i64::MAX as u64,
    u64::MAX,
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        let n = 1 + rng.below(8);
        data.extend(rng.bytes(n));
        return;
    }
    let at = rng.below(data.len());
    match rng.below(7) {
        0 => data[at] ^= 1 << rng.below(8),
        1 => data[at] = rng.next_u64() as u8,
        2 => {
            let v = INTERESTING_U64[rng.below(INTERESTING_U64.len())];
            let bytes = v.to_le_bytes();
            let n = if rng.below(2) == 0 { 8 } else { 4 };
            for (i, b) in bytes.iter().take(n).enumerate() {
                if let Some(slot) = data.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        3 => data.truncate(at),
        4 => {
            let end = (at + 1 + rng.below(16)).min(data.len());
            data.drain(at..end);
        }
        5 => {
            let n = 1 + rng.below(16);
            let insert = rng.bytes(n);
            data.splice(at..at, insert);
        }
        _ => {
            // Copy a stretch of the file over another: real-looking
            // structure in the wrong place.
            let from = rng.below(data.len());
            let n = (1 + rng.below(32))
                .min(data.len() - from)
                .min(data.len() - at);
            let chunk = data[from..from + n].to_vec();
            data[at..at + n].copy_from_slice(&chunk);
        }
    }
}

/// Uses everything a parsed file offers, checking what the reader promises.
fn walk(f: &GgufFile) {
    let m = f.metadata();
    for (key, value) in m.iter() {
        // The same entry, not an equal one: NaN is not equal to itself.
        assert!(m.get(key).is_some_and(|v| std::ptr::eq(v, value)), "{key}");
        let _ = (m.u32(key), m.i32(key), m.u64(key), m.i64(key), m.usize(key));
        let _ = (m.f32(key), m.bool(key), m.str(key));
        let _ = (
            m.str_array(key),
            m.f32_array(key),
            m.i32_array(key),
            m.u32_array(key),
        );
        let _ = value.type_name();
    }
    let _ = f.general();
    let _ = format!("{f:?}");
    assert!(f.alignment().is_power_of_two());
    for t in f.tensors() {
        let data = f.tensor_bytes(t);
        assert_eq!(data.len(), t.n_bytes, "{}", t.name);
        assert!(t.offset + t.n_bytes as u64 <= f.file_size(), "{}", t.name);
        assert_eq!(t.offset % f.alignment() as u64, 0, "{}", t.name);
        assert!(t.shape.len() <= 4);
        let _ = (t.n_elements(), t.n_rows(), t.row_len());
        assert_eq!(f.tensor(&t.name), Some(t));
    }
}

#[test]
fn mutated_files_never_panic() {
    let original = small_file();
    let mut rng = Rng::new(0x6767_7566);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..20_000 {
        let mut data = original.clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut data);
        }
        match GgufFile::from_bytes(Bytes::from(data)) {
            Ok(f) => {
                walk(&f);
                accepted += 1;
            }
            Err(err) => {
                assert!(err.to_string().starts_with("in-memory GGUF: "), "{err}");
                assert!(matches!(err, GgufError::Format { .. }), "{err}");
                rejected += 1;
            }
        }
    }
    // Both outcomes are common: the mutations reach past the first check,
    // and many land in tensor data or values where any bytes are valid.
    assert!(
        accepted > 1000 && rejected > 1000,
        "{accepted} accepted, {rejected} rejected"
    );
}
