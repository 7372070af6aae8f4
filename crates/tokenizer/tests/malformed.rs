//! Broken or unsupported vocabularies are errors that say what is wrong, and
//! no input text or id makes the tokenizer panic.

use lucid_gguf::{Array, GgufError, Metadata, Value};
use lucid_tokenizer::{Tokenizer, TokenizerError};

fn strings(items: &[&str]) -> Value {
    Value::Array(Array::String(items.iter().collect()))
}

/// A small valid byte-level BPE vocabulary: all 256 byte characters, plus
/// "he", "ll", "hell", "hello" by merges.
fn bpe_meta() -> Metadata {
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into()];
    for cp in (0x21..=0x7Eu32)
        .chain(0xA1..=0xACu32)
        .chain(0xAE..=0xFFu32)
        .chain(0x100..0x144u32)
    {
        tokens.push(char::from_u32(cp).expect("char").to_string());
    }
    tokens.extend(["he", "ll", "hell", "hello"].map(String::from));
    let mut types = vec![1i32; tokens.len()];
    types[0] = 3;
    [
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(tokens.into())),
        ),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        (
            "tokenizer.ggml.merges",
            strings(&["h e", "l l", "he ll", "hell o"]),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
    ]
    .into_iter()
    .collect()
}

/// A small valid SentencePiece vocabulary with byte fallback.
fn spm_meta() -> Metadata {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (t, s) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("i", -2.0),
        ("hi", -1.5),
        ("▁hi", -0.5),
    ] {
        tokens.push(t.into());
        types.push(1);
        scores.push(s);
    }
    [
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(tokens.into())),
        ),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.scores", Value::Array(Array::F32(scores))),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(true)),
    ]
    .into_iter()
    .collect()
}

fn with(mut meta: Metadata, key: &str, value: Value) -> Metadata {
    meta.insert(key, value);
    meta
}

fn without(meta: &Metadata, key: &str) -> Metadata {
    meta.iter()
        .filter(|(k, _)| *k != key)
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
}

fn error(meta: &Metadata) -> TokenizerError {
    Tokenizer::from_gguf(meta).expect_err("should not load")
}

#[test]
fn the_small_vocabularies_load_and_work() {
    let bpe = Tokenizer::from_gguf(&bpe_meta()).expect("bpe loads");
    let hello = bpe.token_id("hello").expect("hello");
    let ids = bpe
        .encode("hello<|endoftext|>", true, true)
        .expect("encodes");
    assert_eq!(ids, [hello, 0]);
    assert!(bpe.is_end_of_generation(0));
    assert_eq!(bpe.decode(&ids, true), "hello");

    let spm = Tokenizer::from_gguf(&spm_meta()).expect("spm loads");
    // SPM defaults: BOS 1 added, unknown 0.
    assert_eq!(spm.bos(), Some(1));
    assert!(spm.add_bos());
    let ids = spm.encode("hi é", true, false).expect("encodes");
    let tok = |t: &str| spm.token_id(t).expect("token");
    // "é" has no token: its two UTF-8 bytes fall back to byte tokens.
    assert_eq!(ids, [1, tok("▁hi"), tok("▁"), tok("<0xC3>"), tok("<0xA9>")]);
    assert_eq!(spm.decode(&ids, true), "hi é");
}

#[test]
fn missing_keys_are_named() {
    let err = error(&without(&bpe_meta(), "tokenizer.ggml.model"));
    assert!(
        matches!(&err, TokenizerError::Gguf(GgufError::MissingKey { key, .. }) if key == "tokenizer.ggml.model"),
        "{err:?}"
    );
    let err = error(&without(&bpe_meta(), "tokenizer.ggml.tokens"));
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");
    let err = error(&without(&bpe_meta(), "tokenizer.ggml.merges"));
    assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");
}

#[test]
fn wrong_types_are_named() {
    let err = error(&with(bpe_meta(), "tokenizer.ggml.tokens", Value::U32(3)));
    assert!(
        matches!(&err, TokenizerError::Gguf(GgufError::WrongType { key, .. }) if key == "tokenizer.ggml.tokens"),
        "{err:?}"
    );
    let err = error(&with(spm_meta(), "tokenizer.ggml.scores", strings(&["x"])));
    assert!(err.to_string().contains("tokenizer.ggml.scores"), "{err}");
    let err = error(&with(
        spm_meta(),
        "tokenizer.ggml.token_type",
        Value::Bool(true),
    ));
    assert!(
        err.to_string().contains("tokenizer.ggml.token_type"),
        "{err}"
    );
}

#[test]
fn unsupported_models_and_pre_tokenizers() {
    let err = error(&with(
        bpe_meta(),
        "tokenizer.ggml.model",
        Value::String("rwkv".into()),
    ));
    assert!(
        matches!(&err, TokenizerError::UnsupportedModel(m) if m == "rwkv"),
        "{err:?}"
    );
    let err = error(&with(
        bpe_meta(),
        "tokenizer.ggml.pre",
        Value::String("no-such-pre".into()),
    ));
    assert!(
        matches!(&err, TokenizerError::UnsupportedPreTokenizer(p) if p == "no-such-pre"),
        "{err:?}"
    );
    // Without the key, llama.cpp's `default` pre-tokenizer.
    assert!(Tokenizer::from_gguf(&without(&bpe_meta(), "tokenizer.ggml.pre")).is_ok());
}

#[test]
fn bad_merges_are_named() {
    let err = error(&with(
        bpe_meta(),
        "tokenizer.ggml.merges",
        strings(&["h e", "ll"]),
    ));
    assert!(
        matches!(&err, TokenizerError::BadMerge { index: 1, line } if line == "ll"),
        "{err:?}"
    );
    let err = error(&with(bpe_meta(), "tokenizer.ggml.merges", strings(&["h "])));
    assert!(
        matches!(err, TokenizerError::BadMerge { index: 0, .. }),
        "{err:?}"
    );
    let err = error(&with(
        bpe_meta(),
        "tokenizer.ggml.merges",
        strings(&["h e", "q z"]),
    ));
    assert!(
        matches!(err, TokenizerError::MergeNotInVocab { index: 1, .. }),
        "{err:?}"
    );
    // Both sides are tokens but the result is not.
    let err = error(&with(
        bpe_meta(),
        "tokenizer.ggml.merges",
        strings(&["e h"]),
    ));
    assert!(
        matches!(err, TokenizerError::MergeNotInVocab { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn bad_token_tables_are_errors() {
    let err = error(&with(spm_meta(), "tokenizer.ggml.tokens", strings(&[])));
    assert!(matches!(err, TokenizerError::EmptyVocab), "{err:?}");
    let err = error(&with(
        spm_meta(),
        "tokenizer.ggml.tokens",
        strings(&["a", "b", "a"]),
    ));
    assert!(
        matches!(&err, TokenizerError::DuplicateToken { text, first: 0, second: 2 } if text == "a"),
        "{err:?}"
    );
    let err = error(&with(
        spm_meta(),
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0; 3])),
    ));
    assert!(
        matches!(
            err,
            TokenizerError::ArrayTooShort {
                key: "tokenizer.ggml.scores",
                len: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let err = error(&with(
        spm_meta(),
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![1])),
    ));
    assert!(
        matches!(err, TokenizerError::ArrayTooShort { .. }),
        "{err:?}"
    );
}

#[test]
fn special_ids_out_of_range_are_ignored() {
    // llama.cpp warns and keeps the default; so does lucid.
    let meta = with(
        spm_meta(),
        "tokenizer.ggml.bos_token_id",
        Value::U32(1_000_000),
    );
    let t = Tokenizer::from_gguf(&meta).expect("loads");
    assert_eq!(t.bos(), Some(1));
    // -1 for "none" reads as absent.
    let meta = with(bpe_meta(), "tokenizer.ggml.eos_token_id", Value::I32(-1));
    assert!(Tokenizer::from_gguf(&meta).is_ok());
}

#[test]
fn bos_asked_for_but_missing_is_an_encode_error() {
    // A BPE vocabulary of fewer than 12 tokens has no default BOS.
    let meta: Metadata = [
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens", strings(&["a", "b", "ab"])),
        ("tokenizer.ggml.merges", strings(&["a b"])),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ]
    .into_iter()
    .collect();
    let t = Tokenizer::from_gguf(&meta).expect("loads");
    assert_eq!(t.encode("ab", false, true).expect("encodes"), [2]);
    let err = t.encode("ab", true, true).expect_err("no BOS");
    assert!(
        matches!(err, TokenizerError::MissingSpecial("BOS")),
        "{err:?}"
    );
    // Bytes the vocabulary has no token for are dropped, not a panic.
    assert_eq!(t.encode("abz", false, true).expect("encodes"), [2]);
}

#[test]
fn spm_without_byte_tokens_uses_unknown_or_fails_cleanly() {
    let meta: Metadata = [
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["<unk>", "<s>", "</s>", "▁a"]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![2, 3, 3, 1])),
        ),
    ]
    .into_iter()
    .collect();
    let t = Tokenizer::from_gguf(&meta).expect("loads");
    assert_eq!(t.encode("a", false, true).expect("encodes"), [3]);
    assert_eq!(t.encode("é", false, true).expect("encodes"), [0; 5]);

    let meta = with(meta, "tokenizer.ggml.unknown_token_id", Value::U32(99));
    let meta = with(
        meta,
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![1, 3, 3, 1])),
    );
    let meta = with(
        meta,
        "tokenizer.ggml.tokens",
        strings(&["x", "<s>", "</s>", "▁a"]),
    );
    // The unknown id in the file is out of range, so the default, 0, stays.
    let t = Tokenizer::from_gguf(&meta).expect("loads");
    assert_eq!(t.encode("é", false, true).expect("encodes"), [0; 5]);
}

#[test]
fn no_panics_on_odd_text() {
    let texts = [
        "",
        "\0",
        "\0\0\u{1}\u{7f}",
        "\u{10FFFF}\u{FFFF}\u{FEFF}",
        "<|endoftext|<|endoftext|>|>",
        "<<<<>>>>",
        &"\n".repeat(1000),
        &" ".repeat(1000),
        &"🦀".repeat(300),
        &"a".repeat(5000),
    ];
    for t in [
        Tokenizer::from_gguf(&bpe_meta()).expect("bpe"),
        Tokenizer::from_gguf(&spm_meta()).expect("spm"),
    ] {
        for text in texts {
            for (a, p) in [(true, true), (false, false)] {
                let ids = t.encode(text, a, p).expect("encodes");
                let _ = t.decode(&ids, false);
            }
        }
    }
}
