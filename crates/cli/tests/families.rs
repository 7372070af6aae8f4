//! `lucid run`, `lucid show` and `lucid explain` through the built binary on
//! every family's random-weight fixture (`tests/fixtures/families`, made
//! with transformers) as a checkpoint directory and, where llama.cpp's
//! converter reads the family, as the GGUF file it wrote
//! (`tests/fixtures/llama-cpp`): greedy text equals transformers' greedy
//! continuation, `show` names the family, `explain --json` traces the
//! prompt.

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn lucid(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_lucid"))
        .args(args)
        .env("LUCID_HOME", home.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("LUCID_PYPI_URL", "http://127.0.0.1:9/pypi")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = lucid(args);
    assert!(
        out.status.success(),
        "lucid {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One family: its architecture name, and the model paths to try.
fn check(family: &str, fixture: &str, llama_cpp: bool) {
    let dir = fixtures().join("families").join(fixture);
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let prompt = reference["prompts"][0]["text"].as_str().unwrap();
    let expected: Vec<u64> = reference["greedy"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    let mut models = vec![dir.clone()];
    if llama_cpp {
        models.push(fixtures().join("llama-cpp").join(format!("{fixture}.gguf")));
    }
    for model in &models {
        let m = model.to_str().unwrap();
        let shown = ok(&["show", m]);
        assert!(
            shown.contains(&format!("architecture          {family} ")),
            "{m}: show does not name {family}:\n{shown}"
        );
        let n = expected.len().to_string();
        let run: Value = serde_json::from_str(&ok(&[
            "run",
            m,
            "--raw",
            prompt,
            "--json",
            "--temperature",
            "0",
            "--ignore-eos",
            "--max-tokens",
            &n,
            "--threads",
            "2",
        ]))
        .unwrap();
        let tokens: Vec<u64> = run["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert_eq!(tokens, expected, "{m}: greedy tokens");
        let trace: Value =
            serde_json::from_str(&ok(&["explain", m, prompt, "--json", "--threads", "2"])).unwrap();
        assert_eq!(
            trace["tokens"].as_array().map(Vec::len),
            reference["prompts"][0]["ids"].as_array().map(Vec::len),
            "{m}: explain traces the prompt's tokens"
        );
    }
}

#[test]
fn llama() {
    check("llama", "llama", true);
}

#[test]
fn mistral() {
    check("llama", "mistral", false);
}

#[test]
fn mixtral() {
    check("llama", "mixtral", true);
}

#[test]
fn qwen2() {
    check("qwen2", "qwen2", true);
}

#[test]
fn qwen3() {
    check("qwen3", "qwen3", true);
}

#[test]
fn qwen3moe() {
    check("qwen3moe", "qwen3moe", true);
}

#[test]
fn olmoe() {
    check("olmoe", "olmoe", true);
}

#[test]
fn phi3() {
    check("phi3", "phi3", true);
}

#[test]
fn gemma2() {
    check("gemma2", "gemma2", false);
}
