//! Tool calling on `/v1/chat/completions` with the real SmolLM2, whose
//! template has no tool support, so the tools are written into the
//! conversation (the Hermes format): a `required` or named `tool_choice`
//! always yields a call whose arguments validate against the function's
//! schema (50 sampled runs); streamed calls arrive whole with
//! `finish_reason: "tool_calls"`; earlier calls and results reach the
//! prompt; `none` shows no tools.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "The weather in a city, in degrees Celsius.",
            "parameters": {"type": "object",
                "properties": {"city": {"type": "string", "maxLength": 40},
                               "days": {"type": "integer"}},
                "required": ["city", "days"], "additionalProperties": false}}},
        {"type": "function", "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}},
                           "required": ["zone"]}}}
    ])
}

fn request(extra: Value) -> Value {
    let mut req = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": "What is the weather in Paris for the next 3 days?"}],
        "tools": tools(),
        "max_tokens": 60,
    });
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    req
}

fn validator(name: &str) -> jsonschema::Validator {
    let tools = tools();
    let function = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["function"])
        .find(|f| f["name"] == name)
        .unwrap();
    jsonschema::validator_for(&function["parameters"]).unwrap()
}

#[tokio::test]
async fn a_required_call_always_parses_and_validates() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..5 {
        let (s, v) = post_json(
            app(),
            "/v1/chat/completions",
            request(json!({"tool_choice": "required", "n": 10, "seed": seed, "temperature": 1.0})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for choice in v["choices"].as_array().unwrap() {
            assert_eq!(choice["finish_reason"], "tool_calls", "{choice}");
            let calls = choice["message"]["tool_calls"].as_array().unwrap();
            assert_eq!(calls.len(), 1, "{choice}");
            let call = &calls[0];
            assert_eq!(call["type"], "function");
            assert!(call["id"].as_str().unwrap().starts_with("call_"));
            let name = call["function"]["name"].as_str().unwrap();
            let args: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            let errors: Vec<String> = validator(name)
                .iter_errors(&args)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{name}({args}): {errors:?}");
            seen.insert(name.to_owned());
        }
    }
    eprintln!("functions called: {seen:?}");

    // A named function is the one called.
    let (s, v) = post_json(
        app(),
        "/v1/chat/completions",
        request(json!({"temperature": 0,
            "tool_choice": {"type": "function", "function": {"name": "get_time"}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_time", "{v}");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(validator("get_time").is_valid(&args), "{args}");
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null, "{v}");
}

#[tokio::test]
async fn a_streamed_call_is_the_plain_call_in_pieces() {
    let body = request(json!({"tool_choice": "required", "temperature": 0}));
    let (_, plain) = post_json(app(), "/v1/chat/completions", body.clone()).await;
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (s, _, bytes) = call(
        app(),
        "POST",
        "/v1/chat/completions",
        Some(&streamed.to_string()),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let chunks: Vec<Value> = sse_data(&String::from_utf8(bytes).unwrap())
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    // Streamed as written: the id, type and name once, then the arguments
    // in pieces that join to the plain reply's arguments.
    assert!(calls.len() > 2, "{chunks:?}");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let expected = &plain["choices"][0]["message"]["tool_calls"][0];
    let names: Vec<&Value> = calls
        .iter()
        .filter_map(|c| c["function"].get("name"))
        .collect();
    assert_eq!(names, [&expected["function"]["name"]]);
    assert_eq!(calls.iter().filter(|c| c.get("id").is_some()).count(), 1);
    let joined: String = calls
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap())
        .collect();
    let parsed = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    assert_eq!(
        parsed(&joined),
        parsed(expected["function"]["arguments"].as_str().unwrap())
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("tool_calls")]);
}

#[tokio::test]
async fn calls_and_results_reach_the_prompt_and_none_shows_no_tools() {
    let history = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"},
    ]);
    let (s, v) = post_json(app(), "/apply-template", json!({"messages": history})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let prompt = v["prompt"].as_str().unwrap();
    assert!(
        prompt.contains(
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\",\"days\":1}}\n</tool_call>"
        ),
        "{prompt}"
    );
    assert!(
        prompt
            .contains("<|im_start|>user\n<tool_response>\n18 degrees and sunny\n</tool_response>"),
        "{prompt}"
    );
    // The agent's last step: with the result in, no call asked for.
    let (s, v) = post_json(
        app(),
        "/v1/chat/completions",
        request(
            json!({"messages": history, "tool_choice": "none", "temperature": 0, "max_tokens": 24}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let message = &v["choices"][0]["message"];
    assert!(message.get("tool_calls").is_none(), "{v}");
    assert!(!message["content"].as_str().unwrap().is_empty(), "{v}");
    assert_ne!(v["choices"][0]["finish_reason"], "tool_calls");
    // `none` shows no tools: the prompt is the conversation's alone.
    let (_, with_none) = post_json(
        app(),
        "/v1/chat/completions",
        request(json!({"tool_choice": "none", "max_tokens": 1})),
    )
    .await;
    let (_, without) = post_json(
        app(),
        "/v1/chat/completions",
        json!({"model": "smollm2", "max_tokens": 1, "messages":
               [{"role": "user", "content": "What is the weather in Paris for the next 3 days?"}]}),
    )
    .await;
    assert_eq!(
        with_none["usage"]["prompt_tokens"],
        without["usage"]["prompt_tokens"]
    );
    let (_, auto) = post_json(
        app(),
        "/v1/chat/completions",
        request(json!({"max_tokens": 1})),
    )
    .await;
    assert!(
        auto["usage"]["prompt_tokens"].as_u64() > without["usage"]["prompt_tokens"].as_u64(),
        "the tools are shown with auto: {auto}"
    );
}

#[tokio::test]
async fn bad_tools_are_refused_by_name() {
    for (extra, param) in [
        (
            json!({"tools": [{"type": "function"}]}),
            "tools[0].function",
        ),
        (
            json!({"tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
        ),
        (
            json!({"tool_choice": "required", "logprobs": true}),
            "logprobs",
        ),
        (
            json!({"tool_choice": "required", "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function",
                "function": {"name": "f", "arguments": "{not json"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
    ] {
        let (s, v) = post_json(app(), "/v1/chat/completions", request(extra.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
    }
}
