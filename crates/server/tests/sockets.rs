//! Where the protocol matters: real sockets on loopback. SSE framing and
//! `[DONE]`, concurrent streams each getting their own answer, a client
//! that disconnects freeing its sequence, 429 with Retry-After, provider
//! routing to an OpenAI-compatible endpoint (lucid itself), and graceful
//! shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use lucid_server::{ServerConfig, state::LocalModel};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn stream_chat(base: &str, content: &str, max_tokens: u32) -> (String, Vec<Value>) {
    let res = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({
            "model": "smollm2",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = res.text().await.unwrap();
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]", "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text = chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)
                .and_then(|ch| ch["delta"]["content"].as_str())
        })
        .collect();
    (text, chunks)
}

#[tokio::test]
async fn sse_streams_match_openai_framing_and_concurrent_streams_are_independent() {
    let state = state_with(scheduler_config(), server_config());
    let (base, stop, task) = spawn(state).await;
    let (text, chunks) = stream_chat(&base, "What is 2+2?", 10).await;
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let finish: Vec<_> = chunks
        .iter()
        .filter(|c| {
            c["choices"]
                .get(0)
                .is_some_and(|ch| !ch["finish_reason"].is_null())
        })
        .collect();
    assert_eq!(finish.len(), 1);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null())
    );

    // The same request not streamed gives the same text.
    let v: Value = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "smollm2", "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 10, "temperature": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], text);

    // Several at once: each matches its own request run alone.
    let prompts = [
        "Name a color.",
        "Name an animal.",
        "Name a country.",
        "What is 2+2?",
        "Say hi.",
        "Name a fruit.",
    ];
    let mut alone = Vec::new();
    for p in prompts {
        alone.push(stream_chat(&base, p, 8).await.0);
    }
    let together =
        futures::future::join_all(prompts.iter().map(|p| stream_chat(&base, p, 8))).await;
    for ((p, a), (t, _)) in prompts.iter().zip(&alone).zip(&together) {
        assert_eq!(a, t, "{p}");
    }
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_disconnecting_client_frees_its_sequence_and_full_queues_get_429() {
    let state = state_with(
        lucid_scheduler::SchedulerConfig {
            max_sequences: 1,
            max_queue: 0,
            ..scheduler_config()
        },
        server_config(),
    );
    let (base, stop, task) = spawn(state.clone()).await;
    let res = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "smollm2", "messages": [{"role": "user", "content": "Tell me a very long story."}],
                      "max_tokens": 400, "temperature": 0, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = res.bytes_stream();
    // Wait until tokens flow.
    let mut got = 0;
    while got < 3 {
        got += body
            .next()
            .await
            .unwrap()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            / 2;
    }
    let sched = state.models()[0].scheduler.clone();
    assert_eq!(sched.stats().active, 1);
    // The one slot is taken and nothing may queue: 429 with Retry-After.
    let busy = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 429);
    assert!(
        busy.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let v: Value = busy.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // Walk away mid-stream: the sequence stops and its cache is freed.
    drop(body);
    let t = Instant::now();
    while sched.stats().active != 0 || sched.stats().kv_reserved_bytes != 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", sched.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = client()
        .get(format!("{base}/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("lucid_active_sequences{model=\"smollm2\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("reason=\"cancelled\""), "{metrics}");
    // And the slot is usable again.
    let ok = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn provider_models_route_through_the_router_and_stream() {
    // lucid itself is the OpenAI-compatible endpoint `compat:self`.
    let local = state_with(
        scheduler_config(),
        ServerConfig {
            api_key: None,
            ..server_config()
        },
    );
    let (upstream, stop_up, task_up) = spawn(local).await;
    let config = lucid_providers::Config::from_toml(&format!(
        "[providers.compat.self]\nbase_url = \"{upstream}/v1\"\nmodel = \"smollm2\"\n"
    ))
    .unwrap();
    let router = lucid_providers::Router::from_config(&config, &|_| None).unwrap();
    let front = lucid_server::AppState::with_local_provider(
        Vec::<LocalModel>::new(),
        router,
        server_config(),
    );
    let (base, stop, task) = spawn(front).await;
    let res = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "compat:self", "messages": [{"role": "user", "content": "Say hi."}],
                      "max_tokens": 6, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let data = sse_data(&res.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)
                .and_then(|ch| ch["delta"]["content"].as_str())
        })
        .collect();
    assert!(!text.is_empty());
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Not streamed too.
    let v: Value = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "compat:self", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 6, "temperature": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], text);
    stop.send(()).unwrap();
    task.await.unwrap();
    stop_up.send(()).unwrap();
    task_up.await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_lets_streams_finish_and_refuses_new_work() {
    let state = state_with(scheduler_config(), server_config());
    let (base, stop, task) = spawn(state.clone()).await;
    let running = tokio::spawn({
        let base = base.clone();
        async move { stream_chat(&base, "Count from one to twenty.", 24).await }
    });
    // Let it start, then ask the server to stop.
    let sched = state.models()[0].scheduler.clone();
    let t = Instant::now();
    while sched.stats().active == 0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(state.is_shutting_down());
    // The running stream completes with its [DONE].
    let (text, chunks) = running.await.unwrap();
    assert!(!text.is_empty());
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The server has stopped.
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert!(client().get(format!("{base}/health")).send().await.is_err());
}

#[tokio::test]
async fn generations_cut_by_shutdown_end_with_an_error_never_a_finish() {
    let config = ServerConfig {
        shutdown_deadline: Duration::from_millis(300),
        ..server_config()
    };
    let state = state_with(scheduler_config(), config);
    let (base, stop, task) = spawn(state.clone()).await;
    let long = |path: &str, stream: bool| {
        let (url, path) = (format!("{base}{path}"), path.to_owned());
        let messages =
            json!([{"role": "user", "content": "Write a long story about a dragon and a knight."}]);
        let body = if path.starts_with("/api/") {
            json!({"model": "smollm2", "messages": messages, "stream": stream,
                   "options": {"num_predict": 400, "temperature": 0}})
        } else {
            json!({"model": "smollm2", "messages": messages, "stream": stream,
                   "max_tokens": 400, "temperature": 0})
        };
        tokio::spawn(async move {
            let res = client()
                .post(url)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        })
    };
    let openai_stream = long("/v1/chat/completions", true);
    let openai_plain = long("/v1/chat/completions", false);
    let ollama_stream = long("/api/chat", true);
    let sched = state.models()[0].scheduler.clone();
    let t = Instant::now();
    while sched.stats().active < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the three never ran at once"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();

    // OpenAI, streamed: text, then an error event and [DONE]; no choice
    // claims a finish.
    let (status, body) = openai_stream.await.unwrap();
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]", "{body}");
    let events: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        events.iter().all(|e| e["choices"]
            .as_array()
            .is_none_or(|cs| cs.iter().all(|c| c["finish_reason"].is_null()))),
        "a cut stream claims a finish: {body}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["error"]["code"], "generation_cancelled", "{body}");

    // OpenAI, not streamed: 503 naming the cut.
    let (status, body) = openai_plain.await.unwrap();
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "generation_cancelled");

    // Ollama, streamed: an error line instead of `done: true`.
    let (status, body) = ollama_stream.await.unwrap();
    assert_eq!(status, 200);
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["done"] != true), "{body}");
    assert!(
        lines.last().unwrap()["error"]
            .as_str()
            .is_some_and(|e| e.contains("incomplete")),
        "{body}"
    );

    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
