//! `POST /v1/explain/semantic` through `Router::oneshot`, over the real
//! all-MiniLM-L6-v2 and SmolLM2: the semantic view as JSON (rounded as
//! asked, contributions summing to their pair's similarity), the pairs
//! asked for, typed errors for bad requests, the model list's roles, and
//! `/v1/explain` refusing an encoder with a pointer to this route.

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use lucid_web::{StaticModels, WebConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::{minilm, smollm2};

const TEXTS: [&str; 3] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
];

fn app() -> Router {
    let models = StaticModels::new(vec![
        ("smollm2".into(), smollm2()),
        ("all-minilm".into(), minilm()),
    ]);
    lucid_web::router(
        Arc::new(models),
        WebConfig {
            threads: 2,
            ..WebConfig::default()
        },
    )
}

async fn send(req: Request<Body>) -> (StatusCode, Value) {
    let res = app().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, v)
}

async fn post(path: &str, body: Value) -> (StatusCode, Value) {
    send(
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// At most `decimals` places.
fn rounded(x: f64, decimals: i32) -> bool {
    let scale = 10f64.powi(decimals);
    ((x * scale).round() / scale - x).abs() < 1e-9
}

#[tokio::test]
async fn the_semantic_view_is_served_as_json() {
    let (status, v) = post(
        "/v1/explain/semantic",
        json!({"model": "all-minilm", "texts": TEXTS}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model_name"], "all-minilm");
    assert_eq!(v["model"]["role"], "encoder");
    assert_eq!(
        v["embedding"],
        json!({"pooling": "mean", "normalized": true, "max_tokens": 256})
    );
    let texts = v["texts"].as_array().unwrap();
    assert_eq!(texts.len(), 3);
    assert_eq!(texts[1]["text"], TEXTS[1]);
    assert_eq!(texts[0]["tokens"][0], json!({"id": 101, "text": "[CLS]"}));
    assert!(texts[0].get("vector").is_none());
    // Symmetric, 1 on the diagonal, rounded to the default 4 decimals.
    let sim: Vec<Vec<f64>> = v["similarity"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    for i in 0..3 {
        assert_eq!(sim[i][i], 1.0);
        for j in 0..3 {
            assert_eq!(sim[i][j], sim[j][i]);
            assert!(rounded(sim[i][j], 4), "{}", sim[i][j]);
        }
    }
    assert!((sim[0][1] - 0.7553).abs() < 2e-4, "{}", sim[0][1]);
    assert_eq!(
        texts[0]["neighbours"][0],
        json!({"index": 1, "similarity": sim[0][1]})
    );
    assert_eq!(texts[2]["neighbours"].as_array().unwrap().len(), 2);
    // Each text's nearest neighbour, once: 0↔1, then 2's nearest.
    let pairs = v["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!((&pairs[0]["a"], &pairs[0]["b"]), (&json!(0), &json!(1)));
    assert_eq!(pairs[0]["similarity"].as_f64().unwrap(), sim[0][1]);
    let a = floats(&pairs[0]["a_contributions"]);
    let b = floats(&pairs[0]["b_contributions"]);
    assert_eq!(a.len(), texts[0]["tokens"].as_array().unwrap().len());
    assert_eq!(b.len(), texts[1]["tokens"].as_array().unwrap().len());
    // Rounded to 4 places each, they sum to the similarity within the
    // rounding of every term.
    for side in [&a, &b] {
        let sum: f64 = side.iter().sum();
        assert!(
            (sum - sim[0][1]).abs() <= 0.5e-4 * (side.len() + 1) as f64,
            "{sum}"
        );
    }
}

#[tokio::test]
async fn pairs_vectors_and_precision_are_applied() {
    let (status, v) = post(
        "/v1/explain/semantic",
        json!({"model": "all-minilm", "texts": TEXTS, "pairs": "all", "vectors": true, "precision": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["pairs"].as_array().unwrap().len(), 3);
    assert_eq!(v["texts"][0]["vector"].as_array().unwrap().len(), 384);
    // Unrounded, the contributions sum to the similarity.
    for p in v["pairs"].as_array().unwrap() {
        let s = p["similarity"].as_f64().unwrap();
        let sum: f64 = floats(&p["a_contributions"]).iter().sum();
        assert!((sum - s).abs() < 1e-5, "{sum} vs {s}");
    }

    let (status, v) = post(
        "/v1/explain/semantic",
        json!({"model": "all-minilm", "texts": TEXTS, "pairs": [[2, 0]], "precision": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let pairs = v["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!((&pairs[0]["a"], &pairs[0]["b"]), (&json!(2), &json!(0)));
    assert!(rounded(v["similarity"][0][1].as_f64().unwrap(), 2));
}

#[tokio::test]
async fn a_generator_is_compared_by_its_own_pooling() {
    let (status, v) = post(
        "/v1/explain/semantic",
        json!({"model": "smollm2", "texts": ["cats are nice", "dogs are nice"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"]["role"], "generator");
    assert_eq!(v["embedding"]["pooling"], "last");
    let a = floats(&v["pairs"][0]["a_contributions"]);
    assert!(a[..a.len() - 1].iter().all(|&c| c == 0.0));
}

#[tokio::test]
async fn bad_semantic_requests_get_typed_errors() {
    for (body, status, param) in [
        (
            json!({"model": "all-minilm", "texts": ["alone"]}),
            StatusCode::BAD_REQUEST,
            json!("texts"),
        ),
        (
            json!({"model": "all-minilm", "texts": vec!["x"; 33]}),
            StatusCode::BAD_REQUEST,
            json!("texts"),
        ),
        (
            json!({"model": "all-minilm", "texts": TEXTS, "pairs": "some"}),
            StatusCode::BAD_REQUEST,
            json!("pairs"),
        ),
        (
            json!({"model": "all-minilm", "texts": TEXTS, "pairs": [[0, 3]]}),
            StatusCode::BAD_REQUEST,
            json!("pairs"),
        ),
        (
            json!({"model": "all-minilm", "texts": TEXTS, "precision": 12}),
            StatusCode::BAD_REQUEST,
            json!("precision"),
        ),
        (
            json!({"model": "all-minilm", "texts": TEXTS, "lens": true}),
            StatusCode::BAD_REQUEST,
            Value::Null,
        ),
        (
            json!({"model": "nope", "texts": TEXTS}),
            StatusCode::NOT_FOUND,
            json!("model"),
        ),
    ] {
        let (got, v) = post("/v1/explain/semantic", body.clone()).await;
        assert_eq!(got, status, "{body} → {v}");
        assert_eq!(v["error"]["param"], param, "{body} → {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
    }
}

#[tokio::test]
async fn explain_refuses_an_encoder_and_points_to_the_semantic_view() {
    let (status, v) = post(
        "/v1/explain",
        json!({"model": "all-minilm", "prompt": "The capital of France is"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "model");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("/v1/explain/semantic"), "{message}");
}

#[tokio::test]
async fn models_say_their_role_and_how_they_embed() {
    let (status, v) = send(
        Request::get("/v1/explain/models")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let data = v["data"].as_array().unwrap();
    let of = |id: &str| data.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(of("smollm2")["explain"]["role"], "generator");
    assert_eq!(of("smollm2")["embedding"]["pooling"], "last");
    assert_eq!(of("all-minilm")["explain"]["role"], "encoder");
    assert_eq!(of("all-minilm")["embedding"]["pooling"], "mean");
    assert_eq!(of("all-minilm")["embedding"]["max_tokens"], 256);
}
