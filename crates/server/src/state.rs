//! What every handler shares: the loaded models with their schedulers, the
//! provider router for `provider:model` names, metrics and configuration.
//!
//! [`AppState`] is cheap to clone and public, so that routes added from
//! outside this crate (the glass box's `/v1/explain`, the web page) can use
//! the same models: [`AppState::model`] gives the [`LoadedModel`] (for its
//! tokenizer and forward pass) and the [`Scheduler`] that owns generation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lucid_engine::LoadedModel;
use lucid_providers::Router as ProviderRouter;
use lucid_scheduler::Scheduler;
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::policy::LicensePolicy;

/// A local model the server serves.
#[derive(Clone, Debug)]
pub struct LocalModel {
    /// The id it is listed under (`smollm2`).
    pub name: String,
    /// Other names that reach it (catalog aliases, the path it was loaded from).
    pub aliases: Vec<String>,
    pub model: Arc<LoadedModel>,
    pub scheduler: Scheduler,
    /// When it was loaded, seconds since the epoch.
    pub created: u64,
    /// Bytes of the vocabulary's longest token: a text of `n` bytes is at
    /// least `n / max_token_bytes` tokens.
    pub max_token_bytes: usize,
    /// The SHA-256 of the model file, once [`LocalModel::digest`] has read it.
    digest: Arc<OnceLock<String>>,
}

impl LocalModel {
    /// A model served under `name`, generating through `scheduler`.
    pub fn new(name: impl Into<String>, scheduler: Scheduler) -> LocalModel {
        let model = scheduler.model().clone();
        let tokenizer = &model.tokenizer;
        let max_token_bytes = (0..tokenizer.vocab_size() as u32)
            .map(|id| {
                let text = tokenizer.token_text(id).map_or(0, str::len);
                text.max(tokenizer.token_bytes(id).len())
            })
            .max()
            .unwrap_or(1);
        LocalModel {
            name: name.into(),
            aliases: Vec::new(),
            model,
            scheduler,
            created: now_secs(),
            max_token_bytes,
            digest: Arc::default(),
        }
    }

    pub fn with_aliases(mut self, aliases: impl IntoIterator<Item = String>) -> LocalModel {
        for a in aliases {
            if a != self.name && !self.aliases.contains(&a) {
                self.aliases.push(a);
            }
        }
        self
    }

    /// Whether `name` reaches this model: its name or an alias, with or
    /// without Ollama's default tag (`smollm2:latest` is `smollm2`).
    pub(crate) fn answers_to(&self, name: &str) -> bool {
        let is = |n: &str| self.name == n || self.aliases.iter().any(|a| a == n);
        is(name) || name.strip_suffix(":latest").is_some_and(is)
    }

    /// The SHA-256 of the model's file as 64 hex digits (Ollama's digest),
    /// read on first use, which takes a while for a large file: call it off
    /// the async threads. Empty for a checkpoint directory or a file that
    /// can no longer be read.
    pub fn digest(&self) -> &str {
        self.digest.get_or_init(|| {
            let path = &self.model.meta.path;
            if !path.is_file() {
                return String::new();
            }
            lucid_catalog::sha256_file(path).unwrap_or_else(|e| {
                tracing::warn!("no digest for {}: {e}", path.display());
                String::new()
            })
        })
    }
}

/// Server-wide settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Bearer token every route but `/health` requires; `None`: no auth.
    pub api_key: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's head, and how long
    /// an idle keep-alive connection waits for its next request.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// Host names a browser may use to reach the server besides IP
    /// addresses and `localhost`; checked, with `Origin`, only when there
    /// is no API key (see [`crate::origin`]).
    pub allowed_hosts: Vec<String>,
    /// Web origins (`https://app.example`, or `*` for any) whose pages may
    /// call the server: CORS preflights are answered and the headers set
    /// for them. Empty: no CORS. The API key, when set, still applies.
    pub cors_origins: Vec<String>,
    /// How long in-flight streams may go on after a shutdown signal before
    /// they are cancelled.
    pub shutdown_deadline: Duration,
    /// The uses the deployment declares; models whose license forbids one
    /// are not loaded (checked by whoever loads them, see
    /// [`LicensePolicy::check_local`]) and not routed to (403).
    pub policy: lucid_catalog::Policy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_key: None,
            max_body_bytes: 4 << 20,
            max_connections: 512,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(60),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            shutdown_deadline: Duration::from_secs(10),
            policy: lucid_catalog::Policy::default(),
        }
    }
}

struct Inner {
    models: Vec<LocalModel>,
    providers: Arc<ProviderRouter>,
    metrics: Metrics,
    policy: LicensePolicy,
    config: ServerConfig,
    shutting_down: AtomicBool,
    shutdown: Notify,
}

/// The state every handler gets.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("models", &self.model_names())
            .field("providers", &self.inner.providers)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for `models`, reaching other providers through `providers`
    /// (whose local provider should be [`crate::LocalProvider`] over the
    /// same models, see [`AppState::with_local_provider`]).
    pub fn new(
        models: Vec<LocalModel>,
        providers: Arc<ProviderRouter>,
        config: ServerConfig,
    ) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                models,
                providers,
                metrics: Metrics::default(),
                policy: LicensePolicy::new(config.policy.clone()),
                config,
                shutting_down: AtomicBool::new(false),
                shutdown: Notify::new(),
            }),
        }
    }

    /// Like [`AppState::new`], registering the local models as `providers`'
    /// local provider, so that fallbacks to a local name work.
    pub fn with_local_provider(
        models: Vec<LocalModel>,
        mut providers: ProviderRouter,
        config: ServerConfig,
    ) -> AppState {
        providers.set_local(Arc::new(crate::LocalProvider::new(models.clone())));
        AppState::new(models, Arc::new(providers), config)
    }

    pub fn models(&self) -> &[LocalModel] {
        &self.inner.models
    }

    pub fn model_names(&self) -> Vec<String> {
        self.inner.models.iter().map(|m| m.name.clone()).collect()
    }

    /// The local model `name` answers to.
    pub fn model(&self, name: &str) -> Option<&LocalModel> {
        self.inner.models.iter().find(|m| m.answers_to(name))
    }

    /// The local model, or a 404 that lists the served ones.
    pub fn require_model(&self, name: &str) -> Result<&LocalModel, ApiError> {
        self.model(name)
            .ok_or_else(|| ApiError::model_not_found(name, &self.model_names()))
    }

    pub fn providers(&self) -> &Arc<ProviderRouter> {
        &self.inner.providers
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn license_policy(&self) -> &LicensePolicy {
        &self.inner.policy
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }

    /// Starts a graceful shutdown: new generations are refused, running
    /// ones go on until the deadline, then are cancelled.
    pub fn begin_shutdown(&self) {
        if self.inner.shutting_down.swap(true, Ordering::Relaxed) {
            return;
        }
        for m in &self.inner.models {
            m.scheduler.stop_accepting();
        }
        self.inner.shutdown.notify_waiters();
        let state = self.clone();
        let deadline = self.inner.config.shutdown_deadline;
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            tracing::info!("shutdown deadline reached: cancelling the remaining generations");
            for m in state.models() {
                m.scheduler.cancel_all();
            }
        });
    }

    /// Resolves when a shutdown has begun.
    pub async fn shutdown_started(&self) {
        let notified = self.inner.shutdown.notified();
        if self.is_shutting_down() {
            return;
        }
        notified.await;
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
