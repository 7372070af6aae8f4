//! Models are unloaded and loaded again: Ollama's `keep_alive` (zero
//! unloads once the request is done, a duration once idle that long, a
//! negative value never), the unload request `ollama stop` and `lucid stop`
//! send, and the load that the next request makes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use lucid_scheduler::Scheduler;
use lucid_server::state::KeepAlive;
use lucid_server::{AppState, LocalModel};
use serde_json::{Value, json};

/// A served SmolLM2 that counts how often it was loaded again.
fn state(default_keep: KeepAlive) -> (AppState, Arc<AtomicUsize>) {
    let loads = Arc::new(AtomicUsize::new(0));
    let counted = loads.clone();
    let loader: lucid_server::state::Loader = Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(LocalModel::new(
            "smollm2",
            Scheduler::start(model(), scheduler_config()),
        ))
    });
    let lm = LocalModel::new("smollm2", Scheduler::start(model(), scheduler_config()))
        .with_loader(loader);
    let config = lucid_server::ServerConfig {
        keep_alive: default_keep,
        ..server_config()
    };
    let state = AppState::with_local_provider(vec![lm], lucid_providers::Router::new(), config);
    (state, loads)
}

async fn post(client: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = client
        .post(format!("{base}{path}"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn loaded(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let ps: Value = client
        .get(format!("{base}/api/ps"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ps["models"].as_array().unwrap().clone()
}

fn chat(keep_alive: Value) -> Value {
    json!({"model": "smollm2", "stream": false, "keep_alive": keep_alive,
           "messages": [{"role": "user", "content": "What is the capital of France?"}],
           "options": {"temperature": 0, "num_predict": 8}})
}

#[tokio::test]
async fn keep_alive_unloads_and_the_next_request_loads_again() {
    let (state, loads) = state(KeepAlive::Forever);
    let (base, stop, task) = spawn(state).await;
    let client = reqwest::Client::new();

    // Held for ever by default: no expiry in /api/ps.
    let (s, first) = post(&client, &base, "/api/chat", chat(Value::Null)).await;
    assert_eq!(s, 200, "{first}");
    let ps = loaded(&client, &base).await;
    assert_eq!(ps.len(), 1);
    assert!(ps[0].get("expires_at").is_none(), "{ps:?}");

    // `keep_alive: "1s"`: listed with its expiry, unloaded a second after.
    let (s, _) = post(&client, &base, "/api/chat", chat(json!("1s"))).await;
    assert_eq!(s, 200);
    let ps = loaded(&client, &base).await;
    assert!(ps[0]["expires_at"].is_string(), "{ps:?}");
    let start = Instant::now();
    while !loaded(&client, &base).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "still loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // Still listed; the next request loads it again and answers the same.
    let tags: Value = client
        .get(format!("{base}/api/tags"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["models"][0]["name"], "smollm2:latest", "{tags}");
    assert_eq!(loads.load(Ordering::SeqCst), 0);
    let (s, again) = post(&client, &base, "/api/chat", chat(json!(-1))).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["message"], first["message"]);
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // The unload request (`ollama stop`, `lucid stop`): at once when idle
    // (the scheduler may still be closing the last request for a moment),
    // and a model that is not loaded is not loaded for it.
    let unload = json!({"model": "smollm2", "keep_alive": 0});
    let (s, v) = post(&client, &base, "/api/generate", unload.clone()).await;
    assert_eq!((s, v["done_reason"].as_str()), (200, Some("unload")), "{v}");
    let start = Instant::now();
    while !loaded(&client, &base).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(2), "still loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = post(&client, &base, "/api/generate", unload).await;
    assert_eq!(s, 200);
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // An OpenAI request loads it too.
    let (s, v) = post(
        &client,
        &base,
        "/v1/chat/completions",
        json!({"model": "smollm2", "max_tokens": 2,
               "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(loads.load(Ordering::SeqCst), 2);

    // A bad keep_alive is refused by name; an unknown model is a 404.
    let (s, v) = post(&client, &base, "/api/chat", chat(json!("soon"))).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("keep_alive"), "{v}");
    let (s, _) = post(
        &client,
        &base,
        "/api/generate",
        json!({"model": "nope", "keep_alive": 0}),
    )
    .await;
    assert_eq!(s, 404);
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// A model unloaded while a request runs goes once the request is done,
/// and the request finishes.
#[tokio::test]
async fn a_busy_model_is_unloaded_after_its_requests() {
    let (state, _) = state(KeepAlive::For(Duration::ZERO));
    let (base, stop, task) = spawn(state).await;
    let client = reqwest::Client::new();
    let long = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            post(
                &client,
                &base,
                "/api/generate",
                json!({"model": "smollm2", "prompt": "Tell me a long story.", "stream": false,
                       "options": {"num_predict": 200}}),
            )
            .await
        })
    };
    // The server's default here is zero: unloaded as soon as it is idle.
    let start = Instant::now();
    while loaded(&client, &base).await.is_empty() || start.elapsed() < Duration::from_millis(300) {
        // A guard against a hang, not a speed test: loading on a busy
        // machine took over 5 s.
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if long.is_finished() {
            break;
        }
    }
    let (s, v) = long.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert!(v["eval_count"].as_u64().unwrap() > 0, "{v}");
    let start = Instant::now();
    while !loaded(&client, &base).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(3), "still loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// A model given without a way to load it again says so once unloaded.
#[tokio::test]
async fn a_model_without_a_loader_stays_unloaded() {
    let state = state_with(scheduler_config(), server_config());
    state.served_models().unload("smollm2").unwrap();
    let (s, v) = post_json(
        lucid_server::ServerBuilder::new(state).build(),
        "/v1/chat/completions",
        json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(s.as_u16(), 503, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be loaded again"),
        "{v}"
    );
}
