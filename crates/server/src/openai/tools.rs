//! Tool calling on the chat route: the `tools` a request offers, its
//! `tool_choice`, and the calls read from a reply.
//!
//! The model sees the tools as its chat template renders them, or written
//! into the conversation for a template that does not
//! (`lucid_engine::tools`). With `tool_choice` `auto` the reply may call
//! any of them, in the Hermes tags or as one JSON object; with `required`
//! or a named function, decoding is constrained by a JSON-schema grammar to
//! one call of an offered function whose arguments match its `parameters`,
//! so they always parse and validate; with `none` the tools are not shown.

use std::sync::Arc;

use lucid_engine::tools::{ReadCall, read_calls};
use lucid_scheduler::{Grammar, Json, Request};
use serde_json::{Value, json};

use super::params::compile;
use super::wire::{DeltaFunction, DeltaToolCall, OutFunctionCall, OutToolCall};
use crate::error::ApiError;
use crate::generate;
use crate::state::{AppState, LocalModel};

/// What a request asks of tools.
#[derive(Debug)]
pub(crate) struct ToolUse {
    /// The tools as the template (or the written conversation) shows them;
    /// `None` with `tool_choice: "none"`.
    pub shown: Option<Value>,
    choice: Choice,
    parallel: bool,
    names: Vec<String>,
    /// Each function's `parameters` schema, by name.
    parameters: Vec<Value>,
}

#[derive(Debug, PartialEq)]
enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

/// The request's tools and choice; `None` when it offers no tools.
pub(crate) fn tool_use(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<ToolUse>, ApiError> {
    let list = match tools {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::invalid("tools", "tools must be a list")),
    };
    let mut names = Vec::with_capacity(list.len());
    let mut parameters = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid(
                format!("{at}.type"),
                "only tools of type `function` are supported",
            ));
        }
        let function = tool
            .get("function")
            .filter(|f| f.is_object())
            .ok_or_else(|| {
                ApiError::invalid(format!("{at}.function"), "a tool needs its `function`")
            })?;
        for (object, known, at) in [
            (tool, &["type", "function"][..], at.clone()),
            (
                function,
                &["name", "description", "parameters", "strict"][..],
                format!("{at}.function"),
            ),
        ] {
            if let Some(fields) = object.as_object() {
                let other = fields
                    .iter()
                    .filter(|(k, _)| !known.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                crate::body::refuse_extra(&other, &at)?;
            }
        }
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(ApiError::invalid(
                format!("{at}.function.name"),
                "a function's name must be 1 to 64 letters, digits, `_` or `-`",
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(ApiError::invalid(
                format!("{at}.function.name"),
                format!("two tools are named `{name}`"),
            ));
        }
        let params = function
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        if !params.is_object() {
            return Err(ApiError::invalid(
                format!("{at}.function.parameters"),
                "parameters must be a JSON schema object",
            ));
        }
        names.push(name.to_owned());
        parameters.push(params);
    }
    let choice = match choice {
        None | Some(Value::Null) => Choice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => Choice::None,
            "auto" => Choice::Auto,
            "required" => Choice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("tool_choice `{other}` is not one of none, auto, required"),
                ));
            }
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "tool_choice",
                        "tool_choice is none, auto, required or {\"type\": \"function\", \"function\": {\"name\": …}}",
                    )
                })?;
            if !names.iter().any(|n| n == name) {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("tool_choice names `{name}`, which is not among the tools"),
                ));
            }
            Choice::Named(name.to_owned())
        }
    };
    if names.is_empty() {
        return match choice {
            Choice::Required | Choice::Named(_) => Err(ApiError::invalid(
                "tool_choice",
                "tool_choice asks for a call, but there are no tools",
            )),
            _ => Ok(None),
        };
    }
    Ok(Some(ToolUse {
        shown: (choice != Choice::None).then(|| Value::Array(list.clone())),
        choice,
        parallel: parallel.unwrap_or(true),
        names,
        parameters,
    }))
}

impl ToolUse {
    /// Whether the reply is read for calls.
    pub fn may_call(&self) -> bool {
        self.choice != Choice::None
    }

    /// Whether `tool_choice` asks for a call (`required`, or a function).
    pub fn forces_a_call(&self) -> bool {
        matches!(self.choice, Choice::Required | Choice::Named(_))
    }

    /// The function a call must be of, when the request says (a named
    /// choice, or `required` with one tool).
    pub fn forced_name(&self) -> Option<&str> {
        match &self.choice {
            Choice::Named(name) => Some(name),
            Choice::Required if self.names.len() == 1 => Some(&self.names[0]),
            _ => None,
        }
    }

    /// The grammar of the name of one offered function (a JSON string), for
    /// `required` with several tools: the model chooses the function first.
    /// (A grammar for any of several calls at once would be a union of
    /// objects, which constrained decoding cannot tell apart by their first
    /// byte.)
    pub async fn name_grammar(&self) -> Result<Option<Arc<Grammar>>, ApiError> {
        compile(Json::from(&json!({"enum": self.names})), "tools").await
    }

    /// The grammar of one call of `name`: `{"name": …, "arguments": …}`
    /// with the arguments as its `parameters` say, the name first (so that
    /// a streamed call can say which function it is before its arguments).
    pub async fn call_grammar(&self, name: &str) -> Result<Option<Arc<Grammar>>, ApiError> {
        let i = self.names.iter().position(|n| n == name).unwrap_or(0);
        let field = |k: &str, v: Json| (k.to_owned(), v);
        // `Json` keeps the order written; `json!` would sort the keys.
        let schema = Json::Object(vec![
            field("type", Json::String("object".into())),
            field(
                "properties",
                Json::Object(vec![
                    field(
                        "name",
                        Json::Object(vec![field("const", Json::String(name.to_owned()))]),
                    ),
                    field("arguments", Json::from(&self.parameters[i])),
                ]),
            ),
            field(
                "required",
                Json::Array(vec![
                    Json::String("name".into()),
                    Json::String("arguments".into()),
                ]),
            ),
            field("additionalProperties", Json::Bool(false)),
        ]);
        compile(schema, "tools").await
    }

    /// The requests for `n` choices that must call a tool: each constrained
    /// to one call of its function, which the model first chooses (under a
    /// grammar of the functions' names) when the request does not name one.
    pub async fn forced_requests(
        &self,
        state: &AppState,
        lm: &LocalModel,
        request: &Request,
        n: usize,
    ) -> Result<Vec<Request>, ApiError> {
        let names: Vec<String> = match self.forced_name() {
            Some(name) => vec![name.to_owned(); n],
            None => {
                let choose = Request {
                    max_tokens: Some(64),
                    grammar: self.name_grammar().await?,
                    logprobs: None,
                    stop: Vec::new(),
                    ..request.clone()
                };
                let gens = generate::submit_n(lm, &choose, n, "messages")?;
                let merged = generate::merge(state, &lm.name, gens, 0);
                generate::collect(merged, n)
                    .await?
                    .iter()
                    .map(|c| {
                        self.chosen(&c.text).ok_or_else(|| {
                            ApiError::internal(format!("no function was chosen: {:?}", c.text))
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let mut requests = Vec::with_capacity(n);
        for name in names {
            requests.push(Request {
                grammar: self.call_grammar(&name).await?,
                ..request.clone()
            });
        }
        Ok(requests)
    }

    /// The function named in a reply written under [`ToolUse::name_grammar`].
    pub fn chosen(&self, reply: &str) -> Option<String> {
        let name: String = serde_json::from_str(reply.trim()).ok()?;
        self.names.contains(&name).then_some(name)
    }

    /// The reply's text and calls: calls of offered functions only (a call
    /// of another name stays text), at most one unless parallel calls are
    /// allowed. Content is `None` when nothing but calls was written.
    pub fn read(&self, text: &str) -> (Option<String>, Vec<OutToolCall>) {
        let (content, calls) = self.read_calls(text);
        let calls = calls
            .into_iter()
            .map(|c| OutToolCall {
                id: format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
                kind: "function",
                function: OutFunctionCall {
                    name: c.name,
                    arguments: c.arguments.to_string(),
                },
            })
            .collect();
        (content, calls)
    }

    /// [`ToolUse::read`] with the arguments as objects (Ollama's shape).
    pub fn read_calls(&self, text: &str) -> (Option<String>, Vec<ReadCall>) {
        if !self.may_call() {
            return (Some(text.to_owned()), Vec::new());
        }
        let (rest, calls) = read_calls(text);
        let (known, unknown): (Vec<ReadCall>, Vec<ReadCall>) = calls
            .into_iter()
            .partition(|c| self.names.contains(&c.name));
        if known.is_empty() || !unknown.is_empty() {
            return (Some(text.to_owned()), Vec::new());
        }
        let take = if self.parallel { known.len() } else { 1 };
        let calls = known.into_iter().take(take).collect();
        ((!rest.is_empty()).then_some(rest), calls)
    }
}

/// A call streamed as the model writes it, under a grammar that forces
/// one call (`{"name": …, "arguments": {…}}`): its id, type and name once
/// the arguments begin, then the arguments as they come. The last byte so
/// far (and the spaces before it) is held back, since the call's closing
/// `}` is not part of the arguments.
#[derive(Debug, Default)]
pub(crate) struct CallStream {
    id: String,
    /// Where the arguments begin in the text, once they have.
    start: Option<usize>,
    /// How much of the text has been sent.
    sent: usize,
}

impl CallStream {
    /// The delta for `text` (all the reply so far), if there is more to
    /// send. `end`: `None` while the reply goes on; when it has ended,
    /// whether the call is complete (its closing `}` written) or was cut
    /// short (everything is sent).
    pub fn delta(&mut self, text: &str, end: Option<bool>) -> Option<DeltaToolCall> {
        const KEY: &str = "\"arguments\"";
        let mut name = None;
        if self.start.is_none() {
            let at = text.find(KEY)?;
            // The colon, after at most a space.
            let colon = at + KEY.len() + text[at + KEY.len()..].find(':')?;
            // `{"name": "f", `: names are letters, digits, `_` and `-`.
            name = Some(text[..at].split('"').nth(3)?.to_owned());
            self.start = Some(colon + 1);
            self.sent = colon + 1;
            self.id = format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        }
        let mut start = self.start?;
        if self.sent == start {
            // Nothing of the arguments sent yet: the spaces before them are
            // not theirs.
            start = text.len() - text[start..].trim_start().len();
            self.start = Some(start);
            self.sent = start;
        }
        let until = match end {
            Some(false) => text.len(),
            Some(true) => text.trim_end().strip_suffix('}')?.trim_end().len(),
            None => {
                let trimmed = text.trim_end();
                let last = trimmed.char_indices().last().map_or(0, |(i, _)| i);
                text[..last].trim_end().len()
            }
        };
        let from = self.sent.max(start);
        let arguments = text.get(from..until.max(from))?.to_owned();
        if arguments.is_empty() && name.is_none() {
            return None;
        }
        self.sent = until.max(from);
        Some(DeltaToolCall {
            index: 0,
            id: name.is_some().then(|| self.id.clone()),
            kind: name.is_some().then_some("function"),
            function: DeltaFunction { name, arguments },
        })
    }

    /// Whether the call has begun (its name was sent).
    pub fn started(&self) -> bool {
        self.start.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Value {
        json!([{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}])
    }

    #[test]
    fn choices_and_their_errors() {
        let t = tools();
        let auto = tool_use(Some(&t), None, None).unwrap().unwrap();
        assert!(auto.may_call() && auto.shown.is_some());
        let none = tool_use(Some(&t), Some(&json!("none")), None)
            .unwrap()
            .unwrap();
        assert!(!none.may_call() && none.shown.is_none());
        assert!(tool_use(Some(&json!([])), None, None).unwrap().is_none());
        for (tools, choice, param) in [
            (json!([{"type": "retrieval"}]), Value::Null, "tools[0].type"),
            (
                json!([{"type": "function", "function": {"name": "a b"}}]),
                Value::Null,
                "tools[0].function.name",
            ),
            (t.clone(), json!("sometimes"), "tool_choice"),
            (
                t.clone(),
                json!({"type": "function", "function": {"name": "nope"}}),
                "tool_choice",
            ),
            (json!([]), json!("required"), "tool_choice"),
        ] {
            let err = tool_use(Some(&tools), Some(&choice), None).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{}", err.message);
        }
    }

    /// A forced call streamed token by token: the pieces join to the
    /// arguments exactly, the name comes once, the call's own `}` never.
    #[test]
    fn a_forced_call_streams_its_arguments_as_they_come() {
        let full = "{\"name\": \"weather\", \"arguments\": {\"city\": \"Pa ris\", \"n\": {}} }";
        for step in [1, 2, 3, 7] {
            let mut stream = CallStream::default();
            let (mut names, mut arguments) = (Vec::new(), String::new());
            let mut text = String::new();
            let chars: Vec<char> = full.chars().collect();
            for piece in chars.chunks(step) {
                text.extend(piece);
                if let Some(d) = stream.delta(&text, None) {
                    names.extend(d.function.name);
                    arguments.push_str(&d.function.arguments);
                }
            }
            if let Some(d) = stream.delta(&text, Some(true)) {
                names.extend(d.function.name);
                arguments.push_str(&d.function.arguments);
            }
            assert_eq!(names, ["weather"], "step {step}");
            assert_eq!(
                arguments, "{\"city\": \"Pa ris\", \"n\": {}}",
                "step {step}"
            );
        }
        // Cut short: everything written is sent.
        let mut stream = CallStream::default();
        let d = stream
            .delta("{\"name\": \"f\", \"arguments\": {\"a\": 1", Some(false))
            .unwrap();
        assert_eq!(d.function.arguments, "{\"a\": 1");
        assert!(
            CallStream::default()
                .delta("{\"name\": \"f\"", None)
                .is_none()
        );
    }

    #[test]
    fn calls_of_offered_functions_are_read() {
        let t = tools();
        let auto = tool_use(Some(&t), None, Some(false)).unwrap().unwrap();
        let (content, calls) = auto.read(
            "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>\
             <tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Rome\"}}</tool_call>",
        );
        assert_eq!(content, None);
        assert_eq!(calls.len(), 1, "parallel calls are off");
        assert_eq!(calls[0].function.name, "weather");
        assert_eq!(calls[0].function.arguments, "{\"city\":\"Paris\"}");
        assert!(calls[0].id.starts_with("call_"));
        let (content, calls) = auto.read("{\"name\": \"search\", \"arguments\": {}}");
        assert!(calls.is_empty(), "not an offered function");
        assert_eq!(
            content.as_deref(),
            Some("{\"name\": \"search\", \"arguments\": {}}")
        );
    }
}
