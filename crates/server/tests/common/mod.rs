//! Shared set-up for the server tests: the real SmolLM2 model (loaded once
//! per test binary), app states with small limits, a server on an
//! ephemeral loopback port, and helpers to read responses.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lucid_engine::LoadedModel;
use lucid_scheduler::{Scheduler, SchedulerConfig};
use lucid_server::{AppState, LocalModel, ServerBuilder, ServerConfig};
use tower::ServiceExt;

pub const KEY: &str = "test-key-123";

pub fn model() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = std::env::var_os("LUCID_MODEL_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"),
                PathBuf::from,
            );
            let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
            assert!(
                path.is_file(),
                "test model {} is missing: run scripts/fetch-test-models.sh (or set LUCID_MODEL_DIR)",
                path.display()
            );
            Arc::new(LoadedModel::load(&path).unwrap())
        })
        .clone()
}

pub fn scheduler_config() -> SchedulerConfig {
    SchedulerConfig {
        threads: 2,
        context: Some(512),
        max_sequences: 4,
        max_queue: 8,
        ..SchedulerConfig::default()
    }
}

pub fn state_with(sched: SchedulerConfig, config: ServerConfig) -> AppState {
    let scheduler = Scheduler::start(model(), sched);
    let lm =
        LocalModel::new("smollm2", scheduler).with_aliases(["SmolLM2-135M-Instruct".to_owned()]);
    AppState::with_local_provider(vec![lm], lucid_providers::Router::new(), config)
}

pub fn server_config() -> ServerConfig {
    ServerConfig {
        api_key: Some(KEY.to_owned()),
        max_body_bytes: 64 << 10,
        shutdown_deadline: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

/// One app for the tests that need no special limits.
pub fn app() -> Router {
    static STATE: OnceLock<AppState> = OnceLock::new();
    let state = STATE
        .get_or_init(|| state_with(scheduler_config(), server_config()))
        .clone();
    ServerBuilder::new(state).build()
}

pub async fn call(
    app: Router,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, bytes)
}

pub async fn post_json(
    app: Router,
    path: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let (status, _, bytes) = call(app, "POST", path, Some(&body.to_string()), Some(KEY)).await;
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, v)
}

/// Starts the app on an ephemeral loopback port; returns its base URL and
/// a handle that stops it when sent to.
pub async fn spawn(
    state: AppState,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = lucid_server::listen::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = ServerBuilder::new(state.clone()).build();
    let task = tokio::spawn(async move {
        lucid_server::serve(listener, app, state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), tx, task)
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        })
        .map(str::to_owned)
        .collect()
}

/// The events of an SSE body whose events are named (`event: NAME`), each
/// with its JSON data, whose `type` must be its name (Anthropic's and the
/// Responses API's streams).
pub fn named_sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let data: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{e}");
            (name.to_owned(), data)
        })
        .collect()
}
