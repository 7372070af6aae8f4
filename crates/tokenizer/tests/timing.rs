//! How long encoding a long text takes, printed for the record (run with
//! `--nocapture`), with a bound loose enough never to fail on a slow machine
//! but tight enough to catch a quadratic algorithm.

mod common;

use std::time::{Duration, Instant};

use lucid_tokenizer::Tokenizer;

/// About 1 MB of mixed prose, code, numbers, CJK and emoji.
fn long_text() -> String {
    let corpus = common::corpus();
    let block: String = corpus.join("\n");
    let mut text = String::new();
    while text.len() < 1_000_000 {
        text.push_str(&block);
        text.push('\n');
    }
    text
}

fn time(name: &str, t: &Tokenizer, text: &str) {
    let start = Instant::now();
    let ids = t.encode(text, true, true).expect("encodes");
    let encode = start.elapsed();
    let start = Instant::now();
    let back = t.decode(&ids, false);
    let decode = start.elapsed();
    eprintln!(
        "{name}: {} bytes -> {} tokens: encode {:.1} ms ({:.1} MB/s), decode {:.1} ms",
        text.len(),
        ids.len(),
        encode.as_secs_f64() * 1e3,
        text.len() as f64 / encode.as_secs_f64() / 1e6,
        decode.as_secs_f64() * 1e3,
    );
    assert!(back.len() >= text.len() - 8, "{name}: decode lost text");
    assert!(
        encode < Duration::from_secs(30),
        "{name}: encode took {encode:?}"
    );
}

#[test]
fn encoding_a_long_text_is_fast() {
    let text = long_text();
    time("smollm2", common::smollm2(), &text);
    time("gemma3", common::gemma3(), &text);

    // One long run of text without spaces or special tokens: the worst case
    // for SentencePiece merging and for the pre-tokenizer regexes.
    let run = "ab".repeat(100_000);
    time("smollm2 (one 200 kB word)", common::smollm2(), &run);
    time("gemma3 (one 200 kB word)", common::gemma3(), &run);
    let spaces = " ".repeat(100_000);
    time("smollm2 (100 k spaces)", common::smollm2(), &spaces);
    time("gemma3 (100 k spaces)", common::gemma3(), &spaces);
}

#[test]
fn loading_is_fast() {
    for file in [common::SMOLLM2, common::GEMMA3] {
        let meta = common::model_meta(file);
        let start = Instant::now();
        let t = Tokenizer::from_gguf(&meta).expect("loads");
        let took = start.elapsed();
        eprintln!(
            "{file}: tokenizer of {} tokens built in {:.1} ms",
            t.vocab_size(),
            took.as_secs_f64() * 1e3
        );
        assert!(took < Duration::from_secs(30));
    }
}
