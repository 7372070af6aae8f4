//! The Gemini adapter's requests, as the fake saw them: the model in the
//! path, `alt=sse`, the key only in `x-goog-api-key`, `systemInstruction`,
//! roles `user`/`model`, `generationConfig`, and logprobs.

use lucid_providers::{
    ChatEvent, Message, ProviderError, SamplingParams, TokenLogprob, TopLogprob,
};
use serde_json::json;

use super::conformance::{Kind, drain, request};
use crate::support::{KEY, PIECES, assert_no_key, capture_logs};

#[tokio::test]
async fn sends_the_documented_request() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::Gemini.fake(vec![]).await;
    let provider = Kind::Gemini.provider(&fake);
    let mut req = request("gemini-1.5-flash");
    req.messages.push(Message::assistant("Hello world"));
    req.messages.push(Message::user("Again"));
    req.params = SamplingParams {
        temperature: Some(1.5),
        top_p: Some(0.5),
        top_k: Some(32),
        max_tokens: Some(100),
        stop: vec!["END".into()],
        seed: Some(42),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(0.25),
        logprobs: None,
    };
    provider.chat(&req).await.unwrap();
    drain(provider.chat_stream(&req).await.unwrap()).await;

    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        (sent[0].path.as_str(), sent[0].query.as_deref()),
        ("/v1beta/models/gemini-1.5-flash:generateContent", None)
    );
    assert_eq!(
        (sent[1].path.as_str(), sent[1].query.as_deref()),
        (
            "/v1beta/models/gemini-1.5-flash:streamGenerateContent",
            Some("alt=sse")
        )
    );
    for r in &sent {
        assert_eq!(r.headers["x-goog-api-key"], KEY);
        assert!(!r.headers.contains_key("authorization"));
        assert_eq!(
            r.body,
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "Say hello to the world"}]},
                    {"role": "model", "parts": [{"text": "Hello world"}]},
                    {"role": "user", "parts": [{"text": "Again"}]},
                ],
                "systemInstruction": {"parts": [{"text": "You are terse."}]},
                "generationConfig": {"temperature": 1.5, "topP": 0.5, "topK": 32, "maxOutputTokens": 100,
                    "stopSequences": ["END"], "seed": 42, "presencePenalty": 0.5, "frequencyPenalty": 0.25},
            })
        );
    }
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn logprobs_are_asked_for_and_mapped() {
    let fake = Kind::Gemini.fake(vec![]).await;
    let provider = Kind::Gemini.provider(&fake);
    let mut req = request("gemini-1.5-flash");
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
    assert_eq!(
        provider.chat(&req).await.unwrap().logprobs,
        Some(expect.clone())
    );
    let (events, _) = drain(provider.chat_stream(&req).await.unwrap()).await;
    let streamed: Vec<TokenLogprob> = events
        .into_iter()
        .filter_map(|e| match e {
            ChatEvent::Delta { logprobs, .. } => logprobs,
            ChatEvent::Finish { .. } => None,
        })
        .flatten()
        .collect();
    assert_eq!(streamed, expect);
    assert_eq!(
        fake.requests()[0].body["generationConfig"],
        json!({"responseLogprobs": true, "logprobs": 2})
    );
}

#[tokio::test]
async fn refuses_values_beyond_its_limits() {
    let fake = Kind::Gemini.fake(vec![]).await;
    let provider = Kind::Gemini.provider(&fake);
    let mut req = request("gemini-1.5-flash");
    req.params.stop = vec!["x".into(); 6];
    let error = provider.chat(&req).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::UnsupportedParameter { provider, param, .. } if provider == "gemini" && param == "stop")
    );
    let mut req = request("gemini-1.5-flash");
    req.messages.push(Message::system("late"));
    assert!(matches!(
        provider.chat(&req).await,
        Err(ProviderError::UnsupportedParameter { .. })
    ));
    let error = provider.chat(&request("../secrets")).await.unwrap_err();
    assert!(matches!(error, ProviderError::InvalidModel { .. }));
    assert_eq!(fake.request_count(), 0);
}
