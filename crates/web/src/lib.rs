//! The glass box over HTTP: `POST /v1/explain`, `POST /v1/explain/semantic`
//! (an embedding model's view of several texts) and the web page, as an
//! [`axum::Router`] that `lucid serve` mounts beside its OpenAI and Ollama
//! routes (or that the `lucid-glass-web` harness serves alone).
//!
//! The analyses are `lucid-glass`'s and know nothing of HTTP; this crate
//! only reads requests, bounds them ([`WebConfig::limits`]), runs them off
//! the async threads, and writes the trace (its JSON is glass's, see
//! [`wire`]). The page is three static files compiled into the binary
//! (`assets/`): plain HTML, CSS and JavaScript with no framework, no build
//! step and nothing fetched from elsewhere, so it works offline.
//!
//! Models come from a [`ModelProvider`], so the server can hand over the
//! models it already loaded. Every explain gets its own forward context
//! and cache (the weights are shared, read-only), and a semaphore bounds how
//! many run at once, so threads stay bounded at
//! `max_concurrent × threads`.

pub mod error;
pub mod wire;

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lucid_engine::{LoadedModel, SamplingParams};
use lucid_glass::{
    EmbeddingSummary, Event, ExplainOptions, Limits, ModelSummary, SemanticOptions, Token, Trace,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::Instrument;

pub use error::WebError;
use wire::{
    ExplainRequest, ExplainResponse, ModelEntry, ModelList, SemanticRequest, SemanticResponse,
    StreamEvent,
};

/// Where the glass box finds models by name.
pub trait ModelProvider: Send + Sync + 'static {
    /// The names of the models that can be explained.
    fn names(&self) -> Vec<String>;
    /// The model called `name` (or one of its aliases).
    fn model(&self, name: &str) -> Option<Arc<LoadedModel>>;
}

/// A provider from two closures: the names, and the lookup. This is how a
/// server hands over the models it already has, for example
/// `lucid_web::models_fn(move || st.model_names(), move |n| st2.model(n).map(|m| m.model.clone()))`.
pub fn models_fn<N, M>(names: N, model: M) -> Arc<dyn ModelProvider>
where
    N: Fn() -> Vec<String> + Send + Sync + 'static,
    M: Fn(&str) -> Option<Arc<LoadedModel>> + Send + Sync + 'static,
{
    Arc::new(FnModels { names, model })
}

struct FnModels<N, M> {
    names: N,
    model: M,
}

impl<N, M> ModelProvider for FnModels<N, M>
where
    N: Fn() -> Vec<String> + Send + Sync + 'static,
    M: Fn(&str) -> Option<Arc<LoadedModel>> + Send + Sync + 'static,
{
    fn names(&self) -> Vec<String> {
        (self.names)()
    }

    fn model(&self, name: &str) -> Option<Arc<LoadedModel>> {
        (self.model)(name)
    }
}

/// A fixed list of named models (the harness, tests).
#[derive(Clone, Debug, Default)]
pub struct StaticModels {
    models: Vec<(String, Arc<LoadedModel>)>,
}

impl StaticModels {
    pub fn new(models: Vec<(String, Arc<LoadedModel>)>) -> StaticModels {
        StaticModels { models }
    }
}

impl ModelProvider for StaticModels {
    fn names(&self) -> Vec<String> {
        self.models.iter().map(|(n, _)| n.clone()).collect()
    }

    fn model(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.models
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.clone())
    }
}

/// How the routes run explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// Bounds on every request.
    pub limits: Limits,
    /// Threads of one explain's forward pass.
    pub threads: usize,
    /// Explains running at once; more wait their turn.
    pub max_concurrent: usize,
    /// Explains that may wait for a turn; more are answered 429.
    pub max_queue: usize,
    /// How long a client may take to send the request body.
    pub body_timeout: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            limits: Limits::server(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            max_concurrent: 1,
            max_queue: 4,
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// Largest request body: a prompt at the token limit is far smaller.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
struct Web {
    models: Arc<dyn ModelProvider>,
    config: Arc<WebConfig>,
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit.
    waiting: Arc<AtomicUsize>,
}

impl Web {
    /// A turn to run an explain: at once, after waiting in a queue of at
    /// most `max_queue`, or a 429. A client that leaves while waiting drops
    /// this future and its place.
    async fn turn(&self) -> Result<OwnedSemaphorePermit, WebError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _place = Place(&self.waiting);
        if queued >= self.config.max_queue {
            return Err(WebError::busy(queued));
        }
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WebError::internal("the explain queue is closed"))
    }
}

/// A place in the queue, given up on drop.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Set when the handler's future is dropped: the client went away.
struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The glass-box routes, ready to merge into an app:
///
/// - `GET /` — the page; `GET /glass/app.js`, `GET /glass/app.css` — its assets;
/// - `POST /v1/explain` — a trace as JSON, or streamed as NDJSON ([`wire`]);
/// - `POST /v1/explain/semantic` — the semantic view of several texts as JSON;
/// - `GET /v1/explain/models` — the models `models` offers, with their shapes.
///
/// The router carries its own state and has no fallback, so it fits into
/// an app of any state `S`: `lucid serve` adds it with
/// `ServerBuilder::routes(lucid_web::router(models, config))` (a
/// `Router<AppState>`, under the server's auth and logging layers), the
/// harness serves it as a `Router<()>`.
pub fn router<S>(models: Arc<dyn ModelProvider>, config: WebConfig) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let web = Web {
        models,
        permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        config: Arc::new(config),
        waiting: Arc::new(AtomicUsize::new(0)),
    };
    Router::new()
        .route("/", get(index))
        .route("/glass/app.js", get(app_js))
        .route("/glass/app.css", get(app_css))
        .route("/v1/explain/models", get(list_models))
        .route(
            "/v1/explain",
            post(explain).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .route(
            "/v1/explain/semantic",
            post(semantic).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .with_state(web)
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets change with the binary; always ask.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn list_models(State(web): State<Web>) -> Response {
    let data = web
        .models
        .names()
        .into_iter()
        .filter_map(|id| {
            let m = web.models.model(&id)?;
            Some(ModelEntry {
                id,
                object: "model".into(),
                owned_by: "lucid".into(),
                explain: ModelSummary::of(m.model.as_ref()),
                embedding: EmbeddingSummary::of(&m),
            })
        })
        .collect();
    axum::Json(ModelList {
        object: "list".into(),
        data,
    })
    .into_response()
}

/// A request read and checked: everything the blocking part needs.
struct Prepared {
    name: String,
    model: Arc<LoadedModel>,
    tokens: Vec<u32>,
    options: ExplainOptions,
    precision: Option<i32>,
    stream: bool,
}

fn prepare(web: &Web, body: &[u8]) -> Result<Prepared, WebError> {
    let req: ExplainRequest = serde_json::from_slice(body)
        .map_err(|e| WebError::invalid(None, format!("the request is not valid: {e}")))?;
    let model = web
        .models
        .model(&req.model)
        .ok_or_else(|| WebError::model_not_found(&req.model, &web.models.names()))?;
    // An encoder predicts nothing: say so before tokenizing.
    if let Err(e) = lucid_glass::check_generator(&model) {
        return Err(WebError::invalid(
            Some("model"),
            format!("{e}: POST them as \"texts\" to /v1/explain/semantic"),
        ));
    }
    let info = model.model.info();
    let tokens = match (&req.prompt, &req.tokens) {
        (Some(p), None) => lucid_glass::prompt_tokens(&model, p, req.chat)?,
        (None, Some(t)) => t.clone(),
        _ => {
            return Err(WebError::invalid(
                Some("prompt"),
                "give either a prompt or tokens",
            ));
        }
    };
    let (layers, heads) = match &req.attention {
        None => (Vec::new(), None),
        Some(a) => {
            let layers = a.layers.resolve(info.n_layers).ok_or_else(|| {
                WebError::invalid(
                    Some("attention.layers"),
                    "layers is a list of layer numbers or \"all\"",
                )
            })?;
            let heads = a.heads.resolve(info.n_heads).ok_or_else(|| {
                WebError::invalid(
                    Some("attention.heads"),
                    "heads is a list of head numbers or \"all\"",
                )
            })?;
            (layers, Some(heads))
        }
    };
    if req.precision.is_some_and(|p| p > 9) {
        return Err(WebError::invalid(
            Some("precision"),
            "precision is at most 9 decimals (or null for all)",
        ));
    }
    if !(req.temperature.is_finite() && req.temperature >= 0.0) {
        return Err(WebError::invalid(
            Some("temperature"),
            "temperature must be a number of at least 0",
        ));
    }
    let options = ExplainOptions {
        max_tokens: req.max_tokens,
        top_k: req.top_k,
        sampling: SamplingParams {
            temperature: req.temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: req.seed,
            ..SamplingParams::default()
        },
        attention_layers: layers,
        attention_heads: heads,
        attended: req.attended,
        lens: req.lens,
        lens_top_k: req.lens_top_k,
        ..ExplainOptions::default()
    };
    // Refuse what is too big before waiting for a turn.
    options.check(info, tokens.len(), &web.config.limits)?;
    Ok(Prepared {
        name: req.model,
        model,
        tokens,
        options,
        precision: req.precision.map(|p| p as i32),
        stream: req.stream,
    })
}

async fn explain(State(web): State<Web>, req: Request) -> Response {
    let body = match read_body(&web, req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // Tokenizing the prompt costs time in proportion to its length: off the
    // async threads.
    let w = web.clone();
    let p = match tokio::task::spawn_blocking(move || prepare(&w, &body)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => {
            return WebError::internal(format!("reading the request failed: {e}")).into_response();
        }
    };
    let span = tracing::info_span!("explain", model = %p.name, tokens = p.tokens.len(), steps = p.options.max_tokens);
    if p.stream {
        stream_explain(web, p).instrument(span).await
    } else {
        whole_explain(web, p).instrument(span).await
    }
}

/// The body, up to [`MAX_BODY`] bytes and within the body timeout.
async fn read_body(web: &Web, req: Request) -> Result<Bytes, WebError> {
    let limit = web.config.body_timeout;
    let read = tokio::time::timeout(limit, Bytes::from_request(req, &()))
        .await
        .map_err(|_| WebError::body_timeout(limit.as_secs()))?;
    read.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::too_large(MAX_BODY)
        } else {
            WebError::invalid(None, format!("could not read the request body: {rej}"))
        }
    })
}

async fn whole_explain(web: Web, p: Prepared) -> Response {
    let permit = match web.turn().await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // Dropped with this future when the client goes away; the explain then
    // stops at its next step.
    let gone = Gone(Arc::new(AtomicBool::new(false)));
    let stop = gone.0.clone();
    let (limits, threads) = (web.config.limits.clone(), web.config.threads);
    let Prepared {
        name,
        model,
        tokens,
        options,
        precision,
        ..
    } = p;
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _enter = span.enter();
        lucid_glass::explain_with(&model, &tokens, &options, &limits, threads, |_| {
            if stop.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
    })
    .await;
    drop(gone);
    match result {
        Ok(Ok(mut trace)) => {
            if let Some(d) = precision {
                trace.round(d);
            }
            tracing::info!(ms = trace.timings.total_ms, "explained");
            json_response(&ExplainResponse {
                model_name: &name,
                trace: &trace,
            })
        }
        Ok(Err(e)) => WebError::from(e).into_response(),
        Err(e) => WebError::internal(format!("the explain failed: {e}")).into_response(),
    }
}

fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => WebError::internal(format!("cannot write the trace: {e}")).into_response(),
    }
}

/// One NDJSON line.
fn line(event: &StreamEvent<'_>) -> Bytes {
    let mut v = serde_json::to_vec(event).unwrap_or_else(|e| {
        // A trace always serializes; should it not, say so in the stream.
        format!(
            "{{\"type\":\"error\",\"error\":{{\"message\":\"cannot write an event: {e}\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}"
        )
        .into_bytes()
    });
    v.push(b'\n');
    Bytes::from(v)
}

async fn stream_explain(web: Web, p: Prepared) -> Response {
    let permit = match web.turn().await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let Prepared {
        name,
        model,
        tokens,
        options,
        precision,
        ..
    } = p;
    let start = line(&StreamEvent::Start {
        model_name: &name,
        model: ModelSummary::of(model.model.as_ref()),
        tokens: tokens
            .iter()
            .map(|&id| Token {
                id,
                text: lucid_glass::token_text(&model, id),
            })
            .collect(),
    });
    // The channel is empty: the first line always fits.
    let _ = tx.try_send(start);
    let (limits, threads) = (web.config.limits.clone(), web.config.threads);
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let span = tracing::Span::current();
            let _ = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let _enter = span.enter();
                let result = lucid_glass::explain_with(
                    &model,
                    &tokens,
                    &options,
                    &limits,
                    threads,
                    |event| {
                        let bytes = match (event, precision) {
                            (Event::Step { index, step }, Some(d)) => {
                                let mut step = step.clone();
                                step.round(d);
                                line(&StreamEvent::Step { index, step: &step })
                            }
                            (Event::Step { index, step }, None) => {
                                line(&StreamEvent::Step { index, step })
                            }
                            (Event::Lens { columns }, Some(d)) => {
                                let mut columns = columns.to_vec();
                                columns.iter_mut().for_each(|c| c.round(d));
                                line(&StreamEvent::Lens { columns: &columns })
                            }
                            (Event::Lens { columns }, None) => line(&StreamEvent::Lens { columns }),
                        };
                        // The client went away: stop computing.
                        if tx.blocking_send(bytes).is_err() {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    },
                );
                let last = match result {
                    Ok(mut trace) => {
                        if let Some(d) = precision {
                            trace.round(d);
                        }
                        done(&trace)
                    }
                    Err(e) => line(&StreamEvent::Error {
                        error: WebError::from(e).body(),
                    }),
                };
                let _ = tx.blocking_send(last);
            })
            .await;
        }
        .instrument(span),
    );
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| WebError::internal(e.to_string()).into_response())
}

fn done(trace: &Trace) -> Bytes {
    line(&StreamEvent::Done { trace })
}

/// A semantic request read and checked.
struct SemanticPrepared {
    name: String,
    model: Arc<LoadedModel>,
    texts: Vec<String>,
    options: SemanticOptions,
    precision: Option<i32>,
}

fn prepare_semantic(web: &Web, body: &[u8]) -> Result<SemanticPrepared, WebError> {
    let req: SemanticRequest = serde_json::from_slice(body)
        .map_err(|e| WebError::invalid(None, format!("the request is not valid: {e}")))?;
    let model = web
        .models
        .model(&req.model)
        .ok_or_else(|| WebError::model_not_found(&req.model, &web.models.names()))?;
    let pairs = req.pairs.resolve().ok_or_else(|| {
        WebError::invalid(
            Some("pairs"),
            "pairs is \"nearest\", \"all\" or a list of [a, b] text indices",
        )
    })?;
    if req.precision.is_some_and(|p| p > 9) {
        return Err(WebError::invalid(
            Some("precision"),
            "precision is at most 9 decimals (or null for all)",
        ));
    }
    let options = SemanticOptions {
        pairs,
        vectors: req.vectors,
    };
    // Refuse what is too big before waiting for a turn (the token count is
    // checked once the texts are tokenized, before the forward pass).
    lucid_glass::semantic::check_texts(req.texts.len(), &options, &web.config.limits)?;
    Ok(SemanticPrepared {
        name: req.model,
        model,
        texts: req.texts,
        options,
        precision: req.precision.map(|p| p as i32),
    })
}

/// `POST /v1/explain/semantic`: bounded like an explain (the same turns
/// and queue), answered as one JSON object. It is not cancellable: its
/// work is one bounded batch of forward passes.
async fn semantic(State(web): State<Web>, req: Request) -> Response {
    let body = match read_body(&web, req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // Parsed off the async threads, as an explain's request is.
    let w = web.clone();
    let p = match tokio::task::spawn_blocking(move || prepare_semantic(&w, &body)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => {
            return WebError::internal(format!("reading the request failed: {e}")).into_response();
        }
    };
    let span = tracing::info_span!("explain_semantic", model = %p.name, texts = p.texts.len());
    async move {
        let permit = match web.turn().await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let (limits, threads) = (web.config.limits.clone(), web.config.threads);
        let SemanticPrepared {
            name,
            model,
            texts,
            options,
            precision,
        } = p;
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _enter = span.enter();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            lucid_glass::semantic(&model, &refs, &options, &limits, threads)
        })
        .await;
        match result {
            Ok(Ok(mut view)) => {
                if let Some(d) = precision {
                    view.round(d);
                }
                tracing::info!(ms = view.timings.total_ms, "compared");
                json_response(&SemanticResponse {
                    model_name: &name,
                    semantic: &view,
                })
            }
            Ok(Err(e)) => WebError::from(e).into_response(),
            Err(e) => WebError::internal(format!("the semantic view failed: {e}")).into_response(),
        }
    }
    .instrument(span)
    .await
}
