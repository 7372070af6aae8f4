//! Behaviour every adapter must share, checked against every vendor's fake:
//! plain and streamed answers (with split chunks, pings and CRLF framing),
//! length limits, error events, malformed events, stalls, dropped
//! connections, cancellation, bad keys and error statuses. Each case asserts
//! the text, the usage and the error, and that no key reaches the logs or an
//! error.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lucid_providers::{
    AnthropicProvider, ChatEvent, ChatRequest, ChatStream, FinishReason, GeminiProvider,
    HttpSettings, Message, OpenAiProvider, Provider, ProviderError, Secret, TimeoutPhase, Usage,
};

use crate::support::{
    self, Fake, Fault, KEY, PIECES, TEXT, WRONG_KEY, assert_no_key, capture_logs,
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    OpenAi,
    Compat,
    Anthropic,
    Gemini,
}

pub const KINDS: [Kind; 4] = [Kind::OpenAi, Kind::Compat, Kind::Anthropic, Kind::Gemini];

impl Kind {
    pub async fn fake(self, faults: Vec<Fault>) -> Fake {
        match self {
            Kind::OpenAi => Fake::start(support::openai::OpenAi::new(), faults).await,
            Kind::Compat => Fake::start(support::openai::OpenAi::compat(true), faults).await,
            Kind::Anthropic => Fake::start(support::anthropic::Anthropic, faults).await,
            Kind::Gemini => Fake::start(support::gemini::Gemini, faults).await,
        }
    }

    pub fn provider_with(
        self,
        fake: &Fake,
        key: &str,
        read_timeout: Duration,
    ) -> Arc<dyn Provider> {
        let s = HttpSettings::new(&fake.base_url)
            .with_api_key(Secret::new(key))
            .with_timeouts(Duration::from_secs(2), read_timeout);
        match self {
            Kind::OpenAi => Arc::new(OpenAiProvider::openai(s).unwrap()),
            Kind::Compat => Arc::new(OpenAiProvider::compat("uni", s).unwrap()),
            Kind::Anthropic => Arc::new(AnthropicProvider::new(s).unwrap()),
            Kind::Gemini => Arc::new(GeminiProvider::new(s).unwrap()),
        }
    }

    pub fn provider(self, fake: &Fake) -> Arc<dyn Provider> {
        self.provider_with(fake, KEY, Duration::from_secs(5))
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            Kind::Compat => "compat:uni",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gemini",
        }
    }

    pub fn model(self) -> &'static str {
        match self {
            Kind::OpenAi => "gpt-4o-mini",
            Kind::Compat => "meta-llama/Llama-3.1-8B-Instruct",
            Kind::Anthropic => "claude-3-5-haiku-latest",
            Kind::Gemini => "gemini-1.5-flash",
        }
    }

    /// The model name the vendor reports back.
    pub fn reported_model(self) -> String {
        match self {
            Kind::OpenAi | Kind::Compat => support::openai::snapshot(self.model()),
            Kind::Anthropic => support::anthropic::resolved(self.model()),
            Kind::Gemini => support::gemini::version(self.model()),
        }
    }

    fn error_event_kind(self) -> &'static str {
        match self {
            Kind::OpenAi | Kind::Compat => "server_error",
            Kind::Anthropic => "overloaded_error",
            Kind::Gemini => "UNAVAILABLE",
        }
    }
}

/// A system message of 3 words and a user message of 5: 8 prompt tokens by
/// the fakes' count.
pub fn request(model: &str) -> ChatRequest {
    ChatRequest::new(
        model,
        vec![
            Message::system("You are terse."),
            Message::user("Say hello to the world"),
        ],
    )
}

pub const PROMPT_TOKENS: u32 = 8;

/// The read timeout of the stall tests: long enough that a loaded machine
/// does not stall a healthy stream, short enough to keep the tests quick.
pub const STALL: Duration = Duration::from_secs(1);

pub fn full_usage() -> Option<Usage> {
    Some(Usage {
        prompt_tokens: PROMPT_TOKENS,
        completion_tokens: PIECES.len() as u32,
    })
}

/// Reads a stream to its end: the events, and the error that ended it.
pub async fn drain(mut stream: ChatStream) -> (Vec<ChatEvent>, Option<ProviderError>) {
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => {
                assert!(
                    stream.next().await.is_none(),
                    "the stream went on after an error"
                );
                return (events, Some(e));
            }
        }
    }
    (events, None)
}

pub fn delta_texts(events: &[ChatEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::Delta { text, .. } => Some(text.clone()),
            ChatEvent::Finish { .. } => None,
        })
        .collect()
}

#[tokio::test]
async fn plain_chat() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![]).await;
        let resp = kind
            .provider(&fake)
            .chat(&request(kind.model()))
            .await
            .unwrap();
        assert_eq!(resp.text, TEXT, "{kind:?}");
        assert_eq!(resp.finish_reason, FinishReason::Stop, "{kind:?}");
        assert_eq!(resp.usage, full_usage(), "{kind:?}");
        assert_eq!(resp.model, kind.reported_model(), "{kind:?}");
        assert_eq!(resp.logprobs, None, "{kind:?}");
        assert_eq!(fake.request_count(), 1);
        assert_no_key(&logs, &[]);
    }
}

#[tokio::test]
async fn streamed_chat_with_any_framing() {
    for kind in KINDS {
        for fault in [Fault::None, Fault::SplitChunks, Fault::Pings, Fault::Crlf] {
            let (logs, _guard) = capture_logs();
            let fake = kind.fake(vec![fault.clone()]).await;
            let stream = kind
                .provider(&fake)
                .chat_stream(&request(kind.model()))
                .await
                .unwrap();
            let (events, error) = drain(stream).await;
            assert!(error.is_none(), "{kind:?} {fault:?}: {error:?}");
            assert_eq!(delta_texts(&events), PIECES, "{kind:?} {fault:?}");
            assert_eq!(
                events.last(),
                Some(&ChatEvent::Finish {
                    reason: FinishReason::Stop,
                    usage: full_usage()
                }),
                "{kind:?} {fault:?}"
            );
            if fault == Fault::SplitChunks {
                // Every event was written in three pieces; most must have
                // arrived apart, or the test proves nothing.
                let chunks = logs.text().matches("stream chunk").count();
                assert!(
                    chunks > 2 * events.len(),
                    "{kind:?}: only {chunks} chunks arrived"
                );
            }
            assert_no_key(&logs, &[]);
        }
    }
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_with_length() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![]).await;
        let provider = kind.provider(&fake);
        let mut req = request(kind.model());
        req.params.max_tokens = Some(2);
        let usage = Some(Usage {
            prompt_tokens: PROMPT_TOKENS,
            completion_tokens: 2,
        });

        let resp = provider.chat(&req).await.unwrap();
        assert_eq!(
            (resp.text.as_str(), &resp.finish_reason, resp.usage),
            ("Hello", &FinishReason::Length, usage)
        );

        let (events, error) = drain(provider.chat_stream(&req).await.unwrap()).await;
        assert!(error.is_none(), "{kind:?}: {error:?}");
        assert_eq!(delta_texts(&events), ["Hel", "lo"], "{kind:?}");
        assert_eq!(
            events.last(),
            Some(&ChatEvent::Finish {
                reason: FinishReason::Length,
                usage
            }),
            "{kind:?}"
        );
        assert_no_key(&logs, &[]);
    }
}

#[tokio::test]
async fn error_event_mid_stream_ends_it() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![Fault::ErrorEventAfter(2)]).await;
        let (events, error) = drain(
            kind.provider(&fake)
                .chat_stream(&request(kind.model()))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(delta_texts(&events), ["Hel", "lo"], "{kind:?}");
        let error = error.expect("an error");
        match &error {
            ProviderError::Upstream {
                provider,
                kind: k,
                retryable,
                ..
            } => {
                assert_eq!(provider, kind.name());
                assert_eq!(k, kind.error_event_kind());
                assert!(
                    retryable,
                    "{kind:?}: overload and server errors are worth retrying"
                );
            }
            other => panic!("{kind:?}: expected Upstream, got {other:?}"),
        }
        assert!(error.to_string().starts_with(kind.name()), "{error}");
        assert_no_key(&logs, &[&error]);
    }
}

#[tokio::test]
async fn malformed_event_is_a_protocol_error() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![Fault::MalformedAfter(1)]).await;
        let (events, error) = drain(
            kind.provider(&fake)
                .chat_stream(&request(kind.model()))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(delta_texts(&events), ["Hel"], "{kind:?}");
        let error = error.expect("an error");
        assert!(
            matches!(&error, ProviderError::Protocol { provider, detail } if provider == kind.name() && detail.contains("malformed")),
            "{kind:?}: {error:?}"
        );
        assert_no_key(&logs, &[&error]);
    }
}

#[tokio::test]
async fn stalled_stream_times_out() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![Fault::StallAfter(2)]).await;
        let provider = kind.provider_with(&fake, KEY, STALL);
        let started = std::time::Instant::now();
        let (events, error) =
            drain(provider.chat_stream(&request(kind.model())).await.unwrap()).await;
        assert_eq!(delta_texts(&events), ["Hel", "lo"], "{kind:?}");
        let error = error.expect("an error");
        assert!(
            matches!(&error, ProviderError::Timeout { provider, phase: TimeoutPhase::Stream, after } if provider == kind.name() && *after == STALL),
            "{kind:?}: {error:?}"
        );
        assert!(started.elapsed() < STALL * 4);
        assert!(
            fake.wait_client_gone(Duration::from_secs(2)).await,
            "{kind:?}: the connection stayed open"
        );
        assert_no_key(&logs, &[&error]);
    }
}

#[tokio::test]
async fn connection_lost_mid_stream() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![Fault::DropAfter(2)]).await;
        let (events, error) = drain(
            kind.provider(&fake)
                .chat_stream(&request(kind.model()))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(delta_texts(&events), ["Hel", "lo"], "{kind:?}");
        let error = error.expect("an error");
        assert!(
            matches!(&error, ProviderError::Connect { provider, .. } if provider == kind.name()),
            "{kind:?}: {error:?}"
        );
        assert_no_key(&logs, &[&error]);
    }
}

#[tokio::test]
async fn dropping_the_stream_aborts_the_request() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![Fault::Endless]).await;
        let mut stream = kind
            .provider(&fake)
            .chat_stream(&request(kind.model()))
            .await
            .unwrap();
        for _ in 0..PIECES.len() + 3 {
            assert!(matches!(
                stream.next().await,
                Some(Ok(ChatEvent::Delta { .. }))
            ));
        }
        assert!(!fake.wait_client_gone(Duration::from_millis(50)).await);
        drop(stream);
        assert!(
            fake.wait_client_gone(Duration::from_secs(2)).await,
            "{kind:?}: the server kept streaming"
        );
        assert_no_key(&logs, &[]);
    }
}

#[tokio::test]
async fn wrong_key_is_unauthorized_and_never_echoed() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![]).await;
        let provider = kind.provider_with(&fake, WRONG_KEY, Duration::from_secs(5));
        let plain = provider.chat(&request(kind.model())).await.unwrap_err();
        let streamed = provider
            .chat_stream(&request(kind.model()))
            .await
            .err()
            .unwrap();
        for error in [&plain, &streamed] {
            let expected_status = if kind == Kind::Gemini { 400 } else { 401 };
            assert!(
                matches!(error, ProviderError::Unauthorized { provider, status, .. } if provider == kind.name() && *status == expected_status),
                "{kind:?}: {error:?}"
            );
            assert!(!error.is_retryable());
        }
        if matches!(kind, Kind::OpenAi | Kind::Compat) {
            // The fake echoes the key it got; the client must have scrubbed it.
            assert!(
                plain
                    .to_string()
                    .contains("Incorrect API key provided: ***"),
                "{plain}"
            );
        }
        assert_no_key(&logs, &[&plain, &streamed]);
    }
}

#[tokio::test]
async fn error_statuses_name_provider_and_status() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind
            .fake(vec![
                Fault::Status {
                    status: 429,
                    retry_after: Some("7"),
                },
                Fault::Status {
                    status: 500,
                    retry_after: None,
                },
                Fault::Status {
                    status: 503,
                    retry_after: Some("2"),
                },
            ])
            .await;
        let provider = kind.provider(&fake);
        let req = request(kind.model());
        let rate = provider.chat(&req).await.unwrap_err();
        assert!(
            matches!(&rate, ProviderError::RateLimited { provider, retry_after: Some(d), .. } if provider == kind.name() && *d == Duration::from_secs(7)),
            "{kind:?}: {rate:?}"
        );
        let server = provider.chat_stream(&req).await.err().unwrap();
        assert!(
            matches!(&server, ProviderError::Status { provider, status: 500, message, .. } if provider == kind.name() && message.contains("the fake was told to fail this request")),
            "{kind:?}: {server:?}"
        );
        assert!(
            server
                .to_string()
                .starts_with(&format!("{}: HTTP 500: ", kind.name())),
            "{server}"
        );
        let unavailable = provider.chat(&req).await.unwrap_err();
        assert_eq!(unavailable.retry_after(), Some(Duration::from_secs(2)));
        assert!(rate.is_retryable() && server.is_retryable() && unavailable.is_retryable());
        assert_no_key(&logs, &[&rate, &server, &unavailable]);
    }
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    for kind in KINDS {
        let (logs, _guard) = capture_logs();
        let fake = kind.fake(vec![]).await;
        let provider = kind.provider(&fake);
        drop(fake);
        // Let the aborted server task release its socket.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let error = provider.chat(&request(kind.model())).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::Connect { provider, .. } if provider == kind.name()),
            "{kind:?}: {error:?}"
        );
        assert!(error.is_retryable());
        assert_no_key(&logs, &[&error]);
    }
}
