//! The Anthropic Messages API (`/v1/messages`, `/v1/messages/count_tokens`)
//! on the real SmolLM2, checked against the OpenAI route on the same model:
//! the same conversation gives the same prompt and, greedy, the same reply;
//! streams carry Anthropic's named events; stop sequences, prefill, usage
//! and errors are as the `anthropic` SDK reads them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

const QUESTION: &str = "What is the capital of France?";
const SYSTEM: &str = "You are a geography teacher.";

fn messages_request(extra: Value) -> Value {
    let mut req = json!({
        "model": "smollm2",
        "max_tokens": 24,
        "temperature": 0,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": QUESTION}],
    });
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    req
}

/// One request with the given headers: status and JSON body.
async fn with_headers(path: &str, headers: &[(&str, &str)], body: Value) -> (StatusCode, Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app()
        .oneshot(req.body(axum::body::Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_reply_is_the_openai_routes_reply_in_anthropics_shape() {
    let (s, reply) = post_json(app(), "/v1/messages", messages_request(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{reply}");
    let (s, openai) = post_json(
        app(),
        "/v1/chat/completions",
        json!({
            "model": "smollm2", "max_tokens": 24, "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": QUESTION}],
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{openai}");
    let text = openai["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());
    assert_eq!(reply["type"], "message");
    assert_eq!(reply["role"], "assistant");
    assert_eq!(reply["model"], "smollm2");
    assert!(reply["id"].as_str().unwrap().starts_with("msg_"), "{reply}");
    assert_eq!(reply["content"], json!([{"type": "text", "text": text}]));
    let finish = openai["choices"][0]["finish_reason"].as_str().unwrap();
    let expected = if finish == "length" {
        "max_tokens"
    } else {
        "end_turn"
    };
    assert_eq!(reply["stop_reason"], expected, "{reply}");
    assert_eq!(reply["stop_sequence"], Value::Null);
    // Input is counted in Anthropic's parts: read afresh plus read from
    // the prefix cache (the OpenAI request just cached this prompt).
    let usage = &reply["usage"];
    let input = usage["input_tokens"].as_u64().unwrap()
        + usage["cache_read_input_tokens"].as_u64().unwrap();
    assert_eq!(Some(input), openai["usage"]["prompt_tokens"].as_u64());
    assert_eq!(
        usage["output_tokens"], openai["usage"]["completion_tokens"],
        "{reply}"
    );
    assert_eq!(usage["cache_creation_input_tokens"], 0);

    // count_tokens counts the same prompt.
    let (s, count) = post_json(
        app(),
        "/v1/messages/count_tokens",
        json!({"model": "smollm2", "system": SYSTEM,
               "messages": [{"role": "user", "content": QUESTION}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{count}");
    assert_eq!(count["input_tokens"].as_u64(), Some(input));

    // Text blocks read as a string does.
    let (_, blocks) = post_json(
        app(),
        "/v1/messages",
        messages_request(json!({
            "system": [{"type": "text", "text": SYSTEM}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": QUESTION, "cache_control": {"type": "ephemeral"}}]}],
        })),
    )
    .await;
    assert_eq!(blocks["content"], reply["content"], "{blocks}");
}

#[tokio::test]
async fn a_stream_carries_anthropics_named_events() {
    let (s, plain) = post_json(app(), "/v1/messages", messages_request(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{plain}");
    let (s, _, bytes) = call(
        app(),
        "POST",
        "/v1/messages",
        Some(&messages_request(json!({"stream": true})).to_string()),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let events = named_sse_events(&String::from_utf8(bytes).unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let deltas = names
        .iter()
        .filter(|n| **n == "content_block_delta")
        .count();
    assert!(deltas > 0, "{names:?}");
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, plain["content"][0]["text"].as_str().unwrap());
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], plain["stop_reason"]);
    assert_eq!(
        delta["usage"]["output_tokens"],
        plain["usage"]["output_tokens"]
    );
}

#[tokio::test]
async fn stop_sequences_and_prefill() {
    let (_, plain) = post_json(
        app(),
        "/v1/messages",
        messages_request(json!({"max_tokens": 32})),
    )
    .await;
    let text = plain["content"][0]["text"].as_str().unwrap().to_owned();
    // A word from the middle of the reply as a stop sequence: the reply
    // stops before it and names it.
    let words: Vec<&str> = text.split(' ').collect();
    assert!(words.len() > 4, "{text}");
    let stop = words[3];
    let (_, stopped) = post_json(
        app(),
        "/v1/messages",
        messages_request(json!({"max_tokens": 32, "stop_sequences": ["zzzz", stop]})),
    )
    .await;
    assert_eq!(stopped["stop_reason"], "stop_sequence", "{stopped}");
    assert_eq!(stopped["stop_sequence"], stop);
    let cut = &text[..text.find(stop).unwrap()];
    assert_eq!(stopped["content"][0]["text"], cut);

    // The reply's first words as a last assistant message: the model goes
    // on from them exactly as it went on when it wrote them itself.
    let prefill = words[..3].join(" ");
    let (_, continued) = post_json(
        app(),
        "/v1/messages",
        messages_request(json!({
            "max_tokens": 16,
            "messages": [{"role": "user", "content": QUESTION},
                         {"role": "assistant", "content": prefill}],
        })),
    )
    .await;
    let rest = continued["content"][0]["text"].as_str().unwrap();
    assert!(!rest.is_empty(), "{continued}");
    assert!(
        text.starts_with(&format!("{prefill}{rest}")),
        "{prefill:?} + {rest:?} is not how {text:?} begins"
    );
}

/// `output_config.format` constrains the reply to its JSON schema.
#[tokio::test]
async fn structured_output_follows_its_schema() {
    let schema = json!({"type": "object", "properties": {"city": {"enum": ["Paris", "Lyon"]}},
                        "required": ["city"], "additionalProperties": false});
    let (s, v) = post_json(
        app(),
        "/v1/messages",
        messages_request(json!({"max_tokens": 40,
            "output_config": {"format": {"type": "json_schema", "schema": schema}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    let reply: Value = serde_json::from_str(v["content"][0]["text"].as_str().unwrap()).unwrap();
    let city = reply["city"].as_str().unwrap();
    assert!(["Paris", "Lyon"].contains(&city), "{reply}");
    assert_eq!(reply.as_object().unwrap().len(), 1, "{reply}");
}

#[tokio::test]
async fn errors_have_anthropics_shape_and_name_the_field() {
    let cases = [
        (json!({"max_tokens": null}), "max_tokens", 400),
        (json!({"top_logprobs": 2}), "top_logprobs", 400),
        (json!({"temperature": 1.5}), "temperature", 400),
        (
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0].type",
            400,
        ),
        (json!({"tool_choice": {"type": "any"}}), "tool_choice", 400),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
            "thinking",
            400,
        ),
        (
            json!({"messages": [{"role": "assistant", "content": [
                {"type": "tool_result", "tool_use_id": "x", "content": "1"}]}]}),
            "tool_result",
            400,
        ),
        (
            json!({"messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64"}}]}]}),
            "image",
            400,
        ),
        (json!({"messages": []}), "messages", 400),
        (json!({"output_config": {"effort": "high"}}), "effort", 400),
        (
            json!({"output_config": {"format": {"type": "json_schema", "schema": {"type": "nope"}}}}),
            "output_config.format.schema",
            400,
        ),
        (json!({"model": "nope"}), "nope", 404),
        (json!({"model": "anthropic:claude-x"}), "provider", 400),
    ];
    for (extra, named, status) in cases {
        let mut body = messages_request(extra.clone());
        if body["max_tokens"].is_null() {
            body.as_object_mut().unwrap().remove("max_tokens");
        }
        let (s, v) = post_json(app(), "/v1/messages", body).await;
        assert_eq!(s.as_u16(), status, "{extra}: {v}");
        assert_eq!(v["type"], "error", "{v}");
        let kind = if status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(v["error"]["type"], kind, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{extra}: {message}");
    }
    // Metadata and a disabled thinking are accepted.
    let (s, v) = post_json(
        app(),
        "/v1/messages",
        messages_request(json!({"max_tokens": 2, "metadata": {"user_id": "u1"},
                                "thinking": {"type": "disabled"}, "tools": []})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The key as Anthropic's SDKs send it; without it, a 401 in their shape.
    let body = messages_request(json!({"max_tokens": 2}));
    let (s, v) = with_headers(
        "/v1/messages",
        &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = with_headers("/v1/messages", &[("x-api-key", "wrong")], body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
}

/// Tools as Anthropic's API has them: `tool_choice: any` yields a
/// `tool_use` block whose input validates against its schema, plain and
/// streamed (`input_json_delta`); a `tool_result` goes back into the
/// conversation, and the model answers.
#[tokio::test]
async fn tool_use_and_tool_results() {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                        "required": ["city"], "additionalProperties": false});
    let tools = json!([{"name": "get_weather", "description": "The weather in a city.",
                        "input_schema": schema}]);
    let ask = messages_request(json!({"max_tokens": 60, "tools": tools,
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}));
    let (s, v) = post_json(app(), "/v1/messages", ask.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let block = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    assert_eq!(block["name"], "get_weather");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert!(
        jsonschema::validator_for(&schema)
            .unwrap()
            .is_valid(&block["input"]),
        "{block}"
    );

    // Streamed: the block starts with an empty input, which one
    // `input_json_delta` completes.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let (_, _, bytes) = call(
        app(),
        "POST",
        "/v1/messages",
        Some(&streamed.to_string()),
        Some(KEY),
    )
    .await;
    let body = String::from_utf8(bytes).unwrap();
    let data: Vec<Value> = sse_data(&body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let start = data
        .iter()
        .find(|d| d["type"] == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(start["content_block"]["input"], json!({}));
    let partial: String = data
        .iter()
        .filter(|d| d["delta"]["type"] == "input_json_delta")
        .map(|d| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        block["input"]
    );
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // The result goes back; the model answers in text.
    let history = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"],
                                      "content": [{"type": "text", "text": "18 degrees"}]}]},
    ]);
    let (s, v) = post_json(
        app(),
        "/v1/messages",
        messages_request(
            json!({"max_tokens": 16, "tools": tools, "tool_choice": {"type": "none"},
                                "messages": history}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["content"][0]["type"], "text", "{v}");
    assert_ne!(v["stop_reason"], "tool_use");
    let (_, with_result) = post_json(
        app(),
        "/v1/messages/count_tokens",
        json!({"model": "smollm2", "messages": history}),
    )
    .await;
    let (_, without) = post_json(
        app(),
        "/v1/messages/count_tokens",
        json!({"model": "smollm2", "messages": [history[0]]}),
    )
    .await;
    assert!(
        with_result["input_tokens"].as_u64() > without["input_tokens"].as_u64(),
        "{with_result} {without}"
    );
}
