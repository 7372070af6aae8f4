//! A fake of OpenAI's Chat Completions API (`POST /v1/chat/completions`),
//! from the API reference: `Authorization: Bearer`, the request fields and
//! their ranges, unknown fields rejected ("Unrecognized request argument
//! supplied"), the `chat.completion` object, `chat.completion.chunk` events
//! with `choices[].delta`, a usage-only chunk when
//! `stream_options.include_usage` is set, and `data: [DONE]`.
//!
//! In compat mode it plays an OpenAI-compatible server such as vLLM: the
//! non-standard `top_k` is accepted, and a key is checked only if one is set.

use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Call, Incoming, Script, Vendor, data_event, json_response, words};

/// The OpenAI fake.
#[derive(Default)]
pub struct OpenAi {
    /// Plays an OpenAI-compatible server instead of OpenAI.
    pub compat: bool,
    /// Compat mode: whether a key is required at all.
    pub compat_key: bool,
}

impl OpenAi {
    pub fn new() -> Self {
        OpenAi::default()
    }

    /// A compatible server; `key` says whether it wants a key.
    pub fn compat(key: bool) -> Self {
        OpenAi {
            compat: true,
            compat_key: key,
        }
    }
}

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "tools",
    "tool_choice",
    "response_format",
];

fn invalid(message: &str, param: Option<&str>) -> Response {
    json_response(
        400,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}}),
    )
}

fn number_in(body: &Value, field: &str, lo: f64, hi: f64) -> Result<(), Response> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(()),
            _ => Err(invalid(
                &format!("Invalid '{field}': expected a number from {lo} to {hi}."),
                Some(field),
            )),
        },
    }
}

impl Vendor for OpenAi {
    fn base_path(&self) -> &'static str {
        "/v1"
    }

    fn check(&self, key: &str, req: &Incoming<'_>) -> Result<Call, Response> {
        if req.method != Method::POST || req.path != "/v1/chat/completions" {
            return Err(json_response(
                404,
                json!({"error": {"message": format!("Invalid URL ({} {})", req.method, req.path), "type": "invalid_request_error", "param": null, "code": null}}),
            ));
        }
        let auth = req.header("authorization");
        let needs_key = !self.compat || self.compat_key;
        if needs_key {
            match auth.and_then(|a| a.strip_prefix("Bearer ")) {
                None => {
                    return Err(json_response(
                        401,
                        json!({"error": {"message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "type": "invalid_request_error", "param": null, "code": null}}),
                    ));
                }
                // Real OpenAI masks the key it echoes; some compatible
                // servers do not, which is the case the client must survive.
                Some(given) if given != key => {
                    return Err(json_response(
                        401,
                        json!({"error": {"message": format!("Incorrect API key provided: {given}."), "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
                    ));
                }
                Some(_) => {}
            }
        } else if auth.is_some() {
            return Err(invalid(
                "this compatible server was configured without keys, but one was sent",
                None,
            ));
        }
        if !req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return Err(invalid("Content-Type must be application/json", None));
        }
        let body: Value = serde_json::from_slice(req.body)
            .map_err(|_| invalid("We could not parse the JSON body of your request.", None))?;
        let Some(obj) = body.as_object() else {
            return Err(invalid("The request body must be a JSON object.", None));
        };
        for field in obj.keys() {
            let allowed = FIELDS.contains(&field.as_str()) || (self.compat && field == "top_k");
            if !allowed {
                return Err(invalid(
                    &format!("Unrecognized request argument supplied: {field}"),
                    None,
                ));
            }
        }
        let model = body["model"]
            .as_str()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid("you must provide a model parameter", Some("model")))?;
        let messages = body["messages"]
            .as_array()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                invalid(
                    "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                    Some("messages"),
                )
            })?;
        let mut prompt_tokens = 0;
        for m in messages {
            let role = m["role"].as_str().unwrap_or_default();
            if !["system", "developer", "user", "assistant"].contains(&role) {
                return Err(invalid(
                    &format!(
                        "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user'."
                    ),
                    Some("messages"),
                ));
            }
            let content = m["content"]
                .as_str()
                .ok_or_else(|| invalid("message content must be a string", Some("messages")))?;
            prompt_tokens += words(content);
        }
        number_in(&body, "temperature", 0.0, 2.0)?;
        number_in(&body, "top_p", 0.0, 1.0)?;
        number_in(&body, "presence_penalty", -2.0, 2.0)?;
        number_in(&body, "frequency_penalty", -2.0, 2.0)?;
        if let Some(stop) = body.get("stop") {
            let ok = stop.is_string()
                || stop
                    .as_array()
                    .is_some_and(|a| a.len() <= 4 && a.iter().all(Value::is_string));
            if !ok {
                return Err(invalid(
                    "Invalid 'stop': expected a string or an array of at most 4 strings.",
                    Some("stop"),
                ));
            }
        }
        if body.get("max_tokens").is_some() && body.get("max_completion_tokens").is_some() {
            return Err(invalid(
                "max_tokens and max_completion_tokens cannot both be set",
                Some("max_tokens"),
            ));
        }
        let max_tokens = body.get("max_completion_tokens").or(body.get("max_tokens"));
        let max_tokens = match max_tokens {
            None => None,
            Some(v) => Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                invalid(
                    "Invalid 'max_tokens': expected a positive integer.",
                    Some("max_tokens"),
                )
            })? as u32),
        };
        let logprobs = body
            .get("logprobs")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let top_logprobs = match body.get("top_logprobs") {
            None => None,
            Some(v) => {
                let n = v.as_u64().filter(|n| *n <= 20).ok_or_else(|| {
                    invalid(
                        "Invalid 'top_logprobs': expected an integer from 0 to 20.",
                        Some("top_logprobs"),
                    )
                })?;
                if !logprobs {
                    return Err(invalid(
                        "Invalid value for 'top_logprobs': logprobs must be set to true if top_logprobs is used.",
                        Some("top_logprobs"),
                    ));
                }
                Some(n as u8)
            }
        };
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        if body.get("stream_options").is_some() && !stream {
            return Err(invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                Some("stream_options"),
            ));
        }
        let include_usage = body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        Ok(Call {
            stream,
            model: model.to_owned(),
            prompt_tokens,
            max_tokens,
            logprobs: if logprobs {
                Some(top_logprobs.unwrap_or(0))
            } else {
                None
            },
            include_usage,
        })
    }

    fn error(&self, status: u16, message: &str) -> Response {
        let kind = match status {
            429 => "rate_limit_exceeded",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        json_response(
            status,
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
        )
    }

    fn complete(&self, call: &Call) -> Response {
        let (pieces, cut) = call.pieces();
        let text: String = pieces.concat();
        let completion = pieces.len() as u32;
        json_response(
            200,
            json!({
                "id": "chatcmpl-fake1",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": snapshot(&call.model),
                "system_fingerprint": "fp_fake",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null},
                    "logprobs": call.logprobs.map(|n| json!({"content": pieces.iter().map(|p| logprob(p, n)).collect::<Vec<_>>(), "refusal": null})),
                    "finish_reason": if cut { "length" } else { "stop" },
                }],
                "usage": {"prompt_tokens": call.prompt_tokens, "completion_tokens": completion, "total_tokens": call.prompt_tokens + completion},
            }),
        )
    }

    fn script(&self, call: &Call) -> Script {
        let (pieces, cut) = call.pieces();
        let chunk = |choices: Value| {
            let mut c = json!({
                "id": "chatcmpl-fake1",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": snapshot(&call.model),
                "system_fingerprint": "fp_fake",
                "choices": choices,
            });
            if call.include_usage {
                c["usage"] = Value::Null;
            }
            data_event(&c)
        };
        let head = vec![chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
        )];
        let deltas = pieces
            .iter()
            .map(|p| {
                let lp = call.logprobs.map(|n| json!({"content": [logprob(p, n)], "refusal": null}));
                chunk(json!([{"index": 0, "delta": {"content": p}, "logprobs": lp, "finish_reason": null}]))
            })
            .collect();
        let mut tail = vec![chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": if cut { "length" } else { "stop" }}]),
        )];
        if call.include_usage {
            let completion = pieces.len() as u32;
            tail.push(data_event(&json!({
                "id": "chatcmpl-fake1",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": snapshot(&call.model),
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": {"prompt_tokens": call.prompt_tokens, "completion_tokens": completion, "total_tokens": call.prompt_tokens + completion},
            })));
        }
        tail.push("data: [DONE]\n\n".to_owned());
        Script { head, deltas, tail }
    }

    fn endless_delta(&self, call: &Call) -> String {
        data_event(
            &json!({"id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": snapshot(&call.model), "choices": [{"index": 0, "delta": {"content": "tick "}, "logprobs": null, "finish_reason": null}]}),
        )
    }

    fn ping(&self) -> String {
        ": keep-alive\n\n".to_owned()
    }

    fn error_event(&self) -> String {
        data_event(
            &json!({"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null}}),
        )
    }

    fn malformed_event(&self) -> String {
        "data: {\"id\":\"chatcmpl-fake1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"oops\"\n\n".to_owned()
    }
}

/// The dated snapshot OpenAI reports for an alias.
pub fn snapshot(model: &str) -> String {
    format!("{model}-2024-07-18")
}

/// A `logprobs.content` entry: the chosen token at -0.5, then `n`
/// alternatives (the chosen token first, as OpenAI lists it).
pub fn logprob(token: &str, n: u8) -> Value {
    let top: Vec<Value> = (0..n)
        .map(|k| {
            if k == 0 {
                json!({"token": token, "logprob": -0.5, "bytes": token.as_bytes()})
            } else {
                json!({"token": format!("alt{k}"), "logprob": -1.0 - f64::from(k), "bytes": []})
            }
        })
        .collect();
    json!({"token": token, "logprob": -0.5, "bytes": token.as_bytes(), "top_logprobs": top})
}
