//! What every handler shares: the models it serves with their schedulers,
//! the provider router for `provider:model` names, metrics and
//! configuration.
//!
//! A served model is always listed, and loaded while it is in use: it can
//! be unloaded (Ollama's `keep_alive`, `lucid stop`), after which the next
//! request that names it loads it again through its [`Loader`] (a model
//! given without one stays unloaded; requests for it get a 503 that says
//! so).
//!
//! [`AppState`] is cheap to clone and public, so that routes added from
//! outside this crate (the glass box's `/v1/explain`, the web page) can use
//! the same models: [`AppState::model`] gives the [`LoadedModel`] (for its
//! tokenizer and forward pass) and the [`Scheduler`] that owns generation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use lucid_engine::LoadedModel;
use lucid_providers::Router as ProviderRouter;
use lucid_scheduler::Scheduler;
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::library::Library;
use crate::metrics::Metrics;
use crate::policy::LicensePolicy;

/// A local model the server serves.
#[derive(Clone)]
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
    /// What a listing says of it.
    pub facts: Arc<Facts>,
    /// How to load it again once unloaded.
    loader: Option<Loader>,
}

/// Loads a served model again (the same file, checks and scheduler
/// settings as at start); the error says why it could not.
pub type Loader = Arc<dyn Fn() -> Result<LocalModel, String> + Send + Sync>;

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.name)
            .field("aliases", &self.aliases)
            .finish_non_exhaustive()
    }
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
        let facts = Arc::new(Facts::of(&model));
        LocalModel {
            name: name.into(),
            aliases: Vec::new(),
            model,
            scheduler,
            created: facts.created,
            max_token_bytes,
            facts,
            loader: None,
        }
    }

    /// With a way to load the model again after it was unloaded.
    pub fn with_loader(mut self, loader: Loader) -> LocalModel {
        self.loader = Some(loader);
        self
    }

    pub fn with_aliases(mut self, aliases: impl IntoIterator<Item = String>) -> LocalModel {
        for a in aliases {
            if a != self.name && !self.aliases.contains(&a) {
                self.aliases.push(a);
            }
        }
        self
    }

    /// The SHA-256 of the model's file as 64 hex digits (Ollama's digest),
    /// read on first use, which takes a while for a large file: call it off
    /// the async threads. Empty for a checkpoint directory or a file that
    /// can no longer be read.
    pub fn digest(&self) -> &str {
        self.facts.digest()
    }
}

/// What a listing says of a model, kept while the model is unloaded.
#[derive(Debug)]
pub struct Facts {
    /// When it was first loaded, seconds since the epoch.
    pub created: u64,
    pub file_size: u64,
    pub architecture: String,
    pub n_params: u64,
    /// The first tensor type, as Ollama's `quantization_level`.
    pub quantization: String,
    path: std::path::PathBuf,
    digest: OnceLock<String>,
}

impl Facts {
    fn of(model: &LoadedModel) -> Facts {
        Facts {
            created: now_secs(),
            file_size: model.meta.file_size,
            architecture: model.model.info().architecture.to_owned(),
            n_params: model.meta.n_params,
            quantization: model
                .meta
                .tensor_types
                .first()
                .map(|t| t.0.clone())
                .unwrap_or_default(),
            path: model.meta.path.clone(),
            digest: OnceLock::new(),
        }
    }

    /// See [`LocalModel::digest`].
    pub fn digest(&self) -> &str {
        self.digest.get_or_init(|| {
            if !self.path.is_file() {
                return String::new();
            }
            lucid_catalog::sha256_file(&self.path).unwrap_or_else(|e| {
                tracing::warn!("no digest for {}: {e}", self.path.display());
                String::new()
            })
        })
    }
}

/// One served model: its names, and the model while it is loaded.
struct Served {
    name: String,
    aliases: Vec<String>,
    /// The facts of the model as last loaded.
    facts: Mutex<Arc<Facts>>,
    loader: Option<Loader>,
    slot: Mutex<Slot>,
    /// Held while loading, so that requests arriving together load once.
    loading: tokio::sync::Mutex<()>,
}

struct Slot {
    loaded: Option<LocalModel>,
    /// How long it stays loaded once idle, as the last request asked.
    keep: KeepAlive,
    /// When it is unloaded if still idle; `None`: never. While requests
    /// run it is pushed back, so the time counts from the last of them.
    expires: Option<Instant>,
}

impl Slot {
    fn set_keep(&mut self, keep: KeepAlive) {
        self.keep = keep;
        self.expires = keep.deadline();
    }
}

impl Served {
    fn of(m: LocalModel, loaded: bool) -> Served {
        Served {
            name: m.name.clone(),
            aliases: m.aliases.clone(),
            facts: Mutex::new(m.facts.clone()),
            loader: m.loader.clone(),
            slot: Mutex::new(Slot {
                loaded: loaded.then_some(m),
                keep: KeepAlive::Forever,
                expires: None,
            }),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    fn answers_to(&self, name: &str) -> bool {
        let is = |n: &str| self.name == n || self.aliases.iter().any(|a| a == n);
        is(name) || name.strip_suffix(":latest").is_some_and(is)
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The models a server serves, shared by the handlers and the local
/// provider: each always listed, loaded while in use.
#[derive(Clone)]
pub struct Models(Arc<ModelsInner>);

struct ModelsInner {
    /// In the order served: those given at start, then those added (a
    /// model pulled, created or first asked for while serving).
    served: RwLock<Vec<Arc<Served>>>,
    /// The keep-alive of a request that does not give one.
    default_keep: KeepAlive,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Models {
    /// Serves `models`, loaded, each kept for `default_keep` after a
    /// request that does not say.
    pub fn new(models: Vec<LocalModel>, default_keep: KeepAlive) -> Models {
        let served = models
            .into_iter()
            .map(|m| Arc::new(Served::of(m, true)))
            .collect();
        Models(Arc::new(ModelsInner {
            served: RwLock::new(served),
            default_keep,
        }))
    }

    fn all(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Served>>> {
        self.0.served.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `model` too, in place of one served under the same name;
    /// `loaded: false` keeps only its facts and loader, so the first
    /// request loads it again.
    pub fn add(&self, model: LocalModel, loaded: bool) {
        let served = Arc::new(Served::of(model, loaded));
        let mut all = self.0.served.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|m| m.name != served.name);
        all.push(served);
    }

    /// Stops serving the model `name` answers to; requests running with it
    /// finish. Whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        let mut all = self.0.served.write().unwrap_or_else(|p| p.into_inner());
        let before = all.len();
        all.retain(|m| !m.answers_to(name));
        all.len() != before
    }

    /// The models loaded now.
    pub fn loaded(&self) -> Vec<LocalModel> {
        self.all()
            .iter()
            .filter_map(|m| m.slot().loaded.clone())
            .collect()
    }

    /// Every served model's name and facts, loaded or not.
    pub fn listing(&self) -> Vec<(String, Arc<Facts>)> {
        self.all()
            .iter()
            .map(|m| {
                let facts = m.facts.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (m.name.clone(), facts)
            })
            .collect()
    }

    /// Every served model's name, loaded or not.
    pub fn names(&self) -> Vec<String> {
        self.all().iter().map(|m| m.name.clone()).collect()
    }

    /// The local model `name` answers to, if it is loaded now.
    pub fn get(&self, name: &str) -> Option<LocalModel> {
        self.served(name)?.slot().loaded.clone()
    }

    /// The name `name` is served under, if it is.
    pub fn served_name(&self, name: &str) -> Option<String> {
        self.served(name).map(|m| m.name.clone())
    }

    fn served(&self, name: &str) -> Option<Arc<Served>> {
        self.all().iter().find(|m| m.answers_to(name)).cloned()
    }

    /// The local model `name` answers to for a request, loaded again (on
    /// the blocking pool) if it was unloaded, with its keep-alive set to
    /// the default; or a 404 that lists the served ones.
    pub async fn require(&self, name: &str) -> Result<LocalModel, ApiError> {
        let served = self
            .served(name)
            .ok_or_else(|| ApiError::model_not_found(name, &self.names()))?;
        let keep = self.0.default_keep;
        {
            let mut slot = served.slot();
            if let Some(m) = slot.loaded.clone() {
                slot.set_keep(keep);
                return Ok(m);
            }
        }
        let _loading = served.loading.lock().await;
        {
            let mut slot = served.slot();
            if let Some(m) = slot.loaded.clone() {
                slot.set_keep(keep);
                return Ok(m);
            }
        }
        let Some(loader) = served.loader.clone() else {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                format!(
                    "The model `{}` was unloaded and cannot be loaded again",
                    served.name
                ),
            ));
        };
        tracing::info!(model = %served.name, "loading");
        let loaded = crate::prompt::blocking("loading the model", move || {
            loader().map_err(|e| ApiError::internal(format!("Cannot load the model: {e}")))
        })
        .await?;
        *served.facts.lock().unwrap_or_else(|p| p.into_inner()) = loaded.facts.clone();
        let mut slot = served.slot();
        slot.loaded = Some(loaded.clone());
        slot.set_keep(keep);
        Ok(loaded)
    }

    /// Sets how long `model` stays loaded once idle (a request's
    /// `keep_alive`), counted from now.
    pub fn keep_alive(&self, model: &str, keep: KeepAlive) {
        if let Some(served) = self.served(model) {
            served.slot().set_keep(keep);
        }
    }

    /// Unloads `model` now if it is idle, or as soon as its requests are
    /// done; a model that is not loaded stays unloaded.
    pub fn unload(&self, model: &str) -> Result<(), ApiError> {
        let served = self
            .served(model)
            .ok_or_else(|| ApiError::model_not_found(model, &self.names()))?;
        {
            let mut slot = served.slot();
            if slot.loaded.is_none() {
                return Ok(());
            }
            slot.set_keep(KeepAlive::For(Duration::ZERO));
        }
        self.unload_expired();
        Ok(())
    }

    /// Starts `model`'s keep-alive again from now, as its last request set
    /// it (called as each generation ends).
    pub fn renew(&self, model: &str) {
        if let Some(served) = self.served(model) {
            let mut slot = served.slot();
            if slot.loaded.is_some() {
                let keep = slot.keep;
                slot.set_keep(keep);
            }
        }
    }

    /// When `model` will be unloaded if it stays idle; `None`: never.
    pub fn expires(&self, model: &str) -> Option<Instant> {
        self.served(model)?.slot().expires
    }

    /// Unloads every model whose keep-alive has passed and that has no
    /// request running or queued, and pushes back the deadline of those
    /// still busy; returns the names unloaded. Requests that still hold an
    /// unloaded model finish with it; its memory goes with the last of them.
    pub fn unload_expired(&self) -> Vec<String> {
        let now = Instant::now();
        let mut unloaded = Vec::new();
        for served in self.all().iter() {
            let mut slot = served.slot();
            if slot.expires.is_none_or(|t| t > now) {
                continue;
            }
            let idle = slot.loaded.as_ref().is_some_and(|m| {
                let stats = m.scheduler.stats();
                stats.active == 0 && stats.queued == 0
            });
            if idle {
                slot.loaded = None;
                slot.expires = None;
                tracing::info!(model = %served.name, "unloaded");
                unloaded.push(served.name.clone());
            } else {
                let keep = slot.keep;
                slot.set_keep(keep);
            }
        }
        unloaded
    }
}

/// How long a model stays loaded after its last request (Ollama's
/// `keep_alive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// Until the server stops (a negative `keep_alive`, and lucid's default).
    Forever,
    /// Unloaded once idle for this long; zero unloads as soon as it is idle.
    For(Duration),
}

impl KeepAlive {
    /// From seconds; a negative number is for ever, as in Ollama.
    pub fn from_secs(seconds: f64) -> Option<KeepAlive> {
        if !seconds.is_finite() {
            return None;
        }
        Some(if seconds < 0.0 {
            KeepAlive::Forever
        } else {
            KeepAlive::For(Duration::from_secs_f64(seconds.min(1e9)))
        })
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            KeepAlive::Forever => None,
            KeepAlive::For(d) => Some(Instant::now() + d),
        }
    }
}

/// Ollama's and `lucid serve --keep-alive`'s spelling: seconds (`"300"`), a
/// duration (`"5m"`, `"1h30m"`), `forever` or anything negative.
impl std::str::FromStr for KeepAlive {
    type Err = String;

    fn from_str(s: &str) -> Result<KeepAlive, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not seconds, a duration such as 5m, or forever");
        if s == "forever" || s.strip_prefix('-').is_some_and(|rest| !rest.is_empty()) {
            return Ok(KeepAlive::Forever);
        }
        let seconds = match s.parse::<f64>() {
            Ok(n) => n,
            Err(_) => humantime::parse_duration(s)
                .map_err(|_| bad())?
                .as_secs_f64(),
        };
        KeepAlive::from_secs(seconds).ok_or_else(bad)
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
    /// How long a model stays loaded after a request that does not say.
    pub keep_alive: KeepAlive,
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
            keep_alive: KeepAlive::Forever,
        }
    }
}

struct Inner {
    models: Models,
    providers: Arc<ProviderRouter>,
    metrics: Metrics,
    policy: LicensePolicy,
    config: ServerConfig,
    shutting_down: AtomicBool,
    shutdown: Notify,
    library: OnceLock<Arc<Library>>,
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
        AppState::serving(Models::new(models, config.keep_alive), providers, config)
    }

    fn serving(models: Models, providers: Arc<ProviderRouter>, config: ServerConfig) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                models,
                providers,
                metrics: Metrics::default(),
                policy: LicensePolicy::new(config.policy.clone()),
                config,
                shutting_down: AtomicBool::new(false),
                shutdown: Notify::new(),
                library: OnceLock::new(),
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
        let models = Models::new(models, config.keep_alive);
        providers.set_local(Arc::new(crate::LocalProvider::new(models.clone())));
        AppState::serving(models, Arc::new(providers), config)
    }

    /// Manages `library`'s store through Ollama's model routes, and serves
    /// the models in it when a request names one. Set once, before serving.
    pub fn set_library(&self, library: Library) {
        if self.inner.library.set(Arc::new(library)).is_err() {
            tracing::warn!("the server's model store was already set");
        }
    }

    /// The store this server manages, if any.
    pub fn library(&self) -> Option<&Arc<Library>> {
        self.inner.library.get()
    }

    /// The served models, loaded or not.
    pub fn served_models(&self) -> &Models {
        &self.inner.models
    }

    /// The models loaded now.
    pub fn models(&self) -> Vec<LocalModel> {
        self.inner.models.loaded()
    }

    /// Every served model's name, loaded or not.
    pub fn model_names(&self) -> Vec<String> {
        self.inner.models.names()
    }

    /// The local model `name` answers to, if it is loaded now.
    pub fn model(&self, name: &str) -> Option<LocalModel> {
        self.inner.models.get(name)
    }

    /// The local model `name` answers to, loaded again if it was unloaded,
    /// or opened from the store if it is there (a model pulled or created
    /// since the server started); else a 404 that lists the served ones.
    pub async fn require_model(&self, name: &str) -> Result<LocalModel, ApiError> {
        match self.inner.models.require(name).await {
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {
                match self.open_from_store(name).await? {
                    Some(model) => Ok(model),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// Opens `name` from the store and serves it from now on; `None` when
    /// the server has no store or the store does not have it.
    async fn open_from_store(&self, name: &str) -> Result<Option<LocalModel>, ApiError> {
        let Some(library) = self.library().cloned() else {
            return Ok(None);
        };
        let name = crate::library::untagged(name).to_owned();
        let _opening = library.opening.lock().await;
        if self.inner.models.served_name(&name).is_some() {
            // Opened by a request that arrived just before.
            return self.inner.models.require(&name).await.map(Some);
        }
        let store = library.clone();
        let opened = crate::prompt::blocking("opening the model", move || {
            let library = store;
            let Some(stored) = library
                .store
                .stored_name(&name)
                .map_err(|e| crate::library::store_error(&name, e))?
            else {
                return Ok(None);
            };
            tracing::info!(model = %stored, "opening from the store");
            (library.open)(&stored)
                .map(Some)
                .map_err(|e| ApiError::internal(format!("Cannot load the model `{stored}`: {e}")))
        })
        .await?;
        let Some(model) = opened else {
            return Ok(None);
        };
        let served = model.name.clone();
        self.inner.models.add(model, true);
        self.inner.models.require(&served).await.map(Some)
    }

    /// [`AppState::require_model`] for a route that runs only the models this
    /// server holds: a `provider:model` name is a 400 that says where such
    /// names go.
    pub async fn require_local_model(
        &self,
        name: &str,
        route: &str,
    ) -> Result<LocalModel, ApiError> {
        let model_ref = lucid_providers::ModelRef::parse(name).map_err(ApiError::from)?;
        if model_ref.provider_key().is_some() {
            return Err(ApiError::invalid(
                "model",
                format!(
                    "`{name}` is a provider's model; {route} runs the models this server holds \
                     (call a provider's model through /v1/chat/completions)"
                ),
            ));
        }
        self.require_model(model_ref.model().unwrap_or_default())
            .await
    }

    /// Sets how long `model` stays loaded once idle, from now (a request's
    /// `keep_alive`).
    pub fn keep_alive(&self, model: &str, keep: KeepAlive) {
        self.inner.models.keep_alive(model, keep);
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
        for m in self.models() {
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
