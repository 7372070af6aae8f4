//! `lucid serve`: an OpenAI- and Ollama-compatible HTTP server over lucid's
//! scheduler (local models) and provider router (vendors' APIs).
//!
//! This crate is the only one that knows the OpenAI and Ollama wire
//! formats ([`openai::wire`], [`ollama::wire`]); the scheduler below it
//! knows token ids and text, and the engine below that knows tensors.
//!
//! - [`AppState`]: the loaded models with their schedulers, the provider
//!   router, metrics and configuration, shared by every handler.
//! - [`ServerBuilder`]: the axum router with every route, auth and request
//!   logging; [`ServerBuilder::routes`] adds routes from outside (the glass
//!   box's `/v1/explain`, the web page at `/`) under the same layers and
//!   with the same state.
//! - [`serve`]: runs the router on a listener until a shutdown signal, then
//!   stops accepting, lets streams finish until the deadline, and cancels
//!   the rest.
//!
//! Routes and status codes:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /health` | `{"status":"ok"}`, no auth |
//! | `GET /metrics` | Prometheus text |
//! | `GET /v1/models`, `GET /v1/models/{id}` | local models |
//! | `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/responses` | OpenAI, SSE when `stream` |
//! | `POST /v1/embeddings` | OpenAI embeddings, floats or base64 |
//! | `POST /v1/rerank`, `POST /rerank` | a cross-encoder's ranking (llama-server's, Jina's and Cohere's shape) |
//! | `POST /api/generate`, `POST /api/chat` | Ollama, NDJSON unless `"stream": false` |
//! | `POST /api/embed`, `POST /api/embeddings` | Ollama embeddings |
//! | `POST /v1/messages`, `POST /v1/messages/count_tokens` | Anthropic Messages, SSE when `stream` |
//! | `GET /api/tags`, `POST /api/show`, `GET /api/version` | Ollama model info |
//!
//! Errors: 400 (malformed JSON, wrong types, out-of-range values, a prompt
//! longer than the context; `param` names the field), 401 (missing or wrong
//! API key), 404 (unknown model or route), 413 (body over the limit), 429
//! with `Retry-After` (queues full), 502/504 (a provider failed), 503
//! (shutting down), 403 (the license policy forbids a declared use of the
//! model).

pub mod anthropic;
pub mod body;
pub mod cors;
pub mod embed;
pub mod error;
pub mod generate;
pub mod library;
pub mod listen;
pub mod local_provider;
pub mod metrics;
pub mod ollama;
pub mod openai;
pub mod origin;
pub mod policy;
pub mod prompt;
pub mod rerank;
pub mod state;
pub mod tokens;

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument;

pub use error::{ApiError, OllamaError};
pub use library::Library;
pub use local_provider::LocalProvider;
pub use state::{AppState, LocalModel, ServerConfig};

/// Builds the server's router.
#[derive(Debug)]
pub struct ServerBuilder {
    state: AppState,
    extra: Router<AppState>,
}

impl ServerBuilder {
    pub fn new(state: AppState) -> ServerBuilder {
        ServerBuilder {
            state,
            extra: Router::new(),
        }
    }

    /// Adds routes (with handlers that take `State<AppState>`); they get the
    /// same auth, body limit and request logging as the built-in ones.
    pub fn routes(mut self, routes: Router<AppState>) -> ServerBuilder {
        self.extra = self.extra.merge(routes);
        self
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The router, ready for [`serve`] or `tower::ServiceExt::oneshot`.
    ///
    /// CORS ([`cors`]) is the outermost layer, so that a browser's
    /// preflight is answered before auth (it carries no key) and errors
    /// carry the headers a page needs to read them. Origins that
    /// [`cors::layer`] refuses are logged and leave CORS off; the CLI checks
    /// them before it gets here.
    pub fn build(self) -> Router {
        let state = self.state;
        let cors = cors::layer(&state.config().cors_origins).unwrap_or_else(|e| {
            tracing::error!("CORS is off: {e}");
            None
        });
        let router = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .merge(openai::routes())
            .merge(ollama::routes())
            .merge(anthropic::routes())
            .merge(tokens::routes())
            .merge(rerank::routes())
            .merge(self.extra)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
            .layer(middleware::from_fn_with_state(state.clone(), auth))
            .layer(middleware::from_fn_with_state(state.clone(), log_request));
        match cors {
            Some(cors) => router.layer(cors).with_state(state),
            None => router.with_state(state),
        }
    }
}

async fn health(State(state): State<AppState>) -> Response {
    if state.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    axum::Json(serde_json::json!({"status": "ok", "models": state.model_names()})).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(&state.models()),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    ApiError::not_found_route(req.uri().path()).for_path(req.uri().path())
}

async fn method_not_allowed(req: Request) -> Response {
    let e = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!(
            "{} is not allowed on {}",
            req.method(),
            req.uri().path().chars().take(200).collect::<String>()
        ),
    );
    e.for_path(req.uri().path())
}

/// Bearer auth (or `x-api-key`) on every route but `/health` and the glass-box page's static
/// files (`/` and `/glass/…`: a browser loading a page cannot send a bearer
/// header, and the files hold no data; the page sends the key on its API
/// calls). The key is compared in constant time and never logged. Without
/// a key, the same routes check `Host` and `Origin` instead ([`origin`]).
async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let public = path == "/health" || path == "/" || path.starts_with("/glass/");
    if state.config().api_key.is_none()
        && !public
        && let Err(refusal) = origin::check(
            req.headers(),
            &state.config().allowed_hosts,
            &state.config().cors_origins,
        )
    {
        return ApiError::forbidden(refusal.message()).for_path(path);
    }
    if let Some(key) = &state.config().api_key
        && !public
    {
        // Anthropic's SDKs send the key as `x-api-key`.
        let header_text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let given = header_text(header::AUTHORIZATION.as_str())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| header_text("x-api-key"))
            .unwrap_or("");
        if !constant_time_eq(given.trim().as_bytes(), key.as_bytes()) {
            return ApiError::unauthorized().for_path(req.uri().path());
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One span per request, a log line when the response starts (method,
/// route, status, time; never headers or bodies), and the request counter.
async fn log_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span =
        tracing::info_span!("request", id = %&id[..12], method = %req.method(), route = %route);
    let start = Instant::now();
    let mut res = next.run(req).instrument(span.clone()).await;
    let status = res.status().as_u16();
    span.in_scope(|| {
        tracing::info!(status, ms = start.elapsed().as_millis() as u64, "response");
    });
    state.metrics().request(&route, status);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Serves `app` on `listener` until `signal` resolves; then stops
/// accepting connections, lets running streams go on until the state's
/// shutdown deadline, cancels what is left, and returns once every
/// connection has closed (or a few seconds after the deadline).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    state: AppState,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let st = state.clone();
    let graceful = async move {
        signal.await;
        tracing::info!("shutting down: no new connections; running streams may finish");
        st.begin_shutdown();
    };
    // Models whose keep-alive has passed are unloaded once idle.
    let reaper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                state.served_models().unload_expired();
            }
        })
    };
    let hard_stop = state.config().shutdown_deadline + Duration::from_secs(5);
    let server = listen::accept_loop(listener, app, &state, graceful);
    let watchdog = async {
        state.shutdown_started().await;
        tokio::time::sleep(hard_stop).await;
    };
    tokio::select! {
        () = server => {}
        () = watchdog => {
            tracing::warn!("connections still open after the shutdown deadline; closing");
        }
    }
    reaper.abort();
    Ok(())
}
