//! Shared by the glass-box route tests: the real SmolLM2, loaded once per
//! test binary from `.cache/models` (put there by
//! `scripts/fetch-test-models.sh`).

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
