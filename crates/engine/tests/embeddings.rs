//! Embedding and reranking against real references, once per instruction
//! set this CPU can run:
//!
//! - all-MiniLM-L6-v2 (the real sentence-transformers checkpoint) on 337
//!   varied texts: token ids equal `tokenizers`' and sentence-transformers'
//!   exactly (truncation at 256 included), and each embedding's cosine with
//!   sentence-transformers' is at least 0.9999
//!   (`tests/goldens/embeddings`, made by
//!   `scripts/goldens/embeddings/make_minilm_goldens.py`);
//! - the random-weight fixtures of `tests/fixtures/encoders` (made by
//!   `scripts/fixtures/make_encoder_fixtures.py`): BERT with mean pooling and
//!   truncation, BERT with CLS pooling and `gelu_new`, a decoder (Qwen 3)
//!   used as an embedder with last-token pooling, and a cross-encoder's
//!   scores: ids exact, hidden states and vectors to float tolerance;
//! - the same model written as GGUF by lucid (WordPiece vocabulary in
//!   llama.cpp's form, pooling in `bert.pooling_type`) gives the same
//!   vectors as the checkpoint.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use lucid_engine::embed::{ConfigSource, cosine};
use lucid_engine::{ForwardCtx, LoadedModel, ModelRole, Pooling};
use lucid_tensor::Isa;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    common::repo_root()
        .join("tests/fixtures/encoders")
        .join(name)
}

fn reference(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `check` on every instruction set this CPU has, the scalar
/// reference included.
fn on_every_isa(test: &str, check: fn()) {
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
        common::on_isa(isa, test, check);
    }
}

/// Embeds a fixture's inputs and compares ids, the first input's hidden
/// states and every vector with sentence-transformers'.
fn check_fixture(name: &str, pooling: Pooling, role: ModelRole) {
    let dir = fixture(name);
    let r = reference(&dir);
    let model = LoadedModel::load(&dir).unwrap();
    assert_eq!(model.model.role(), role);
    assert_eq!(model.embedding.pooling, pooling);
    assert_eq!(model.embedding.source, ConfigSource::SentenceTransformers);
    assert_eq!(model.embedding.normalize, r["normalize"].as_bool().unwrap());
    let inputs = r["inputs"].as_array().unwrap();
    let texts: Vec<&str> = inputs.iter().map(|i| i["text"].as_str().unwrap()).collect();
    for (input, text) in inputs.iter().zip(&texts) {
        let t = lucid_engine::embed::tokenize(
            &model.tokenizer,
            model.model.as_ref(),
            &model.embedding,
            text,
        )
        .unwrap();
        assert_eq!(t.ids, ids(&input["input_ids"]), "ids of {text:?}");
        assert_eq!(
            t.truncated,
            input["truncated"].as_bool().unwrap(),
            "{text:?}"
        );
    }

    // The encoder alone, before pooling.
    let mut ctx = ForwardCtx::new(2);
    let first = ids(&inputs[0]["input_ids"]);
    let mut hidden = Vec::new();
    lucid_engine::embed::hidden_states(
        model.model.as_ref(),
        &mut ctx,
        &[&first],
        &[],
        |_, rows, _| {
            hidden = rows.to_vec();
        },
    )
    .unwrap();
    let expected: Vec<f32> = r["last_hidden_state"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    let scale = expected.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = max_abs_diff(&hidden, &expected);
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{name}: hidden states differ by {diff}"
    );

    let got = model.embed(&mut ctx, &texts).unwrap();
    let mut worst = 0.0f32;
    for (i, (e, want)) in got
        .iter()
        .zip(r["embeddings"].as_array().unwrap())
        .enumerate()
    {
        let want = floats(want);
        let diff = max_abs_diff(&e.vector, &want);
        worst = worst.max(diff);
        assert!(diff <= 2e-5, "{name} input {i}: vectors differ by {diff}");
        assert!(cosine(&e.vector, &want) >= 0.99999, "{name} input {i}");
    }
    eprintln!(
        "{name}: {} vectors, largest difference from sentence-transformers {worst:.2e}",
        got.len()
    );
}

fn bert_mean() {
    check_fixture("bert-mean", Pooling::Mean, ModelRole::Encoder);
}

fn bert_cls() {
    check_fixture("bert-cls", Pooling::Cls, ModelRole::Encoder);
}

fn qwen3_embed() {
    check_fixture("qwen3-embed", Pooling::LastToken, ModelRole::Generator);
}

#[test]
fn bert_mean_pooling_matches_sentence_transformers() {
    on_every_isa("bert_mean_pooling_matches_sentence_transformers", bert_mean);
}

#[test]
fn bert_cls_pooling_matches_sentence_transformers() {
    on_every_isa("bert_cls_pooling_matches_sentence_transformers", bert_cls);
}

#[test]
fn decoder_as_embedder_matches_sentence_transformers() {
    on_every_isa(
        "decoder_as_embedder_matches_sentence_transformers",
        qwen3_embed,
    );
}

fn reranker() {
    let dir = fixture("bert-reranker");
    let r = reference(&dir);
    let model = LoadedModel::load(&dir).unwrap();
    assert_eq!(model.model.n_labels(), Some(1));
    let inputs = r["inputs"].as_array().unwrap();
    for input in inputs {
        let pair = model
            .tokenizer
            .encode_pair(
                input["query"].as_str().unwrap(),
                input["document"].as_str().unwrap(),
                512,
            )
            .unwrap();
        assert_eq!(pair.ids, ids(&input["input_ids"]));
        assert_eq!(pair.types, ids(&input["token_type_ids"]));
    }
    let mut ctx = ForwardCtx::new(2);
    let logits = floats(&r["logits"]);
    // One query at a time, as a rerank request asks.
    let mut got = Vec::new();
    for input in inputs {
        let scores = model
            .rerank(
                &mut ctx,
                input["query"].as_str().unwrap(),
                &[input["document"].as_str().unwrap()],
            )
            .unwrap();
        got.push(scores[0].score);
    }
    let diff = max_abs_diff(&got, &logits);
    assert!(diff <= 1e-5, "scores {got:?} against {logits:?}: {diff}");
    eprintln!(
        "bert-reranker: {} scores, largest difference {diff:.2e}",
        got.len()
    );
}

#[test]
fn cross_encoder_scores_match_transformers() {
    on_every_isa("cross_encoder_scores_match_transformers", reranker);
}

#[test]
fn generating_with_an_encoder_is_refused() {
    let model = LoadedModel::load(&fixture("bert-mean")).unwrap();
    let mut session = lucid_engine::Session::new(&model, 1, None);
    let err = session
        .generate(
            &[2, 88, 3],
            &lucid_engine::GenerateParams::default(),
            |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("encoder"), "{err}");
}

/// all-MiniLM-L6-v2, from `scripts/fetch-test-models.sh`.
fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("LUCID_MODEL_DIR")
        .map_or_else(|| common::repo_root().join(".cache/models"), PathBuf::from)
        .join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/fetch-test-models.sh",
        dir.display()
    );
    dir
}

struct MiniLmGoldens {
    texts: Vec<String>,
    st_ids: Vec<Vec<u32>>,
    raw_ids: Vec<Vec<u32>>,
    truncated: Vec<bool>,
    vectors: Vec<Vec<f32>>,
}

fn minilm_goldens() -> MiniLmGoldens {
    let dir = common::repo_root().join("tests/goldens/embeddings");
    let header: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("minilm.json")).unwrap()).unwrap();
    let dim = header["dim"].as_u64().unwrap() as usize;
    let bytes = std::fs::read(dir.join("minilm.f32")).unwrap();
    let flat: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let items = header["items"].as_array().unwrap();
    assert_eq!(flat.len(), items.len() * dim);
    MiniLmGoldens {
        texts: items
            .iter()
            .map(|i| i["text"].as_str().unwrap().to_owned())
            .collect(),
        st_ids: items.iter().map(|i| ids(&i["st_ids"])).collect(),
        raw_ids: items.iter().map(|i| ids(&i["raw_ids"])).collect(),
        truncated: items
            .iter()
            .map(|i| i["truncated"].as_bool().unwrap())
            .collect(),
        vectors: flat.chunks_exact(dim).map(<[f32]>::to_vec).collect(),
    }
}

#[test]
fn minilm_token_ids_equal_tokenizers() {
    let g = minilm_goldens();
    let model = LoadedModel::load(&minilm_dir()).unwrap();
    assert_eq!(model.embedding.max_tokens, Some(256));
    for (i, text) in g.texts.iter().enumerate() {
        let raw = model.tokenizer.encode(text, true, true).unwrap();
        assert_eq!(raw, g.raw_ids[i], "tokenizers' ids of item {i} {text:?}");
        let t = lucid_engine::embed::tokenize(
            &model.tokenizer,
            model.model.as_ref(),
            &model.embedding,
            text,
        )
        .unwrap();
        assert_eq!(t.ids, g.st_ids[i], "sentence-transformers' ids of item {i}");
        assert_eq!(t.truncated, g.truncated[i], "item {i}");
    }
}

fn minilm_vectors() {
    let mut g = minilm_goldens();
    if Isa::current() == Isa::Scalar {
        // The reference kernels are slow: every fourth text, and the long
        // ones (cut at 256 tokens), are enough to hold them to the same.
        let keep: Vec<bool> = (0..g.texts.len())
            .map(|i| i % 4 == 0 || g.truncated[i])
            .collect();
        let mut k = keep.iter();
        g.texts.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        g.vectors.retain(|_| *k.next().unwrap_or(&false));
    }
    let model = LoadedModel::load(&minilm_dir()).unwrap();
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let mut ctx = ForwardCtx::new(2);
    let started = std::time::Instant::now();
    let got = model.embed(&mut ctx, &texts).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let mut lowest = 1.0f32;
    let mut worst = 0.0f32;
    for (i, (e, want)) in got.iter().zip(&g.vectors).enumerate() {
        let c = cosine(&e.vector, want);
        lowest = lowest.min(c);
        worst = worst.max(max_abs_diff(&e.vector, want));
        assert!(c >= 0.9999, "item {i} {:?}: cosine {c}", g.texts[i]);
    }
    eprintln!(
        "all-MiniLM-L6-v2, kernels {}: {} texts ({} tokens) in {seconds:.1} s, lowest cosine \
         with sentence-transformers {lowest:.7}, largest difference {worst:.2e}",
        Isa::current().name(),
        got.len(),
        got.iter().map(|e| e.n_tokens).sum::<usize>()
    );
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    on_every_isa(
        "minilm_embeddings_match_sentence_transformers",
        minilm_vectors,
    );
}

#[test]
fn minilm_as_gguf_embeds_the_same() {
    let dir = minilm_dir();
    let hf = LoadedModel::load(&dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Un café, s'il vous plaît!",
        "fn main() { println!(\"hi\"); }",
    ];
    let mut ctx = ForwardCtx::new(2);
    let want = hf.embed(&mut ctx, &texts).unwrap();
    for (dtype, min_cos) in [
        (lucid_tensor::DType::F32, 0.999_999),
        (lucid_tensor::DType::Q8_0, 0.999),
    ] {
        let path = tmp.path().join(format!("minilm-{}.gguf", dtype.name()));
        lucid_engine::quantize::quantize_file(&dir, &path, dtype).unwrap();
        let gguf = LoadedModel::load(&path).unwrap();
        assert_eq!(gguf.embedding.pooling, Pooling::Mean);
        assert_eq!(gguf.embedding.source, ConfigSource::Gguf);
        for text in texts {
            assert_eq!(
                gguf.tokenizer.encode(text, true, true).unwrap(),
                hf.tokenizer.encode(text, true, true).unwrap(),
                "{text:?}"
            );
        }
        let got = gguf.embed(&mut ctx, &texts).unwrap();
        for (g, w) in got.iter().zip(&want) {
            let c = cosine(&g.vector, &w.vector);
            assert!(c >= min_cos, "{}: cosine {c}", dtype.name());
        }
    }
}
