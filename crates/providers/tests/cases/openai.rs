//! The OpenAI adapter's requests, as the fake saw them, and what only
//! OpenAI has: `max_completion_tokens`, logprobs, and top_k refused.

use std::time::Duration;

use lucid_providers::{
    ChatEvent, HttpSettings, OpenAiProvider, Provider, ProviderError, SamplingParams, TokenLogprob,
    TopLogprob,
};
use serde_json::json;

use super::conformance::{Kind, delta_texts, drain, request};
use crate::support::{KEY, PIECES, assert_no_key, capture_logs};

fn sampling() -> SamplingParams {
    SamplingParams {
        temperature: Some(0.25),
        top_p: Some(0.5),
        max_tokens: Some(100),
        stop: vec!["\n\n".into()],
        seed: Some(7),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(1.5),
        ..Default::default()
    }
}

#[tokio::test]
async fn sends_the_documented_request() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::OpenAi.fake(vec![]).await;
    let provider = Kind::OpenAi.provider(&fake);
    let mut req = request("gpt-4o-mini");
    req.params = sampling();
    provider.chat(&req).await.unwrap();
    drain(provider.chat_stream(&req).await.unwrap()).await;

    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_deref()),
            ("POST", "/v1/chat/completions", None)
        );
        assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let messages = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello to the world"},
    ]);
    assert_eq!(
        sent[0].body,
        json!({"model": "gpt-4o-mini", "messages": messages, "temperature": 0.25, "top_p": 0.5,
               "max_completion_tokens": 100, "stop": ["\n\n"], "seed": 7,
               "presence_penalty": 0.5, "frequency_penalty": 1.5})
    );
    assert_eq!(sent[1].body["stream"], json!(true));
    assert_eq!(
        sent[1].body["stream_options"],
        json!({"include_usage": true})
    );
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn logprobs_are_asked_for_and_mapped() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::OpenAi.fake(vec![]).await;
    let provider = Kind::OpenAi.provider(&fake);
    let mut req = request("gpt-4o-mini");
    req.params.logprobs = Some(2);
    let expect: Vec<TokenLogprob> = PIECES
        .iter()
        .map(|p| TokenLogprob {
            token: (*p).to_owned(),
            logprob: -0.5,
            top: vec![
                TopLogprob {
                    token: (*p).to_owned(),
                    logprob: -0.5,
                },
                TopLogprob {
                    token: "alt1".into(),
                    logprob: -2.0,
                },
            ],
        })
        .collect();

    let resp = provider.chat(&req).await.unwrap();
    assert_eq!(resp.logprobs.as_ref(), Some(&expect));

    let (events, _) = drain(provider.chat_stream(&req).await.unwrap()).await;
    let streamed: Vec<TokenLogprob> = events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::Delta { logprobs, .. } => logprobs.clone(),
            ChatEvent::Finish { .. } => None,
        })
        .flatten()
        .collect();
    assert_eq!(streamed, expect);
    assert_eq!(fake.requests()[0].body["logprobs"], json!(true));
    assert_eq!(fake.requests()[0].body["top_logprobs"], json!(2));
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn top_k_is_refused_without_a_request() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::OpenAi.fake(vec![]).await;
    let mut req = request("gpt-4o-mini");
    req.params.top_k = Some(40);
    let error = Kind::OpenAi.provider(&fake).chat(&req).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::UnsupportedParameter { provider, param, .. } if provider == "openai" && param == "top_k"),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 0);
    // Nothing was sent, so nothing was logged as sent.
    assert!(!logs.text().contains("sending request"));
}

#[tokio::test]
async fn missing_key_names_the_variable() {
    let fake = Kind::OpenAi.fake(vec![]).await;
    let provider = OpenAiProvider::openai(HttpSettings::new(&fake.base_url)).unwrap();
    let error = provider.chat(&request("gpt-4o-mini")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "openai: no API key; set the environment variable OPENAI_API_KEY or `api_key` in the providers config file"
    );
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn a_slow_answer_times_out_waiting_for_the_response() {
    let (logs, _guard) = capture_logs();
    // Nothing answers on this listener: it accepts and then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        }
    });
    let settings = HttpSettings::new(format!("http://{addr}/v1"))
        .with_api_key(lucid_providers::Secret::new(KEY))
        .with_timeouts(Duration::from_secs(1), Duration::from_millis(200));
    let error = OpenAiProvider::openai(settings)
        .unwrap()
        .chat(&request("gpt-4o-mini"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "openai: timed out waiting for the response (after 200ms)"
    );
    assert!(error.is_retryable());
    assert_no_key(&logs, &[&error]);
}

#[tokio::test]
async fn deltas_are_never_empty() {
    // The first chunk's `"content": ""` carries only the role.
    let fake = Kind::OpenAi.fake(vec![]).await;
    let (events, _) = drain(
        Kind::OpenAi
            .provider(&fake)
            .chat_stream(&request("gpt-4o-mini"))
            .await
            .unwrap(),
    )
    .await;
    assert!(delta_texts(&events).iter().all(|t| !t.is_empty()));
}
