//! The two real test models, read by lucid and compared with what the
//! reference reader (gguf-py) reads: every key, every tensor. The golden files
//! come from `tests/golden/dump_gguf.py`.

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use common::{GEMMA3, SMOLLM2, dump, model_path};
use lucid_gguf::{DType, FormatError, GgufError, GgufFile};

/// Compares lucid's dump of `model` with the golden file gguf-py produced.
fn check_golden(model: &str) {
    let file = GgufFile::open(model_path(model)).expect("opening the model");
    let golden_path = format!(
        "{}/tests/golden/{}.txt",
        env!("CARGO_MANIFEST_DIR"),
        model.trim_end_matches(".gguf")
    );
    let golden = std::fs::read_to_string(&golden_path).expect("reading the golden file");
    let expected: Vec<&str> = golden.lines().filter(|l| !l.starts_with('#')).collect();
    let actual = dump(&file);
    let actual: Vec<&str> = actual.lines().collect();
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!(a, e, "line {} of {golden_path} differs", i + 1);
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "line count differs from {golden_path}"
    );
}

#[test]
fn smollm2_matches_gguf_py() {
    check_golden(SMOLLM2);
}

#[test]
fn gemma3_matches_gguf_py() {
    check_golden(GEMMA3);
}

#[test]
fn smollm2_known_values() {
    let path = model_path(SMOLLM2);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), Some(path.as_path()));
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.file_size(), 98_362_432);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.tensors().len(), 272);

    let g = f.general();
    assert_eq!(g.architecture, Some("llama"));
    assert_eq!(g.organization, Some("HuggingFaceTB"));
    assert_eq!(g.size_label, Some("135M"));
    assert_eq!(g.license, Some("apache-2.0"));
    assert_eq!(g.file_type, Some(3));
    assert_eq!(g.quantization_version, Some(2));

    let m = f.metadata();
    assert_eq!(m.u32("llama.block_count").unwrap(), 30);
    assert_eq!(m.u64("llama.embedding_length").unwrap(), 576);
    assert_eq!(m.usize("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(m.f32("llama.rope.freq_base").unwrap(), 100_000.0);
    assert_eq!(
        m.f32("llama.attention.layer_norm_rms_epsilon").unwrap(),
        1e-5
    );
    assert!(!m.bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(m.str("tokenizer.ggml.model").unwrap(), "gpt2");
    let tokens = m.str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49_152);
    assert_eq!(
        tokens.iter().take(3).collect::<Vec<_>>(),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    );
    assert_eq!(
        m.i32_array("tokenizer.ggml.token_type").unwrap().len(),
        49_152
    );
    assert_eq!(&m.str_array("tokenizer.ggml.merges").unwrap()[0], "Ġ t");
    assert!(
        m.str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>")
    );

    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dtype, DType::Q8_0);
    assert_eq!(embd.shape, [576, 49_152]);
    assert_eq!((embd.row_len(), embd.n_rows()), (576, 49_152));
    assert_eq!(embd.n_elements(), 576 * 49_152);
    assert_eq!(embd.n_bytes, 49_152 * 18 * 34);
    assert_eq!(embd.offset, 1_785_664);
    let down = f.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(
        (down.dtype, down.shape.as_slice()),
        (DType::Q4_1, &[1536, 576][..])
    );
    let counts = |t: DType| f.tensors().iter().filter(|i| i.dtype == t).count();
    assert_eq!(
        (counts(DType::Q4_1), counts(DType::F32), counts(DType::Q8_0)),
        (210, 61, 1)
    );
    assert!(f.tensor("no.such.tensor").is_none());
}

#[test]
fn gemma3_known_values() {
    let f = GgufFile::open(model_path(GEMMA3)).unwrap();
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.tensors().len(), 236);
    let g = f.general();
    assert_eq!(g.architecture, Some("gemma3"));
    assert_eq!(g.name, Some("Gemma 3 270m"));
    assert_eq!(g.file_type, Some(15));

    let m = f.metadata();
    assert_eq!(m.u32("gemma3.attention.sliding_window").unwrap(), 512);
    assert_eq!(m.u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(m.u32("gemma3.attention.key_length").unwrap(), 256);
    assert_eq!(m.f32("gemma3.rope.freq_base").unwrap(), 1_000_000.0);
    assert_eq!(m.str_array("tokenizer.ggml.tokens").unwrap().len(), 262_144);
    assert_eq!(m.f32_array("tokenizer.ggml.scores").unwrap().len(), 262_144);
    assert!(m.bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(
        m.str_array("general.tags")
            .unwrap()
            .iter()
            .take(2)
            .collect::<Vec<_>>(),
        ["gemma3", "gemma"]
    );

    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (embd.dtype, embd.shape.as_slice()),
        (DType::Q8_0, &[640, 262_144][..])
    );
    let k = f.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(
        (k.dtype, k.shape.as_slice()),
        (DType::Q5_0, &[640, 256][..])
    );
    let counts = |t: DType| f.tensors().iter().filter(|i| i.dtype == t).count();
    assert_eq!(counts(DType::Q4K), 27);
    assert_eq!(counts(DType::Q6K), 9);
}

/// `tensor_bytes` hands out slices of the memory map, not copies: every
/// slice points into the one mapping at its tensor's offset, and its bytes
/// are the file's.
#[test]
fn tensor_bytes_point_into_the_mapping() {
    let path = model_path(SMOLLM2);
    let f = GgufFile::open(&path).unwrap();
    let base = f.bytes().as_ptr() as usize;
    for t in f.tensors() {
        let data = f.tensor_bytes(t);
        assert_eq!(data.len(), t.n_bytes, "{}", t.name);
        assert_eq!(
            data.as_ptr() as usize - base,
            t.offset as usize,
            "{}",
            t.name
        );
        assert_eq!(t.offset % f.alignment() as u64, 0, "{}", t.name);
    }
    // Two slices of one tensor share memory.
    let t = f.tensor("output_norm.weight").unwrap();
    assert_eq!(f.tensor_bytes(t).as_ptr(), f.tensor_bytes(t).as_ptr());

    // The slice holds what the file holds at that offset.
    let mut expected = vec![0; t.n_bytes];
    let mut file = File::open(&path).unwrap();
    file.seek(SeekFrom::Start(t.offset)).unwrap();
    file.read_exact(&mut expected).unwrap();
    assert_eq!(f.tensor_bytes(t), expected);

    // A slice outlives the GgufFile and keeps the map alive.
    let data = f.tensor_bytes(t);
    drop(f);
    assert_eq!(data, expected);
}

/// A file cut anywhere before the end of its last tensor is an error that
/// says the file is too short, never a panic. Cuts are sampled across the
/// header and metadata (dense at the start) and the tensor data.
#[test]
fn truncated_real_file() {
    let f = GgufFile::open(model_path(SMOLLM2)).unwrap();
    let data_offset = f.data_offset() as usize;
    let mut cuts: Vec<usize> = (0..64).collect();
    cuts.extend((0..150).map(|i| 64 + i * (data_offset - 64) / 150));
    cuts.extend([
        data_offset - 1,
        data_offset,
        data_offset + 1,
        f.bytes().len() - 1,
    ]);
    for cut in cuts {
        let err = GgufFile::from_bytes(f.bytes().slice(..cut)).unwrap_err();
        let GgufError::Format {
            problem, offset, ..
        } = &err
        else {
            panic!("cut at {cut}: {err}");
        };
        assert!(*offset <= cut as u64, "cut at {cut}: {err}");
        if cut < data_offset {
            assert!(
                matches!(
                    problem,
                    FormatError::Truncated { .. } | FormatError::TooMany { .. }
                ),
                "cut at {cut}: {err}"
            );
        } else {
            assert!(
                matches!(problem, FormatError::DataOutOfBounds { file_size, .. } if *file_size == cut as u64),
                "cut at {cut}: {err}"
            );
        }
    }
}
