//! A fake of the Gemini API (`POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`), from the API reference: the key in
//! `x-goog-api-key` (a key in the URL is refused, so the client is proven not
//! to put it there), roles `user` and `model` only ("Please use a valid role"),
//! `systemInstruction`, `generationConfig` with unknown names refused,
//! `candidates[].content.parts[].text`, `finishReason`, `usageMetadata`,
//! `logprobsResult`, and `{"error":{"code","message","status"}}` (an invalid
//! key is a 400 with reason `API_KEY_INVALID`, as the real API answers).

use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Call, Incoming, Script, Vendor, data_event, json_response, words};

/// The Gemini fake.
pub struct Gemini;

const TOP_FIELDS: &[&str] = &[
    "contents",
    "systemInstruction",
    "generationConfig",
    "safetySettings",
    "tools",
    "toolConfig",
    "cachedContent",
];
const CONFIG_FIELDS: &[&str] = &[
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "candidateCount",
    "responseMimeType",
];

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn error_body(code: u16, message: &str) -> Response {
    json_response(
        code,
        json!({"error": {"code": code, "message": message, "status": status_name(code)}}),
    )
}

fn invalid(message: &str) -> Response {
    error_body(400, message)
}

/// The version the API reports for a model alias.
pub fn version(model: &str) -> String {
    format!("{model}-002")
}

impl Vendor for Gemini {
    fn base_path(&self) -> &'static str {
        "/v1beta"
    }

    fn check(&self, key: &str, req: &Incoming<'_>) -> Result<Call, Response> {
        let route = req
            .path
            .strip_prefix("/v1beta/models/")
            .and_then(|rest| rest.split_once(':'));
        let (model, stream) = match route {
            Some((model, "generateContent")) if req.method == Method::POST => (model, false),
            Some((model, "streamGenerateContent")) if req.method == Method::POST => (model, true),
            _ => return Err(error_body(404, &format!("Method not found: {}", req.path))),
        };
        let query = req.query.unwrap_or_default();
        if query.split('&').any(|p| p.starts_with("key=")) {
            return Err(invalid(
                "the key was sent in the URL; the client must use the x-goog-api-key header",
            ));
        }
        if stream && !query.split('&').any(|p| p == "alt=sse") {
            return Err(invalid(
                "this fake serves streamGenerateContent only with alt=sse",
            ));
        }
        match req.header("x-goog-api-key") {
            None => {
                return Err(error_body(
                    403,
                    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                ));
            }
            Some(k) if k != key => {
                return Err(json_response(
                    400,
                    json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]}}),
                ));
            }
            Some(_) => {}
        }
        let body: Value = serde_json::from_slice(req.body)
            .map_err(|_| invalid("Invalid JSON payload received."))?;
        let Some(obj) = body.as_object() else {
            return Err(invalid("Invalid JSON payload received."));
        };
        for field in obj.keys() {
            if !TOP_FIELDS.contains(&field.as_str()) {
                return Err(invalid(&format!(
                    "Invalid JSON payload received. Unknown name \"{field}\": Cannot find field."
                )));
            }
        }
        let mut prompt_tokens = 0;
        if let Some(system) = body.get("systemInstruction") {
            let parts = system["parts"]
                .as_array()
                .ok_or_else(|| invalid("systemInstruction.parts is required"))?;
            for part in parts {
                prompt_tokens += words(
                    part["text"]
                        .as_str()
                        .ok_or_else(|| invalid("systemInstruction part needs text"))?,
                );
            }
        }
        let contents = body["contents"]
            .as_array()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                invalid("* GenerateContentRequest.contents: contents is not specified")
            })?;
        for content in contents {
            if !matches!(content["role"].as_str(), Some("user" | "model")) {
                return Err(invalid("Please use a valid role: user, model."));
            }
            let parts = content["parts"].as_array().filter(|p| !p.is_empty()).ok_or_else(|| invalid("* GenerateContentRequest.contents.parts: contents.parts must not be empty."))?;
            for part in parts {
                prompt_tokens += words(
                    part["text"]
                        .as_str()
                        .ok_or_else(|| invalid("a part needs text"))?,
                );
            }
        }
        let config = body.get("generationConfig").cloned().unwrap_or(json!({}));
        let Some(config_obj) = config.as_object() else {
            return Err(invalid("generationConfig must be an object"));
        };
        for field in config_obj.keys() {
            if !CONFIG_FIELDS.contains(&field.as_str()) {
                return Err(invalid(&format!(
                    "Invalid JSON payload received. Unknown name \"{field}\" at 'generation_config': Cannot find field."
                )));
            }
        }
        if config
            .get("temperature")
            .and_then(Value::as_f64)
            .is_some_and(|t| !(0.0..=2.0).contains(&t))
        {
            return Err(invalid(
                "* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]",
            ));
        }
        if config
            .get("stopSequences")
            .and_then(Value::as_array)
            .is_some_and(|s| s.len() > 5)
        {
            return Err(invalid(
                "* GenerateContentRequest.generation_config.stop_sequences: at most 5",
            ));
        }
        let response_logprobs = config
            .get("responseLogprobs")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let logprobs = config.get("logprobs").and_then(Value::as_u64);
        if logprobs.is_some() && !response_logprobs {
            return Err(invalid(
                "logprobs is only valid if responseLogprobs is true",
            ));
        }
        Ok(Call {
            stream,
            model: model.to_owned(),
            prompt_tokens,
            max_tokens: config
                .get("maxOutputTokens")
                .and_then(Value::as_u64)
                .map(|n| n as u32),
            logprobs: response_logprobs.then_some(logprobs.unwrap_or(0) as u8),
            include_usage: false,
        })
    }

    fn error(&self, status: u16, message: &str) -> Response {
        error_body(status, message)
    }

    fn complete(&self, call: &Call) -> Response {
        let (pieces, cut) = call.pieces();
        let mut candidate = json!({
            "content": {"parts": [{"text": pieces.concat()}], "role": "model"},
            "finishReason": if cut { "MAX_TOKENS" } else { "STOP" },
            "index": 0,
        });
        if let Some(n) = call.logprobs {
            candidate["logprobsResult"] = logprobs_result(&pieces, n);
        }
        json_response(
            200,
            json!({"candidates": [candidate], "usageMetadata": usage(call, pieces.len()), "modelVersion": version(&call.model)}),
        )
    }

    fn script(&self, call: &Call) -> Script {
        let (pieces, cut) = call.pieces();
        let last = pieces.len().saturating_sub(1);
        let deltas = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut candidate = json!({"content": {"parts": [{"text": p}], "role": "model"}, "index": 0});
                if let Some(n) = call.logprobs {
                    candidate["logprobsResult"] = logprobs_result(&[p], n);
                }
                // Every chunk reports the prompt; the last one, which
                // carries finishReason, reports the whole usage.
                let usage = if i == last {
                    candidate["finishReason"] = json!(if cut { "MAX_TOKENS" } else { "STOP" });
                    usage(call, pieces.len())
                } else {
                    json!({"promptTokenCount": call.prompt_tokens, "totalTokenCount": call.prompt_tokens})
                };
                data_event(&json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": version(&call.model)}))
            })
            .collect();
        Script {
            head: vec![],
            deltas,
            tail: vec![],
        }
    }

    fn endless_delta(&self, call: &Call) -> String {
        data_event(
            &json!({"candidates": [{"content": {"parts": [{"text": "tick "}], "role": "model"}, "index": 0}], "modelVersion": version(&call.model)}),
        )
    }

    fn ping(&self) -> String {
        ": ping\n\n".to_owned()
    }

    fn error_event(&self) -> String {
        data_event(
            &json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
        )
    }

    fn malformed_event(&self) -> String {
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"oops\"\n\n".to_owned()
    }
}

fn usage(call: &Call, completion: usize) -> Value {
    json!({"promptTokenCount": call.prompt_tokens, "candidatesTokenCount": completion, "totalTokenCount": call.prompt_tokens as usize + completion})
}

/// `logprobsResult` with the chosen token at -0.5 and `n` alternatives.
pub fn logprobs_result(pieces: &[&str], n: u8) -> Value {
    json!({
        "topCandidates": pieces.iter().map(|p| json!({"candidates": (0..n).map(|k| if k == 0 {
            json!({"token": p, "logProbability": -0.5})
        } else {
            json!({"token": format!("alt{k}"), "logProbability": -1.0 - f64::from(k)})
        }).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "chosenCandidates": pieces.iter().map(|p| json!({"token": p, "logProbability": -0.5})).collect::<Vec<_>>(),
    })
}
