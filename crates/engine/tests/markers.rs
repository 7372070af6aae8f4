//! Gemma 3's image markers (`<start_of_image>`, `<end_of_image>`) in a
//! text-only run: decoded as nothing unless special tokens are asked for,
//! as control tokens are, while tokenization stays exactly llama.cpp's
//! (the same ids with and without the marking) and user-defined text
//! tokens such as `<b>` still read as text.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use lucid_engine::LoadedModel;
use lucid_tokenizer::Tokenizer;

fn gemma() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-models.sh",
        path.display()
    );
    path
}

#[test]
fn image_markers_are_hidden_and_tokenize_as_before() {
    let model = LoadedModel::load(&gemma()).unwrap();
    let marked = &model.tokenizer;
    let file = lucid_gguf::GgufFile::open(gemma()).unwrap();
    let plain = Tokenizer::from_gguf(file.metadata()).unwrap();

    let start = marked.token_id("<start_of_image>").unwrap();
    let end = marked.token_id("<end_of_image>").unwrap();
    for id in [start, end] {
        assert_eq!(marked.decode(&[id], true), "", "{id}");
        assert_eq!(
            marked.decode(&[id], false),
            plain.decode(&[id], false),
            "{id}"
        );
        // Unmarked, llama.cpp's view: user-defined, printed.
        assert!(!plain.decode(&[id], true).is_empty());
    }
    let bold = marked.token_id("<b>").unwrap();
    assert_eq!(marked.decode(&[bold], true), "<b>");

    for text in [
        "A picture: <start_of_image> and then <end_of_image>.",
        "<b>bold</b> <start_of_image>",
        "plain text, nothing special",
    ] {
        for parse_special in [true, false] {
            assert_eq!(
                marked.encode(text, true, parse_special).unwrap(),
                plain.encode(text, true, parse_special).unwrap(),
                "{text:?} parse_special {parse_special}"
            );
        }
    }
}
