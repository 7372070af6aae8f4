//! The Anthropic adapter's requests, as the fake saw them: headers, the
//! top-level `system`, the required `max_tokens`, and what it refuses.

use lucid_providers::{AnthropicProvider, HttpSettings, Provider, ProviderError, Secret};
use serde_json::json;

use super::conformance::{Kind, drain, request};
use crate::support::{KEY, assert_no_key, capture_logs};

#[tokio::test]
async fn sends_the_documented_request() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::Anthropic.fake(vec![]).await;
    let provider = Kind::Anthropic.provider(&fake);
    let mut req = request("claude-3-5-haiku-latest");
    req.params.temperature = Some(0.5);
    req.params.top_p = Some(0.75);
    req.params.top_k = Some(20);
    req.params.stop = vec!["END".into()];
    provider.chat(&req).await.unwrap();
    req.params.max_tokens = Some(50);
    drain(provider.chat_stream(&req).await.unwrap()).await;

    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/messages")
        );
        assert_eq!(r.headers["x-api-key"], KEY);
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert!(!r.headers.contains_key("authorization"));
    }
    assert_eq!(
        sent[0].body,
        json!({"model": "claude-3-5-haiku-latest", "max_tokens": 4096, "system": "You are terse.",
               "messages": [{"role": "user", "content": "Say hello to the world"}],
               "temperature": 0.5, "top_p": 0.75, "top_k": 20, "stop_sequences": ["END"]})
    );
    assert_eq!(sent[1].body["max_tokens"], json!(50));
    assert_eq!(sent[1].body["stream"], json!(true));
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn configured_version_and_default_max_tokens_are_sent() {
    let fake = Kind::Anthropic.fake(vec![]).await;
    let provider =
        AnthropicProvider::new(HttpSettings::new(&fake.base_url).with_api_key(Secret::new(KEY)))
            .unwrap()
            .with_version("2024-01-01")
            .unwrap()
            .with_default_max_tokens(64);
    provider
        .chat(&request("claude-3-5-haiku-latest"))
        .await
        .unwrap();
    let sent = &fake.requests()[0];
    assert_eq!(sent.headers["anthropic-version"], "2024-01-01");
    assert_eq!(sent.body["max_tokens"], json!(64));
}

#[tokio::test]
async fn refuses_what_the_messages_api_lacks() {
    let fake = Kind::Anthropic.fake(vec![]).await;
    let provider = Kind::Anthropic.provider(&fake);
    for (param, set) in [
        (
            "seed",
            (|p: &mut lucid_providers::SamplingParams| p.seed = Some(1)) as fn(&mut _),
        ),
        ("logprobs", |p| p.logprobs = Some(1)),
        ("presence_penalty", |p| p.presence_penalty = Some(0.1)),
        ("frequency_penalty", |p| p.frequency_penalty = Some(0.1)),
        ("temperature", |p| p.temperature = Some(1.5)),
    ] {
        let mut req = request("claude-3-5-haiku-latest");
        set(&mut req.params);
        let error = provider.chat(&req).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::UnsupportedParameter { provider, param: p, .. } if provider == "anthropic" && p == param),
            "{error:?}"
        );
    }
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn overloaded_529_is_retryable() {
    let fake = Kind::Anthropic
        .fake(vec![crate::support::Fault::Status {
            status: 529,
            retry_after: None,
        }])
        .await;
    let error = Kind::Anthropic
        .provider(&fake)
        .chat(&request("claude-3-5-haiku-latest"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "anthropic: HTTP 529: overloaded_error: the fake was told to fail this request"
    );
    assert!(error.is_retryable());
}
