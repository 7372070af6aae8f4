//! Decoding: round trips over the corpus, the stream decoder against whole
//! decoding, and llama.cpp's own view of each vocabulary (EOG and control
//! ids, every token's piece, detokenized text) from
//! `scripts/goldens/tokenizer/make_vocab_goldens.py`.

mod common;

use common::{corpus, golden, golden_meta};
use lucid_tokenizer::Tokenizer;
use serde::Deserialize;

/// decode(encode(x)) == x, with and without parsing special tokens, BOS left
/// out.
fn check_round_trip(name: &str, t: &Tokenizer) {
    let mut bad = Vec::new();
    for text in corpus() {
        for parse_special in [true, false] {
            let ids = t.encode(&text, true, parse_special).expect("encodes");
            let body = match (t.add_bos(), ids.split_first()) {
                (true, Some((&first, rest))) if Some(first) == t.bos() => rest,
                _ => &ids[..],
            };
            let back = t.decode(body, false);
            if back != text {
                bad.push(format!(
                    "{text:?} (parse_special {parse_special}) -> {back:?}"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: round trips that differ:\n{}",
        bad.join("\n")
    );
}

#[test]
fn smollm2_round_trips() {
    check_round_trip("smollm2", common::smollm2());
}

#[test]
fn gemma3_round_trips() {
    check_round_trip("gemma3", common::gemma3());
}

#[test]
fn spm_space_prefix_round_trips() {
    let g = golden("gemma3-space-prefix");
    let t = Tokenizer::from_gguf(&golden_meta(&g)).expect("loads");
    check_round_trip("gemma3-space-prefix", &t);
}

/// Streaming gives the same text as decoding all at once, and never a
/// replacement character for text that was valid, however the tokens split
/// the characters.
fn check_stream(name: &str, t: &Tokenizer) {
    let mut held_back = 0;
    for text in corpus() {
        let ids = t.encode(&text, true, true).expect("encodes");
        for skip_special in [true, false] {
            let mut stream = t.stream_decoder(skip_special);
            let mut streamed = String::new();
            for &id in &ids {
                let piece = stream.push(id);
                if piece.is_empty() && !t.is_control(id) && !t.token_bytes(id).is_empty() {
                    held_back += 1;
                }
                streamed.push_str(&piece);
            }
            streamed.push_str(&stream.finish());
            assert_eq!(streamed, t.decode(&ids, skip_special), "{name}: {text:?}");
            assert!(
                !streamed.contains('\u{FFFD}') || text.contains('\u{FFFD}'),
                "{name}: {text:?}"
            );
        }
    }
    // The corpus has emoji and CJK text that byte tokens split, so the
    // decoder must have held bytes back somewhere.
    assert!(
        held_back > 0,
        "{name}: no token ever ended inside a character"
    );
}

#[test]
fn smollm2_stream_equals_decode() {
    check_stream("smollm2", common::smollm2());
}

#[test]
fn gemma3_stream_equals_decode() {
    check_stream("gemma3", common::gemma3());
}

/// A character split across tokens comes out whole, once its last byte
/// arrives.
#[test]
fn stream_holds_back_split_characters() {
    for (name, t) in [("smollm2", common::smollm2()), ("gemma3", common::gemma3())] {
        for text in ["👩\u{200d}👩\u{200d}👧", "你好，世界", "🦀🦀"] {
            let ids = t.encode(text, false, false).expect("encodes");
            let mut stream = t.stream_decoder(true);
            let pieces: Vec<String> = ids.iter().map(|&id| stream.push(id)).collect();
            assert_eq!(stream.finish(), "", "{name}: {text:?}");
            assert_eq!(pieces.concat(), text, "{name}");
            for p in &pieces {
                assert!(!p.contains('\u{FFFD}'), "{name}: {text:?} gave {pieces:?}");
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct VocabGolden {
    n_tokens: usize,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    eog: Vec<u32>,
    control: Vec<u32>,
    pieces_fnv1a64: String,
    detokenize: Vec<Detok>,
}

#[derive(Debug, Deserialize)]
struct Detok {
    ids: Vec<u32>,
    unparse_special: bool,
    text: String,
}

fn vocab_golden(name: &str) -> VocabGolden {
    let path = common::golden_dir().join(format!("{name}-vocab.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001B3);
    }
    h
}

fn check_vocab(name: &str, t: &Tokenizer) {
    let g = vocab_golden(name);
    assert_eq!(t.vocab_size(), g.n_tokens, "{name}");
    assert_eq!((t.bos(), t.eos()), (g.bos, g.eos), "{name}");
    assert_eq!(t.add_bos(), g.add_bos, "{name}");
    let n = g.n_tokens as u32;
    let eog: Vec<u32> = (0..n).filter(|&id| t.is_end_of_generation(id)).collect();
    assert_eq!(eog, g.eog, "{name}: EOG ids");
    let control: Vec<u32> = (0..n).filter(|&id| t.is_control(id)).collect();
    assert_eq!(control, g.control, "{name}: control ids");

    let mut h = 0xCBF29CE484222325u64;
    for id in 0..n {
        let piece = t.token_bytes(id);
        h = fnv1a(h, &(piece.len() as u32).to_le_bytes());
        h = fnv1a(h, &piece);
    }
    assert_eq!(
        format!("{h:016x}"),
        g.pieces_fnv1a64,
        "{name}: token pieces"
    );

    for d in &g.detokenize {
        let text = t.decode(&d.ids, !d.unparse_special);
        assert_eq!(text, d.text, "{name}: decode {:?}", d.ids);
    }
}

#[test]
fn smollm2_vocab_matches_llama_cpp() {
    check_vocab("smollm2", common::smollm2());
}

#[test]
fn gemma3_vocab_matches_llama_cpp() {
    check_vocab("gemma3", common::gemma3());
}

/// Ids the vocabulary does not have are skipped, never a panic.
#[test]
fn out_of_range_ids_are_harmless() {
    for t in [common::smollm2(), common::gemma3()] {
        let n = t.vocab_size() as u32;
        for id in [n, n + 1, u32::MAX] {
            assert_eq!(t.token_bytes(id), Vec::<u8>::new());
            assert_eq!(t.token_text(id), None);
            assert!(!t.is_control(id));
            assert!(!t.is_end_of_generation(id));
        }
        let hello = t.encode("hello", false, false).expect("encodes");
        let mut ids = vec![u32::MAX];
        ids.extend(&hello);
        ids.push(n);
        assert_eq!(t.decode(&ids, false), "hello");
        let mut stream = t.stream_decoder(false);
        let streamed: String = ids.iter().map(|&id| stream.push(id)).collect();
        assert_eq!(streamed + &stream.finish(), "hello");
    }
}

/// token_id and token_text are inverse on every token.
#[test]
fn token_id_inverts_token_text() {
    for t in [common::smollm2(), common::gemma3()] {
        for id in 0..t.vocab_size() as u32 {
            let text = t.token_text(id).expect("in range");
            assert_eq!(t.token_id(text), Some(id), "{text:?}");
        }
    }
}

#[test]
fn chat_templates_come_from_metadata() {
    let meta = common::model_meta(common::SMOLLM2);
    let expected = meta.opt_str("tokenizer.chat_template").expect("string");
    assert!(expected.is_some());
    assert_eq!(common::smollm2().chat_template(), expected);
    let meta = common::model_meta(common::GEMMA3);
    assert_eq!(
        common::gemma3().chat_template(),
        meta.opt_str("tokenizer.chat_template").expect("string")
    );
}
