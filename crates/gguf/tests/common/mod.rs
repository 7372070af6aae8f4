//! Helpers shared by the integration tests: where the real models are, a
//! seeded random number generator, a hand-assembler for (bad) GGUF bytes, a
//! small writer-made file, and the text dump that the golden files hold.

// Each test file uses some of these helpers, and they are test code, where a
// failed unwrap is a failed test (clippy only sees `#[test]` functions as such).
#![allow(dead_code, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lucid_gguf::{Array, DType, GgufError, GgufFile, GgufWriter, Value};

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// The path of a real test model. Fails, never skips, when it is missing.
pub fn model_path(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models")
        .join(file);
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-test-models.sh from the repository root",
        path.display()
    );
    path
}

/// SplitMix64: a tiny seeded generator, so tests need no `rand` and give the
/// same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must not be zero.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Assembles GGUF bytes field by field, including the bad ones the writer
/// refuses to produce.
#[derive(Default)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// Magic, version 3 and the two counts.
    pub fn header(n_tensors: u64, n_kv: u64) -> Raw {
        Raw::default()
            .bytes(b"GGUF")
            .u32(3)
            .u64(n_tensors)
            .u64(n_kv)
    }

    pub fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }

    pub fn u8(self, v: u8) -> Raw {
        self.bytes(&[v])
    }

    pub fn u32(self, v: u32) -> Raw {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u64(self, v: u64) -> Raw {
        self.bytes(&v.to_le_bytes())
    }

    pub fn str(self, s: &str) -> Raw {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }

    /// A metadata entry holding a u32.
    pub fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key).u32(4).u32(v)
    }

    /// A tensor info.
    pub fn tensor(self, name: &str, dims: &[u64], dtype: u32, offset: u64) -> Raw {
        let mut raw = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            raw = raw.u64(d);
        }
        raw.u32(dtype).u64(offset)
    }

    /// Zeros up to the next multiple of `alignment`.
    pub fn pad(self, alignment: usize) -> Raw {
        let n = self.0.len().next_multiple_of(alignment) - self.0.len();
        self.bytes(&vec![0; n])
    }

    pub fn zeros(self, n: usize) -> Raw {
        self.bytes(&vec![0; n])
    }

    pub fn parse(&self) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes(self.0.clone().into())
    }
}

/// A small file with a value of every type, nested arrays and tensors of
/// several types, as the writer makes it.
pub fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama".into());
    w.set("general.name", "tiny".into());
    w.set("t.u8", Value::U8(200));
    w.set("t.i8", Value::I8(-100));
    w.set("t.u16", Value::U16(60_000));
    w.set("t.i16", Value::I16(-30_000));
    w.set("t.u32", Value::U32(4_000_000_000));
    w.set("t.i32", Value::I32(-2_000_000_000));
    w.set("t.u64", Value::U64(u64::MAX));
    w.set("t.i64", Value::I64(i64::MIN));
    w.set("t.f32", Value::F32(1.5e-5));
    w.set("t.f64", Value::F64(-2.25e300));
    w.set("t.bool", Value::Bool(true));
    w.set("t.string", Value::String("héllo, wörld ✓".into()));
    w.set("t.empty_string", Value::String(String::new()));
    w.set("t.a_u8", vec![1u8, 2, 255].into());
    w.set("t.a_i8", vec![-1i8, 0, 127].into());
    w.set("t.a_u16", vec![1u16, 65_535].into());
    w.set("t.a_i16", vec![-32_768i16, 7].into());
    w.set("t.a_u32", vec![0u32, 1, u32::MAX].into());
    w.set("t.a_i32", vec![-1i32, 3, 3].into());
    w.set("t.a_u64", vec![u64::MAX, 0].into());
    w.set("t.a_i64", vec![i64::MIN, i64::MAX].into());
    w.set("t.a_f32", vec![0.5f32, -1.0, f32::INFINITY].into());
    w.set("t.a_f64", vec![std::f64::consts::PI].into());
    w.set("t.a_bool", vec![true, false, true].into());
    w.set("t.a_string", vec!["a", "", "ünïcode"].into());
    w.set("t.a_empty", Value::Array(Array::F32(Vec::new())));
    w.set(
        "t.a_nested",
        Value::Array(Array::Array(vec![
            Array::U32(vec![1, 2]),
            Array::String(vec!["x"].into()),
            Array::Array(vec![Array::Bool(vec![false])]),
            Array::I64(Vec::new()),
        ])),
    );
    let tensors: [(&str, DType, &[usize]); 6] = [
        ("token_embd.weight", DType::Q8_0, &[64, 3]),
        ("blk.0.attn_norm.weight", DType::F32, &[5]),
        ("blk.0.attn_q.weight", DType::Q4_0, &[32, 2]),
        ("blk.0.ffn_up.weight", DType::Q4K, &[256, 1, 2]),
        ("blk.0.empty", DType::F16, &[0, 4]),
        ("output.weight", DType::BF16, &[3, 2, 1, 2]),
    ];
    for (i, (name, dtype, shape)) in tensors.into_iter().enumerate() {
        let n_bytes = dtype.row_bytes(shape[0]).unwrap() * shape[1..].iter().product::<usize>();
        let data: Vec<u8> = (0..n_bytes).map(|j| (i * 31 + j * 7) as u8).collect();
        w.add_tensor(name, dtype, shape, &data).unwrap();
    }
    w
}

/// The bytes of [`small_writer`]'s file.
pub fn small_file() -> Vec<u8> {
    let mut out = Vec::new();
    small_writer().write_to(&mut out).unwrap();
    out
}

/// FNV-1a 64, as `tests/golden/dump_gguf.py` computes it.
pub fn fnv1a64<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for &b in chunk {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn string_encoding(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

fn show_string(s: &str) -> String {
    let plain = s.chars().count() <= 80
        && s.chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\');
    if plain {
        format!("\"{s}\"")
    } else {
        let hash = fnv1a64([string_encoding(s).as_slice()]);
        format!("len={} fnv={hash}", s.len())
    }
}

/// The bytes that the FNV hash of an array runs over, one chunk an element.
fn array_chunks(a: &Array) -> Vec<Vec<u8>> {
    fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<Vec<u8>> {
        v.iter().map(|&x| f(x).to_vec()).collect()
    }
    match a {
        Array::U8(v) => le(v, u8::to_le_bytes),
        Array::I8(v) => le(v, i8::to_le_bytes),
        Array::U16(v) => le(v, u16::to_le_bytes),
        Array::I16(v) => le(v, i16::to_le_bytes),
        Array::U32(v) => le(v, u32::to_le_bytes),
        Array::I32(v) => le(v, i32::to_le_bytes),
        Array::U64(v) => le(v, u64::to_le_bytes),
        Array::I64(v) => le(v, i64::to_le_bytes),
        Array::F32(v) => le(v, f32::to_le_bytes),
        Array::F64(v) => le(v, f64::to_le_bytes),
        Array::Bool(v) => v.iter().map(|&b| vec![u8::from(b)]).collect(),
        Array::String(v) => v.iter().map(string_encoding).collect(),
        Array::Array(v) => v.iter().flat_map(array_chunks).collect(),
    }
}

/// What lucid reads from `f`, in the format of `tests/golden/dump_gguf.py`.
pub fn dump(f: &GgufFile) -> String {
    let mut out = String::new();
    let m = f.metadata();
    writeln!(out, "version {}", f.version()).unwrap();
    writeln!(out, "alignment {}", f.alignment()).unwrap();
    writeln!(out, "data_offset {}", f.data_offset()).unwrap();
    writeln!(out, "tensor_count {}", f.tensors().len()).unwrap();
    writeln!(out, "kv_count {}", m.len()).unwrap();
    for (key, value) in m.iter() {
        let shown = match value {
            Value::F32(x) => format!("0x{:08x}", x.to_bits()),
            Value::F64(x) => format!("0x{:016x}", x.to_bits()),
            Value::String(s) => show_string(s),
            Value::Array(a) => {
                let chunks = array_chunks(a);
                let hash = fnv1a64(chunks.iter().map(Vec::as_slice));
                format!("len={} fnv={hash}", a.len())
            }
            Value::Bool(b) => b.to_string(),
            other => other.as_integer().unwrap().to_string(),
        };
        writeln!(out, "kv {key} {} {shown}", value.type_name()).unwrap();
    }
    for t in f.tensors() {
        let data = f.tensor_bytes(t);
        let head: String = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
        writeln!(
            out,
            "tensor {} {} [{}] offset={} n_bytes={} head={head}",
            t.name,
            t.dtype,
            shape.join(", "),
            t.offset,
            t.n_bytes
        )
        .unwrap();
    }
    out
}
