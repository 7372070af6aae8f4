//! The [`Router`]: from a model string to a provider, with retries and
//! fallbacks.
//!
//! It is the one entry point the CLI and the server need: built from the
//! environment and the config file, given the local engine's provider with
//! [`Router::set_local`], and itself a [`Provider`], so a front end can hold
//! an `Arc<dyn Provider>` whatever is behind it.
//!
//! Retries happen only before an answer has started: `chat` is retried as a
//! whole, and `chat_stream` until the stream's first event has arrived; once
//! a token has been handed to the caller, an error ends the stream, since
//! repeating the request would repeat or contradict text already shown.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use tracing::Instrument;

use crate::config::{ANTHROPIC, EnvLookup, GEMINI, OPENAI, resolve};
use crate::{
    AnthropicProvider, Attempt, ChatRequest, ChatResponse, ChatStream, Config, ConfigError,
    GeminiProvider, ModelRef, OpenAiProvider, Provider, ProviderError, RetryPolicy, async_trait,
};

/// A configured provider and how to treat its failures.
struct Route {
    provider: Arc<dyn Provider>,
    retry: RetryPolicy,
    /// Tried in order when a model of this provider fails, unless the model
    /// has fallbacks of its own.
    fallbacks: Vec<ModelRef>,
    /// For `compat:NAME` without a model.
    default_model: Option<String>,
}

/// One model to try.
struct Target {
    label: String,
    provider: Arc<dyn Provider>,
    model: String,
    retry: RetryPolicy,
}

/// Resolves model strings to providers and applies retries and fallbacks.
#[derive(Default)]
pub struct Router {
    routes: BTreeMap<String, Route>,
    local: Option<Arc<dyn Provider>>,
    fallbacks: HashMap<String, Vec<ModelRef>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("providers", &self.routes.keys().collect::<Vec<_>>())
            .field("local", &self.local.as_ref().map(|p| p.name().to_owned()))
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with no providers.
    pub fn new() -> Self {
        Router::default()
    }

    /// The usual construction: `openai`, `anthropic` and `gemini` configured
    /// from the environment and, if given, the config file, plus every
    /// `[providers.compat.NAME]`. A provider without a key is still
    /// registered; using it fails with
    /// [`ProviderError::MissingApiKey`] naming the variable to set.
    pub fn from_env_and_config(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config = match path {
            Some(p) => Config::from_path(p)?,
            None => Config::default(),
        };
        Router::build(&config, &|name| std::env::var(name).ok(), path)
    }

    /// Like [`from_env_and_config`](Router::from_env_and_config), with the
    /// config already parsed and environment variables looked up through `env`.
    pub fn from_config(config: &Config, env: EnvLookup<'_>) -> Result<Self, ConfigError> {
        Router::build(config, env, None)
    }

    fn build(
        config: &Config,
        env: EnvLookup<'_>,
        path: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.map(Path::to_owned),
            message,
        };
        let parse_models = |models: &[String]| -> Result<Vec<ModelRef>, ConfigError> {
            models
                .iter()
                .map(|m| ModelRef::parse(m).map_err(|e| invalid(format!("fallback: {e}"))))
                .collect()
        };
        let defaults = &config.defaults;
        let providers = &config.providers;
        let mut router = Router::new();

        let file = providers.openai.as_ref();
        let r = resolve(Some(&OPENAI), OPENAI.name, file, defaults, env, path)?;
        let fallbacks = parse_models(file.map_or(&[][..], |f| &f.fallbacks))?;
        router.add(
            OPENAI.name,
            Arc::new(OpenAiProvider::openai(r.http)?),
            r.retry,
            fallbacks,
            None,
        );

        let file = providers.anthropic.as_ref();
        let r = resolve(Some(&ANTHROPIC), ANTHROPIC.name, file, defaults, env, path)?;
        let mut anthropic = AnthropicProvider::new(r.http)?;
        if let Some(version) = file.and_then(|f| f.anthropic_version.as_deref()) {
            anthropic = anthropic.with_version(version)?;
        }
        if let Some(n) = file.and_then(|f| f.default_max_tokens) {
            anthropic = anthropic.with_default_max_tokens(n);
        }
        let fallbacks = parse_models(file.map_or(&[][..], |f| &f.fallbacks))?;
        router.add(
            ANTHROPIC.name,
            Arc::new(anthropic),
            r.retry,
            fallbacks,
            None,
        );

        let file = providers.gemini.as_ref();
        let r = resolve(Some(&GEMINI), GEMINI.name, file, defaults, env, path)?;
        let fallbacks = parse_models(file.map_or(&[][..], |f| &f.fallbacks))?;
        router.add(
            GEMINI.name,
            Arc::new(GeminiProvider::new(r.http)?),
            r.retry,
            fallbacks,
            None,
        );

        for (name, file) in &providers.compat {
            if name.is_empty() || name.contains(':') {
                return Err(invalid(format!(
                    "compat endpoint name `{name}` must be non-empty and have no `:`"
                )));
            }
            let key = format!("compat:{name}");
            let r = resolve(None, &key, Some(file), defaults, env, path)?;
            let provider = OpenAiProvider::compat(name, r.http)?;
            let fallbacks = parse_models(&file.fallbacks)?;
            router.add(
                &key,
                Arc::new(provider),
                r.retry,
                fallbacks,
                file.model.clone(),
            );
        }

        for (model, fallbacks) in &config.fallbacks {
            let model = ModelRef::parse(model).map_err(|e| invalid(format!("[fallbacks]: {e}")))?;
            router
                .fallbacks
                .insert(model.to_string(), parse_models(fallbacks)?);
        }
        Ok(router)
    }

    fn add(
        &mut self,
        key: &str,
        provider: Arc<dyn Provider>,
        retry: RetryPolicy,
        fallbacks: Vec<ModelRef>,
        default_model: Option<String>,
    ) {
        self.routes.insert(
            key.to_owned(),
            Route {
                provider,
                retry,
                fallbacks,
                default_model,
            },
        );
    }

    /// Adds or replaces the provider that serves `key` (`openai`,
    /// `anthropic`, `gemini`, `compat:NAME`), with its retry policy.
    pub fn insert(&mut self, key: &str, provider: Arc<dyn Provider>, retry: RetryPolicy) {
        let (fallbacks, default_model) = match self.routes.remove(key) {
            Some(old) => (old.fallbacks, old.default_model),
            None => (Vec::new(), None),
        };
        self.add(key, provider, retry, fallbacks, default_model);
    }

    /// Serves bare model names (and `local:NAME`) with `provider`, the local
    /// engine. Local requests are not retried.
    pub fn set_local(&mut self, provider: Arc<dyn Provider>) {
        self.local = Some(provider);
    }

    /// Sets the models tried, in order, when `model` fails.
    pub fn set_fallbacks(&mut self, model: &str, fallbacks: &[&str]) -> Result<(), ProviderError> {
        let model = ModelRef::parse(model)?;
        let fallbacks = fallbacks
            .iter()
            .map(|m| ModelRef::parse(m))
            .collect::<Result<Vec<_>, _>>()?;
        self.fallbacks.insert(model.to_string(), fallbacks);
        Ok(())
    }

    /// The configured provider keys, sorted.
    pub fn providers(&self) -> Vec<&str> {
        self.routes.keys().map(String::as_str).collect()
    }

    /// The provider and the provider's own model name for a model string.
    pub fn resolve(&self, model: &str) -> Result<(Arc<dyn Provider>, String), ProviderError> {
        let target = self.target(&ModelRef::parse(model)?)?;
        Ok((target.provider, target.model))
    }

    fn target(&self, model: &ModelRef) -> Result<Target, ProviderError> {
        let label = model.to_string();
        let Some(key) = model.provider_key() else {
            let provider = self
                .local
                .clone()
                .ok_or_else(|| ProviderError::NoLocalProvider {
                    model: label.clone(),
                })?;
            let model = model.model().unwrap_or_default().to_owned();
            return Ok(Target {
                label,
                provider,
                model,
                retry: RetryPolicy::none(),
            });
        };
        let route = self
            .routes
            .get(&key)
            .ok_or_else(|| ProviderError::UnknownProvider {
                name: key.clone(),
                known: self.routes.keys().cloned().collect(),
            })?;
        let name = model
            .model()
            .map(str::to_owned)
            .or_else(|| route.default_model.clone())
            .ok_or_else(|| ProviderError::InvalidModel {
                input: label.clone(),
                reason: format!(
                    "[providers.{}] sets no `model`; name one as {key}:MODEL",
                    key.replace(':', ".")
                ),
            })?;
        Ok(Target {
            label,
            provider: route.provider.clone(),
            model: name,
            retry: route.retry.clone(),
        })
    }

    /// The model, then its fallbacks; a fallback that cannot be resolved is
    /// kept as the error it will be reported as.
    fn chain(&self, model: &str) -> Result<Vec<Result<Target, Attempt>>, ProviderError> {
        let primary_ref = ModelRef::parse(model)?;
        let primary = self.target(&primary_ref)?;
        let fallbacks = self
            .fallbacks
            .get(&primary.label)
            .or_else(|| {
                primary_ref
                    .provider_key()
                    .and_then(|k| self.routes.get(&k))
                    .map(|r| &r.fallbacks)
            })
            .cloned()
            .unwrap_or_default();
        let mut chain = vec![Ok(primary)];
        for fallback in fallbacks {
            let label = fallback.to_string();
            if label == primary_ref.to_string() {
                continue;
            }
            chain.push(self.target(&fallback).map_err(|error| Attempt {
                model: label,
                error,
            }));
        }
        Ok(chain)
    }

    /// A complete answer from the model or, failing that, its fallbacks.
    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let span = tracing::info_span!("chat", model = %req.model, stream = false);
        self.run(req, op_chat).instrument(span).await
    }

    /// A streamed answer from the model or, failing that, its fallbacks. The
    /// call returns once the first event has arrived, so every failure before
    /// the first token can still be retried.
    pub async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let span = tracing::info_span!("chat", model = %req.model, stream = true);
        self.run(req, op_stream).instrument(span).await
    }

    async fn run<T>(&self, req: &ChatRequest, op: Op<T>) -> Result<T, ProviderError> {
        let chain = self.chain(&req.model)?;
        let mut attempts = Vec::new();
        for target in chain {
            let target = match target {
                Ok(t) => t,
                Err(attempt) => {
                    attempts.push(attempt);
                    continue;
                }
            };
            let mut request = req.clone();
            request.model = target.model.clone();
            match with_retries(&target, &request, op).await {
                Ok(v) => return Ok(v),
                Err(error @ ProviderError::Cancelled { .. }) => return Err(error),
                Err(error) => {
                    tracing::warn!(model = %target.label, error = %error, "model failed");
                    attempts.push(Attempt {
                        model: target.label,
                        error,
                    });
                }
            }
        }
        if attempts.len() == 1
            && let Some(only) = attempts.pop()
        {
            return Err(only.error);
        }
        Err(ProviderError::AllFailed { attempts })
    }
}

type Op<T> =
    for<'a> fn(&'a dyn Provider, &'a ChatRequest) -> BoxFuture<'a, Result<T, ProviderError>>;

fn op_chat<'a>(
    p: &'a dyn Provider,
    req: &'a ChatRequest,
) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
    p.chat(req)
}

fn op_stream<'a>(
    p: &'a dyn Provider,
    req: &'a ChatRequest,
) -> BoxFuture<'a, Result<ChatStream, ProviderError>> {
    Box::pin(open_stream(p, req))
}

/// Starts a stream and waits for its first item, so that a failure before
/// the first token is returned here (where it can be retried) rather than
/// inside the stream.
async fn open_stream(p: &dyn Provider, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
    let mut stream = p.chat_stream(req).await?;
    match stream.next().await {
        Some(Ok(first)) => Ok(futures::stream::once(futures::future::ready(Ok(first)))
            .chain(stream)
            .boxed()),
        Some(Err(e)) => Err(e),
        None => Err(ProviderError::protocol(
            p.name(),
            "the stream ended without any event",
        )),
    }
}

async fn with_retries<T>(
    target: &Target,
    req: &ChatRequest,
    op: Op<T>,
) -> Result<T, ProviderError> {
    let provider = target.provider.as_ref();
    let mut retry = 0;
    loop {
        tracing::debug!(provider = provider.name(), model = %req.model, attempt = retry + 1, "sending");
        let error = match op(provider, req).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        match target.retry.delay(retry, &error) {
            Some(wait) => {
                tracing::warn!(
                    provider = provider.name(),
                    attempt = retry + 1,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    error = %error,
                    "retrying"
                );
                tokio::time::sleep(wait).await;
                retry += 1;
            }
            None => {
                if retry > 0 {
                    tracing::warn!(provider = provider.name(), attempts = retry + 1, error = %error, "giving up");
                }
                return Err(error);
            }
        }
    }
}

#[async_trait]
impl Provider for Router {
    fn name(&self) -> &str {
        "router"
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        Router::chat(self, req).await
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        Router::chat_stream(self, req).await
    }
}
