//! OpenAI-compatible endpoints: the same wire format under their own name,
//! with `max_tokens` and `top_k` as those servers read them, and a key only
//! when one is configured.

use std::time::Duration;

use lucid_providers::{Config, HttpSettings, OpenAiProvider, Provider, ProviderError, Router};
use serde_json::json;

use super::conformance::{Kind, drain, full_usage, request};
use crate::support::{Fake, TEXT, assert_no_key, capture_logs, openai::OpenAi};

#[tokio::test]
async fn keyless_endpoint_gets_no_authorization_and_top_k() {
    let (logs, _guard) = capture_logs();
    let fake = Fake::start(OpenAi::compat(false), vec![]).await;
    let provider = OpenAiProvider::compat("uni", HttpSettings::new(&fake.base_url)).unwrap();
    let mut req = request("meta-llama/Llama-3.1-8B-Instruct");
    req.params.top_k = Some(40);
    req.params.max_tokens = Some(64);
    let resp = provider.chat(&req).await.unwrap();
    assert_eq!((resp.text.as_str(), resp.usage), (TEXT, full_usage()));
    let (_, error) = drain(provider.chat_stream(&req).await.unwrap()).await;
    assert!(error.is_none());
    let sent = fake.requests();
    assert!(!sent[0].headers.contains_key("authorization"));
    assert_eq!(sent[0].body["top_k"], json!(40));
    assert_eq!(sent[0].body["max_tokens"], json!(64));
    assert!(sent[0].body.get("max_completion_tokens").is_none());
    assert_eq!(provider.name(), "compat:uni");
    assert_no_key(&logs, &[]);
}

fn router(toml: &str, env: &[(&str, &str)]) -> Router {
    let config = Config::from_toml(toml).unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Router::from_config(&config, &|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
}

#[tokio::test]
async fn compat_models_are_addressed_by_endpoint_name() {
    let (logs, _guard) = capture_logs();
    let fake = Kind::Compat.fake(vec![]).await;
    let router = router(
        &format!(
            "[providers.compat.uni]\nbase_url = \"{}\"\napi_key_env = \"UNI_KEY\"\nmodel = \"default-model\"\n",
            fake.base_url
        ),
        &[("UNI_KEY", crate::support::KEY)],
    );
    let resp = router.chat(&request("compat:uni")).await.unwrap();
    assert_eq!(resp.text, TEXT);
    assert_eq!(fake.requests()[0].body["model"], json!("default-model"));
    let (_, error) = drain(
        router
            .chat_stream(&request("compat:uni:meta-llama/Llama-3.1-8B-Instruct"))
            .await
            .unwrap(),
    )
    .await;
    assert!(error.is_none());
    assert_eq!(
        fake.requests()[1].body["model"],
        json!("meta-llama/Llama-3.1-8B-Instruct")
    );
    assert_no_key(&logs, &[]);
}

#[tokio::test]
async fn a_configured_key_variable_that_is_unset_is_reported() {
    let router = router(
        "[providers.compat.uni]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"UNI_KEY\"\n",
        &[],
    );
    let error = router.chat(&request("compat:uni:m")).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::MissingApiKey { provider, env_var } if provider == "compat:uni" && env_var == "UNI_KEY"),
        "{error:?}"
    );
    let error = router.chat(&request("compat:uni")).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("sets no `model`; name one as compat:uni:MODEL"),
        "{error}"
    );
    let error = router.chat(&request("compat:other:m")).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::UnknownProvider { name, .. } if name == "compat:other"),
        "{error:?}"
    );
}

#[tokio::test]
async fn compat_timeouts_come_from_the_config() {
    let fake = Kind::Compat
        .fake(vec![crate::support::Fault::StallAfter(1)])
        .await;
    let router = router(
        &format!(
            "[providers.compat.uni]\nbase_url = \"{}\"\napi_key_env = \"UNI_KEY\"\nread_timeout_secs = 1.0\n",
            fake.base_url
        ),
        &[("UNI_KEY", crate::support::KEY)],
    );
    let (_, error) = drain(router.chat_stream(&request("compat:uni:m")).await.unwrap()).await;
    assert!(
        matches!(error, Some(ProviderError::Timeout { after, .. }) if after == Duration::from_secs(1))
    );
}
