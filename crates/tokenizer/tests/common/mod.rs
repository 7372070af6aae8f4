//! Shared by the test binaries: the real test models, the goldens and the
//! corpus in `tests/goldens/tokenizer`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use lucid_gguf::{GgufFile, Metadata, Value};
use lucid_tokenizer::Tokenizer;
use serde::Deserialize;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn golden_dir() -> PathBuf {
    repo().join("tests/goldens/tokenizer")
}

/// The metadata of a test model, from `.cache/models` (or `$LUCID_MODEL_DIR`).
/// Fails, never skips, when the model is not there.
pub fn model_meta(file: &str) -> Metadata {
    let dir = std::env::var_os("LUCID_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/models"));
    let path = dir.join(file);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-test-models.sh",
        path.display()
    );
    match GgufFile::open(&path) {
        Ok(f) => f.metadata().clone(),
        Err(e) => panic!("{e} (scripts/fetch-test-models.sh fetches a good copy)"),
    }
}

#[derive(Debug, Deserialize)]
pub struct Golden {
    pub model: String,
    pub llama_cpp: String,
    pub overrides: serde_json::Map<String, serde_json::Value>,
    pub items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
pub struct Item {
    pub text: String,
    pub add_special: bool,
    pub parse_special: bool,
    pub ids: Vec<u32>,
}

pub fn golden(name: &str) -> Golden {
    let path = golden_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/goldens/tokenizer/make_goldens.py writes it)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn corpus() -> Vec<String> {
    let path = golden_dir().join("corpus.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The model's metadata with the golden's overrides applied.
pub fn golden_meta(g: &Golden) -> Metadata {
    let mut meta = model_meta(&g.model);
    for (key, value) in &g.overrides {
        let value = match value {
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::String(s) => Value::String(s.clone()),
            other => panic!("override {key} = {other}: only bools and strings"),
        };
        meta.insert(key.clone(), value);
    }
    meta
}

pub fn smollm2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(&model_meta(SMOLLM2)).expect("SmolLM2's tokenizer loads"))
}

pub fn gemma3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(&model_meta(GEMMA3)).expect("Gemma 3's tokenizer loads"))
}

/// Compares lucid's ids with every item of a golden and fails listing every
/// item that differs.
pub fn check_golden(tokenizer: &Tokenizer, name: &str, g: &Golden) {
    let mut bad = Vec::new();
    for item in &g.items {
        match tokenizer.encode(&item.text, item.add_special, item.parse_special) {
            Ok(ids) if ids == item.ids => {}
            Ok(ids) => bad.push(format!(
                "{:?} (add_special {}, parse_special {}):\n  llama.cpp {:?}\n  lucid     {:?}",
                item.text, item.add_special, item.parse_special, item.ids, ids
            )),
            Err(e) => bad.push(format!("{:?}: error {e}", item.text)),
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {} of {} items differ from llama.cpp ({}):\n{}",
        bad.len(),
        g.items.len(),
        g.llama_cpp,
        bad.join("\n")
    );
}
