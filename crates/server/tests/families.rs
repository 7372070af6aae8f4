//! `lucid serve` on every family's random-weight fixture
//! (`tests/fixtures/families`, made with transformers), as a checkpoint
//! directory and, where llama.cpp's converter reads the family, as the GGUF
//! it wrote (`tests/fixtures/llama-cpp`): a greedy `/v1/completions` over
//! HTTP returns transformers' greedy continuation, through the scheduler's
//! batched decode.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lucid_engine::LoadedModel;
use lucid_scheduler::Scheduler;
use lucid_server::{AppState, LocalModel, ServerBuilder};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

async fn check(fixture: &str, llama_cpp: bool) {
    let dir = fixtures().join("families").join(fixture);
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let prompt = reference["prompts"][0]["text"].as_str().unwrap();
    let expected: Vec<u32> = reference["greedy"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let mut models = vec![dir];
    if llama_cpp {
        models.push(fixtures().join("llama-cpp").join(format!("{fixture}.gguf")));
    }
    for path in models {
        let model = Arc::new(LoadedModel::load(&path).unwrap());
        let text = model.tokenizer.decode(&expected, false);
        let scheduler = Scheduler::start(model, common::scheduler_config());
        let state = AppState::with_local_provider(
            vec![LocalModel::new(fixture, scheduler)],
            lucid_providers::Router::new(),
            common::server_config(),
        );
        let app = ServerBuilder::new(state).build();
        let (status, body) = common::post_json(
            app,
            "/v1/completions",
            json!({
                "model": fixture,
                "prompt": prompt,
                "max_tokens": expected.len(),
                "temperature": 0,
                "ignore_eos": true,
            }),
        )
        .await;
        assert_eq!(status, 200, "{}: {body}", path.display());
        assert_eq!(
            body["choices"][0]["text"].as_str().unwrap(),
            text,
            "{}: greedy text",
            path.display()
        );
        assert_eq!(
            body["usage"]["completion_tokens"],
            expected.len(),
            "{}",
            path.display()
        );
    }
}

#[tokio::test]
async fn llama() {
    check("llama", true).await;
}

#[tokio::test]
async fn mistral() {
    check("mistral", false).await;
}

#[tokio::test]
async fn mixtral() {
    check("mixtral", true).await;
}

#[tokio::test]
async fn qwen2() {
    check("qwen2", true).await;
}

#[tokio::test]
async fn qwen3() {
    check("qwen3", true).await;
}

#[tokio::test]
async fn qwen3moe() {
    check("qwen3moe", true).await;
}

#[tokio::test]
async fn olmoe() {
    check("olmoe", true).await;
}

#[tokio::test]
async fn phi3() {
    check("phi3", true).await;
}

#[tokio::test]
async fn gemma2() {
    check("gemma2", false).await;
}
