//! Hugging Face tokenizer.json loading. The test tokenizer.json is SmolLM2's
//! as Hugging Face ships it (digits split one by one, then GPT-2 byte-level
//! BPE, its 17 special tokens as added tokens), rebuilt from the GGUF's
//! vocabulary and merges, so the llama.cpp goldens for SmolLM2 apply to it.

mod common;

use std::path::Path;

use lucid_tokenizer::{Tokenizer, TokenizerError};
use serde_json::json;

fn write_smollm2_hf(dir: &Path, config: Option<serde_json::Value>) -> Tokenizer {
    let meta = common::model_meta(common::SMOLLM2);
    let tokens = meta.str_array("tokenizer.ggml.tokens").expect("tokens");
    let types = meta.i32_array("tokenizer.ggml.token_type").expect("types");
    let merges: Vec<&str> = meta
        .str_array("tokenizer.ggml.merges")
        .expect("merges")
        .iter()
        .collect();
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_owned(), json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty == 3)
        .map(|(i, (t, _))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": merges}
    });
    let json_path = dir.join("tokenizer.json");
    std::fs::write(&json_path, tokenizer.to_string()).expect("write");
    let config_path = config.map(|c| {
        let p = dir.join("tokenizer_config.json");
        std::fs::write(&p, c.to_string()).expect("write");
        p
    });
    Tokenizer::from_hf_file(&json_path, config_path.as_deref()).expect("loads")
}

#[test]
fn hf_tokenizer_json_matches_llama_cpp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = json!({
        "add_prefix_space": false,
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    });
    let t = write_smollm2_hf(dir.path(), Some(config));
    let g = common::golden("smollm2");
    common::check_golden(&t, "smollm2 via tokenizer.json", &g);

    assert_eq!(t.vocab_size(), common::smollm2().vocab_size());
    assert_eq!(t.bos(), t.token_id("<|im_start|>"));
    assert_eq!(t.eos(), t.token_id("<|im_end|>"));
    assert!(!t.add_bos());
    assert_eq!(
        t.chat_template(),
        Some("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    );
    // Same token table, same pieces, same special and EOG sets as the GGUF.
    let gguf = common::smollm2();
    for id in 0..t.vocab_size() as u32 {
        assert_eq!(t.token_bytes(id), gguf.token_bytes(id), "id {id}");
        assert_eq!(t.is_control(id), gguf.is_control(id), "id {id}");
        assert_eq!(
            t.is_end_of_generation(id),
            gguf.is_end_of_generation(id),
            "id {id}"
        );
    }
    for text in common::corpus() {
        let ids = t.encode(&text, true, true).expect("encodes");
        assert_eq!(t.decode(&ids, false), text);
    }
}

#[test]
fn hf_config_adds_bos_and_eos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = json!({
        "add_bos_token": true,
        "add_eos_token": true,
        "bos_token": {"content": "<|im_start|>", "special": true},
        "eos_token": "<|endoftext|>",
        "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
    });
    let t = write_smollm2_hf(dir.path(), Some(config));
    let plain = t.encode("Hello", false, true).expect("encodes");
    let with = t.encode("Hello", true, true).expect("encodes");
    let (bos, eos) = (t.bos().expect("bos"), t.eos().expect("eos"));
    assert_eq!(with, [vec![bos], plain, vec![eos]].concat());
    assert!(t.add_bos());
    assert_eq!(t.chat_template(), Some("D"));
    assert_eq!(t.decode(&with, true), "Hello");
}

#[test]
fn hf_without_config_finds_eos_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = write_smollm2_hf(dir.path(), None);
    assert_eq!(t.eos(), t.token_id("<|endoftext|>"));
    assert_eq!(t.bos(), None);
    assert!(!t.add_bos());
    assert_eq!(t.chat_template(), None);
}

#[test]
fn hf_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.json");
    assert!(matches!(
        Tokenizer::from_hf_file(&missing, None),
        Err(TokenizerError::Io(_))
    ));

    let bad = dir.path().join("tokenizer.json");
    std::fs::write(&bad, "{ not json").expect("write");
    let err = Tokenizer::from_hf_file(&bad, None).expect_err("bad json");
    assert!(matches!(err, TokenizerError::HfFile { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    let t = write_smollm2_hf(dir.path(), None);
    drop(t);
    let config = dir.path().join("tokenizer_config.json");
    std::fs::write(&config, r#"{"eos_token": "<|no such token|>"}"#).expect("write");
    let err = Tokenizer::from_hf_file(&dir.path().join("tokenizer.json"), Some(&config))
        .expect_err("unknown eos");
    assert!(err.to_string().contains("<|no such token|>"), "{err}");
}
