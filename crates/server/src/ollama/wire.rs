//! Ollama's JSON, as its API documentation (`docs/api.md`) has it: request
//! bodies of `/api/generate`, `/api/chat`, `/api/show`, `/api/embed` and
//! `/api/embeddings`, and the objects
//! sent back, one per line when streaming.

use lucid_scheduler::Json;
use serde::{Deserialize, Serialize};

/// `options`: the model parameters Ollama clients send. Those that only
/// tune Ollama's own runtime are accepted and not used; any other that
/// lucid does not apply is refused by name (`other`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Options {
    pub num_predict: Option<i64>,
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// The context window: the prompt and the reply must fit in it.
    pub num_ctx: Option<i64>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GenerateRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub raw: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// `"json"` or a JSON schema.
    #[serde(default)]
    pub format: Option<Json>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// How long Ollama keeps the model loaded; lucid holds its models while
    /// it runs, so any value is accepted.
    #[serde(default)]
    pub keep_alive: Option<serde_json::Value>,
    #[serde(default)]
    pub think: Option<serde_json::Value>,
    /// Every other field, refused by name.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageIn {
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// An assistant's calls of tools.
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The tool whose result a `tool` message is.
    #[serde(default)]
    pub tool_name: Option<String>,
    /// Every other field, refused by name.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A tool call, in the conversation or a reply: the arguments as an object.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ToolCall {
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    #[serde(default)]
    pub messages: Vec<ChatMessageIn>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub format: Option<Json>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub tools: Option<serde_json::Value>,
    /// As in [`GenerateRequest`].
    #[serde(default)]
    pub keep_alive: Option<serde_json::Value>,
    #[serde(default)]
    pub think: Option<serde_json::Value>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShowRequest {
    #[serde(default)]
    pub model: Option<String>,
    /// The older name of `model`.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatMessageOut {
    pub role: &'static str,
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// The statistics the last object of a generation carries (durations in
/// nanoseconds).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Stats {
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: usize,
    pub prompt_eval_duration: u64,
    pub eval_count: usize,
    pub eval_duration: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateChunk {
    pub model: String,
    pub created_at: String,
    pub response: String,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatChunk {
    pub model: String,
    pub created_at: String,
    pub message: ChatMessageOut,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Details {
    pub parent_model: String,
    pub format: &'static str,
    pub family: String,
    pub families: Vec<String>,
    pub parameter_size: String,
    pub quantization_level: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagModel {
    pub name: String,
    pub model: String,
    pub modified_at: String,
    pub size: u64,
    pub digest: String,
    pub details: Details,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tags {
    pub models: Vec<TagModel>,
}

/// `/api/ps`: the models the server holds in memory. lucid keeps each for
/// as long as it runs, so there is no `expires_at`.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    pub models: Vec<RunningModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningModel {
    pub name: String,
    pub model: String,
    /// Bytes held: the model file (mapped) and the KV cache in use.
    pub size: u64,
    /// Bytes on a GPU: always 0, lucid runs on the CPU.
    pub size_vram: u64,
    pub digest: String,
    pub details: Details,
    /// When the model is unloaded if it stays idle; left out when it stays
    /// loaded for as long as the server runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub context_length: usize,
    /// lucid's own: requests being generated and waiting for a slot.
    pub requests_running: usize,
    pub requests_queued: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Show {
    pub modelfile: String,
    pub parameters: String,
    pub template: String,
    pub license: String,
    pub details: Details,
    pub model_info: serde_json::Map<String, serde_json::Value>,
    pub capabilities: Vec<&'static str>,
    pub modified_at: String,
}

/// `input` of `/api/embed`: a text or texts.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum EmbedInput {
    Text(String),
    Texts(Vec<String>),
}

/// Read by hand, for an error that says what `input` may be.
impl TryFrom<serde_json::Value> for EmbedInput {
    type Error = String;

    fn try_from(v: serde_json::Value) -> Result<EmbedInput, String> {
        let what = "input must be a string or an array of strings";
        match v {
            serde_json::Value::String(s) => Ok(EmbedInput::Text(s)),
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(EmbedInput::Texts)
                .ok_or_else(|| what.to_owned()),
            _ => Err(what.to_owned()),
        }
    }
}

/// `POST /api/embed`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbedRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<EmbedInput>,
    /// Cut a text that is too long (the default) instead of refusing it.
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub dimensions: Option<i64>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub keep_alive: Option<serde_json::Value>,
    /// Every other field, refused by name.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The answer of `/api/embed` (durations in nanoseconds).
#[derive(Debug, Clone, Serialize)]
pub struct EmbedResponse {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: usize,
}

/// `POST /api/embeddings`, the older route: one text as `prompt`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub keep_alive: Option<serde_json::Value>,
    /// Every other field, refused by name.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The answer of `/api/embeddings`.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingsResponse {
    pub embedding: Vec<f32>,
}
