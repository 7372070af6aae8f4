//! Shared by the glass-box route tests: the real SmolLM2 and
//! all-MiniLM-L6-v2, each loaded once per test binary from `.cache/models`
//! (put there by `scripts/fetch-test-models.sh`).

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use lucid_engine::LoadedModel;

pub fn smollm2() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
            assert!(
                path.is_file(),
                "{} is missing: run scripts/fetch-test-models.sh first",
                path.display()
            );
            Arc::new(LoadedModel::load(&path).unwrap())
        })
        .clone()
}

/// all-MiniLM-L6-v2 (a sentence-transformers checkpoint directory), loaded
/// once per test binary from `.cache/models`.
pub fn minilm() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/all-MiniLM-L6-v2");
            assert!(
                dir.join("model.safetensors").is_file(),
                "{} is missing: run scripts/fetch-test-models.sh first",
                dir.display()
            );
            Arc::new(LoadedModel::load(&dir).unwrap())
        })
        .clone()
}
