//! Perplexity on a text of a few thousand tokens, against llama-perplexity
//! (`tests/goldens/llama/perplexity.json`, made by
//! `scripts/goldens/llama/gen_perplexity.py`): within 1%.

#![allow(clippy::unwrap_used)]

mod common;

use lucid_engine::LoadedModel;
use lucid_engine::perplexity::perplexity;

fn check(name: &str) {
    let golden = common::golden("llama/perplexity.json");
    let entry = &golden["models"][name];
    let model = LoadedModel::load(&common::model_path(entry["file"].as_str().unwrap())).unwrap();
    let text_path = common::repo_root().join(golden["text"].as_str().unwrap());
    let mut text = std::fs::read_to_string(&text_path).unwrap();
    // llama-perplexity's -f drops one trailing newline.
    if text.ends_with('\n') {
        text.pop();
    }
    let tokens = model.tokenizer.encode(&text, true, false).unwrap();
    assert_eq!(
        tokens.len() as u64,
        entry["n_tokens"].as_u64().unwrap(),
        "the text tokenizes as llama.cpp's did"
    );
    let want = entry["llama_perplexity"]["final_ppl"].as_f64().unwrap();
    let got = perplexity(&model, &tokens, 512, 2).unwrap();
    assert_eq!(
        got.scored_tokens as u64,
        entry["scored_tokens"].as_u64().unwrap()
    );
    let rel = (got.ppl - want).abs() / want;
    eprintln!(
        "{name}: perplexity {:.4} ± {:.4}, llama.cpp {want:.4} ({:+.3}%)",
        got.ppl,
        got.ppl_error,
        100.0 * (got.ppl - want) / want
    );
    assert!(
        rel <= 0.01,
        "{name}: perplexity {} is not within 1% of llama.cpp's {want}",
        got.ppl
    );
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check("smollm2");
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check("gemma3");
}
