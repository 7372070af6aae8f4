//! The server as an attacker and a crowd would try it, on real sockets:
//! every request a client controls is bounded, runs off the async threads,
//! and ends in a clean error, while `/health` keeps answering within a
//! second throughout.
//!
//! Each test watches `/health` (a new connection every 100 ms) while it
//! attacks, and fails if one answer took a second or more. The tests run
//! on two runtime threads, as `lucid serve` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use lucid_engine::{ChatTemplate, LoadedModel};
use lucid_scheduler::Scheduler;
use lucid_server::{AppState, LocalModel, ServerConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `attack` while polling `/health`; returns its output and the
/// slowest health answer, failing on one that took a second or more.
async fn with_health<T>(base: &str, attack: impl Future<Output = T>) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (base, done) = (base.to_owned(), done.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut polls = 0;
            while !done.load(Ordering::Relaxed) {
                let start = Instant::now();
                let client = reqwest::Client::new();
                let res = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.get(format!("{base}/health")).send(),
                )
                .await;
                let took = start.elapsed();
                match res {
                    Ok(Ok(r)) => assert_eq!(r.status(), 200),
                    Ok(Err(e)) => panic!("/health failed: {e}"),
                    Err(_) => panic!("/health took over a second (poll {polls})"),
                }
                slowest = slowest.max(took);
                polls += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (slowest, polls)
        })
    };
    let out = attack.await;
    done.store(true, Ordering::Relaxed);
    let (slowest, polls) = watcher.await.unwrap();
    eprintln!("/health: {polls} polls, slowest {slowest:?}");
    out
}

fn open_config() -> ServerConfig {
    ServerConfig {
        api_key: None,
        max_body_bytes: 8 << 20,
        ..server_config()
    }
}

async fn post(base: &str, path: &str, body: &Value) -> (u16, Value, Duration) {
    let start = Instant::now();
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let v = res.json().await.unwrap_or(Value::Null);
    (status, v, start.elapsed())
}

/// Item 1: a schema whose branches refer to the whole schema again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_referencing_schema_is_refused_at_once() {
    let (base, stop, task) = spawn(state_with(scheduler_config(), open_config())).await;
    let schema = json!({"anyOf": [{"$ref": "#"}, {"$ref": "#"}]});
    with_health(&base, async {
        let openai = json!({
            "model": "smollm2",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        });
        let ollama = json!({
            "model": "smollm2",
            "messages": [{"role": "user", "content": "hi"}],
            "format": schema,
        });
        for (path, body) in [("/v1/chat/completions", openai), ("/api/chat", ollama)] {
            let (status, v, took) = post(&base, path, &body).await;
            assert_eq!(status, 400, "{path}: {v}");
            assert!(took < Duration::from_secs(1), "{path} took {took:?}");
        }
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Item 2: four 4 MB prompts at once are refused by their length before
/// anything tokenizes them, and the tokenizer never runs on the async
/// threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_prompts_are_refused_by_their_length() {
    let (base, stop, task) = spawn(state_with(scheduler_config(), open_config())).await;
    let big = "lorem ipsum dolor sit amet ".repeat(4 << 20 >> 5);
    with_health(&base, async {
        let requests = (0..4).map(|i| {
            let (base, big) = (base.clone(), big.clone());
            async move {
                let body = if i % 2 == 0 {
                    json!({"model": "smollm2", "messages": [{"role": "user", "content": big}]})
                } else {
                    json!({"model": "smollm2", "prompt": big, "max_tokens": 1})
                };
                let path = if i % 2 == 0 {
                    "/v1/chat/completions"
                } else {
                    "/v1/completions"
                };
                post(&base, path, &body).await
            }
        });
        for (status, v, took) in futures::future::join_all(requests).await {
            assert_eq!(status, 400, "{v}");
            assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
            assert!(took < Duration::from_secs(3), "took {took:?}");
        }
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Item 6: a model whose template loops over every character of every
/// character of a message: a long message runs out of the template's fuel
/// and is refused; the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_chat_template_is_stopped_by_its_fuel() {
    let path = model_path();
    let mut m = LoadedModel::load(&path).unwrap();
    m.template = ChatTemplate::new(
        Some(
            "{% for m in messages %}{% for a in m.content %}{% for b in m.content %}\
             {% endfor %}{% endfor %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
             {% endfor %}<|im_start|>assistant\n",
        ),
        "",
        "",
    )
    .expect("short conversations render, so the template loads");
    let scheduler = Scheduler::start(Arc::new(m), scheduler_config());
    let state = AppState::with_local_provider(
        vec![LocalModel::new("quadratic", scheduler)],
        lucid_providers::Router::new(),
        open_config(),
    );
    let (base, stop, task) = spawn(state).await;
    with_health(&base, async {
        let long = "x".repeat(20_000);
        let requests = (0..2).map(|_| {
            let (base, long) = (base.clone(), long.clone());
            async move {
                let body = json!({"model": "quadratic", "messages": [{"role": "user", "content": long}]});
                post(&base, "/v1/chat/completions", &body).await
            }
        });
        for (status, v, took) in futures::future::join_all(requests).await {
            assert_eq!(status, 400, "{v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains("instructions"), "{msg}");
            assert!(took < Duration::from_secs(5), "took {took:?}");
        }
        // A short message still renders and generates.
        let body = json!({"model": "quadratic", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        let (status, v, _) = post(&base, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{v}");
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Reads until the server closes the connection (or `limit` passes);
/// returns what it sent and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// Item 5: clients that trickle headers (slow loris), sit idle after a
/// request, or never finish a body are cut off by the timeouts, while
/// `/health` answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_by_the_timeouts() {
    let config = ServerConfig {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..open_config()
    };
    let (base, stop, task) = spawn(state_with(scheduler_config(), config)).await;
    let addr = base.trim_start_matches("http://").to_owned();
    with_health(&base, async {
        // 200 connections each sending a header line every 300 ms.
        let loris = (0..200).map(|_| {
            let addr = addr.clone();
            async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap();
                let start = Instant::now();
                for i in 0..20 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if s.write_all(format!("x-{i}: y\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                let (_, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
                (closed, start.elapsed())
            }
        });
        // A keep-alive connection left idle after one request.
        let idle = async {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .unwrap();
            let start = Instant::now();
            let (text, closed) = read_until_closed(&mut s, Duration::from_secs(4)).await;
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            (closed, start.elapsed())
        };
        // A body that stops after 10 of its 100 bytes.
        let body = async {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                  content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":",
            )
            .await
            .unwrap();
            let (text, _) = read_until_closed(&mut s, Duration::from_secs(4)).await;
            text
        };
        let (loris, (idle_closed, idle_after), body) =
            tokio::join!(futures::future::join_all(loris), idle, body);
        for (closed, after) in loris {
            assert!(closed, "a slow-loris connection stayed open");
            assert!(after < Duration::from_secs(3), "closed after {after:?}");
        }
        assert!(idle_closed, "the idle keep-alive connection stayed open");
        assert!(idle_after < Duration::from_secs(3), "{idle_after:?}");
        assert!(body.starts_with("HTTP/1.1 408"), "{body}");
        assert!(body.contains("--body-timeout"), "{body}");
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Item 5: over the connection limit, a new connection is told why, at
/// once; when connections close, new ones are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_a_503_that_says_why() {
    let config = ServerConfig {
        max_connections: 20,
        ..open_config()
    };
    let (base, stop, task) = spawn(state_with(scheduler_config(), config)).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut extra, Duration::from_secs(2)).await;
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("--max-connections"), "{text}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("lucid_connections_refused_total 1"),
        "{metrics}"
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Item 7: without an API key, a page on another site can neither post to
/// the server (cross-site `text/plain`) nor read it through DNS rebinding
/// (its own host name in `Host`); programs and the server's own page can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_on_other_sites_cannot_drive_a_server_without_a_key() {
    let (base, stop, task) = spawn(state_with(scheduler_config(), open_config())).await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::new();
    let chat = json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).to_string();
    let send = |origin: Option<&str>, host: Option<String>| {
        let mut r = client
            .post(format!("{base}/v1/chat/completions"))
            .header("content-type", "text/plain")
            .body(chat.clone());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(h) = host {
            r = r.header("host", h);
        }
        async move { r.send().await.unwrap() }
    };
    let cross_site = send(Some("http://evil.example"), None).await;
    assert_eq!(cross_site.status(), 403);
    let v: Value = cross_site.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evil.example"),
        "{v}"
    );
    let rebound = send(
        Some(&format!("http://evil.example:{port}")),
        Some(format!("evil.example:{port}")),
    )
    .await;
    assert_eq!(rebound.status(), 403);
    let ollama = client
        .get(format!("{base}/api/tags"))
        .header("host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ollama.status(), 403);
    // curl, the SDKs, and the glass-box page served from here.
    assert_eq!(send(None, None).await.status(), 200);
    let own_page = send(Some(&format!("http://127.0.0.1:{port}")), None).await;
    assert_eq!(own_page.status(), 200);
    stop.send(()).unwrap();
    task.await.unwrap();
}

fn model_path() -> std::path::PathBuf {
    let dir = std::env::var_os("LUCID_MODEL_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"),
        std::path::PathBuf::from,
    );
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Item 3 under a crowd: 32 streaming clients, half of them walking away
/// mid-stream, then a shutdown whose deadline cuts the rest. Every stream
/// ends either as the model ended it (the same text as the same greedy
/// request alone) or with an error event, never a false finish; the
/// metrics count every cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_that_leaves_and_a_shutdown_that_cuts_are_counted_truthfully() {
    use futures::StreamExt;
    let config = ServerConfig {
        shutdown_deadline: Duration::from_millis(300),
        ..open_config()
    };
    let sched = lucid_scheduler::SchedulerConfig {
        max_sequences: 32,
        max_queue: 32,
        ..scheduler_config()
    };
    let state = state_with(sched, config);
    let (base, stop, task) = spawn(state.clone()).await;
    let body = json!({"model": "smollm2", "stream": true, "max_tokens": 48, "temperature": 0,
                      "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]});
    // The same requests alone, to recognise a stream the model ended.
    let mut alone = std::collections::HashMap::new();
    for max_tokens in [4, 48] {
        let v = reqwest::Client::new()
            .post(format!("{base}/v1/chat/completions"))
            .json(
                &json!({"model": "smollm2", "max_tokens": max_tokens, "temperature": 0,
                          "messages": body["messages"]}),
            )
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        let reason = v["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_owned();
        alone.insert(max_tokens, (text, reason));
    }

    let streaming = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gone = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let (url, mut body) = (format!("{base}/v1/chat/completions"), body.clone());
            // A quarter ask for so little that they end before the shutdown.
            let max_tokens = if i % 4 == 1 { 4 } else { 48 };
            body["max_tokens"] = json!(max_tokens);
            let (streaming, gone) = (streaming.clone(), gone.clone());
            tokio::spawn(async move {
                let res = reqwest::Client::new()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                let mut stream = res.bytes_stream();
                let mut text = Vec::new();
                let mut counted = false;
                while let Some(chunk) = stream.next().await {
                    text.extend_from_slice(&chunk.unwrap());
                    let events = text.windows(2).filter(|w| w == b"\n\n").count();
                    if events >= 3 && !counted {
                        counted = true;
                        streaming.fetch_add(1, Ordering::SeqCst);
                        // Even clients walk away after their first events.
                        if i % 2 == 0 {
                            gone.fetch_add(1, Ordering::SeqCst);
                            return None;
                        }
                    }
                }
                Some((max_tokens, String::from_utf8(text).unwrap()))
            })
        })
        .collect();
    // Shut down once every client has had tokens and the leavers have left.
    let t = Instant::now();
    while streaming.load(Ordering::SeqCst) < 32 || gone.load(Ordering::SeqCst) < 16 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the crowd never streamed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    let (mut left, mut model_ended, mut cut) = (0, 0, 0);
    for c in clients {
        let Some((max_tokens, body)) = c.await.unwrap() else {
            left += 1;
            continue;
        };
        let data = sse_data(&body);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
        let events: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let reasons: Vec<&str> = events
            .iter()
            .filter_map(|e| e["choices"][0]["finish_reason"].as_str())
            .collect();
        let text: String = events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        match (reasons.as_slice(), events.last()) {
            ([reason], _) => {
                let (alone_text, alone_reason) = &alone[&max_tokens];
                assert_eq!(reason, alone_reason, "{body}");
                assert_eq!(
                    &text, alone_text,
                    "a stream claims an end the model did not make"
                );
                model_ended += 1;
            }
            ([], Some(last)) if last["error"]["code"] == "generation_cancelled" => cut += 1,
            _ => panic!("a stream ended without a finish or an error: {body}"),
        }
    }
    assert_eq!(left, 16);
    assert_eq!(model_ended + cut, 16);
    assert!(
        model_ended >= 8 && cut > 0,
        "{model_ended} ended, {cut} cut"
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    let metrics = state.metrics().render(&state.models());
    let cancelled = metrics
        .lines()
        .find(|l| l.starts_with("lucid_generations_total") && l.contains("cancelled"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    eprintln!("{left} left, {model_ended} ended by the model, {cut} cut by the shutdown");
    assert_eq!(cancelled, left + cut, "{metrics}");
}

/// Item 9: a wrong method gets a JSON body like every other error, and
/// `/api/show` does not tell where the model file lives.
#[tokio::test]
async fn wrong_methods_get_json_and_show_hides_the_path() {
    let (status, headers, body) = call(app(), "GET", "/v1/chat/completions", None, Some(KEY)).await;
    assert_eq!(status, 405);
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("GET"),
        "{v}"
    );
    let (status, _, body) = call(app(), "DELETE", "/api/tags", None, Some(KEY)).await;
    assert_eq!(status, 405);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].is_string(), "Ollama's error shape: {v}");
    let (status, v) = post_json(app(), "/api/show", json!({"model": "smollm2"})).await;
    assert_eq!(status, 200, "{v}");
    let modelfile = v["modelfile"].as_str().unwrap();
    assert_eq!(modelfile, "FROM smollm2\n");
    let path = model_path();
    let dir = path.parent().unwrap().to_string_lossy().into_owned();
    assert!(!v.to_string().contains(&dir), "the path leaks: {v}");
}
