//! The router: model strings, retries with backoff and Retry-After, no retry
//! after the first token, fallbacks, the local provider, cancellation while
//! waiting to retry, and construction from the environment and a file.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lucid_providers::{
    ChatEvent, ChatRequest, ChatResponse, ChatStream, Config, ConfigError, FinishReason, Provider,
    ProviderError, Router, Usage, async_trait,
};

use super::conformance::{Kind, delta_texts, drain, full_usage, request};
use crate::support::{Fake, Fault, KEY, PIECES, TEXT, WRONG_KEY, assert_no_key, capture_logs};

/// Fast retries, so the tests measure Retry-After rather than backoff.
const FAST: &str = "[defaults]\nmax_retries = 2\ninitial_backoff_ms = 1\nmax_backoff_ms = 5\n";

/// A router whose vendors point at the given fakes, with `KEY` (or `key`).
fn router_with(extra: &str, fakes: &[(Kind, &Fake)], key: &str) -> Router {
    let config = Config::from_toml(&format!("{FAST}{extra}")).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for (kind, fake) in fakes {
        let (key_var, url_var) = match kind {
            Kind::OpenAi => ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
            Kind::Anthropic => ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
            Kind::Gemini => ("GEMINI_API_KEY", "GEMINI_BASE_URL"),
            Kind::Compat => unreachable!("compat endpoints come from the config"),
        };
        env.push((key_var.into(), key.into()));
        env.push((url_var.into(), fake.base_url.clone()));
    }
    Router::from_config(&config, &|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
}

fn router(extra: &str, fakes: &[(Kind, &Fake)]) -> Router {
    router_with(extra, fakes, KEY)
}

#[tokio::test]
async fn retries_429_honouring_retry_after() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::OpenAi
        .fake(vec![Fault::Status {
            status: 429,
            retry_after: Some("1"),
        }])
        .await;
    let router = router("", &[(Kind::OpenAi, &fake)]);
    let started = Instant::now();
    let resp = router.chat(&request("openai:gpt-4o-mini")).await.unwrap();
    let waited = started.elapsed();
    assert_eq!((resp.text.as_str(), resp.usage), (TEXT, full_usage()));
    assert_eq!(fake.request_count(), 2);
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After"
    );
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
    assert!(logs.text().contains("retrying"));
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn retries_server_errors_then_streams() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::Gemini
        .fake(vec![
            Fault::Status {
                status: 500,
                retry_after: None,
            },
            Fault::Status {
                status: 503,
                retry_after: None,
            },
        ])
        .await;
    let router = router("", &[(Kind::Gemini, &fake)]);
    let (events, error) = drain(
        router
            .chat_stream(&request("gemini:gemini-1.5-flash"))
            .await
            .unwrap(),
    )
    .await;
    assert!(error.is_none());
    assert_eq!(delta_texts(&events), PIECES);
    assert_eq!(
        events.last(),
        Some(&ChatEvent::Finish {
            reason: FinishReason::Stop,
            usage: full_usage()
        })
    );
    assert_eq!(fake.request_count(), 3);
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn gives_up_naming_provider_and_status() {
    let (logs, _guard) = capture_logs();
    let fail = || Fault::Status {
        status: 500,
        retry_after: None,
    };
    let fake = Kind::OpenAi
        .fake(vec![fail(), fail(), fail(), fail()])
        .await;
    let router = router("", &[(Kind::OpenAi, &fake)]);
    let error = router
        .chat(&request("openai:gpt-4o-mini"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "openai: HTTP 500: the fake was told to fail this request"
    );
    assert_eq!(
        fake.request_count(),
        3,
        "one attempt and max_retries = 2 retries"
    );
    assert!(logs.text().contains("giving up"));
    assert_no_key(&logs, &[&error]);
}

#[tokio::test]
async fn retries_a_reset_connection() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::Anthropic.fake(vec![Fault::Reset]).await;
    let router = router("", &[(Kind::Anthropic, &fake)]);
    let resp = router
        .chat(&request("anthropic:claude-3-5-haiku-latest"))
        .await
        .unwrap();
    assert_eq!((resp.text.as_str(), resp.usage), (TEXT, full_usage()));
    assert_eq!((fake.resets(), fake.request_count()), (1, 1));
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn retries_an_error_event_before_the_first_token() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::Anthropic.fake(vec![Fault::ErrorEventAfter(0)]).await;
    let router = router("", &[(Kind::Anthropic, &fake)]);
    let (events, error) = drain(
        router
            .chat_stream(&request("anthropic:claude-3-5-haiku-latest"))
            .await
            .unwrap(),
    )
    .await;
    assert!(error.is_none());
    assert_eq!(delta_texts(&events).concat(), TEXT);
    assert_eq!(fake.request_count(), 2);
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn never_retries_after_the_first_token() {
    let (logs, _guard) = capture_logs();
    for fault in [
        Fault::DropAfter(2),
        Fault::ErrorEventAfter(2),
        Fault::StallAfter(2),
    ] {
        let fake = Kind::OpenAi.fake(vec![fault.clone()]).await;
        let router = router(
            "[providers.openai]\nread_timeout_secs = 1.0\n",
            &[(Kind::OpenAi, &fake)],
        );
        let (events, error) = drain(
            router
                .chat_stream(&request("openai:gpt-4o-mini"))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(delta_texts(&events), ["Hel", "lo"], "{fault:?}");
        let error = error.expect("the stream must end with the error");
        assert!(error.is_retryable(), "{fault:?}: {error:?}");
        assert_eq!(
            fake.request_count(),
            1,
            "{fault:?}: retried after the first token"
        );
        assert_no_key(&logs, &[&error]);
    }
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::Gemini.fake(vec![]).await;
    let router = router_with("", &[(Kind::Gemini, &fake)], WRONG_KEY);
    let error = router
        .chat(&request("gemini:gemini-1.5-flash"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { .. }),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 1);
    assert_no_key(&logs, &[&error]);
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_gives_up_at_once() {
    let fake = Kind::OpenAi
        .fake(vec![Fault::Status {
            status: 429,
            retry_after: Some("3600"),
        }])
        .await;
    let router = router("", &[(Kind::OpenAi, &fake)]);
    let started = Instant::now();
    let error = router
        .chat(&request("openai:gpt-4o-mini"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        error.to_string(),
        "openai: rate limited (HTTP 429, retry after 3600.0s): the fake was told to fail this request"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn falls_back_to_the_next_model() {
    let (logs, _guard) = capture_logs();
    let fail = || Fault::Status {
        status: 500,
        retry_after: None,
    };
    let openai = Kind::OpenAi
        .fake(vec![fail(), fail(), fail(), fail(), fail(), fail()])
        .await;
    let anthropic = Kind::Anthropic.fake(vec![]).await;
    let router = router(
        "[providers.openai]\nmax_retries = 1\nfallbacks = [\"anthropic:claude-3-5-haiku-latest\"]\n",
        &[(Kind::OpenAi, &openai), (Kind::Anthropic, &anthropic)],
    );
    let resp = router.chat(&request("openai:gpt-4o-mini")).await.unwrap();
    assert_eq!(resp.model, Kind::Anthropic.reported_model());
    assert_eq!((resp.text.as_str(), resp.usage), (TEXT, full_usage()));
    assert_eq!((openai.request_count(), anthropic.request_count()), (2, 1));

    let (events, error) = drain(
        router
            .chat_stream(&request("openai:gpt-4o-mini"))
            .await
            .unwrap(),
    )
    .await;
    assert!(error.is_none());
    assert_eq!(delta_texts(&events).concat(), TEXT);
    assert_eq!((openai.request_count(), anthropic.request_count()), (4, 2));
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn all_failed_lists_every_attempt() {
    let (logs, _guard) = capture_logs();
    let openai = Kind::OpenAi
        .fake(vec![Fault::Status {
            status: 500,
            retry_after: None,
        }])
        .await;
    // Gemini has no key here, and no compat endpoint `nowhere` exists.
    let mut router = router(
        "[providers.openai]\nmax_retries = 0\n",
        &[(Kind::OpenAi, &openai)],
    );
    router
        .set_fallbacks(
            "openai:gpt-4o-mini",
            &["gemini:gemini-1.5-flash", "compat:nowhere:m"],
        )
        .unwrap();
    let req = request("openai:gpt-4o-mini");
    let error = router.chat(&req).await.unwrap_err();
    let ProviderError::AllFailed { attempts } = &error else {
        panic!("{error:?}")
    };
    let models: Vec<&str> = attempts.iter().map(|a| a.model.as_str()).collect();
    assert_eq!(
        models,
        [
            "openai:gpt-4o-mini",
            "gemini:gemini-1.5-flash",
            "compat:nowhere:m"
        ]
    );
    assert!(matches!(
        attempts[0].error,
        ProviderError::Status { status: 500, .. }
    ));
    assert!(
        matches!(&attempts[1].error, ProviderError::MissingApiKey { env_var, .. } if env_var == "GEMINI_API_KEY or GOOGLE_API_KEY")
    );
    assert!(matches!(
        attempts[2].error,
        ProviderError::UnknownProvider { .. }
    ));
    let text = error.to_string();
    assert!(
        text.starts_with("all 3 models failed: [openai:gpt-4o-mini] openai: HTTP 500"),
        "{text}"
    );
    assert_no_key(&logs, &[&error]);
}

#[tokio::test]
async fn dropping_the_call_cancels_the_retry() {
    let fake = Kind::OpenAi
        .fake(vec![Fault::Status {
            status: 429,
            retry_after: Some("1"),
        }])
        .await;
    let router = router("", &[(Kind::OpenAi, &fake)]);
    let req = request("openai:gpt-4o-mini");
    let call = router.chat(&req);
    // Drop the call once the 429 has been answered, while it waits to retry.
    tokio::select! {
        result = call => panic!("the call finished: {result:?}"),
        () = async {
            while fake.request_count() < 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        } => {}
    }
    // Past the Retry-After, a retry would have arrived by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.request_count(), 1, "a dropped call must not retry");
}

/// A local engine as another crate would plug it in.
#[derive(Default)]
struct Echo {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl Provider for Echo {
    fn name(&self) -> &str {
        "local"
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.seen.lock().unwrap().push(req.model.clone());
        Ok(ChatResponse {
            model: req.model.clone(),
            text: "local answer".into(),
            finish_reason: FinishReason::Stop,
            usage: Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
            }),
            logprobs: None,
        })
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        self.seen.lock().unwrap().push(req.model.clone());
        Ok(futures::stream::iter(vec![
            Ok(ChatEvent::Delta {
                text: "local".into(),
                logprobs: None,
            }),
            Ok(ChatEvent::Finish {
                reason: FinishReason::Stop,
                usage: None,
            }),
        ])
        .boxed())
    }
}

#[tokio::test]
async fn bare_names_go_to_the_local_provider() {
    let mut router = Router::new();
    let error = router.chat(&request("llama3.2:1b")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "`llama3.2:1b` is a local model name, but no local engine is available"
    );

    let echo = Arc::new(Echo::default());
    router.set_local(echo.clone());
    assert_eq!(
        router.chat(&request("llama3.2:1b")).await.unwrap().text,
        "local answer"
    );
    let (events, _) = drain(
        router
            .chat_stream(&request("local:openai:odd-name"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(delta_texts(&events), ["local"]);
    assert_eq!(
        *echo.seen.lock().unwrap(),
        ["llama3.2:1b", "openai:odd-name"]
    );

    // The router is a provider too, so a front end can hold any of them alike.
    let as_provider: Arc<dyn Provider> = Arc::new(router);
    assert_eq!(
        as_provider.chat(&request("tinyllama")).await.unwrap().usage,
        Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 2
        })
    );
}

#[tokio::test]
async fn missing_keys_name_their_variables() {
    let router = Router::from_config(&Config::default(), &|_| None).unwrap();
    assert_eq!(router.providers(), ["anthropic", "gemini", "openai"]);
    for (model, var) in [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),
        ("anthropic:claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
        (
            "gemini:gemini-1.5-flash",
            "GEMINI_API_KEY or GOOGLE_API_KEY",
        ),
    ] {
        let error = router.chat(&request(model)).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::MissingApiKey { env_var, .. } if env_var == var),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn google_api_key_is_enough_for_gemini() {
    let fake = Kind::Gemini.fake(vec![]).await;
    let url = fake.base_url.clone();
    let env = move |name: &str| match name {
        "GOOGLE_API_KEY" => Some(KEY.to_owned()),
        "GEMINI_BASE_URL" => Some(url.clone()),
        _ => None,
    };
    let router = Router::from_config(&Config::default(), &env).unwrap();
    assert_eq!(
        router
            .chat(&request("gemini:gemini-1.5-flash"))
            .await
            .unwrap()
            .text,
        TEXT
    );
}

#[tokio::test]
async fn builds_from_a_config_file() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::Compat.fake(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("providers.toml");
    std::fs::write(
        &path,
        format!(
            "[providers.compat.uni]\nbase_url = \"{}\"\napi_key = \"{KEY}\"\nmodel = \"m\"\n",
            fake.base_url
        ),
    )
    .unwrap();
    let router = Router::from_env_and_config(Some(&path)).unwrap();
    assert!(!format!("{router:?}").contains(KEY));
    assert_eq!(
        router.chat(&request("compat:uni")).await.unwrap().text,
        TEXT
    );
    assert_no_key(&logs, &[]);

    std::fs::write(&path, "[providers.compat.uni]\nbase_uri = \"x\"\n").unwrap();
    let error = Router::from_env_and_config(Some(&path)).unwrap_err();
    assert!(matches!(error, ConfigError::Parse { .. }));
    let text = error.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("base_uri"),
        "{text}"
    );

    let missing = dir.path().join("nope.toml");
    let error = Router::from_env_and_config(Some(&missing)).unwrap_err();
    assert!(error.to_string().starts_with(&format!(
        "cannot read providers config {}",
        missing.display()
    )));

    std::fs::write(&path, "[fallbacks]\n\"openai:\" = []\n").unwrap();
    assert!(matches!(
        Router::from_env_and_config(Some(&path)),
        Err(ConfigError::Invalid { .. })
    ));
}
