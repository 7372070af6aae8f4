//! The embedding and reranking routes through `Router::oneshot`, on the
//! random-weight encoder fixtures of `tests/fixtures/encoders` (made with
//! sentence-transformers, whose outputs are in each `reference.json`):
//! `/v1/embeddings` (floats, base64, token ids, `dimensions`), Ollama's
//! `/api/embed` and `/api/embeddings`, `/v1/rerank`, the errors that name
//! the field, and generation refused on an embedding model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::StatusCode;
use common::{KEY, call, post_json};
use lucid_engine::LoadedModel;
use lucid_scheduler::Scheduler;
use lucid_server::{AppState, LocalModel, ServerBuilder};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/encoders")
        .join(name)
}

fn reference(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("reference.json")).unwrap())
        .unwrap()
}

/// One app serving the three BERT fixtures under their directory names.
fn app() -> Router {
    static STATE: OnceLock<AppState> = OnceLock::new();
    let state = STATE.get_or_init(|| {
        let models = ["bert-mean", "bert-cls", "bert-reranker"]
            .into_iter()
            .map(|name| {
                let model = Arc::new(LoadedModel::load(&fixture(name)).unwrap());
                LocalModel::new(name, Scheduler::start(model, common::scheduler_config()))
            })
            .collect();
        AppState::with_local_provider(
            models,
            lucid_providers::Router::new(),
            common::server_config(),
        )
    });
    ServerBuilder::new(state.clone()).build()
}

/// A POST whose answer is JSON, with its headers.
async fn post(path: &str, body: Value) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers, bytes) =
        call(app(), "POST", path, Some(&body.to_string()), Some(KEY)).await;
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{path}: not JSON: {}",
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(300)
                .collect::<String>()
        )
    });
    (status, headers, v)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list of numbers: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: off by {worst} (tolerance {tol})");
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Standard base64 with padding, decoded (the test's own, to check the
/// server's encoder against).
fn unbase64(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .map(|&c| if c == b'=' { 0 } else { u32::from(value(c)) })
            .fold(0u32, |acc, v| (acc << 6) | v);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

/// The reference's texts and embeddings, without the empty text (which
/// `/v1/embeddings` refuses, as OpenAI does).
fn texts_and_vectors(r: &Value) -> Vec<(String, Vec<f32>, usize, bool)> {
    r["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["embeddings"].as_array().unwrap())
        .filter(|(i, _)| !i["text"].as_str().unwrap().is_empty())
        .map(|(i, e)| {
            (
                i["text"].as_str().unwrap().to_owned(),
                floats(e),
                i["input_ids"].as_array().unwrap().len(),
                i["truncated"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn openai_embeddings_are_sentence_transformers_vectors() {
    for name in ["bert-mean", "bert-cls"] {
        let r = reference(name);
        let cases = texts_and_vectors(&r);
        let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
        let (s, headers, v) = post(
            "/v1/embeddings",
            json!({"model": name, "input": texts, "user": "someone"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], name);
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), cases.len());
        for (i, (item, case)) in data.iter().zip(&cases).enumerate() {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            assert_close(&floats(&item["embedding"]), &case.1, 1e-5, &case.0);
        }
        // Tokens as sentence-transformers fed them, cut where it cut.
        let tokens: usize = cases.iter().map(|c| c.2).sum();
        assert_eq!(v["usage"]["prompt_tokens"], tokens);
        assert_eq!(v["usage"]["total_tokens"], tokens);
        let cut = cases.iter().filter(|c| c.3).count();
        assert_eq!(
            headers["x-lucid-truncated"],
            cut.to_string().as_str(),
            "{name}"
        );
        // One text alone: the same vector.
        let (s, _, one) = post(
            "/v1/embeddings",
            json!({"model": name, "input": cases[1].0}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_close(
            &floats(&one["data"][0]["embedding"]),
            &cases[1].1,
            1e-5,
            "alone",
        );
    }
}

#[tokio::test]
async fn base64_is_the_vectors_little_endian_float32_bytes() {
    let texts = ["Where is the nearest train station?", "a second text"];
    let (_, _, plain) = post(
        "/v1/embeddings",
        json!({"model": "bert-mean", "input": texts}),
    )
    .await;
    let (s, _, b64) = post(
        "/v1/embeddings",
        json!({"model": "bert-mean", "input": texts, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b64}");
    for i in 0..2 {
        let bytes = unbase64(b64["data"][i]["embedding"].as_str().unwrap());
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // Bit for bit: JSON numbers carry float32s exactly.
        assert_eq!(decoded, floats(&plain["data"][i]["embedding"]));
    }
    let (s, _, v) = post(
        "/v1/embeddings",
        json!({"model": "bert-mean", "input": "x", "encoding_format": "float"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["data"][0]["embedding"].is_array());
}

#[tokio::test]
async fn token_ids_are_read_as_given_and_never_cut() {
    let r = reference("bert-mean");
    let inputs = r["inputs"].as_array().unwrap();
    let ids: Vec<Value> = inputs.iter().map(|i| i["input_ids"].clone()).collect();
    let (s, headers, v) = post(
        "/v1/embeddings",
        json!({"model": "bert-mean", "input": ids}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(headers["x-lucid-truncated"], "0");
    // The empty text's [CLS] [SEP] included.
    for (i, want) in r["embeddings"].as_array().unwrap().iter().enumerate() {
        assert_close(
            &floats(&v["data"][i]["embedding"]),
            &floats(want),
            1e-5,
            &format!("ids {i}"),
        );
    }
    // One list of ids alone.
    let (s, _, one) = post(
        "/v1/embeddings",
        json!({"model": "bert-mean", "input": ids[1]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(
        one["usage"]["prompt_tokens"],
        ids[1].as_array().unwrap().len()
    );
    // Longer than the model reads (16 tokens): refused, not cut.
    let long: Vec<u32> = std::iter::once(2)
        .chain(std::iter::repeat_n(88, 16))
        .chain([3])
        .collect();
    let (s, _, v) = post(
        "/v1/embeddings",
        json!({"model": "bert-mean", "input": [ids[1], long]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "input[1]");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("16"),
        "{v}"
    );
    // An id outside the vocabulary (213 tokens) is named.
    let (s, _, v) = post(
        "/v1/embeddings",
        json!({"model": "bert-mean", "input": [[2, 5, 213, 3]]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "input[0][2]");
}

#[tokio::test]
async fn bad_embedding_requests_name_the_field() {
    let many: Vec<&str> = vec!["a"; 2049];
    for (body, param) in [
        (json!({"model": "bert-mean", "input": ""}), "input"),
        (
            json!({"model": "bert-mean", "input": ["ok", ""]}),
            "input[1]",
        ),
        (json!({"model": "bert-mean", "input": []}), "input"),
        (json!({"model": "bert-mean", "input": [[]]}), "input[0]"),
        (json!({"model": "bert-mean", "input": [-1]}), "input"),
        (json!({"model": "bert-mean", "input": ["a", 1]}), "input"),
        (json!({"model": "bert-mean", "input": [[1], "a"]}), "input"),
        (
            json!({"model": "bert-mean", "input": {"text": "x"}}),
            "input",
        ),
        (json!({"model": "bert-mean"}), "."),
        (json!({"model": "bert-mean", "input": many}), "input"),
        (
            json!({"model": "bert-mean", "input": "x", "dimensions": 0}),
            "dimensions",
        ),
        (
            json!({"model": "bert-mean", "input": "x", "dimensions": 33}),
            "dimensions",
        ),
        (
            json!({"model": "bert-mean", "input": "x", "dimensions": -4}),
            "dimensions",
        ),
        (
            json!({"model": "bert-mean", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (
            json!({"model": "bert-mean", "input": "x", "truncate_prompt_tokens": 8}),
            "truncate_prompt_tokens",
        ),
        (
            json!({"model": "openai:text-embedding-3-small", "input": "x"}),
            "model",
        ),
    ] {
        let (s, _, v) = post("/v1/embeddings", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        if param == "." {
            // A missing field is named in the message.
            assert!(
                v["error"]["message"].as_str().unwrap().contains("input"),
                "{v}"
            );
        } else {
            assert_eq!(v["error"]["param"], param, "{body} -> {v}");
        }
    }
    // `null` is absent.
    let (s, _, v) = post(
        "/v1/embeddings",
        json!({"model": "bert-mean", "input": "x", "dimensions": null, "encoding_format": null}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, v) = post("/v1/embeddings", json!({"model": "nope", "input": "x"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn dimensions_keep_the_first_values_renormalized_as_the_model_is() {
    let text = "Where is the nearest train station?";
    for (name, normalizes) in [("bert-mean", true), ("bert-cls", false)] {
        let (_, _, full) = post("/v1/embeddings", json!({"model": name, "input": text})).await;
        let (s, _, short) = post(
            "/v1/embeddings",
            json!({"model": name, "input": text, "dimensions": 8}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{short}");
        let full = floats(&full["data"][0]["embedding"]);
        let short = floats(&short["data"][0]["embedding"]);
        assert_eq!(short.len(), 8);
        let mut want = full[..8].to_vec();
        if normalizes {
            let n = norm(&want);
            want.iter_mut().for_each(|x| *x /= n);
            assert!((norm(&short) - 1.0).abs() < 1e-5, "{name}");
        }
        assert_close(&short, &want, 1e-6, name);
    }
}

#[tokio::test]
async fn ollama_embed_and_the_older_embeddings_route() {
    let r = reference("bert-mean");
    let cases = texts_and_vectors(&r);
    let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let (s, headers, v) = post(
        "/api/embed",
        json!({"model": "bert-mean:latest", "input": texts, "keep_alive": "5m",
               "options": {"temperature": 0.2, "num_thread": 2, "mirostat": 0}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "bert-mean:latest");
    let embeddings = v["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), cases.len());
    for (e, case) in embeddings.iter().zip(&cases) {
        assert_close(&floats(e), &case.1, 1e-5, &case.0);
    }
    let tokens: usize = cases.iter().map(|c| c.2).sum();
    assert_eq!(v["prompt_eval_count"], tokens);
    assert!(v["total_duration"].as_u64().unwrap() > 0);
    assert!(v["load_duration"].is_u64());
    assert_eq!(headers["x-lucid-truncated"], "2");
    // One text as a string; `dimensions`.
    let (s, _, one) = post(
        "/api/embed",
        json!({"model": "bert-mean", "input": texts[0], "dimensions": 4}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["embeddings"][0].as_array().unwrap().len(), 4);
    // No input: the model is loaded, no vectors (what Ollama answers).
    for body in [
        json!({"model": "bert-mean"}),
        json!({"model": "bert-mean", "input": ""}),
        json!({"model": "bert-mean", "input": []}),
    ] {
        let (s, _, v) = post("/api/embed", body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["embeddings"], json!([]));
    }
    // `truncate: false`: a text longer than the model reads is an error.
    let long = cases.iter().find(|c| c.3).unwrap();
    let (s, _, v) = post(
        "/api/embed",
        json!({"model": "bert-mean", "input": [texts[0], long.0], "truncate": false}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let message = v["error"].as_str().unwrap();
    assert!(
        message.contains("input[1]") && message.contains("16"),
        "{v}"
    );
    // `num_ctx` cuts sooner.
    let (s, headers, v) = post(
        "/api/embed",
        json!({"model": "bert-mean", "input": texts[0], "options": {"num_ctx": 5}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["prompt_eval_count"], 5);
    assert_eq!(headers["x-lucid-truncated"], "1");
    // Errors in Ollama's shape, naming the field.
    for (body, named) in [
        (
            json!({"model": "bert-mean", "input": "x", "options": {"num_gpu_layers": 3}}),
            "num_gpu_layers",
        ),
        (
            json!({"model": "bert-mean", "input": "x", "options": {"num_ctx": 0}}),
            "num_ctx",
        ),
        (
            json!({"model": "bert-mean", "input": "x", "dimensions": 99}),
            "dimensions",
        ),
        (
            json!({"model": "bert-mean", "input": "x", "format": "json"}),
            "format",
        ),
        (json!({"model": "bert-mean", "input": 5}), "input"),
    ] {
        let (s, _, v) = post("/api/embed", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {v}");
        assert!(
            v["error"].as_str().unwrap().contains(named),
            "{body} -> {v}"
        );
    }
    let (s, _, v) = post("/api/embed", json!({"model": "nope", "input": "x"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("nope"));
    // The older route: `prompt` → `embedding`, the same vector.
    let (s, _, v) = post(
        "/api/embeddings",
        json!({"model": "bert-mean", "prompt": texts[1], "options": {"seed": 1}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_close(&floats(&v["embedding"]), &cases[1].1, 1e-5, "legacy");
    let (s, _, v) = post(
        "/api/embeddings",
        json!({"model": "bert-mean", "prompt": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"embedding": []}));
    let (s, _, v) = post(
        "/api/embeddings",
        json!({"model": "bert-mean", "prompt": "x", "input": "y"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("input"), "{v}");
}

/// The reference's pairs grouped by query, in order: (query, [(pair index,
/// document)]).
fn rerank_groups(r: &Value) -> Vec<(String, Vec<(usize, String)>)> {
    let mut groups: Vec<(String, Vec<(usize, String)>)> = Vec::new();
    for (i, p) in r["inputs"].as_array().unwrap().iter().enumerate() {
        let q = p["query"].as_str().unwrap().to_owned();
        let d = p["document"].as_str().unwrap().to_owned();
        match groups.iter_mut().find(|g| g.0 == q) {
            Some(g) => g.1.push((i, d)),
            None => groups.push((q, vec![(i, d)])),
        }
    }
    groups
}

#[tokio::test]
async fn rerank_orders_documents_by_the_cross_encoders_logits() {
    let r = reference("bert-reranker");
    let logits = floats(&r["logits"]);
    for (n, (query, docs)) in rerank_groups(&r).into_iter().enumerate() {
        let texts: Vec<&str> = docs.iter().map(|d| d.1.as_str()).collect();
        // Both paths, and both document shapes.
        let (path, documents) = if n % 2 == 0 {
            ("/v1/rerank", json!(texts))
        } else {
            (
                "/rerank",
                json!(texts.iter().map(|t| json!({"text": t})).collect::<Vec<_>>()),
            )
        };
        let (s, _, v) = post(
            path,
            json!({"model": "bert-reranker", "query": query, "documents": documents,
                   "return_documents": true}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "bert-reranker");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), docs.len());
        let mut last = f32::INFINITY;
        for res in results {
            let index = res["index"].as_u64().unwrap() as usize;
            let score = res["relevance_score"].as_f64().unwrap() as f32;
            let (pair, text) = &docs[index];
            assert!(
                (score - logits[*pair]).abs() < 1e-5,
                "{query} / {text}: {score}"
            );
            assert_eq!(res["document"]["text"], text.as_str());
            assert!(score <= last, "not best first: {v}");
            last = score;
        }
        let tokens: usize = docs
            .iter()
            .map(|(pair, _)| r["inputs"][*pair]["input_ids"].as_array().unwrap().len())
            .sum();
        assert_eq!(v["usage"]["prompt_tokens"], tokens, "{v}");
    }
    // `top_n`, and documents left out by default.
    let (query, docs) = &rerank_groups(&r)[0];
    let texts: Vec<&str> = docs.iter().map(|d| d.1.as_str()).collect();
    let (s, _, v) = post(
        "/v1/rerank",
        json!({"model": "bert-reranker", "query": query, "documents": texts, "top_n": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert!(results[0].get("document").is_none(), "{v}");
    let best = docs
        .iter()
        .enumerate()
        .max_by(|a, b| logits[a.1.0].total_cmp(&logits[b.1.0]))
        .unwrap()
        .0;
    assert_eq!(results[0]["index"], best);
}

#[tokio::test]
async fn bad_rerank_requests_name_the_field() {
    let ok = json!({"model": "bert-reranker", "query": "q", "documents": ["a", "b"]});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, param, code) in [
        (with("query", json!("")), "query", None),
        (with("documents", json!([])), "documents", None),
        (with("top_n", json!(0)), "top_n", None),
        (with("rank_fields", json!(["text"])), "rank_fields", None),
        (
            with("documents", json!([{"text": "a", "title": "t"}])),
            "documents[0].title",
            None,
        ),
        (with("documents", json!([5])), "documents[0]", None),
        (
            with("documents", json!([{"title": "t"}])),
            "documents[0]",
            None,
        ),
        // A model without a classification head cannot rerank.
        (
            with("model", json!("bert-mean")),
            "model",
            Some("model_not_supported"),
        ),
    ] {
        let (s, _, v) = post("/v1/rerank", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {v}");
        assert_eq!(v["error"]["param"], param, "{body} -> {v}");
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("no classification head"),
                "{v}"
            );
        }
    }
    // A `top_n` beyond the documents is all of them.
    let (s, _, v) = post("/v1/rerank", with("top_n", json!(10))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn generating_with_an_embedding_model_is_a_400_naming_the_model() {
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "bert-mean", "messages": msgs, "max_tokens": 4}),
        ),
        (
            "/v1/completions",
            json!({"model": "bert-mean", "prompt": "Hi", "max_tokens": 4}),
        ),
        (
            "/v1/responses",
            json!({"model": "bert-mean", "input": "Hi", "max_output_tokens": 4}),
        ),
        (
            "/v1/messages",
            json!({"model": "bert-mean", "messages": msgs, "max_tokens": 4}),
        ),
        (
            "/api/chat",
            json!({"model": "bert-mean", "messages": msgs, "stream": false}),
        ),
        (
            "/api/generate",
            json!({"model": "bert-mean", "prompt": "Hi", "stream": false}),
        ),
    ] {
        let (s, v) = post_json(app(), path, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        let message = match path {
            p if p.starts_with("/api/") => v["error"].as_str().unwrap().to_owned(),
            "/v1/messages" => v["error"]["message"].as_str().unwrap().to_owned(),
            _ => {
                assert_eq!(v["error"]["param"], "model", "{path}: {v}");
                assert_eq!(v["error"]["code"], "model_not_supported", "{path}: {v}");
                v["error"]["message"].as_str().unwrap().to_owned()
            }
        };
        assert!(
            message.contains("embedding model") && message.contains("does not generate"),
            "{path}: {message}"
        );
    }
}

#[tokio::test]
async fn embedding_models_are_listed_shown_and_counted() {
    let (s, _, body) = call(app(), "GET", "/v1/models", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bert-mean", "bert-cls", "bert-reranker"]);
    let (s, _, body) = call(app(), "GET", "/api/tags", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["models"][0]["name"], "bert-mean:latest");
    assert_eq!(v["models"][0]["details"]["family"], "bert");
    let (s, v) = post_json(app(), "/api/show", json!({"model": "bert-mean"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["capabilities"], json!(["embedding"]));
    assert_eq!(v["model_info"]["bert.embedding_length"], 32);
    // Inputs and tokens are counted per model and task.
    let (s, _, _) = post(
        "/v1/embeddings",
        json!({"model": "bert-cls", "input": ["one", "two"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = post(
        "/v1/rerank",
        json!({"model": "bert-reranker", "query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, body) = call(app(), "GET", "/metrics", None, Some(KEY)).await;
    let text = String::from_utf8(body).unwrap();
    let value = |line: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no {line} in /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(value("lucid_embedding_inputs_total{model=\"bert-cls\",task=\"embed\"}") >= 2);
    assert!(value("lucid_embedding_tokens_total{model=\"bert-cls\",task=\"embed\"}") >= 6);
    assert!(value("lucid_embedding_inputs_total{model=\"bert-reranker\",task=\"rerank\"}") >= 1);
}
