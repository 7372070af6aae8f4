//! `lucid embed` on the real all-MiniLM-L6-v2 checkpoint: the vectors equal
//! sentence-transformers' (the committed goldens of
//! `tests/goldens/embeddings`), texts come from arguments and a file,
//! `--dimensions` keeps a unit vector, cut texts are reported, and `lucid
//! run` refuses an embedding model with a message that says what to do.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn minilm() -> PathBuf {
    let dir = repo().join(".cache/models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/fetch-test-models.sh first",
        dir.display()
    );
    dir
}

fn lucid(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lucid"))
        .args(args)
        .env("LUCID_HOME", home)
        .env_remove("LUCID_LOCAL_MODELS")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// Row `i` of the sentence-transformers goldens, and its text.
fn golden(i: usize) -> (String, Vec<f32>) {
    let dir = repo().join("tests/goldens/embeddings");
    let header: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("minilm.json")).unwrap()).unwrap();
    let dim = header["dim"].as_u64().unwrap() as usize;
    let bytes = std::fs::read(dir.join("minilm.f32")).unwrap();
    let row: Vec<f32> = bytes[i * dim * 4..(i + 1) * dim * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let text = header["items"][i]["text"].as_str().unwrap().to_owned();
    (text, row)
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn embeds_as_sentence_transformers_does() {
    let home = tempfile::tempdir().unwrap();
    let (first, want_first) = golden(0);
    let (second, want_second) = golden(1);
    let file = home.path().join("texts.txt");
    std::fs::write(&file, format!("{second}\n")).unwrap();
    let model = minilm();
    let out = lucid(
        home.path(),
        &[
            "embed",
            model.to_str().unwrap(),
            &first,
            "--file",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pooling"], "mean");
    assert_eq!(v["normalized"], true);
    assert_eq!(v["config"], "sentence-transformers");
    assert_eq!(v["dimensions"], 384);
    let items = v["embeddings"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (item, want) in items.iter().zip([&want_first, &want_second]) {
        let got = vector(&item["embedding"]);
        let diff = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "differs from sentence-transformers by {diff}");
        assert_eq!(item["truncated"], false);
    }
    // "Hello world": [CLS] hello world [SEP].
    assert_eq!(items[0]["tokens"], 4);
    assert_eq!(
        v["prompt_tokens"].as_u64().unwrap(),
        items
            .iter()
            .map(|i| i["tokens"].as_u64().unwrap())
            .sum::<u64>()
    );
}

#[test]
fn shorter_vectors_and_cut_texts() {
    let home = tempfile::tempdir().unwrap();
    let model = minilm();
    let long = "word ".repeat(400);
    let out = lucid(
        home.path(),
        &[
            "embed",
            model.to_str().unwrap(),
            &long,
            "--dimensions",
            "32",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = vector(&v["embeddings"][0]["embedding"]);
    assert_eq!(e.len(), 32);
    let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "length {norm}");
    assert_eq!(v["embeddings"][0]["truncated"], true);
    assert_eq!(v["embeddings"][0]["tokens"], 256);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cut to 256 tokens"),
        "the cut is reported"
    );

    let out = lucid(
        home.path(),
        &["embed", model.to_str().unwrap(), "x", "--dimensions", "999"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dimensions 999"));
}

#[test]
fn run_refuses_an_embedding_model() {
    let home = tempfile::tempdir().unwrap();
    let model = minilm();
    let out = lucid(home.path(), &["run", model.to_str().unwrap(), "hi"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("embedding model") && err.contains("lucid embed"),
        "{err}"
    );
}
