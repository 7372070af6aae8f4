//! A fake of Anthropic's Messages API (`POST /v1/messages`), from the API
//! reference: `x-api-key` and `anthropic-version` required, `max_tokens`
//! required, `system` only as a top-level field (a `system` role in
//! `messages` is refused with the real message), extra fields refused
//! ("Extra inputs are not permitted"), the `message` object, the named SSE
//! events `message_start` … `message_stop` with a `ping` after the first
//! content block starts, and `{"type":"error","error":{"type","message"}}`.

use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Call, Incoming, Script, Vendor, json_response, named_event, words};

/// The Anthropic fake.
pub struct Anthropic;

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
];

fn error_body(status: u16, kind: &str, message: &str) -> Response {
    json_response(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn invalid(message: &str) -> Response {
    error_body(400, "invalid_request_error", message)
}

fn number_in(body: &Value, field: &str, lo: f64, hi: f64) -> Result<(), Response> {
    match body.get(field) {
        None => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(()),
            _ => Err(invalid(&format!(
                "{field}: Input should be a number from {lo} to {hi}"
            ))),
        },
    }
}

/// The model id the API reports for an alias.
pub fn resolved(model: &str) -> String {
    model.replace("-latest", "-20241022")
}

impl Vendor for Anthropic {
    fn base_path(&self) -> &'static str {
        ""
    }

    fn check(&self, key: &str, req: &Incoming<'_>) -> Result<Call, Response> {
        if req.method != Method::POST || req.path != "/v1/messages" {
            return Err(error_body(404, "not_found_error", "Not found"));
        }
        match req.header("x-api-key") {
            None => {
                return Err(error_body(
                    401,
                    "authentication_error",
                    "x-api-key header is required",
                ));
            }
            Some(k) if k != key => {
                return Err(error_body(401, "authentication_error", "invalid x-api-key"));
            }
            Some(_) => {}
        }
        if req.header("anthropic-version").is_none() {
            return Err(invalid("anthropic-version: header is required"));
        }
        if !req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return Err(invalid("content-type: must be application/json"));
        }
        let body: Value = serde_json::from_slice(req.body)
            .map_err(|_| invalid("The request body is not valid JSON."))?;
        let Some(obj) = body.as_object() else {
            return Err(invalid("The request body must be a JSON object."));
        };
        for field in obj.keys() {
            if !FIELDS.contains(&field.as_str()) {
                return Err(invalid(&format!("{field}: Extra inputs are not permitted")));
            }
        }
        let model = body["model"]
            .as_str()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid("model: Field required"))?;
        let max_tokens = body
            .get("max_tokens")
            .ok_or_else(|| invalid("max_tokens: Field required"))?
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid("max_tokens: Input should be a positive integer"))?;
        let mut prompt_tokens = 0;
        match body.get("system") {
            None => {}
            Some(Value::String(s)) => prompt_tokens += words(s),
            Some(_) => {
                return Err(invalid(
                    "system: Input should be a valid string or list of text blocks",
                ));
            }
        }
        let messages = body["messages"]
            .as_array()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid("messages: Field required"))?;
        for m in messages {
            match m["role"].as_str() {
                Some("user" | "assistant") => {}
                Some("system") => {
                    return Err(invalid(
                        "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.",
                    ));
                }
                _ => {
                    return Err(invalid(
                        "messages.0.role: Input should be 'user' or 'assistant'",
                    ));
                }
            }
            let content = m["content"]
                .as_str()
                .ok_or_else(|| invalid("messages.0.content: Input should be a valid string"))?;
            prompt_tokens += words(content);
        }
        if messages[0]["role"] != "user" {
            return Err(invalid(
                "messages: first message must use the \"user\" role",
            ));
        }
        number_in(&body, "temperature", 0.0, 1.0)?;
        number_in(&body, "top_p", 0.0, 1.0)?;
        if body.get("top_k").is_some_and(|k| k.as_u64().is_none()) {
            return Err(invalid("top_k: Input should be a valid integer"));
        }
        if body
            .get("stop_sequences")
            .is_some_and(|s| !s.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            return Err(invalid(
                "stop_sequences: Input should be a valid list of strings",
            ));
        }
        Ok(Call {
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            model: model.to_owned(),
            prompt_tokens,
            max_tokens: Some(max_tokens as u32),
            logprobs: None,
            include_usage: false,
        })
    }

    fn error(&self, status: u16, message: &str) -> Response {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        error_body(status, kind, message)
    }

    fn complete(&self, call: &Call) -> Response {
        let (pieces, cut) = call.pieces();
        json_response(
            200,
            json!({
                "id": "msg_fake1",
                "type": "message",
                "role": "assistant",
                "model": resolved(&call.model),
                "content": [{"type": "text", "text": pieces.concat()}],
                "stop_reason": if cut { "max_tokens" } else { "end_turn" },
                "stop_sequence": null,
                "usage": {"input_tokens": call.prompt_tokens, "output_tokens": pieces.len()},
            }),
        )
    }

    fn script(&self, call: &Call) -> Script {
        let (pieces, cut) = call.pieces();
        let head = vec![
            named_event(
                "message_start",
                &json!({"type": "message_start", "message": {"id": "msg_fake1", "type": "message", "role": "assistant", "content": [], "model": resolved(&call.model), "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": call.prompt_tokens, "output_tokens": 1}}}),
            ),
            named_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            self.ping(),
        ];
        let deltas = pieces
            .iter()
            .map(|p| named_event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})))
            .collect();
        let tail = vec![
            named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            named_event(
                "message_delta",
                &json!({"type": "message_delta", "delta": {"stop_reason": if cut { "max_tokens" } else { "end_turn" }, "stop_sequence": null}, "usage": {"output_tokens": pieces.len()}}),
            ),
            named_event("message_stop", &json!({"type": "message_stop"})),
        ];
        Script { head, deltas, tail }
    }

    fn endless_delta(&self, _call: &Call) -> String {
        named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "tick "}}),
        )
    }

    fn ping(&self) -> String {
        named_event("ping", &json!({"type": "ping"}))
    }

    fn error_event(&self) -> String {
        named_event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        )
    }

    fn malformed_event(&self) -> String {
        "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"oops\n\n".to_owned()
    }
}
