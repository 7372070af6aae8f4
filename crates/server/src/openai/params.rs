//! Request parameters: OpenAI's names and ranges checked and turned into
//! the engine's sampling settings, grammar and chat messages.

use std::sync::Arc;

use lucid_engine::{ChatMessage, Role, SamplingParams};
use lucid_scheduler::Grammar;

use super::wire::*;
use crate::body::refuse_extra;
use crate::error::ApiError;

use super::MAX_N;

/// Sampling as OpenAI defines its defaults: temperature 1, no top-k or min-p cut.
/// (One argument per request field, named as the field, is clearer here
/// than a struct that would only repeat the wire type.)
#[allow(clippy::too_many_arguments)]
pub(crate) fn sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    presence: Option<f32>,
    frequency: Option<f32>,
    seed: Option<i64>,
) -> Result<SamplingParams, ApiError> {
    let t = temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&t) {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be between 0 and 2, not {t}"),
        ));
    }
    let p = top_p.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&p) {
        return Err(ApiError::invalid(
            "top_p",
            format!("top_p must be between 0 and 1, not {p}"),
        ));
    }
    for (name, v) in [
        ("presence_penalty", presence),
        ("frequency_penalty", frequency),
    ] {
        if let Some(v) = v
            && !(-2.0..=2.0).contains(&v)
        {
            return Err(ApiError::invalid(
                name,
                format!("{name} must be between -2 and 2, not {v}"),
            ));
        }
    }
    if let Some(m) = min_p
        && !(0.0..=1.0).contains(&m)
    {
        return Err(ApiError::invalid(
            "min_p",
            format!("min_p must be between 0 and 1, not {m}"),
        ));
    }
    if let Some(r) = repeat_penalty
        && !(r > 0.0 && r.is_finite())
    {
        return Err(ApiError::invalid(
            "repeat_penalty",
            format!("repeat_penalty must be > 0, not {r}"),
        ));
    }
    Ok(SamplingParams {
        temperature: t,
        top_k: top_k.unwrap_or(0) as usize,
        top_p: p,
        min_p: min_p.unwrap_or(0.0),
        repeat_penalty: repeat_penalty.unwrap_or(1.0),
        presence_penalty: presence.unwrap_or(0.0),
        frequency_penalty: frequency.unwrap_or(0.0),
        penalty_last_n: 64,
        seed: seed.map(|s| s as u64),
    })
}

pub(super) fn check_n(n: Option<u32>) -> Result<usize, ApiError> {
    match n.unwrap_or(1) {
        n @ 1..=MAX_N => Ok(n as usize),
        n => Err(ApiError::invalid(
            "n",
            format!("n must be between 1 and {MAX_N}, not {n}"),
        )),
    }
}

pub(super) fn check_max_tokens(param: &str, v: Option<u32>) -> Result<Option<usize>, ApiError> {
    match v {
        Some(0) => Err(ApiError::invalid(
            param,
            format!("{param} must be at least 1"),
        )),
        v => Ok(v.map(|v| v as usize)),
    }
}

/// Fields of OpenAI's API that ask nothing of the model (who asks, storage
/// and billing hints): accepted and not used.
pub const METADATA_FIELDS: &[&str] = &[
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
];

/// Refuses, by name, every field of a request that lucid neither applies
/// nor lists in [`METADATA_FIELDS`]: an ignored field that changes output
/// would make the answer quietly differ from what was asked. `null` is the
/// same as absent; `modalities: ["text"]` asks for what lucid does.
pub(super) fn refuse_unknown(
    other: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ApiError> {
    refuse_unknown_but(other, &[])
}

/// [`refuse_unknown`], but for the fields in `applied`, which the route
/// reads from `other` itself.
pub(super) fn refuse_unknown_but(
    other: &serde_json::Map<String, serde_json::Value>,
    applied: &[&str],
) -> Result<(), ApiError> {
    for (key, value) in other {
        let text_only = key == "modalities" && *value == serde_json::json!(["text"]);
        if value.is_null()
            || text_only
            || METADATA_FIELDS.contains(&key.as_str())
            || applied.contains(&key.as_str())
        {
            continue;
        }
        let why = match key.as_str() {
            "guided_json" | "guided_regex" | "guided_choice" | "structured_outputs" => {
                "this route constrains output with its own field (`text.format`)"
            }
            "guided_grammar" | "guided_decoding_backend" | "guided_whitespace_pattern" => {
                "lucid constrains output with a JSON schema, a regular expression or choices \
                 (`structured_outputs`), not a grammar"
            }
            "functions" | "function_call" => {
                "these are OpenAI's deprecated names: send `tools` and `tool_choice`"
            }
            "reasoning_effort" | "verbosity" | "reasoning" => {
                "lucid's models have no reasoning settings"
            }
            "audio" | "modalities" | "prediction" | "web_search_options" => {
                "lucid generates text only, from the request alone"
            }
            "min_tokens" | "use_beam_search" | "length_penalty" | "repetition_penalty"
            | "typical_p" | "mirostat" | "tfs_z" => "lucid does not apply it",
            _ => "lucid does not know this field, and ignoring it could change the answer",
        };
        return Err(ApiError::invalid(
            key,
            format!("`{key}` is not supported: {why}"),
        ));
    }
    Ok(())
}

pub(super) fn refuse_if_set<T>(param: &str, v: &Option<T>, why: &str) -> Result<(), ApiError> {
    if v.is_some() {
        return Err(ApiError::invalid(
            param,
            format!("`{param}` is not supported: {why}"),
        ));
    }
    Ok(())
}

/// The grammar for `response_format`, if it asks for JSON.
pub(crate) async fn grammar(
    format: Option<&ResponseFormat>,
) -> Result<Option<Arc<Grammar>>, ApiError> {
    match format {
        None | Some(ResponseFormat::Text {}) => Ok(None),
        Some(ResponseFormat::JsonObject {}) => Ok(Some(Arc::new(Grammar::any_object()))),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let Some(schema) = &json_schema.schema else {
                return Err(ApiError::invalid(
                    "response_format.json_schema.schema",
                    "json_schema needs a `schema`",
                ));
            };
            compile(schema.clone(), "response_format.json_schema.schema").await
        }
    }
}

/// vLLM's output constraints, read from a request's extra fields.
pub(super) const STRUCTURED_FIELDS: &[&str] = &[
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
];

/// The grammar of vLLM's constraints: `structured_outputs` with one of
/// `json` (a schema), `regex`, `choice` or `json_object: true`, or the
/// older top-level `guided_json`, `guided_regex`, `guided_choice`.
/// Compiled on the blocking pool, as `response_format` is; `None` when the
/// request sets none.
pub(super) async fn structured_outputs(
    other: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Arc<Grammar>>, ApiError> {
    use serde_json::Value;
    let mut set: Vec<(String, &str, Value)> = Vec::new();
    for key in ["guided_json", "guided_regex", "guided_choice"] {
        if let Some(v) = other.get(key).filter(|v| !v.is_null()) {
            set.push((key.to_owned(), &key[7..], v.clone()));
        }
    }
    match other.get("structured_outputs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (key, v) in fields.iter().filter(|(_, v)| !v.is_null()) {
                let param = format!("structured_outputs.{key}");
                let kind = match key.as_str() {
                    "json" => "json",
                    "regex" => "regex",
                    "choice" => "choice",
                    "json_object" if *v == Value::Bool(true) => "json_object",
                    "json_object" => continue,
                    _ => {
                        return Err(ApiError::invalid(
                            param,
                            format!(
                                "`{key}` is not supported (structured_outputs takes json, regex, \
                                 choice or json_object)"
                            ),
                        ));
                    }
                };
                set.push((param, kind, v.clone()));
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "structured_outputs",
                "structured_outputs must be an object",
            ));
        }
    }
    let (param, kind, value) = match set.len() {
        0 => return Ok(None),
        1 => set.remove(0),
        _ => {
            return Err(ApiError::invalid(
                set[1].0.clone(),
                format!(
                    "only one output constraint may be given ({})",
                    set.iter()
                        .map(|s| s.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    };
    let kind = kind.to_owned();
    crate::prompt::blocking("compiling the output constraint", move || {
        let invalid = |message: String| ApiError::invalid(&param, message);
        let grammar = match (kind.as_str(), &value) {
            ("json_object", _) => Ok(Grammar::any_object()),
            // vLLM takes a schema as an object or as JSON text.
            ("json", Value::String(text)) => {
                let schema = lucid_scheduler::Json::parse(text)
                    .map_err(|e| invalid(format!("the schema is not JSON: {e}")))?;
                Grammar::from_schema(&schema)
            }
            ("json", schema) => Grammar::from_schema(&lucid_scheduler::Json::from(schema)),
            ("regex", Value::String(regex)) => Grammar::regex(regex),
            ("choice", Value::Array(items)) => {
                let choices = items
                    .iter()
                    .map(|c| c.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| invalid("the choices must be strings".into()))?;
                Grammar::choice(&choices)
            }
            ("regex", _) => return Err(invalid("a regex must be a string".into())),
            _ => return Err(invalid("the choices must be a list of strings".into())),
        };
        grammar
            .map(|g| Some(Arc::new(g)))
            .map_err(|e| invalid(e.to_string()))
    })
    .await
}

/// Compiles a JSON schema on the blocking pool: a `pattern` or a string
/// length becomes a DFA, which can take a good part of a second to build
/// (within its size bound), too long for an async worker.
pub(crate) async fn compile(
    schema: lucid_scheduler::Json,
    param: &'static str,
) -> Result<Option<Arc<Grammar>>, ApiError> {
    crate::prompt::blocking("compiling the schema", move || {
        Grammar::from_schema(&schema)
            .map(|g| Some(Arc::new(g)))
            .map_err(|e| ApiError::invalid(param, e.to_string()))
    })
    .await
}

/// The engine's messages from OpenAI's; `developer` is a system message,
/// an assistant's `tool_calls` and a `tool` message's result are kept for
/// the template.
pub(crate) fn messages(msgs: &[Message]) -> Result<Vec<ChatMessage>, ApiError> {
    if msgs.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role"),
                        format!(
                            "role `{other}` is not supported (system, developer, user, assistant, tool)"
                        ),
                    ));
                }
            };
            refuse_extra(&m.other, &format!("messages[{i}]"))?;
            let mut message = ChatMessage::new(role, content_text(m.content.as_ref(), i)?);
            if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
                if role != Role::Assistant {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].tool_calls"),
                        "only an assistant's message has tool calls",
                    ));
                }
                for (j, call) in calls.iter().enumerate() {
                    let at = format!("messages[{i}].tool_calls[{j}]");
                    refuse_extra(&call.other, &at)?;
                    refuse_extra(&call.function.other, &format!("{at}.function"))?;
                    if call.kind.as_deref().is_some_and(|k| k != "function") {
                        return Err(ApiError::invalid(
                            format!("{at}.type"),
                            "only `function` tool calls are supported",
                        ));
                    }
                    let arguments: serde_json::Value =
                        serde_json::from_str(&call.function.arguments).map_err(|e| {
                            ApiError::invalid(
                                format!("{at}.function.arguments"),
                                format!("the arguments are not JSON: {e}"),
                            )
                        })?;
                    message.tool_calls.push(lucid_engine::ToolCall {
                        id: call.id.clone().unwrap_or_else(|| format!("call_{j}")),
                        kind: "function".into(),
                        function: lucid_engine::FunctionCall {
                            name: call.function.name.clone(),
                            arguments,
                        },
                    });
                }
            }
            if role == Role::Tool {
                message.tool_call_id = m.tool_call_id.clone();
                // The tool's name, shown with its result.
                message.name = m.name.clone();
            } else if m.name.is_some() {
                return Err(ApiError::invalid(
                    format!("messages[{i}].name"),
                    "a participant's `name` is not supported (it is on a `tool` message: \
                     the tool's)",
                ));
            }
            Ok(message)
        })
        .collect()
}

fn content_text(c: Option<&Content>, i: usize) -> Result<String, ApiError> {
    match c {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t.clone()),
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => {
                        refuse_extra(&p.other, &format!("messages[{i}].content[{j}]"))?;
                        out.push_str(t);
                    }
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("messages[{i}].content[{j}]"),
                            format!("content parts of type `{kind}` are not supported; send text"),
                        ));
                    }
                }
            }
            Ok(out)
        }
    }
}
