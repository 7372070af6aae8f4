//! Shared helpers for the engine's tests: where the real models and the
//! golden files are.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use lucid_tensor::kernels::{ISA_VAR, Isa};

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

/// Runs `check` on the kernels of `isa`, for the test named `test` (its
/// name as the test harness lists it).
///
/// The kernels are chosen once per process ([`Isa::current`]), the way a
/// user's process chooses them, so a test for another instruction set than
/// this process's runs again in a child process of this test binary with
/// `LUCID_ISA` naming it; the child's report is passed on. An instruction
/// set this CPU cannot run, or that `LUCID_ISA` rules out for the whole test
/// run ([`Isa::available`]), is reported and not run.
pub fn on_isa(isa: Isa, test: &str, check: impl FnOnce()) {
    if Isa::current() == isa {
        eprintln!("{test}: kernels forced to {}", isa.name());
        return check();
    }
    if !Isa::available().contains(&isa) {
        eprintln!(
            "{test}: not run, this CPU (or LUCID_ISA) rules out {}",
            isa.name()
        );
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ISA_VAR, isa.name())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{test} on {} failed:\n{stdout}",
        isa.name()
    );
    assert!(
        stdout.contains("1 passed"),
        "the child process for {test} ran no test:\n{stdout}"
    );
}

/// Greedy decoding of `n` tokens after `prompt`, one token at a time
/// through the cache, on 2 threads.
pub fn greedy(model: &lucid_engine::LoadedModel, prompt: &[u32], n: usize) -> Vec<u32> {
    use lucid_engine::{ForwardCtx, Hooks, LogitsFor, SeqInput};
    let mut ctx = ForwardCtx::new(2);
    let mut cache = model.model.new_cache(None);
    let (mut next, mut out) = (prompt.to_vec(), Vec::new());
    for _ in 0..n {
        let mut seqs = [SeqInput {
            tokens: &next,
            cache: &mut cache,
            logits: LogitsFor::Last,
        }];
        model
            .model
            .forward(&mut ctx, &mut seqs, &mut Hooks::none())
            .expect("forward pass");
        let id = lucid_engine::sampler::argmax(ctx.last_logits(0).expect("last logits"));
        out.push(id);
        next = vec![id];
    }
    out
}
