//! OpenAI's Responses API (`POST /v1/responses`) on the real SmolLM2,
//! checked against the chat route on the same model: the same conversation
//! gives the same prompt and, greedy, the same text; streams carry the
//! named, numbered events the SDK reads; `text.format` constrains the
//! output; what lucid does not offer is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

const QUESTION: &str = "What is the capital of France?";
const SYSTEM: &str = "You are a geography teacher.";

fn request(extra: Value) -> Value {
    let mut req = json!({
        "model": "smollm2",
        "max_output_tokens": 24,
        "temperature": 0,
        "instructions": SYSTEM,
        "input": QUESTION,
    });
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    req
}

#[tokio::test]
async fn a_response_is_the_chat_routes_reply_in_the_responses_shape() {
    let (s, r) = post_json(app(), "/v1/responses", request(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, chat) = post_json(
        app(),
        "/v1/chat/completions",
        json!({
            "model": "smollm2", "max_tokens": 24, "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": QUESTION}],
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{chat}");
    let text = chat["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(r["object"], "response");
    assert!(r["id"].as_str().unwrap().starts_with("resp_"), "{r}");
    let message = &r["output"][0];
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"][0]["type"], "output_text");
    assert_eq!(message["content"][0]["text"], text);
    let length = chat["choices"][0]["finish_reason"] == "length";
    assert_eq!(
        r["status"],
        if length { "incomplete" } else { "completed" },
        "{r}"
    );
    if length {
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    }
    assert_eq!(r["usage"]["input_tokens"], chat["usage"]["prompt_tokens"]);
    assert_eq!(
        r["usage"]["output_tokens"],
        chat["usage"]["completion_tokens"]
    );
    assert_eq!(r["instructions"], SYSTEM);
    assert_eq!(r["temperature"], 0.0);

    // The same conversation as items, with input_text parts.
    let (_, items) = post_json(
        app(),
        "/v1/responses",
        request(json!({
            "instructions": null,
            "input": [
                {"role": "developer", "content": SYSTEM},
                {"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": QUESTION}]},
            ],
        })),
    )
    .await;
    assert_eq!(items["output"][0]["content"][0]["text"], text, "{items}");
}

#[tokio::test]
async fn a_stream_carries_the_named_numbered_events() {
    let (_, plain) = post_json(app(), "/v1/responses", request(json!({}))).await;
    let (s, _, bytes) = call(
        app(),
        "POST",
        "/v1/responses",
        Some(&request(json!({"stream": true})).to_string()),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let events = named_sse_events(&String::from_utf8(bytes).unwrap());
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64);
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let deltas = names
        .iter()
        .filter(|n| **n == "response.output_text.delta")
        .count();
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    let last = if plain["status"] == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        last,
    ]);
    assert_eq!(names, expected);
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect();
    let plain_text = plain["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, plain_text);
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], plain_text);
    assert_eq!(
        done["usage"]["output_tokens"],
        plain["usage"]["output_tokens"]
    );
}

#[tokio::test]
async fn text_format_constrains_the_output() {
    let schema = json!({"type": "object", "properties": {"city": {"enum": ["Paris", "Lyon"]}},
                        "required": ["city"], "additionalProperties": false});
    let (s, r) = post_json(
        app(),
        "/v1/responses",
        request(json!({"max_output_tokens": 40,
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "completed", "{r}");
    let out: Value =
        serde_json::from_str(r["output"][0]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert!(
        ["Paris", "Lyon"].contains(&out["city"].as_str().unwrap()),
        "{out}"
    );
    assert_eq!(r["text"]["format"]["type"], "json_schema");
}

#[tokio::test]
async fn what_lucid_does_not_offer_is_refused_by_name() {
    let cases = [
        (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
        (
            json!({"tools": [{"type": "function", "name": "f", "cache": true}]}),
            "tools[0].cache",
        ),
        (
            json!({"tools": [{"type": "function", "name": "f"}],
                   "tool_choice": {"type": "function", "name": "g"}}),
            "tool_choice",
        ),
        (
            json!({"tools": [{"type": "function", "name": "f"}], "tool_choice": "required",
                   "text": {"format": {"type": "json_object"}}}),
            "text.format",
        ),
        (
            json!({"input": [{"type": "function_call", "call_id": "c", "name": "f",
                              "arguments": "{not json"}]}),
            "input[0].arguments",
        ),
        (
            json!({"input": [{"type": "function_call_output", "call_id": "c"}]}),
            "input[0].output",
        ),
        (
            json!({"input": [{"type": "file_search_call", "id": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (json!({"reasoning": {"effort": "high"}}), "reasoning"),
        (json!({"truncation": "auto"}), "truncation"),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
            "input[0].content[0]",
        ),
        (json!({"input": []}), "input"),
        (json!({"max_output_tokens": 0}), "max_output_tokens"),
        (
            json!({"text": {"format": {"type": "json_schema", "name": "x"}}}),
            "text.format.schema",
        ),
    ];
    for (extra, param) in cases {
        let (s, v) = post_json(app(), "/v1/responses", request(extra.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
    }
    // Metadata, `store` and the values that ask for what lucid does pass.
    let (s, v) = post_json(
        app(),
        "/v1/responses",
        request(
            json!({"max_output_tokens": 2, "store": true, "metadata": {"k": "v"},
                       "tools": [], "truncation": "disabled", "reasoning": {"effort": "none"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post_json(app(), "/v1/responses", request(json!({"model": "nope"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}
