//! The semantic view on real embedding models:
//!
//! - all-MiniLM-L6-v2 (mean pooling, normalized), from
//!   `scripts/fetch-test-models.sh`: its tokens are sentence-transformers'
//!   ids, its similarities are sentence-transformers' `cos_sim`
//!   (`tests/goldens/embeddings`), its vectors are `LoadedModel::embed`'s,
//!   and every pair's token contributions sum to the pair's similarity;
//! - the random-weight fixtures of `tests/fixtures/encoders`: BERT with CLS
//!   pooling and no normalization, and a decoder (Qwen 3) used as an
//!   embedder with last-token pooling, where one token holds the whole
//!   similarity.

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use lucid_engine::{ForwardCtx, LoadedModel};
use lucid_glass::{
    ExplainOptions, GlassError, Limits, ModelKind, Pairs, PoolingKind, Semantic, SemanticOptions,
    explain, semantic,
};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// all-MiniLM-L6-v2 where `scripts/fetch-test-models.sh` puts it (or under
/// `LUCID_MODEL_DIR`); `None`, said on stderr, when it is not there.
fn minilm() -> Option<LoadedModel> {
    let dir = std::env::var_os("LUCID_MODEL_DIR")
        .map_or_else(|| repo_root().join(".cache/models"), PathBuf::from)
        .join("all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").is_file() {
        eprintln!(
            "SKIPPED: {} is missing (run scripts/fetch-test-models.sh)",
            dir.display()
        );
        return None;
    }
    Some(LoadedModel::load(&dir).unwrap())
}

fn fixture(name: &str) -> (LoadedModel, Value) {
    let dir = repo_root().join("tests/fixtures/encoders").join(name);
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    (LoadedModel::load(&dir).unwrap(), reference)
}

fn fixture_texts(reference: &Value) -> Vec<String> {
    reference["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_owned())
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum()
    };
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

fn run(model: &LoadedModel, texts: &[&str], pairs: Pairs) -> Semantic {
    let options = SemanticOptions {
        pairs,
        vectors: true,
    };
    semantic(model, texts, &options, &Limits::server(), 2).unwrap()
}

/// What holds for every semantic view: a symmetric matrix with 1 on the
/// diagonal, neighbours sorted, and contributions that sum to the
/// similarity of their pair.
fn check_consistent(s: &Semantic) {
    let n = s.texts.len();
    assert_eq!(s.similarity.len(), n);
    for i in 0..n {
        assert_eq!(s.similarity[i].len(), n);
        assert!((s.similarity[i][i] - 1.0).abs() < 1e-6, "diagonal {i}");
        for j in 0..n {
            assert_eq!(s.similarity[i][j], s.similarity[j][i], "symmetric {i} {j}");
        }
        let t = &s.texts[i];
        assert!(t.norm > 0.0);
        assert_eq!(t.neighbours.len(), n - 1);
        assert!(t.neighbours.iter().all(|nb| nb.index != i));
        for w in t.neighbours.windows(2) {
            assert!(w[0].similarity >= w[1].similarity);
        }
        for nb in &t.neighbours {
            assert_eq!(nb.similarity, s.similarity[i][nb.index]);
        }
    }
    for p in &s.pairs {
        assert_eq!(p.similarity, s.similarity[p.a][p.b]);
        assert_eq!(p.a_contributions.len(), s.texts[p.a].tokens.len());
        assert_eq!(p.b_contributions.len(), s.texts[p.b].tokens.len());
        for side in [&p.a_contributions, &p.b_contributions] {
            let sum: f64 = side.iter().map(|&c| f64::from(c)).sum();
            assert!(
                (sum - f64::from(p.similarity)).abs() < 1e-5,
                "pair ({}, {}): contributions sum to {sum}, similarity {}",
                p.a,
                p.b,
                p.similarity
            );
        }
    }
}

#[test]
fn minilm_semantic_view_matches_sentence_transformers() {
    let Some(model) = minilm() else {
        return;
    };
    // Items 2 to 5 of tests/goldens/embeddings/minilm.json, whose cos_sim
    // sentence-transformers recorded for (2, 3) and (4, 5).
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/goldens/embeddings/minilm.json")).unwrap(),
    )
    .unwrap();
    let items = &golden["items"].as_array().unwrap()[2..6];
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    let s = run(&model, &texts, Pairs::All);
    check_consistent(&s);

    assert_eq!(s.model.role, ModelKind::Encoder);
    assert_eq!(s.embedding.pooling, PoolingKind::Mean);
    assert!(s.embedding.normalized);
    assert_eq!(s.embedding.max_tokens, 256);
    for (t, item) in s.texts.iter().zip(items) {
        let ids: Vec<u64> = t.tokens.iter().map(|t| u64::from(t.id)).collect();
        let want: Vec<u64> = item["st_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ids, want, "{:?}", t.text);
        assert_eq!(t.tokens.first().unwrap().text, "[CLS]");
        assert!(!t.truncated);
    }
    let cos = |a: u64, b: u64| {
        golden["cos_sim"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["a"] == a && c["b"] == b)
            .and_then(|c| c["cos_sim"].as_f64())
            .unwrap()
    };
    assert!((f64::from(s.similarity[0][1]) - cos(2, 3)).abs() < 1e-4);
    assert!((f64::from(s.similarity[2][3]) - cos(4, 5)).abs() < 1e-4);
    // The two pairs of paraphrases are each other's nearest neighbours, and
    // the food sentences are far from the film ones.
    assert_eq!(s.texts[0].neighbours[0].index, 1);
    assert_eq!(s.texts[3].neighbours[0].index, 2);
    assert!(s.similarity[0][2] < 0.3 && s.similarity[2][3] > 0.85);
    // Every pair, most similar first.
    assert_eq!(s.pairs.len(), 6);
    assert_eq!((s.pairs[0].a, s.pairs[0].b), (2, 3));

    // The vectors are what `embed` returns (unit length: the model
    // normalizes), and the similarity their dot product.
    let mut ctx = ForwardCtx::new(2);
    let embedded = model.embed(&mut ctx, &texts).unwrap();
    for (t, e) in s.texts.iter().zip(&embedded) {
        let v = t.vector.as_ref().unwrap();
        assert_eq!(v.len(), 384);
        let diff = v
            .iter()
            .zip(&e.vector)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-6, "vector differs from embed's by {diff}");
        assert!((cosine(v, v) - 1.0).abs() < 1e-6);
    }
    let dot: f64 = embedded[0]
        .vector
        .iter()
        .zip(&embedded[1].vector)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    assert!((dot - f64::from(s.similarity[0][1])).abs() < 1e-5);

    // The default pairs: each text with its nearest neighbour, once.
    let nearest = semantic(
        &model,
        &texts,
        &SemanticOptions::default(),
        &Limits::server(),
        2,
    )
    .unwrap();
    let pairs: Vec<(usize, usize)> = nearest.pairs.iter().map(|p| (p.a, p.b)).collect();
    assert_eq!(pairs, vec![(2, 3), (0, 1)]);
    assert!(nearest.texts.iter().all(|t| t.vector.is_none()));
    // Content words of the food pair carry more of it than the [SEP] mark.
    let food = nearest.pair(0, 1).unwrap();
    let eating = s.texts[0]
        .tokens
        .iter()
        // A word-initial WordPiece reads as the word after a space.
        .position(|t| t.text == " eating")
        .unwrap();
    let sep = s.texts[0].tokens.len() - 1;
    assert!(food.a_contributions[eating] > food.a_contributions[sep]);

    // Its JSON has the documented keys and reads back the same.
    let json = serde_json::to_value(&nearest).unwrap();
    for key in [
        "model",
        "embedding",
        "texts",
        "similarity",
        "pairs",
        "timings",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert_eq!(json["embedding"]["pooling"], "mean");
    assert_eq!(json["model"]["role"], "encoder");
    assert!(json["texts"][0].get("vector").is_none());
    assert!(json["pairs"][0]["a_contributions"].is_array());
    let back: Semantic = serde_json::from_value(json).unwrap();
    assert_eq!(back, nearest);

    // An encoder predicts no tokens: explaining a prompt is refused.
    let err = explain(
        &model,
        &[101, 102],
        &ExplainOptions::default(),
        &Limits::server(),
        1,
    )
    .unwrap_err();
    assert!(matches!(err, GlassError::NotAGenerator { .. }), "{err}");
}

#[test]
fn cls_pooling_gives_the_first_token_all_of_the_similarity() {
    let (model, reference) = fixture("bert-cls");
    let texts = fixture_texts(&reference);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let s = run(&model, &refs, Pairs::All);
    check_consistent(&s);
    assert_eq!(s.embedding.pooling, PoolingKind::Cls);
    assert!(!s.embedding.normalized);
    let want: Vec<Vec<f32>> = reference["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    for p in &s.pairs {
        // sentence-transformers' vectors give the same cosine.
        let c = cosine(&want[p.a], &want[p.b]);
        assert!(
            (f64::from(p.similarity) - c).abs() < 1e-4,
            "({}, {})",
            p.a,
            p.b
        );
        assert!((p.a_contributions[0] - p.similarity).abs() < 1e-6);
        assert!((p.b_contributions[0] - p.similarity).abs() < 1e-6);
        assert!(p.a_contributions[1..].iter().all(|&c| c == 0.0));
        assert!(p.b_contributions[1..].iter().all(|&c| c == 0.0));
    }
    // Not normalized: the norm is the [CLS] row's length, and the vector is
    // that row.
    let v = s.texts[0].vector.as_ref().unwrap();
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    assert!((norm - f64::from(s.texts[0].norm)).abs() < 1e-4);
}

#[test]
fn last_token_pooling_gives_the_last_token_all_of_the_similarity() {
    let (model, reference) = fixture("qwen3-embed");
    let texts = fixture_texts(&reference);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let s = run(&model, &refs, Pairs::These(vec![(1, 0), (2, 2)]));
    check_consistent(&s);
    assert_eq!(s.model.role, ModelKind::Generator);
    assert_eq!(s.embedding.pooling, PoolingKind::Last);
    // Given pairs come back as given, a text with itself included.
    let pairs: Vec<(usize, usize)> = s.pairs.iter().map(|p| (p.a, p.b)).collect();
    assert_eq!(pairs, vec![(1, 0), (2, 2)]);
    for p in &s.pairs {
        let (last_a, last_b) = (p.a_contributions.len() - 1, p.b_contributions.len() - 1);
        assert!((p.a_contributions[last_a] - p.similarity).abs() < 1e-6);
        assert!((p.b_contributions[last_b] - p.similarity).abs() < 1e-6);
        assert!(p.a_contributions[..last_a].iter().all(|&c| c == 0.0));
    }
    assert!((s.pairs[1].similarity - 1.0).abs() < 1e-6);
}

#[test]
fn too_many_texts_or_tokens_are_refused_before_running() {
    let (model, _) = fixture("bert-cls");
    let options = SemanticOptions::default();
    let many = vec!["a text"; 33];
    let err = semantic(&model, &many, &options, &Limits::server(), 1).unwrap_err();
    assert!(
        matches!(err, GlassError::TooLarge { what: "texts", .. }),
        "{err}"
    );
    let err = semantic(&model, &["alone"], &options, &Limits::server(), 1).unwrap_err();
    assert!(matches!(err, GlassError::TooFewTexts { given: 1 }), "{err}");
    let small = Limits {
        max_semantic_tokens: 5,
        ..Limits::server()
    };
    let err = semantic(&model, &["one text", "another text"], &options, &small, 1).unwrap_err();
    assert!(matches!(err, GlassError::TooLarge { .. }), "{err}");
    let bad_pair = SemanticOptions {
        pairs: Pairs::These(vec![(0, 2)]),
        vectors: false,
    };
    let err = semantic(&model, &["one", "two"], &bad_pair, &Limits::server(), 1).unwrap_err();
    assert!(matches!(err, GlassError::PairOutOfRange { .. }), "{err}");
}
