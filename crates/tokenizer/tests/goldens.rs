//! lucid's token ids against llama.cpp's, item for item, from the goldens that
//! `scripts/goldens/tokenizer/make_goldens.py` wrote with llama-tokenize.

mod common;

use common::{check_golden, golden, golden_meta};
use lucid_tokenizer::Tokenizer;

#[test]
fn smollm2_matches_llama_cpp() {
    let g = golden("smollm2");
    assert!(g.overrides.is_empty());
    check_golden(common::smollm2(), "smollm2", &g);
}

#[test]
fn gemma3_matches_llama_cpp() {
    let g = golden("gemma3");
    assert!(g.overrides.is_empty());
    check_golden(common::gemma3(), "gemma3", &g);
}

/// SentencePiece's leading space, before the text and after each special
/// token, on Gemma 3's vocabulary with `add_space_prefix` turned on.
#[test]
fn spm_space_prefix_matches_llama_cpp() {
    let g = golden("gemma3-space-prefix");
    let t = Tokenizer::from_gguf(&golden_meta(&g)).expect("loads");
    check_golden(&t, "gemma3-space-prefix", &g);
}

/// Every BPE pre-tokenizer family, on SmolLM2's vocabulary and merges with
/// `tokenizer.ggml.pre` changed.
#[test]
fn bpe_pre_tokenizers_match_llama_cpp() {
    // One per regex family; the same list as PRE_VARIANTS in make_goldens.py.
    let names = [
        "default",
        "gpt-2",
        "llama-bpe",
        "dbrx",
        "qwen2",
        "falcon",
        "gpt-4o",
        "tekken",
        "poro-chat",
        "viking",
        "deepseek-llm",
        "deepseek-coder",
        "deepseek-v3",
        "seed-coder",
    ];
    for pre in names {
        let name = format!("smollm2-pre-{pre}");
        let g = golden(&name);
        let t = Tokenizer::from_gguf(&golden_meta(&g)).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_golden(&t, &name, &g);
    }
}

/// The corpus and the goldens agree, so no golden is stale.
#[test]
fn goldens_cover_the_corpus() {
    let corpus = common::corpus();
    assert!(corpus.len() >= 40);
    for name in ["smollm2", "gemma3"] {
        let g = golden(name);
        for text in &corpus {
            assert!(
                g.items.iter().any(|i| &i.text == text),
                "{name} has no item for {text:?}: rerun make_goldens.py"
            );
        }
    }
}
