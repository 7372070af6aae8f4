//! The glass-box routes through `Router::oneshot`, over the real SmolLM2
//! (from `.cache/models`, put there by `scripts/fetch-test-models.sh`):
//! the page and its assets, the model list, explain as one JSON answer and
//! as an NDJSON stream, and typed errors for bad requests.

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use lucid_engine::LoadedModel;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use lucid_web::{StaticModels, WebConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::smollm2;

fn app() -> Router {
    let models = StaticModels::new(vec![("smollm2".into(), smollm2())]);
    lucid_web::router(
        Arc::new(models),
        WebConfig {
            threads: 2,
            ..WebConfig::default()
        },
    )
}

async fn get(path: &str) -> (StatusCode, String, Vec<u8>) {
    let res = app()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, ct, body)
}

async fn post(body: Value) -> (StatusCode, String, Vec<u8>) {
    post_raw(body.to_string()).await
}

async fn post_raw(body: String) -> (StatusCode, String, Vec<u8>) {
    let res = app()
        .oneshot(
            Request::post("/v1/explain")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, ct, body)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn the_page_and_its_assets_are_served() {
    let (status, ct, body) = get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("glass box"));
    // Offline: nothing is loaded from another origin.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page refers to another site"
    );
    for (path, kind) in [
        ("/glass/app.js", "text/javascript"),
        ("/glass/app.css", "text/css"),
    ] {
        let (status, ct, body) = get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let text = String::from_utf8(body).unwrap();
        assert!(!text.contains("https://"), "{path} refers to another site");
    }
}

#[tokio::test]
async fn models_are_listed_with_their_shapes() {
    let (status, _, body) = get("/v1/explain/models").await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "smollm2");
    assert_eq!(v["data"][0]["explain"]["n_layers"], 30);
    assert_eq!(v["data"][0]["explain"]["n_heads"], 9);
    assert_eq!(v["data"][0]["explain"]["architecture"], "llama");
}

#[tokio::test]
async fn explain_returns_the_trace() {
    let (status, ct, body) = post(json!({
        "model": "smollm2",
        "prompt": "The capital of France is",
        "top_k": 5,
        "attention": {"layers": [29], "heads": [0, 8]},
        "lens": true,
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/json");
    let v = json_of(&body);
    assert_eq!(v["model_name"], "smollm2");
    let tokens = v["tokens"].as_array().unwrap();
    let n = tokens.len();
    assert_eq!(tokens[0]["text"], "The");
    assert!(tokens[0]["id"].is_u64());
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    let top = steps[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let rank = top
        .iter()
        .position(|t| t["text"] == " Paris")
        .map(|i| i + 1);
    assert!(rank.is_some_and(|r| r <= 3), "{top:?}");
    for key in ["id", "text", "prob", "rank"] {
        assert!(!steps[0]["chosen"][key].is_null(), "chosen.{key}");
    }
    // Rounded to 4 decimals by default.
    for t in top {
        let p = t["prob"].as_f64().unwrap();
        assert!(
            ((p * 1e4).round() - p * 1e4).abs() < 1e-3,
            "{p} is not rounded"
        );
    }
    let maps = v["attention"].as_array().unwrap();
    assert_eq!(maps.len(), 2);
    assert_eq!(
        (maps[1]["layer"].as_u64(), maps[1]["head"].as_u64()),
        (Some(29), Some(8))
    );
    assert_eq!(maps[0]["weights"].as_array().unwrap().len(), n * n);
    let lens = &v["lens"];
    assert_eq!(lens["layers"].as_array().unwrap().len(), 31);
    assert_eq!(lens["positions"].as_array().unwrap().len(), n);
}

#[tokio::test]
async fn token_ids_explain_like_their_prompt() {
    let (_, _, a) =
        post(json!({"model": "smollm2", "prompt": "Hello there", "precision": null})).await;
    let a = json_of(&a);
    let ids: Vec<u64> = a["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    let (status, _, b) = post(json!({"model": "smollm2", "tokens": ids, "precision": null})).await;
    assert_eq!(status, StatusCode::OK);
    let b = json_of(&b);
    assert_eq!(a["tokens"], b["tokens"]);
    assert_eq!(a["steps"][0]["top"], b["steps"][0]["top"]);
}

#[tokio::test]
async fn streaming_sends_one_line_per_step_then_the_trace() {
    let (status, ct, body) = post(json!({
        "model": "smollm2",
        "prompt": "The capital of France is",
        "max_tokens": 3,
        "lens": true,
        "stream": true,
    }))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/x-ndjson");
    let text = String::from_utf8(body).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "start", "step", "lens", "step", "lens", "step", "lens", "done"
        ],
        "{text}"
    );
    let n = events[0]["tokens"].as_array().unwrap().len();
    assert_eq!(events[0]["model"]["n_layers"], 30);
    // The first pass reads the prompt, each later one a single token.
    assert_eq!(events[2]["columns"].as_array().unwrap().len(), n);
    assert_eq!(events[4]["columns"].as_array().unwrap().len(), 1);
    let trace = &events[7]["trace"];
    for i in 0..3 {
        assert_eq!(trace["steps"][i], events[1 + 2 * i]["step"], "step {i}");
        assert_eq!(events[1 + 2 * i]["index"], i);
    }
    assert_eq!(trace["lens"]["positions"].as_array().unwrap().len(), n + 2);
}

#[tokio::test]
async fn bad_requests_get_typed_errors() {
    let cases = [
        (
            json!({"model": "nope", "prompt": "x"}),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            json!({"model": "smollm2"}),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "tokens": [1]}),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "top_k": 1000}),
            StatusCode::BAD_REQUEST,
            Some("top_k"),
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "top_k": 0}),
            StatusCode::BAD_REQUEST,
            Some("top_k"),
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "attention": {"layers": [30]}}),
            StatusCode::BAD_REQUEST,
            Some("attention.layers"),
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "attention": {"layers": [0], "heads": [9]}}),
            StatusCode::BAD_REQUEST,
            Some("attention.heads"),
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "attention": {"layers": "some"}}),
            StatusCode::BAD_REQUEST,
            Some("attention.layers"),
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "max_tokens": 1000}),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            json!({"model": "smollm2", "tokens": [999999]}),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "temperature": -1}),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "typo": 1}),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            json!({"model": "smollm2", "prompt": "x", "attention": {"layers": "all", "heads": "all"}, "lens": true, "max_tokens": 4, "tokens": null}),
            StatusCode::OK,
            None,
        ),
    ];
    for (body, status, param) in cases {
        let (got, _, bytes) = post(body.clone()).await;
        assert_eq!(got, status, "{body}: {}", String::from_utf8_lossy(&bytes));
        if status != StatusCode::OK {
            let v = json_of(&bytes);
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{v}"
            );
            assert_eq!(v["error"]["param"].as_str(), param, "{body}: {v}");
        }
    }
    let (status, _, _) = post_raw("{not json".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// The routes fit into an app with its own state (as `lucid serve`'s
/// `Router<AppState>`), with a provider made of closures.
#[tokio::test]
async fn the_router_mounts_into_an_app_with_state() {
    #[derive(Clone)]
    struct AppState {
        model: Arc<LoadedModel>,
    }
    let state = AppState { model: smollm2() };
    let st = state.clone();
    let models = lucid_web::models_fn(
        || vec!["smollm2".to_string()],
        move |name| (name == "smollm2").then(|| st.model.clone()),
    );
    let app: Router = Router::<AppState>::new()
        .route(
            "/health",
            axum::routing::get(
                |axum::extract::State(_): axum::extract::State<AppState>| async { "ok" },
            ),
        )
        .merge(lucid_web::router::<AppState>(models, WebConfig::default()))
        .with_state(state);
    let res = app
        .clone()
        .oneshot(
            Request::get("/v1/explain/models")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v = json_of(&res.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(v["data"][0]["id"], "smollm2");
    let res = app
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_explains_each_get_their_answer() {
    let app = app();
    let ask = |prompt: &'static str| {
        let app = app.clone();
        async move {
            let res = app
                .oneshot(
                    Request::post("/v1/explain")
                        .body(Body::from(
                            json!({"model": "smollm2", "prompt": prompt}).to_string(),
                        ))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            json_of(&res.into_body().collect().await.unwrap().to_bytes())
        }
    };
    let (a, b) = tokio::join!(ask("The capital of France is"), ask("One, two, three,"));
    assert_eq!(a["tokens"][0]["text"], "The");
    assert_eq!(b["tokens"][0]["text"], "One");
}
