//! Shared helpers for the engine's tests: where the real models and the
//! golden files are.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A real test model, which `scripts/fetch-test-models.sh` puts in
/// `.cache/models` (or the directory `LUCID_MODEL_DIR` names). Fails the
/// test, with the way to fix it, when the file is missing.
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("LUCID_MODEL_DIR")
        .map_or_else(|| repo_root().join(".cache/models"), PathBuf::from);
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-test-models.sh (or set LUCID_MODEL_DIR)",
        path.display()
    );
    path
}

/// A golden file under `tests/goldens`.
pub fn golden(rel: &str) -> serde_json::Value {
    let path = repo_root().join("tests/goldens").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
