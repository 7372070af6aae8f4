//! Real vocabularies against llama.cpp's own tokenizer tests.
//!
//! llama.cpp ships vocabulary-only GGUF files of real models with a test
//! corpus (`models/ggml-vocab-NAME.gguf.inp`, texts separated by
//! `\n__ggml_vocab_test__\n`) and the ids each text must get
//! (`.gguf.out`, one line per text), which its `test-tokenizer-0` holds its
//! own tokenizer to (no special tokens added, none parsed).
//! `scripts/fetch-test-models.sh` takes them from the llama-cpp-python
//! 0.3.36 sdist on PyPI into `.cache/llama-vocab` (or `$LUCID_VOCAB_DIR`).
//!
//! The vocabularies here are those of the families lucid runs: Llama 3
//! (`llama-bpe`), Llama 2 and Mistral (`llama-spm`), Phi-3 (SentencePiece),
//! Qwen 2/2.5/3 (`qwen2`), GPT-2, and the other pre-tokenizers lucid knows
//! (Falcon, DeepSeek LLM and Coder, StarCoder, MPT, Refact, Command R).
//! Not here: Qwen 3.5's `qwen35` pre-tokenizer and Gemma 4's `gemma4`
//! tokenizer model, which lucid does not read yet (it says so at load).

use std::path::PathBuf;

use lucid_gguf::GgufFile;
use lucid_tokenizer::Tokenizer;

const SEPARATOR: &str = "\n__ggml_vocab_test__\n";

fn vocab_dir() -> PathBuf {
    std::env::var_os("LUCID_VOCAB_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/llama-vocab"),
        PathBuf::from,
    )
}

fn check(name: &str) {
    let base = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    assert!(
        base.is_file(),
        "{} is missing: run scripts/fetch-test-models.sh",
        base.display()
    );
    let file = GgufFile::open(&base).unwrap_or_else(|e| panic!("{name}: {e}"));
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let read = |ext: &str| {
        std::fs::read_to_string(base.with_extension(format!("gguf.{ext}")))
            .unwrap_or_else(|e| panic!("{name}.{ext}: {e}"))
    };
    // As llama.cpp reads it: a separator at the very end opens no text.
    let raw = read("inp");
    let inputs: Vec<String> = raw
        .strip_suffix(SEPARATOR)
        .unwrap_or(&raw)
        .split(SEPARATOR)
        .map(str::to_owned)
        .collect();
    let outputs: Vec<Vec<u32>> = read("out")
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|t| {
                    t.parse()
                        .unwrap_or_else(|e| panic!("{name}.out: {t:?}: {e}"))
                })
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: .inp and .out differ in length"
    );
    assert!(inputs.len() >= 30, "{name}: only {} texts", inputs.len());
    let mut bad = Vec::new();
    for (text, want) in inputs.iter().zip(&outputs) {
        match tokenizer.encode(text, false, false) {
            Ok(ids) if &ids == want => {}
            Ok(ids) => bad.push(format!(
                "{text:?}:\n  llama.cpp {want:?}\n  lucid     {ids:?}"
            )),
            Err(e) => bad.push(format!("{text:?}: error {e}")),
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {} of {} texts differ from llama.cpp's test:\n{}",
        bad.len(),
        inputs.len(),
        bad.join("\n")
    );
}

#[test]
fn llama_bpe() {
    check("llama-bpe");
}

#[test]
fn llama_spm() {
    check("llama-spm");
}

#[test]
fn phi_3() {
    check("phi-3");
}

#[test]
fn qwen2() {
    check("qwen2");
}

#[test]
fn gpt_2() {
    check("gpt-2");
}

#[test]
fn falcon() {
    check("falcon");
}

#[test]
fn deepseek_llm() {
    check("deepseek-llm");
}

#[test]
fn deepseek_coder() {
    check("deepseek-coder");
}

#[test]
fn starcoder() {
    check("starcoder");
}

#[test]
fn mpt() {
    check("mpt");
}

#[test]
fn refact() {
    check("refact");
}

#[test]
fn command_r() {
    check("command-r");
}
