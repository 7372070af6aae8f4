//! `provider:model` through `POST /v1/chat/completions` over loopback: for
//! OpenAI, Anthropic, Gemini and an OpenAI-compatible endpoint, the server's
//! provider router is built from a config and an environment that point each
//! vendor at its protocol-faithful fake from `lucid-provider-fakes`, as
//! `lucid serve` builds it from the real environment and `providers.toml`.
//!
//! Each vendor is asked for an answer in one piece, one cut short by
//! `max_tokens`, and a stream; and, with a key the vendor rejects, gets an
//! OpenAI-shaped error that names the provider and never the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{KEY as SERVER_KEY, server_config, spawn, sse_data};
use lucid_provider_fakes::{Fake, KEY, PIECES, Provider, TEXT, WRONG_KEY, words};
use lucid_server::{AppState, LocalModel};
use serde_json::{Value, json};

const SYSTEM: &str = "Be brief.";
const PROMPT: &str = "Say hello to the world";

/// The providers config and environment that point `vendor` at `fake` with
/// `key`: the vendor's own variables, or a `[providers.compat.fake]` table.
fn config(
    vendor: Provider,
    fake: &Fake,
    key: &str,
) -> (lucid_providers::Config, HashMap<String, String>) {
    let env = vendor
        .env_vars(fake, key)
        .into_iter()
        .map(|(var, value)| (var.to_owned(), value))
        .collect();
    (
        lucid_providers::Config::from_toml(&vendor.config_toml(fake)).unwrap(),
        env,
    )
}

/// A server with no local models whose provider router reaches `vendor`'s
/// fake with `key`.
struct Front {
    vendor: Provider,
    fake: Fake,
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    async fn start(vendor: Provider, key: &str) -> Front {
        let fake = vendor.start_fake().await;
        let (config, env) = config(vendor, &fake, key);
        let router =
            lucid_providers::Router::from_config(&config, &|name| env.get(name).cloned()).unwrap();
        let state =
            AppState::with_local_provider(Vec::<LocalModel>::new(), router, server_config());
        let (base, stop, task) = spawn(state).await;
        Front {
            vendor,
            fake,
            base,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }

    /// Posts a chat completion; the status and the body as text.
    async fn chat(&self, extra: Value) -> (u16, String) {
        let mut body = json!({
            "model": self.vendor.model(),
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT},
            ],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let res = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(SERVER_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// Checks the last request the fake saw: the vendor's path for the
    /// model, asking for a stream or not as `stream` says.
    fn check_last_request(&self, stream: bool) {
        let req = self.fake.requests().pop().expect("the fake saw no request");
        self.vendor.check_request(&req, stream);
    }
}

/// The fakes count words as tokens, and both messages reach the vendor.
fn prompt_tokens() -> u64 {
    u64::from(words(SYSTEM) + words(PROMPT))
}

async fn answers_in_one_piece(vendor: Provider) {
    let front = Front::start(vendor, KEY).await;
    let (status, body) = front.chat(json!({})).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], vendor.model());
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], TEXT);
    assert_eq!(choice["finish_reason"], "stop");
    let completion = PIECES.len() as u64;
    assert_eq!(
        v["usage"],
        json!({
            "prompt_tokens": prompt_tokens(),
            "completion_tokens": completion,
            "total_tokens": prompt_tokens() + completion,
        })
    );
    front.check_last_request(false);

    // Cut short: the fakes answer one piece per token.
    let (status, body) = front.chat(json!({"max_tokens": 2})).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        PIECES[..2].concat(),
        "{body}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    front.check_last_request(false);
    assert_eq!(front.fake.request_count(), 2);
    front.stop().await;
}

async fn streams(vendor: Provider) {
    let front = Front::start(vendor, KEY).await;
    let (status, body) = front
        .chat(json!({"stream": true, "stream_options": {"include_usage": true}}))
        .await;
    assert_eq!(status, 200, "{body}");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == vendor.model()),
        "{body}"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, TEXT);
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|ch| &ch["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")], "{body}");
    // The usage chunk comes last, with no choices.
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    let completion = PIECES.len() as u64;
    assert_eq!(
        last["usage"],
        json!({
            "prompt_tokens": prompt_tokens(),
            "completion_tokens": completion,
            "total_tokens": prompt_tokens() + completion,
        })
    );
    front.check_last_request(true);
    assert_eq!(front.fake.request_count(), 1);
    front.stop().await;
}

/// The vendor refuses the key: the server answers 502 (its own caller did
/// nothing wrong) with an OpenAI-shaped error naming the provider and the
/// vendor's status, streamed or not, and the key is nowhere in it.
async fn a_rejected_key_is_a_bad_gateway(vendor: Provider) {
    let front = Front::start(vendor, WRONG_KEY).await;
    for (stream, extra) in [(false, json!({})), (true, json!({"stream": true}))] {
        let (status, body) = front.chat(extra).await;
        assert_eq!(status, 502, "{body}");
        for key in [KEY, WRONG_KEY] {
            assert!(!body.contains(key), "a key in the answer: {body}");
        }
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "server_error", "{body}");
        let message = v["error"]["message"].as_str().unwrap();
        let expected = format!(
            "{}: unauthorized (HTTP {})",
            vendor.provider(),
            vendor.rejection_status()
        );
        assert!(message.starts_with(&expected), "{message}");
        front.check_last_request(stream);
    }
    // A rejected key is not retried.
    assert_eq!(front.fake.request_count(), 2);
    front.stop().await;
}

/// The same tests for each vendor, in a module named after it, so that a
/// failure says which (`anthropic::streams`).
macro_rules! vendor_tests {
    ($($module:ident: $vendor:ident),* $(,)?) => {$(
        mod $module {
            use super::Provider;

            #[tokio::test]
            async fn answers_in_one_piece() {
                super::answers_in_one_piece(Provider::$vendor).await;
            }

            #[tokio::test]
            async fn streams() {
                super::streams(Provider::$vendor).await;
            }

            #[tokio::test]
            async fn a_rejected_key_is_a_bad_gateway() {
                super::a_rejected_key_is_a_bad_gateway(Provider::$vendor).await;
            }
        }
    )*};
}

vendor_tests! {
    openai: OpenAi,
    anthropic: Anthropic,
    gemini: Gemini,
    compat: Compat,
}
