//! What the writer writes, the reader reads back unchanged: every value type,
//! nested arrays, tensors of several types, alignment. Also the writer's own
//! checks and the typed metadata getters.

mod common;

use common::{small_file, small_writer};
use lucid_gguf::{Array, Bytes, DType, GgufError, GgufFile, GgufWriter, Metadata, Value};

fn read(w: &GgufWriter) -> GgufFile {
    let mut out = Vec::new();
    w.write_to(&mut out).expect("writing to a Vec");
    GgufFile::from_bytes(Bytes::from(out)).expect("reading back what the writer wrote")
}

#[test]
fn every_value_type_and_tensor_type_round_trips() {
    let w = small_writer();
    let f = read(&w);
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.path(), None);
    assert_eq!(f.metadata(), w.metadata());
    // Same order too: metadata equality is order-sensitive, and so is this.
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
    let written: Vec<&str> = w.metadata().iter().map(|(k, _)| k).collect();
    assert_eq!(keys, written);

    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "token_embd.weight",
            "blk.0.attn_norm.weight",
            "blk.0.attn_q.weight",
            "blk.0.ffn_up.weight",
            "blk.0.empty",
            "output.weight"
        ]
    );
    let expect = [
        (DType::Q8_0, vec![64, 3], 2 * 34 * 3),
        (DType::F32, vec![5], 20),
        (DType::Q4_0, vec![32, 2], 36),
        (DType::Q4K, vec![256, 1, 2], 288),
        (DType::F16, vec![0, 4], 0),
        (DType::BF16, vec![3, 2, 1, 2], 24),
    ];
    for (i, (t, (dtype, shape, n_bytes))) in f.tensors().iter().zip(expect).enumerate() {
        assert_eq!(
            (t.dtype, &t.shape, t.n_bytes),
            (dtype, &shape, n_bytes),
            "{}",
            t.name
        );
        assert_eq!(t.offset % 32, 0, "{}", t.name);
        assert!(t.offset >= f.data_offset());
        let data: Vec<u8> = (0..n_bytes).map(|j| (i * 31 + j * 7) as u8).collect();
        assert_eq!(f.tensor_bytes(t), data, "{}", t.name);
        assert_eq!(f.tensor(&t.name), Some(t));
    }
    assert_eq!(f.tensor("blk.0.ffn_up.weight").unwrap().n_rows(), 2);
    assert_eq!(f.tensor("output.weight").unwrap().n_elements(), 12);
    assert_eq!(f.data_offset() % 32, 0);
}

#[test]
fn exact_values_survive() {
    let f = read(&small_writer());
    let m = f.metadata();
    assert_eq!(m.get("t.u64"), Some(&Value::U64(u64::MAX)));
    assert_eq!(m.get("t.i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(m.get("t.f32"), Some(&Value::F32(1.5e-5)));
    assert_eq!(m.get("t.f64"), Some(&Value::F64(-2.25e300)));
    assert_eq!(m.str("t.string").unwrap(), "héllo, wörld ✓");
    assert_eq!(m.str("t.empty_string").unwrap(), "");
    assert_eq!(
        m.str_array("t.a_string")
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        ["a", "", "ünïcode"]
    );
    assert_eq!(m.f32_array("t.a_f32").unwrap(), [0.5, -1.0, f32::INFINITY]);
    assert_eq!(m.opt_f32_array("t.a_empty").unwrap(), Some(&[][..]));
    assert_eq!(
        m.get("t.a_nested"),
        Some(&Value::Array(Array::Array(vec![
            Array::U32(vec![1, 2]),
            Array::String(vec!["x"].into()),
            Array::Array(vec![Array::Bool(vec![false])]),
            Array::I64(vec![]),
        ])))
    );
}

#[test]
fn a_file_of_nothing_round_trips() {
    let f = read(&GgufWriter::new());
    assert!(f.metadata().is_empty());
    assert!(f.tensors().is_empty());
    assert_eq!(f.file_size(), 4 + 4 + 8 + 8 + 8);
}

#[test]
fn alignment_is_honoured() {
    for alignment in [1u32, 8, 64, 4096] {
        let mut w = small_writer();
        w.set("general.alignment", Value::U32(alignment));
        let f = read(&w);
        assert_eq!(f.alignment(), alignment as usize);
        assert_eq!(f.data_offset() % u64::from(alignment), 0);
        for t in f.tensors() {
            assert_eq!(
                t.offset % u64::from(alignment),
                0,
                "{} at {alignment}",
                t.name
            );
        }
        assert_eq!(f.metadata(), w.metadata());
    }
    // Any integer type is accepted for the alignment, as long as it fits u32.
    let mut w = small_writer();
    w.set("general.alignment", Value::U64(16));
    assert_eq!(read(&w).alignment(), 16);
}

#[test]
fn write_replaces_the_file_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"old contents").unwrap();
    small_writer().write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), Some(path.as_path()));
    assert_eq!(f.bytes().as_ref(), small_file().as_slice());
    // Nothing but the file itself is left in the folder.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["model.gguf"]);
}

/// The file gets the permissions of any new file, not the private ones of a
/// temporary file.
#[cfg(unix)]
#[test]
fn written_files_get_the_usual_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"").unwrap();
    let path = dir.path().join("model.gguf");
    small_writer().write(&path).unwrap();
    assert_eq!(mode(&path), mode(&plain));
}

#[test]
fn write_to_a_missing_folder_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/model.gguf");
    let err = small_writer().write(&path).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no/such/dir/model.gguf"), "{err}");
}

#[test]
fn open_of_a_missing_file_names_the_path() {
    let err = GgufFile::open("/no/such/model.gguf").unwrap_err();
    assert!(
        matches!(&err, GgufError::Io { action: "open", error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(
        err.to_string()
            .starts_with("/no/such/model.gguf: cannot open:"),
        "{err}"
    );
}

#[test]
fn set_replaces_in_place() {
    let mut w = GgufWriter::new();
    w.set("a", Value::U32(1));
    w.set("b", Value::U32(2));
    w.set("a", "one".into());
    let f = read(&w);
    let entries: Vec<(&str, &Value)> = f.metadata().iter().collect();
    assert_eq!(entries, [("a", &Value::from("one")), ("b", &Value::U32(2))]);
}

fn tensor_error(shape: &[usize], dtype: DType, data_len: usize) -> String {
    let mut w = GgufWriter::new();
    let err = w
        .add_tensor("t", dtype, shape, &vec![0; data_len])
        .expect_err("the writer took a bad tensor");
    assert!(
        matches!(&err, GgufError::InvalidTensor { name, .. } if name == "t"),
        "{err}"
    );
    err.to_string()
}

#[test]
fn writer_refuses_bad_tensors() {
    assert_eq!(
        tensor_error(&[33], DType::Q4_0, 18),
        "tensor `t`: a row of 33 Q4_0 values is not a whole number of 32-value blocks"
    );
    assert_eq!(
        tensor_error(&[4, 2], DType::F32, 31),
        "tensor `t`: shape [4, 2] of F32 takes 32 bytes, but 31 were given"
    );
    assert_eq!(
        tensor_error(&[1, 1, 1, 1, 1], DType::F32, 4),
        "tensor `t`: shape [1, 1, 1, 1, 1] has 5 dimensions, GGUF allows at most 4"
    );
    assert_eq!(
        tensor_error(&[1 << 32, 1 << 32], DType::F32, 0),
        "tensor `t`: shape [4294967296, 4294967296] has more elements than ggml can index"
    );
    let mut w = GgufWriter::new();
    w.add_tensor("t", DType::F32, &[1], &[0; 4]).unwrap();
    let err = w.add_tensor("t", DType::F32, &[1], &[0; 4]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor `t`: a tensor of this name was already added"
    );
}

#[test]
fn writer_refuses_bad_metadata() {
    for bad in [
        Value::U32(0),
        Value::U32(48),
        Value::U64(1 << 32),
        Value::I32(-32),
        "32".into(),
    ] {
        let mut w = GgufWriter::new();
        w.set("general.alignment", bad.clone());
        let err = w.write_to(Vec::new()).unwrap_err();
        assert!(
            matches!(&err, GgufError::InvalidMetadata { key, .. } if key == "general.alignment"),
            "{bad:?}: {err}"
        );
    }
    let mut deep = Array::U8(vec![1]);
    for _ in 0..lucid_gguf::MAX_ARRAY_DEPTH {
        deep = Array::Array(vec![deep]);
    }
    let mut w = GgufWriter::new();
    w.set("deep", deep.into());
    let err = w.write_to(Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "metadata key `deep`: arrays nest more than 8 deep"
    );
}

#[test]
fn deepest_allowed_nesting_round_trips() {
    let mut deep = Array::U8(vec![1]);
    for _ in 1..lucid_gguf::MAX_ARRAY_DEPTH {
        deep = Array::Array(vec![deep]);
    }
    let mut w = GgufWriter::new();
    w.set("deep", deep.into());
    assert_eq!(read(&w).metadata(), w.metadata());
}

fn meta() -> Metadata {
    [
        ("u8", Value::U8(7)),
        ("i64", Value::I64(-5)),
        ("big", Value::U64(1 << 40)),
        ("f64", Value::F64(0.25)),
        ("s", "text".into()),
        ("b", Value::Bool(true)),
        ("strs", vec!["a", "b"].into()),
        ("u32s", vec![1u32, 2].into()),
        ("i32s", vec![-1i32].into()),
    ]
    .into_iter()
    .collect()
}

#[test]
fn integer_getters_accept_any_integer_that_fits() {
    let m = meta();
    assert_eq!(m.u32("u8").unwrap(), 7);
    assert_eq!(m.i64("u8").unwrap(), 7);
    assert_eq!(m.usize("u8").unwrap(), 7);
    assert_eq!(m.i64("i64").unwrap(), -5);
    assert_eq!(m.i32("i64").unwrap(), -5);
    assert_eq!(m.u64("big").unwrap(), 1 << 40);
    assert_eq!(m.opt_u32("absent").unwrap(), None);
    assert_eq!(m.opt_u32("u8").unwrap(), Some(7));
}

#[test]
fn float_bool_string_and_array_getters() {
    let m = meta();
    assert_eq!(m.f32("f64").unwrap(), 0.25);
    assert!(m.bool("b").unwrap());
    assert_eq!(m.str("s").unwrap(), "text");
    assert_eq!(
        m.str_array("strs").unwrap().iter().collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(m.u32_array("u32s").unwrap(), [1, 2]);
    assert_eq!(m.i32_array("i32s").unwrap(), [-1]);
    assert_eq!(m.opt_str("absent").unwrap(), None);
    assert_eq!(m.opt_str_array("absent").unwrap(), None);
    assert_eq!(m.opt_bool("absent").unwrap(), None);
}

#[test]
fn getter_errors_name_the_key() {
    let m = meta();
    let err = m.u32("absent").unwrap_err();
    assert!(matches!(&err, GgufError::MissingKey { key, .. } if key == "absent"));
    assert_eq!(
        err.to_string(),
        "in-memory GGUF: metadata key `absent` is missing"
    );

    let err = m.u32("i64").unwrap_err();
    assert!(matches!(&err, GgufError::OutOfRange { key, target: "u32", .. } if key == "i64"));
    assert_eq!(
        err.to_string(),
        "in-memory GGUF: metadata key `i64` holds -5, which does not fit in u32"
    );
    assert!(matches!(m.u32("big"), Err(GgufError::OutOfRange { .. })));

    let err = m.str("u8").unwrap_err();
    assert!(
        matches!(&err, GgufError::WrongType { key, expected: "string", found: "u8", .. } if key == "u8")
    );
    assert_eq!(
        err.to_string(),
        "in-memory GGUF: metadata key `u8` holds u8, expected string"
    );
    assert!(matches!(
        m.u32("s"),
        Err(GgufError::WrongType {
            found: "string",
            ..
        })
    ));
    assert!(matches!(
        m.f32("u8"),
        Err(GgufError::WrongType { found: "u8", .. })
    ));
    assert!(matches!(m.bool("u8"), Err(GgufError::WrongType { .. })));
    assert!(matches!(
        m.str_array("u32s"),
        Err(GgufError::WrongType {
            found: "array of u32",
            ..
        })
    ));
    assert!(matches!(
        m.u32_array("i32s"),
        Err(GgufError::WrongType {
            found: "array of i32",
            ..
        })
    ));
    assert!(matches!(
        m.opt_f32_array("strs"),
        Err(GgufError::WrongType { .. })
    ));
}

#[test]
fn getter_errors_of_a_file_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    small_writer().write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let err = f.metadata().u32("llama.block_count").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: metadata key `llama.block_count` is missing",
            path.display()
        )
    );
}

#[test]
fn general_keys_are_typed() {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "gemma3".into());
    w.set("general.size_label", "270M".into());
    w.set("general.file_type", Value::U64(15));
    w.set("general.quantization_version", Value::U32(2));
    w.set("general.name", Value::U32(3)); // the wrong type: reads as absent
    let f = read(&w);
    let g = f.general();
    assert_eq!(g.architecture, Some("gemma3"));
    assert_eq!(g.size_label, Some("270M"));
    assert_eq!(g.file_type, Some(15));
    assert_eq!(g.quantization_version, Some(2));
    assert_eq!(g.name, None);
    assert_eq!(g.license, None);
}

#[test]
fn tensor_bytes_of_a_foreign_tensor_is_empty() {
    let f = read(&small_writer());
    let mut t = f.tensors()[0].clone();
    t.offset = u64::MAX - 3;
    assert!(f.tensor_bytes(&t).is_empty());
}

#[test]
fn files_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GgufFile>();
    send_sync::<GgufError>();
}

#[test]
fn writer_debug_leaves_out_the_data() {
    let debug = format!("{:?}", small_writer());
    assert!(debug.contains("n_bytes: 204"), "{debug}");
    assert!(debug.len() < 4000, "{debug}");
}
