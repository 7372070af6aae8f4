//! The glass box under load and abuse: work bounded before it runs, a
//! bounded queue that answers 429, an explain that stops when its client
//! leaves, and JSON errors for bodies that are too big.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use lucid_web::{StaticModels, WebConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::smollm2;

fn app(config: WebConfig) -> Router {
    let models = StaticModels::new(vec![("smollm2".into(), smollm2())]);
    lucid_web::router(Arc::new(models), config)
}

async fn post(app: Router, body: String) -> (StatusCode, axum::http::HeaderMap, Value, Duration) {
    let start = Instant::now();
    let res = app
        .oneshot(
            Request::post("/v1/explain")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, v, start.elapsed())
}

fn words(n: usize) -> String {
    (0..n).map(|i| format!("w{i} ")).collect()
}

/// A lens over a 1,000-token prompt ran for minutes; now it is refused by
/// its cost before it starts, and the largest lens allowed is measured.
#[tokio::test]
async fn a_lens_too_costly_is_refused_before_it_runs() {
    let app = app(WebConfig {
        threads: 2,
        ..WebConfig::default()
    });
    let body = json!({"model": "smollm2", "prompt": words(250), "max_tokens": 1, "lens": true});
    let (status, _, v, took) = post(app.clone(), body.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("logit-lens logits"), "{msg}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The web page's 200-token lens (about 60 words here) runs.
    let body = json!({"model": "smollm2", "prompt": words(60), "max_tokens": 1, "lens": true});
    let (status, _, v, took) = post(app, body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    eprintln!("a lens of 31 rows over ~200 positions took {took:?}");
}

/// One explain at a time and one waiting: a third is told to come back
/// (429, Retry-After); when the running one's client leaves, it stops at
/// its next step and the waiting one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_and_a_client_that_leaves_frees_its_turn() {
    let app = app(WebConfig {
        threads: 2,
        max_concurrent: 1,
        max_queue: 1,
        ..WebConfig::default()
    });
    let long = json!({"model": "smollm2", "prompt": words(10), "max_tokens": 64, "lens": true, "temperature": 1.0, "seed": 7}).to_string();
    let short = json!({"model": "smollm2", "prompt": "Hi", "max_tokens": 1}).to_string();
    // How long the long one takes when nobody leaves.
    let (status, _, v, whole) = post(app.clone(), long.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let running = tokio::spawn(post(app.clone(), long.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = tokio::spawn(post(app.clone(), short.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, headers, v, _) = post(app.clone(), short.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    // The running explain's client goes away.
    let left = Instant::now();
    running.abort();
    let (status, _, v, _) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    let after = left.elapsed();
    eprintln!(
        "the long explain takes {whole:?}; the waiting one finished {after:?} after the client left"
    );
    assert!(after < whole / 2, "{after:?} vs {whole:?}");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_a_json_413() {
    let app = app(WebConfig::default());
    let body = json!({"model": "smollm2", "prompt": "x".repeat(2 << 20)}).to_string();
    let (status, _, v, _) = post(app, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("limit"),
        "{v}"
    );
}
