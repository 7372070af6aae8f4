//! The Ollama-compatible API: `/api/generate`, `/api/chat`, `/api/tags`,
//! `/api/ps`, `/api/show` and `/api/version`, the embedding routes of
//! `embed.rs` (`/api/embed`, `/api/embeddings`), and the model management
//! routes of `manage.rs` (`/api/pull`, `/api/delete`, `/api/copy`,
//! `/api/create`). Generations are streamed as NDJSON (one JSON object per
//! line, the last with `"done": true` and the timing statistics); errors
//! have Ollama's shape `{"error": "..."}`. Models are
//! listed as `name:latest` and answer with or without the tag.
//!
//! Ollama's sampling defaults apply (temperature 0.8, top-k 40, top-p 0.9,
//! repeat penalty 1.1 over the last 64 tokens), so an Ollama client gets the
//! behaviour it expects.

mod embed;
mod manage;
pub mod wire;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures::StreamExt;
use lucid_engine::{ChatMessage, Role, SamplingParams};
use lucid_scheduler::{Event, Grammar, Json, Request};

use crate::body::ApiJson;
use crate::error::{ApiError, OllamaError};
use crate::generate::{self, Collected};
use crate::openai::tools::{ToolUse, tool_use};
use crate::prompt;
use crate::state::{AppState, Facts, KeepAlive, LocalModel};
use wire::*;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/generate", post(generate_handler))
        .route("/api/chat", post(chat_handler))
        .route("/api/embed", post(embed::embed_handler))
        .route("/api/embeddings", post(embed::embeddings_handler))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/version", get(version))
        .route("/api/pull", post(manage::pull))
        .route("/api/delete", delete(manage::delete))
        .route("/api/copy", post(manage::copy))
        .route("/api/create", post(manage::create))
}

async fn version() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

fn details(facts: &Facts) -> Details {
    Details {
        parent_model: String::new(),
        format: "gguf",
        family: facts.architecture.clone(),
        families: vec![facts.architecture.clone()],
        parameter_size: human_params(facts.n_params),
        quantization_level: facts.quantization.clone(),
    }
}

fn human_params(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n => n.to_string(),
    }
}

/// The name Ollama clients see: with the default tag.
fn tagged(name: &str) -> String {
    format!("{name}:latest")
}

/// The model files' digests, read (once per file) on the blocking pool.
async fn digests(facts: Vec<Arc<Facts>>) -> Result<Vec<String>, OllamaError> {
    let digests = prompt::blocking("reading the model files' digests", move || {
        Ok(facts.iter().map(|f| f.digest().to_owned()).collect())
    })
    .await?;
    Ok(digests)
}

/// Every served model, loaded or not.
async fn tags(State(state): State<AppState>) -> Result<Response, OllamaError> {
    let listing = state.served_models().listing();
    let digests = digests(listing.iter().map(|(_, f)| f.clone()).collect()).await?;
    let models = listing
        .iter()
        .zip(digests)
        .map(|((name, facts), digest)| TagModel {
            name: tagged(name),
            model: tagged(name),
            modified_at: rfc3339(facts.created as f64),
            size: facts.file_size,
            digest,
            details: details(facts),
        })
        .collect();
    Ok(axum::Json(Tags { models }).into_response())
}

/// The models loaded now, with when an idle one will be unloaded.
async fn ps(State(state): State<AppState>) -> Result<Response, OllamaError> {
    let loaded = state.models();
    let digests = digests(loaded.iter().map(|m| m.facts.clone()).collect()).await?;
    let models = loaded
        .iter()
        .zip(digests)
        .map(|(m, digest)| {
            let stats = m.scheduler.stats();
            let expires_at = state.served_models().expires(&m.name).map(|at| {
                let left = at.saturating_duration_since(std::time::Instant::now());
                rfc3339(now_f64() + left.as_secs_f64())
            });
            RunningModel {
                name: tagged(&m.name),
                model: tagged(&m.name),
                size: m.facts.file_size + stats.kv_cache_bytes as u64,
                size_vram: 0,
                digest,
                details: details(&m.facts),
                expires_at,
                context_length: m.scheduler.context_limit(),
                requests_running: stats.active,
                requests_queued: stats.queued,
            }
        })
        .collect();
    Ok(axum::Json(Running { models }).into_response())
}

async fn show(
    State(state): State<AppState>,
    body: Result<ApiJson<ShowRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let ApiJson(req) = body?;
    let name = req
        .model
        .or(req.name)
        .ok_or_else(|| ApiError::invalid("model", "model is required"))?;
    let m = state.require_model(&name).await?;
    let info = m.model.model.info();
    let mut model_info = serde_json::Map::new();
    let arch = info.architecture;
    for (k, v) in [
        ("general.architecture", serde_json::Value::from(arch)),
        ("general.parameter_count", m.model.meta.n_params.into()),
        (
            &format!("{arch}.context_length"),
            info.context_length.into(),
        ),
        (&format!("{arch}.embedding_length"), info.d_model.into()),
        (&format!("{arch}.block_count"), info.n_layers.into()),
        (&format!("{arch}.attention.head_count"), info.n_heads.into()),
        (
            &format!("{arch}.attention.head_count_kv"),
            info.n_kv_heads.into(),
        ),
        (&format!("{arch}.feed_forward_length"), info.d_ff.into()),
        ("tokenizer.ggml.vocab_size", info.vocab_size.into()),
    ] {
        model_info.insert(k.to_string(), v);
    }
    for (k, v) in &m.model.meta.general {
        model_info
            .entry(k.clone())
            .or_insert_with(|| v.clone().into());
    }
    // The model's defaults, as a Modelfile would give them.
    let defaults = &m.model.defaults;
    let parameters: String = [
        ("temperature", defaults.temperature),
        ("top_p", defaults.top_p),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k} {v}\n")))
    .collect();
    // The model's name, not the file's place on this machine: the path
    // would tell a client about the server's file system.
    let mut modelfile = format!("FROM {}\n", m.name);
    if let Some(system) = &defaults.system {
        modelfile.push_str(&format!("SYSTEM \"\"\"{system}\"\"\"\n"));
    }
    for line in parameters.lines() {
        modelfile.push_str(&format!("PARAMETER {line}\n"));
    }
    Ok(axum::Json(Show {
        modelfile,
        parameters,
        template: m
            .model
            .tokenizer
            .chat_template()
            .unwrap_or_default()
            .to_owned(),
        license: m.model.meta.license.clone().unwrap_or_default(),
        details: details(&m.facts),
        model_info,
        // What Ollama's clients check before they embed or generate.
        capabilities: match m.model.model.role() {
            lucid_engine::ModelRole::Encoder => vec!["embedding"],
            lucid_engine::ModelRole::Generator => vec!["completion"],
        },
        modified_at: rfc3339(m.created as f64),
    })
    .into_response())
}

/// Ollama's defaults, overridden by `options`.
fn sampling(o: &Options) -> Result<(SamplingParams, Option<usize>), ApiError> {
    let mut s = SamplingParams {
        temperature: o.temperature.unwrap_or(0.8),
        top_k: o.top_k.unwrap_or(40).max(0) as usize,
        top_p: o.top_p.unwrap_or(0.9),
        min_p: o.min_p.unwrap_or(0.0),
        repeat_penalty: o.repeat_penalty.unwrap_or(1.1),
        presence_penalty: o.presence_penalty.unwrap_or(0.0),
        frequency_penalty: o.frequency_penalty.unwrap_or(0.0),
        penalty_last_n: 64,
        seed: o.seed.map(|s| s as u64),
    };
    // As Ollama reads it: the last n tokens; 0 turns the penalties off
    // (no tokens to look at); -1 looks at the whole context (the engine's
    // 0).
    match o.repeat_last_n.unwrap_or(64) {
        0 => {
            s.repeat_penalty = 1.0;
            s.presence_penalty = 0.0;
            s.frequency_penalty = 0.0;
        }
        -1 => s.penalty_last_n = 0,
        n if n > 0 => s.penalty_last_n = n as usize,
        n => {
            return Err(ApiError::invalid(
                "options.repeat_last_n",
                format!("repeat_last_n is -1 (the whole context), 0 (off) or a count, not {n}"),
            ));
        }
    }
    s.validate()
        .map_err(|e| ApiError::invalid("options", e.to_string()))?;
    let max = match o.num_predict {
        None => None,
        Some(n) if n < 0 => None,
        Some(0) => {
            return Err(ApiError::invalid(
                "options.num_predict",
                "num_predict must not be 0",
            ));
        }
        Some(n) => Some(n as usize),
    };
    Ok((s, max))
}

/// Options that tune Ollama's own runtime (threads, GPU layers, memory
/// mapping, batch size), not what the model says: accepted, not used.
pub const RUNTIME_OPTIONS: &[&str] = &[
    "num_thread",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "num_batch",
    "low_vram",
    "f16_kv",
    "numa",
    "vocab_only",
    "logits_all",
    "embedding_only",
    "num_keep",
];

/// Refuses, by name, the request fields and options lucid neither applies
/// nor lists as runtime-only: an ignored one could change the answer.
fn refuse_unknown(
    other: &serde_json::Map<String, serde_json::Value>,
    think: Option<&serde_json::Value>,
    options: &Options,
) -> Result<(), ApiError> {
    if let Some(think) = think
        && !(think.is_null() || *think == serde_json::Value::Bool(false))
    {
        return Err(ApiError::invalid(
            "think",
            "`think` is not supported: lucid has no switch for a model's thinking",
        ));
    }
    if let Some((key, _)) = other.iter().find(|(_, v)| !v.is_null()) {
        let why = match key.as_str() {
            "template" => "lucid renders the model's own chat template",
            "context" => "send the conversation as messages (or the whole prompt) instead",
            _ => "lucid does not know this field, and ignoring it could change the answer",
        };
        return Err(ApiError::invalid(
            key,
            format!("`{key}` is not supported: {why}"),
        ));
    }
    for (key, _) in options.other.iter().filter(|(_, v)| !v.is_null()) {
        if RUNTIME_OPTIONS.contains(&key.as_str()) {
            continue;
        }
        return Err(ApiError::invalid(
            format!("options.{key}"),
            format!("option `{key}` is not supported: lucid does not apply it"),
        ));
    }
    Ok(())
}

/// Applies `num_ctx`: the prompt must leave room in it, and the reply stops
/// where it is full. A window larger than the server's context is the
/// server's context.
fn apply_num_ctx(
    options: &Options,
    prompt_len: usize,
    max_tokens: Option<usize>,
) -> Result<Option<usize>, ApiError> {
    let Some(num_ctx) = options.num_ctx else {
        return Ok(max_tokens);
    };
    let room = usize::try_from(num_ctx)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "options.num_ctx",
                format!("num_ctx must be a positive number of tokens, not {num_ctx}"),
            )
        })?
        .checked_sub(prompt_len)
        .filter(|&room| room > 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "options.num_ctx",
                format!(
                    "the prompt is {prompt_len} tokens, which leaves no room in num_ctx {num_ctx}"
                ),
            )
        })?;
    Ok(Some(max_tokens.map_or(room, |m| m.min(room))))
}

async fn grammar(format: Option<&Json>) -> Result<Option<Arc<Grammar>>, ApiError> {
    match format {
        None => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        // Ollama's contract for "json" is an object, not any JSON value.
        Some(Json::String(s)) if s == "json" => Ok(Some(Arc::new(Grammar::any_object()))),
        Some(Json::String(s)) => Err(ApiError::invalid(
            "format",
            format!("format must be \"json\" or a JSON schema, not \"{s}\""),
        )),
        Some(schema) => crate::openai::compile(schema.clone(), "format").await,
    }
}

fn ndjson<T: serde::Serialize>(v: &T) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn ndjson_response(stream: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream.map(Ok::<_, Infallible>)),
    )
        .into_response()
}

fn stats(f: &lucid_scheduler::Finished) -> Stats {
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let t = &f.timings;
    Stats {
        total_duration: ns(t.time_to_first_token + t.decode),
        load_duration: 0,
        prompt_eval_count: f.usage.prompt_tokens,
        prompt_eval_duration: ns(t.time_to_first_token.saturating_sub(t.queued)),
        eval_count: f.usage.completion_tokens,
        eval_duration: ns(t.decode),
    }
}

fn done_reason(f: &lucid_scheduler::Finished) -> &'static str {
    generate::finish_reason(f.reason)
}

enum Kind {
    Generate,
    /// A chat, with the tools the model may call: its text is then held
    /// to the end and read for calls.
    Chat {
        tools: Option<Arc<ToolUse>>,
    },
}

impl Kind {
    fn tools(&self) -> Option<&ToolUse> {
        match self {
            Kind::Chat { tools: Some(t) } if t.may_call() => Some(t),
            _ => None,
        }
    }
}

/// A reply's text and the calls read from it (none without tools).
fn read(kind: &Kind, text: String) -> (String, Vec<ToolCall>) {
    let Some(tools) = kind.tools() else {
        return (text, Vec::new());
    };
    let (content, calls) = tools.read_calls(&text);
    let calls = calls
        .into_iter()
        .map(|c| ToolCall {
            function: FunctionCall {
                name: c.name,
                arguments: c.arguments,
            },
        })
        .collect();
    (content.unwrap_or_default(), calls)
}

/// The object for a piece of text (or the final one, with `finished`).
fn chunk(
    kind: &Kind,
    model: &str,
    text: String,
    tool_calls: Vec<ToolCall>,
    finished: Option<&lucid_scheduler::Finished>,
) -> Bytes {
    let created_at = rfc3339_now();
    match kind {
        Kind::Generate => ndjson(&GenerateChunk {
            model: model.to_owned(),
            created_at,
            response: text,
            done: finished.is_some(),
            done_reason: finished.map(done_reason),
            stats: finished.map(stats),
        }),
        Kind::Chat { .. } => ndjson(&ChatChunk {
            model: model.to_owned(),
            created_at,
            message: ChatMessageOut {
                role: "assistant",
                content: text,
                tool_calls,
            },
            done: finished.is_some(),
            done_reason: finished.map(done_reason),
            stats: finished.map(stats),
        }),
    }
}

/// Runs one generation and answers in Ollama's shape, streamed or not.
async fn run(
    state: &AppState,
    lm: LocalModel,
    model: String,
    req: Request,
    stream: bool,
    kind: Kind,
) -> Result<Response, ApiError> {
    let gens = generate::submit_n(&lm, &req, 1, "prompt")?;
    let merged = generate::merge(state, &lm.name, gens, 0);
    if !stream {
        let c: Collected = generate::collect(merged, 1)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        // `collect` has refused a choice without a finish.
        let fin = c.finished.ok_or_else(ApiError::cut_off)?;
        let (text, calls) = read(&kind, c.text);
        let mut line = chunk(&kind, &model, text, calls, Some(&fin)).to_vec();
        line.pop();
        return Ok(([(header::CONTENT_TYPE, "application/json")], line).into_response());
    }
    let mut held = String::new();
    let lines = generate::drive(merged, VecDeque::new(), move |event, out| match event {
        Some((_, Event::Token(t))) if kind.tools().is_some() => held.push_str(&t.text),
        Some((_, Event::Token(t))) if !t.text.is_empty() => {
            out.push_back(chunk(&kind, &model, t.text, Vec::new(), None));
        }
        Some((_, Event::Token(_))) => {}
        Some((_, Event::Finished(f))) => {
            if kind.tools().is_some() {
                held.push_str(&f.tail);
                let (text, calls) = read(&kind, std::mem::take(&mut held));
                if f.reason != lucid_engine::StopReason::Cancelled
                    && (!text.is_empty() || !calls.is_empty())
                {
                    out.push_back(chunk(&kind, &model, text, calls, None));
                }
            } else if !f.tail.is_empty() {
                out.push_back(chunk(&kind, &model, f.tail.clone(), Vec::new(), None));
            }
            if f.reason == lucid_engine::StopReason::Cancelled {
                // Cut short by the server: Ollama's mid-stream error line
                // (which its clients raise), not a `done` that says complete.
                let message = ApiError::cut_off().message;
                out.push_back(ndjson(&serde_json::json!({ "error": message })));
            } else {
                out.push_back(chunk(&kind, &model, String::new(), Vec::new(), Some(&f)));
            }
        }
        Some((_, Event::Failed(e))) => {
            out.push_back(ndjson(&serde_json::json!({ "error": e.to_string() })));
        }
        None => {}
    });
    Ok(ndjson_response(lines))
}

async fn generate_handler(
    State(state): State<AppState>,
    body: Result<ApiJson<GenerateRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let ApiJson(req) = body?;
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down().into());
    }
    if req.images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(ApiError::invalid("images", "images are not supported").into());
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "suffix is not supported").into());
    }
    let options = req.options.clone().unwrap_or_default();
    refuse_unknown(&req.other, req.think.as_ref(), &options)?;
    let keep = keep_alive(req.keep_alive.as_ref())?;
    let prompt_text = req.prompt.clone().unwrap_or_default();
    if prompt_text.is_empty() && keep == Some(KeepAlive::For(Duration::ZERO)) {
        // Ollama's way to unload a model (`ollama stop`, `lucid stop`).
        state.served_models().unload(&req.model)?;
        return Ok(axum::Json(serde_json::json!({
            "model": req.model, "created_at": rfc3339_now(), "response": "", "done": true, "done_reason": "unload"
        }))
        .into_response());
    }
    let lm = state.require_model(&req.model).await?;
    if let Some(keep) = keep {
        state.keep_alive(&lm.name, keep);
    }
    if prompt_text.is_empty() {
        // Ollama's way to load a model: answer at once, done.
        return Ok(axum::Json(serde_json::json!({
            "model": req.model, "created_at": rfc3339_now(), "response": "", "done": true, "done_reason": "load"
        }))
        .into_response());
    }
    let tokens = if req.raw.unwrap_or(false) {
        let mut all = prompt::raw_tokens(&lm, vec![prompt_text], "prompt").await?;
        all.pop().unwrap_or_default()
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &req.system {
            msgs.push(ChatMessage::new(Role::System, s.clone()));
        }
        msgs.push(ChatMessage::new(Role::User, prompt_text));
        prompt::chat_tokens(&lm, msgs, "prompt").await?
    };
    let (mut sampling, max_tokens) = sampling(&options)?;
    let max_tokens = apply_num_ctx(&options, tokens.len(), max_tokens)?;
    prompt::apply_defaults(&lm, &mut sampling, options.temperature, options.top_p);
    let request = Request {
        prompt: tokens,
        max_tokens,
        sampling,
        stop: options.stop.clone().unwrap_or_default(),
        logprobs: None,
        grammar: grammar(req.format.as_ref()).await?,
        ignore_eos: false,
    };
    Ok(run(
        &state,
        lm,
        req.model,
        request,
        req.stream.unwrap_or(true),
        Kind::Generate,
    )
    .await?)
}

async fn chat_handler(
    State(state): State<AppState>,
    body: Result<ApiJson<ChatRequest>, ApiError>,
) -> Result<Response, OllamaError> {
    let ApiJson(req) = body?;
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down().into());
    }
    // Ollama has no tool_choice: the model may call any tool offered (the
    // client sends `"tools": []` when it has none).
    let tools = tool_use(req.tools.as_ref(), None, None)?.map(Arc::new);
    let options = req.options.clone().unwrap_or_default();
    refuse_unknown(&req.other, req.think.as_ref(), &options)?;
    let keep = keep_alive(req.keep_alive.as_ref())?;
    if req.messages.is_empty() && keep == Some(KeepAlive::For(Duration::ZERO)) {
        state.served_models().unload(&req.model)?;
        return Ok(axum::Json(serde_json::json!({
            "model": req.model, "created_at": rfc3339_now(),
            "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "unload"
        }))
        .into_response());
    }
    let lm = state.require_model(&req.model).await?;
    if let Some(keep) = keep {
        state.keep_alive(&lm.name, keep);
    }
    if req.messages.is_empty() {
        // Ollama loads the model and answers done.
        return Ok(axum::Json(serde_json::json!({
            "model": req.model, "created_at": rfc3339_now(),
            "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "load"
        }))
        .into_response());
    }
    let mut msgs = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        if m.images.as_ref().is_some_and(|x| !x.is_empty()) {
            return Err(ApiError::invalid(
                format!("messages[{i}].images"),
                "images are not supported",
            )
            .into());
        }
        let role = match m.role.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!("role `{other}` is not supported (system, user, assistant, tool)"),
                )
                .into());
            }
        };
        crate::body::refuse_extra(&m.other, &format!("messages[{i}]"))?;
        let mut message = ChatMessage::new(role, m.content.clone());
        match (role, &m.tool_name) {
            // The tool's name, shown with its result.
            (Role::Tool, name) => message.name = name.clone(),
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].tool_name"),
                    "`tool_name` names the tool of a `tool` message",
                )
                .into());
            }
            (_, None) => {}
        }
        for (j, call) in m.tool_calls.iter().flatten().enumerate() {
            if role != Role::Assistant || !call.function.arguments.is_object() {
                return Err(ApiError::invalid(
                    format!("messages[{i}].tool_calls[{j}]"),
                    "tool calls are an assistant's, with arguments as an object",
                )
                .into());
            }
            message.tool_calls.push(lucid_engine::ToolCall {
                id: format!("call_{j}"),
                kind: "function".into(),
                function: lucid_engine::FunctionCall {
                    name: call.function.name.clone(),
                    arguments: call.function.arguments.clone(),
                },
            });
        }
        msgs.push(message);
    }
    let shown = tools.as_ref().and_then(|t| t.shown.clone());
    let tokens = prompt::chat_tokens_with_tools(&lm, msgs, shown, "messages").await?;
    let (mut sampling, max_tokens) = sampling(&options)?;
    let max_tokens = apply_num_ctx(&options, tokens.len(), max_tokens)?;
    prompt::apply_defaults(&lm, &mut sampling, options.temperature, options.top_p);
    let request = Request {
        prompt: tokens,
        max_tokens,
        sampling,
        stop: options.stop.clone().unwrap_or_default(),
        logprobs: None,
        grammar: grammar(req.format.as_ref()).await?,
        ignore_eos: false,
    };
    Ok(run(
        &state,
        lm,
        req.model,
        request,
        req.stream.unwrap_or(true),
        Kind::Chat { tools },
    )
    .await?)
}

/// Ollama's `keep_alive`: seconds as a number, or a duration as a string
/// (`"5m"`, `"1h30m"`, `"300"`); negative keeps the model for as long as
/// the server runs, zero unloads it once the request is done.
fn keep_alive(value: Option<&serde_json::Value>) -> Result<Option<KeepAlive>, ApiError> {
    let parsed = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_f64().and_then(KeepAlive::from_secs),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    parsed.map(Some).ok_or_else(|| {
        ApiError::invalid(
            "keep_alive",
            format!(
                "keep_alive must be seconds or a duration such as \"5m\", not {}",
                value.map_or_else(String::new, ToString::to_string)
            ),
        )
    })
}

fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn rfc3339_now() -> String {
    let now = now_f64();
    rfc3339(now)
}

/// `2024-07-26T12:34:56.123456789Z` for seconds since the epoch.
pub(crate) fn rfc3339(secs: f64) -> String {
    let whole = secs.floor() as i64;
    let nanos = ((secs - whole as f64) * 1e9) as u32;
    let (days, rem) = (whole.div_euclid(86_400), whole.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0.0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339(1_721_997_296.5),
            "2024-07-26T12:34:56.500000000Z"
        );
    }
}
