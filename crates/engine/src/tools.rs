//! Tool use in a conversation: how a model is shown the tools it may call
//! and the calls and results so far, and how its calls are read back from
//! what it writes.
//!
//! A chat template that reads `tools` (Qwen 2.5's, Hermes', Llama 3.1's)
//! renders them its own way. For one that does not (SmolLM2's, ChatML), the
//! conversation is rewritten ([`written_in`]) in the Hermes format that
//! many open models were trained on: the tools as JSON in the system
//! message, each call as `<tool_call>{"name": …, "arguments": {…}}</tool_call>`
//! in the assistant's turn, each result as `<tool_response>…</tool_response>`
//! in a user turn.
//!
//! [`read_calls`] reads calls back in the formats models write: Hermes
//! and Qwen tags (`<tool_call>…</tool_call>`, any number); Mistral's
//! `[TOOL_CALLS]` followed by a JSON list of calls (the marker is a control
//! token, so usually only the list is in the text), or its newer
//! `[TOOL_CALLS]name[ARGS]{…}`; Llama 3's JSON object with `parameters`,
//! after `<|python_tag|>` when that is shown, several separated by `;`; or
//! a reply that is one JSON object with `name` and `arguments`, as
//! constrained decoding writes it. A reply is read in the one format that
//! holds calls, so one reader serves every template and no model is
//! recognised by name.

use serde_json::Value;

use crate::chat::{ChatMessage, Role};

/// The conversation with the tools and tool turns written into it, for a
/// template that does not read `tools`. `tools` is OpenAI's list
/// (`[{"type": "function", "function": {…}}]`); `None` when the model may
/// not call any, in which case only earlier calls and results are written.
pub fn written_in(messages: &[ChatMessage], tools: Option<&Value>) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(listing) = tools.and_then(describe) {
        match messages.first() {
            Some(first) if first.role == Role::System => {
                out.push(ChatMessage::new(
                    Role::System,
                    format!("{}\n\n{listing}", first.content),
                ));
            }
            _ => out.push(ChatMessage::new(Role::System, listing)),
        }
    }
    let skip =
        usize::from(!out.is_empty() && messages.first().is_some_and(|m| m.role == Role::System));
    for m in &messages[skip..] {
        match m.role {
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut text = m.content.clone();
                for call in &m.tool_calls {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&format!(
                        "<tool_call>\n{{\"name\": {}, \"arguments\": {}}}\n</tool_call>",
                        Value::from(call.function.name.as_str()),
                        call.function.arguments
                    ));
                }
                out.push(ChatMessage::new(Role::Assistant, text));
            }
            // With the tool's name when the client gave it, as Hermes
            // writes a result.
            Role::Tool => out.push(ChatMessage::new(
                Role::User,
                match &m.name {
                    Some(name) => format!(
                        "<tool_response>\n{{\"name\": {}, \"content\": {}}}\n</tool_response>",
                        Value::from(name.as_str()),
                        Value::from(m.content.as_str())
                    ),
                    None => format!("<tool_response>\n{}\n</tool_response>", m.content),
                },
            )),
            _ => out.push(m.clone()),
        }
    }
    out
}

/// The system message's part about tools: each function's schema as one
/// JSON line, and how to call one.
fn describe(tools: &Value) -> Option<String> {
    let list = tools.as_array().filter(|l| !l.is_empty())?;
    let lines: Vec<String> = list
        .iter()
        .map(|t| t.get("function").unwrap_or(t).to_string())
        .collect();
    Some(format!(
        "You may call one or more functions to help with the user's request. \
         The functions, as JSON schemas:\n<tools>\n{}\n</tools>\n\
         To call a function, reply with a JSON object with its name and arguments \
         within <tool_call></tool_call> tags:\n\
         <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>",
        lines.join("\n")
    ))
}

/// A call read from a model's reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadCall {
    pub name: String,
    /// A JSON object.
    pub arguments: Value,
}

/// The calls in `text` and the text around them (trimmed). A tag whose
/// content is not a call (malformed JSON, no name) is left in the text.
pub fn read_calls(text: &str) -> (String, Vec<ReadCall>) {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut calls = Vec::new();
    let mut rest = String::new();
    let mut tail = text;
    while let Some(start) = tail.find(OPEN) {
        let after = &tail[start + OPEN.len()..];
        // A call cut off by the token limit has no closing tag: the text
        // runs to the end.
        let (inner, consumed) = match after.find(CLOSE) {
            Some(end) => (&after[..end], start + OPEN.len() + end + CLOSE.len()),
            None => (after, tail.len()),
        };
        match call_of(inner) {
            Some(call) => {
                rest.push_str(&tail[..start]);
                calls.push(call);
            }
            None => rest.push_str(&tail[..consumed]),
        }
        tail = &tail[consumed..];
    }
    rest.push_str(tail);
    if calls.is_empty() {
        if let Some(calls) = whole_reply_calls(text) {
            return (String::new(), calls);
        }
        if let Some((before, calls)) = mistral_calls(text) {
            return (before, calls);
        }
    }
    (rest.trim().to_owned(), calls)
}

/// A reply that is nothing but calls: one JSON object, a JSON list of them
/// (Mistral), or objects separated by `;` (Llama 3), after
/// `<|python_tag|>` or `[TOOL_CALLS]` when those are shown.
fn whole_reply_calls(text: &str) -> Option<Vec<ReadCall>> {
    let text = text.trim();
    let text = text
        .strip_prefix("<|python_tag|>")
        .or_else(|| text.strip_prefix("[TOOL_CALLS]"))
        .unwrap_or(text)
        .trim();
    if let Some(call) = call_of(text) {
        return Some(vec![call]);
    }
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) {
        let calls: Option<Vec<ReadCall>> = items
            .iter()
            .map(|item| call_of(&item.to_string()))
            .collect();
        return calls.filter(|c| !c.is_empty());
    }
    if text.contains(';') {
        let calls: Option<Vec<ReadCall>> = text.split(';').map(call_of).collect();
        return calls.filter(|c| c.len() > 1);
    }
    None
}

/// Mistral's newer format, `[TOOL_CALLS]name[ARGS]{…}` for each call (the
/// markers shown as text), with the text before the first.
fn mistral_calls(text: &str) -> Option<(String, Vec<ReadCall>)> {
    const CALLS: &str = "[TOOL_CALLS]";
    const ARGS: &str = "[ARGS]";
    let start = text.find(CALLS)?;
    let mut calls = Vec::new();
    for part in text[start..].split(CALLS).filter(|p| !p.trim().is_empty()) {
        let (name, arguments) = part.split_once(ARGS)?;
        let arguments: Value = serde_json::from_str(arguments.trim()).ok()?;
        let name = name.trim();
        if name.is_empty() || !arguments.is_object() {
            return None;
        }
        calls.push(ReadCall {
            name: name.to_owned(),
            arguments,
        });
    }
    (!calls.is_empty()).then(|| (text[..start].trim().to_owned(), calls))
}

/// One JSON object with a string `name` and an object `arguments` (or
/// `parameters`; a JSON string holding an object is read too).
fn call_of(text: &str) -> Option<ReadCall> {
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    let name = value.get("name")?.as_str()?.to_owned();
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        None => Value::Object(serde_json::Map::new()),
        Some(Value::String(s)) => serde_json::from_str(s).ok()?,
        Some(v) => v.clone(),
    };
    arguments
        .is_object()
        .then_some(ReadCall { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ChatTemplate, FunctionCall, ToolCall};
    use serde_json::json;

    #[test]
    fn calls_are_read_in_hermes_tags_and_as_one_object() {
        let (text, calls) = read_calls(
            "Let me check.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"time\", \"arguments\": \"{}\"}</tool_call>",
        );
        assert_eq!(text, "Let me check.");
        assert_eq!(
            calls,
            vec![
                ReadCall {
                    name: "weather".into(),
                    arguments: json!({"city": "Paris"})
                },
                ReadCall {
                    name: "time".into(),
                    arguments: json!({})
                },
            ]
        );
        let (text, calls) = read_calls("{\"name\": \"f\", \"parameters\": {\"x\": 1}}");
        assert_eq!((text.as_str(), calls.len()), ("", 1));
        assert_eq!(calls[0].arguments, json!({"x": 1}));
        // Not calls: plain text, a malformed tag, arguments that are not an object.
        for plain in [
            "Paris is the capital.",
            "<tool_call>{not json}</tool_call>",
            "{\"name\": \"f\", \"arguments\": [1]}",
            "{\"city\": \"Paris\"}",
        ] {
            let (text, calls) = read_calls(plain);
            assert!(calls.is_empty(), "{plain}");
            assert_eq!(text, plain.trim());
        }
        // Cut off before its closing tag, but whole: still a call.
        let (_, calls) = read_calls("<tool_call>{\"name\": \"f\", \"arguments\": {}}");
        assert_eq!(calls.len(), 1);
    }

    /// Mistral's and Llama 3's formats, with their markers shown or not.
    #[test]
    fn calls_are_read_in_mistral_and_llama_formats() {
        let two = vec![
            ReadCall {
                name: "weather".into(),
                arguments: json!({"city": "Paris"}),
            },
            ReadCall {
                name: "time".into(),
                arguments: json!({"zone": "CET"}),
            },
        ];
        for reply in [
            // Mistral v3: the list after [TOOL_CALLS] (a control token).
            "[{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"time\", \"arguments\": {\"zone\": \"CET\"}}]",
            "[TOOL_CALLS] [{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"time\", \"arguments\": {\"zone\": \"CET\"}}]",
            // Mistral v11: name[ARGS]{...} per call.
            "[TOOL_CALLS]weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]time[ARGS]{\"zone\": \"CET\"}",
            // Llama 3.1: `parameters`, several separated by `;`.
            "<|python_tag|>{\"name\": \"weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"time\", \"parameters\": {\"zone\": \"CET\"}}",
            "{\"name\": \"weather\", \"parameters\": {\"city\": \"Paris\"}};{\"name\": \"time\", \"parameters\": {\"zone\": \"CET\"}}",
        ] {
            let (text, calls) = read_calls(reply);
            assert_eq!(calls, two, "{reply}");
            assert_eq!(text, "", "{reply}");
        }
        let (text, calls) = read_calls("Checking.[TOOL_CALLS]weather[ARGS]{\"city\": \"Paris\"}");
        assert_eq!((text.as_str(), calls.len()), ("Checking.", 1));
        // Lists and `;` that are not calls stay text.
        for plain in ["[1, 2, 3]", "[]", "a; b", "[TOOL_CALLS]weather[ARGS][1]"] {
            let (text, calls) = read_calls(plain);
            assert!(calls.is_empty(), "{plain}");
            assert_eq!(text, plain);
        }
    }

    /// A template that does not read `tools` gets them, and the calls and
    /// results so far, written into the conversation it does read.
    #[test]
    fn tools_and_tool_turns_are_written_for_a_template_without_them() {
        let tools = json!([{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        let mut call = ChatMessage::new(Role::Assistant, "");
        call.tool_calls.push(ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "weather".into(),
                arguments: json!({"city": "Paris"}),
            },
        });
        let mut result = ChatMessage::new(Role::Tool, "18 degrees");
        result.tool_call_id = Some("call_1".into());
        let conversation = [
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Weather in Paris?"),
            call,
            result,
        ];
        let written = written_in(&conversation, Some(&tools));
        let roles: Vec<Role> = written.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert!(written[0].content.starts_with("Be brief.\n\n"));
        assert!(written[0].content.contains("\"name\":\"weather\""));
        assert_eq!(
            written[2].content,
            "<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>"
        );
        assert_eq!(
            written[3].content,
            "<tool_response>\n18 degrees\n</tool_response>"
        );
        let mut named = conversation.clone();
        named[3].name = Some("weather".into());
        assert_eq!(
            written_in(&named, Some(&tools))[3].content,
            "<tool_response>\n{\"name\": \"weather\", \"content\": \"18 degrees\"}\n</tool_response>"
        );
        // What it writes reads back as the same call.
        let (_, calls) = read_calls(&written[2].content);
        assert_eq!(calls[0].name, "weather");
        let chatml = ChatTemplate::new(None, "", "").unwrap();
        assert!(!chatml.reads_tools());
        let prompt = chatml.render(&written, true).unwrap();
        assert!(
            prompt.contains("<|im_start|>user\n<tool_response>"),
            "{prompt}"
        );
    }
}
