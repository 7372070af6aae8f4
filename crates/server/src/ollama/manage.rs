//! Ollama's model management over the server's store: `/api/pull` (with
//! Ollama's streamed progress objects), `/api/delete`, `/api/copy` and
//! `/api/create`. A model pulled, copied or created is served from then on
//! (listed, and loaded by the first request that names it).
//!
//! Pulls use the same sources and checks as `lucid pull` (every file's
//! SHA-256 verified). A copy is a user model with the source's settings; a
//! created model is a user model (`lucid create`) made from a model in the
//! store, with Ollama's `system`, `template`, `license` and the
//! `parameters` lucid's model files hold; what a model file cannot hold
//! (`files`, `adapters`, `quantize`, `messages`, other parameters) is
//! refused, naming the field.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lucid_store::{Parameters, Progress, UserModel};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{ndjson, ndjson_response};
use crate::body::ApiJson;
use crate::error::{ApiError, OllamaError};
use crate::library::{Library, store_error, untagged};
use crate::prompt;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    #[serde(default)]
    model: Option<String>,
    /// The older name of `model`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    insecure: Option<bool>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    source: String,
    destination: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    template: Option<String>,
    /// One license text or several.
    #[serde(default)]
    license: Option<serde_json::Value>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    messages: Option<serde_json::Value>,
    #[serde(default)]
    files: Option<serde_json::Value>,
    #[serde(default)]
    adapters: Option<serde_json::Value>,
    #[serde(default)]
    quantize: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<bool>,
}

/// One line of a streamed pull or create, as Ollama writes it.
#[derive(Debug, Serialize)]
struct Status {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<u64>,
}

impl Status {
    fn of(status: impl Into<String>) -> Status {
        Status {
            status: status.into(),
            digest: None,
            total: None,
            completed: None,
        }
    }
}

fn library(state: &AppState) -> Result<Arc<Library>, ApiError> {
    state.library().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "invalid_request_error",
            "this server manages no model store (it was started without one)",
        )
    })
}

fn required(model: Option<String>, name: Option<String>) -> Result<String, ApiError> {
    model
        .or(name)
        .filter(|m| !m.is_empty())
        .map(|m| untagged(&m).to_owned())
        .ok_or_else(|| ApiError::invalid("model", "model is required"))
}

fn not_found(model: &str) -> ApiError {
    ApiError::model_missing(format!("model '{model}' not found"))
}

/// The name `model` is kept under in the store, or a 404.
fn stored(library: &Library, model: &str) -> Result<String, ApiError> {
    library
        .store
        .stored_name(model)
        .map_err(|e| store_error(model, e))?
        .ok_or_else(|| not_found(model))
}

/// Opens `name` from the store to learn what it is (and that it loads),
/// then serves it, unloaded until a request names it. Runs on the blocking
/// pool.
fn serve_from_store(state: &AppState, library: &Library, name: &str) -> Result<(), ApiError> {
    let model = (library.open)(name).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            format!("{name} is in the store but cannot be served: {e}"),
        )
    })?;
    state.served_models().add(model, false);
    Ok(())
}

/// Sends a pull's progress as Ollama's status lines, at most one per
/// percent of a file.
struct Sender {
    tx: mpsc::UnboundedSender<Bytes>,
    /// The catalog's files: (name, SHA-256), for the lines' digests.
    files: Vec<(String, String)>,
    step: Mutex<Step>,
}

#[derive(Default)]
struct Step {
    what: String,
    digest: Option<String>,
    total: Option<u64>,
    completed: u64,
    sent: u64,
}

impl Sender {
    fn send(&self, status: &Status) {
        // A client that went away stops reading; the pull goes on.
        let _ = self.tx.send(ndjson(status));
    }

    fn step(&self) -> std::sync::MutexGuard<'_, Step> {
        self.step.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send_step(&self, step: &mut Step) {
        step.sent = step.completed;
        self.send(&Status {
            status: step.what.clone(),
            digest: step.digest.clone(),
            total: step.total,
            completed: Some(step.completed),
        });
    }
}

impl Progress for Sender {
    fn start(&self, what: &str, total: Option<u64>) {
        let digest = self
            .files
            .iter()
            .find(|(file, _)| what.contains(file.as_str()))
            .map(|(_, sha)| format!("sha256:{sha}"));
        let mut step = self.step();
        *step = Step {
            what: what.to_owned(),
            digest,
            total,
            ..Step::default()
        };
        self.send_step(&mut step);
    }

    fn advance(&self, bytes: u64) {
        let mut step = self.step();
        step.completed += bytes;
        let every = step.total.map_or(1 << 20, |t| (t / 100).max(1));
        if step.completed - step.sent >= every {
            self.send_step(&mut step);
        }
    }

    fn finish(&self) {
        let mut step = self.step();
        if step.completed != step.sent || step.total.is_some() {
            self.send_step(&mut step);
        }
    }

    fn message(&self, text: &str) {
        self.send(&Status::of(text));
    }
}

/// Runs `work` on the blocking pool; streamed, its lines (sent through the
/// channel) and then `success` or `{"error": …}`; otherwise one
/// `{"status": "success"}` or the error with its status code.
async fn run_streamed(
    stream: bool,
    work: impl FnOnce(mpsc::UnboundedSender<Bytes>) -> Result<(), ApiError> + Send + 'static,
) -> Result<Response, OllamaError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let done = tx.clone();
    let task = tokio::task::spawn_blocking(move || work(tx));
    if !stream {
        drop(done);
        let result = task
            .await
            .map_err(|e| ApiError::internal(format!("the operation failed: {e}")))?;
        result?;
        return Ok(axum::Json(Status::of("success")).into_response());
    }
    tokio::spawn(async move {
        let last = match task.await {
            Ok(Ok(())) => ndjson(&Status::of("success")),
            Ok(Err(e)) => ndjson(&serde_json::json!({ "error": e.message })),
            Err(e) => ndjson(&serde_json::json!({ "error": format!("the operation failed: {e}") })),
        };
        let _ = done.send(last);
    });
    let lines = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(ndjson_response(lines))
}

pub(super) async fn pull(
    State(state): State<AppState>,
    body: Result<ApiJson<PullRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let ApiJson(req) = body?;
    let name = required(req.model, req.name)?;
    if req.insecure == Some(true) {
        return Err(ApiError::invalid(
            "insecure",
            "insecure pulls are not supported: lucid verifies every file it pulls",
        )
        .into());
    }
    let library = library(&state)?;
    let entry = library
        .store
        .catalog()
        .find(&name)
        .ok_or_else(|| not_found(&name))?;
    let files = entry
        .files
        .iter()
        .map(|f| (f.name.clone(), f.sha256.to_string()))
        .collect();
    let canonical = entry.name.clone();
    run_streamed(req.stream.unwrap_or(true), move |tx| {
        let sender = Sender {
            tx,
            files,
            step: Mutex::default(),
        };
        sender.send(&Status::of("pulling manifest"));
        library
            .store
            .pull(&canonical, &sender)
            .map_err(|e| store_error(&canonical, e))?;
        sender.send(&Status::of("verifying sha256 digest"));
        sender.send(&Status::of("writing manifest"));
        if state.served_models().served_name(&canonical).is_none() {
            serve_from_store(&state, &library, &canonical)?;
        }
        Ok(())
    })
    .await
}

pub(super) async fn delete(
    State(state): State<AppState>,
    body: Result<ApiJson<DeleteRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let ApiJson(req) = body?;
    let name = required(req.model, req.name)?;
    let library = library(&state)?;
    prompt::blocking("deleting the model", move || {
        let stored = stored(&library, &name)?;
        library
            .store
            .remove(&stored)
            .map_err(|e| store_error(&stored, e))?;
        // Requests running with it finish; new ones get a 404.
        state.served_models().remove(&stored);
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn copy(
    State(state): State<AppState>,
    body: Result<ApiJson<CopyRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let ApiJson(req) = body?;
    let source = untagged(&req.source).to_owned();
    let destination = untagged(&req.destination).to_owned();
    let library = library(&state)?;
    prompt::blocking("copying the model", move || {
        let stored = stored(&library, &source)?;
        // A user model is copied whole, so that the copy keeps its settings
        // when the source changes; a pulled model gets a new name.
        let model = library
            .store
            .user_model(&stored)
            .map_err(|e| store_error(&stored, e))?
            .unwrap_or_else(|| UserModel {
                from: stored.clone(),
                ..UserModel::default()
            });
        library
            .store
            .create(&destination, &model)
            .map_err(|e| store_error(&destination, e))?;
        serve_from_store(&state, &library, &destination)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// The user model a create request describes, or a 400 naming the field
/// it cannot hold.
fn user_model(req: &CreateRequest, from: String) -> Result<UserModel, ApiError> {
    for (field, value) in [
        ("files", &req.files),
        ("adapters", &req.adapters),
        ("quantize", &req.quantize),
        ("messages", &req.messages),
    ] {
        if value.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid(
                field,
                format!(
                    "`{field}` is not supported: lucid creates a model from one in its store \
                     (`from`) with `system`, `template`, `license` and `parameters`"
                ),
            ));
        }
    }
    let mut parameters = Parameters::default();
    for (key, value) in req.parameters.iter().flatten() {
        let param = format!("parameters.{key}");
        let number = || {
            value
                .as_f64()
                .map(|v| v as f32)
                .ok_or_else(|| ApiError::invalid(&param, format!("`{key}` must be a number")))
        };
        match key.as_str() {
            "temperature" => parameters.temperature = Some(number()?),
            "top_p" => parameters.top_p = Some(number()?),
            _ => {
                return Err(ApiError::invalid(
                    &param,
                    format!(
                        "the parameter `{key}` is not supported in a model (supported: temperature, top_p)"
                    ),
                ));
            }
        }
    }
    let license_note = match &req.license {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::invalid("license", "license must be a string or strings")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .join("\n\n"),
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                "license",
                "license must be a string or strings",
            ));
        }
    };
    let model = UserModel {
        from,
        system: req.system.clone(),
        template: req.template.clone(),
        license_note,
        parameters,
    };
    // The checks `lucid create` makes on a model file.
    UserModel::parse(&model.to_toml()).map_err(|e| ApiError::invalid("parameters", e))?;
    Ok(model)
}

pub(super) async fn create(
    State(state): State<AppState>,
    body: Result<ApiJson<CreateRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let ApiJson(req) = body?;
    let name = required(req.model.clone(), req.name.clone())?;
    let from = req
        .from
        .as_deref()
        .map(|f| untagged(f).to_owned())
        .ok_or_else(|| ApiError::invalid("from", "from is required: the model to start from"))?;
    let library = library(&state)?;
    // Only models in the store: never a path on the server's disk.
    let model = user_model(&req, from.clone())?;
    run_streamed(req.stream.unwrap_or(true), move |tx| {
        let send = |s: &str| {
            let _ = tx.send(ndjson(&Status::of(s)));
        };
        send("reading model metadata");
        let stored = stored(&library, &from)?;
        let model = UserModel {
            from: stored,
            ..model
        };
        send("writing model file");
        library
            .store
            .create(&name, &model)
            .map_err(|e| store_error(&name, e))?;
        serve_from_store(&state, &library, &name)
    })
    .await
}
