//! The HTTP surface through `Router::oneshot` (no socket): auth, errors and
//! their status codes, the OpenAI and Ollama response shapes, JSON mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use lucid_server::{ServerBuilder, ServerConfig};
use serde_json::{Value, json};

fn chat(content: &str, max_tokens: u32) -> Value {
    json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0
    })
}

#[tokio::test]
async fn auth_is_required_everywhere_but_health() {
    let (s, _, _) = call(app(), "GET", "/health", None, None).await;
    assert_eq!(s, StatusCode::OK);
    for path in ["/v1/models", "/metrics", "/api/tags"] {
        let (s, _, body) = call(app(), "GET", path, None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        let body = String::from_utf8(body).unwrap();
        assert!(!body.contains(KEY));
        let (s, _, _) = call(app(), "GET", path, None, Some("wrong")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (s, _, body) = call(app(), "GET", "/v1/models", None, None).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (s, _, body) = call(app(), "GET", "/v1/models", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "smollm2");
    assert_eq!(v["data"][0]["object"], "model");
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_400s_naming_the_field() {
    // Malformed JSON.
    let (s, _, body) = call(
        app(),
        "POST",
        "/v1/chat/completions",
        Some("{\"model\": "),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{v}"
    );
    // Wrong types name the field.
    for (body, param) in [
        (
            json!({"model": "smollm2", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "smollm2", "messages": [], "max_tokens": "ten"}),
            "max_tokens",
        ),
        (json!({"model": "smollm2", "messages": "hi"}), "messages"),
        (
            json!({"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "temperature": 5}),
            "temperature",
        ),
        (
            json!({"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "n": 0}),
            "n",
        ),
        (
            json!({"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}),
            "top_logprobs",
        ),
        (
            json!({"model": "smollm2", "messages": [{"role": "function", "content": "x"}]}),
            "messages[0].role",
        ),
        (json!({"model": "smollm2", "messages": []}), "messages"),
        (
            json!({"model": "smollm2", "messages": [{"role": "user", "content": "x"}],
                   "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "format": "ipv4"}}}}),
            "response_format.json_schema.schema",
        ),
    ] {
        let (s, v) = post_json(app(), "/v1/chat/completions", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    // The unsupported schema keyword is named.
    let (_, v) = post_json(
        app(),
        "/v1/chat/completions",
        json!({"model": "smollm2", "messages": [{"role": "user", "content": "x"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "number", "multipleOf": 3}}}}),
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multipleOf"),
        "{v}"
    );
}

#[tokio::test]
async fn unknown_models_routes_and_long_prompts_and_big_bodies() {
    let (s, v) = post_json(
        app(),
        "/v1/chat/completions",
        json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("smollm2"));
    let (s, _, _) = call(app(), "GET", "/v1/nothing", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The test scheduler's context is 512 tokens.
    let long = "hello ".repeat(600);
    let (s, v) = post_json(app(), "/v1/chat/completions", chat(&long, 4)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "messages");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("512"),
        "{v}"
    );
    // The body limit is 64 KiB.
    let huge =
        json!({"model": "smollm2", "messages": [{"role": "user", "content": "x".repeat(70_000)}]})
            .to_string();
    let (s, _, body) = call(
        app(),
        "POST",
        "/v1/chat/completions",
        Some(&huge),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("65536"),
        "{v}"
    );
    // Provider models without a key are a clear 400, not a crash.
    let (s, v) = post_json(
        app(),
        "/v1/chat/completions",
        json!({"model": "compat:nowhere", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn chat_completion_shape_usage_and_logprobs() {
    let mut body = chat("What is the capital of France?", 8);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(!choice["message"]["content"].as_str().unwrap().is_empty());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let usage = &v["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(completion > 0 && completion <= 8);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );
    let lps = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(lps.len() as u64, completion);
    for lp in lps {
        assert!(lp["logprob"].as_f64().unwrap() <= 0.0);
        assert_eq!(lp["top_logprobs"].as_array().unwrap().len(), 2);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(lp["top_logprobs"][0]["token"], lp["token"]);
    }
}

#[tokio::test]
async fn completions_and_n_choices() {
    let (s, v) = post_json(
        app(),
        "/v1/completions",
        json!({"model": "smollm2", "prompt": "The sky is", "max_tokens": 5, "temperature": 0.9, "seed": 3, "n": 2, "logprobs": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    let lp = &choices[0]["logprobs"];
    assert_eq!(
        lp["tokens"].as_array().unwrap().len(),
        lp["token_logprobs"].as_array().unwrap().len()
    );
    // Seeded sampling repeats.
    let (_, again) = post_json(
        app(),
        "/v1/completions",
        json!({"model": "smollm2", "prompt": "The sky is", "max_tokens": 5, "temperature": 0.9, "seed": 3, "n": 2}),
    )
    .await;
    assert_eq!(again["choices"][0]["text"], choices[0]["text"]);
    assert_eq!(again["choices"][1]["text"], choices[1]["text"]);
}

#[tokio::test]
async fn json_schema_output_validates() {
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}, "capital": {"type": "boolean"}},
        "required": ["city", "population", "capital"],
        "additionalProperties": false
    });
    let mut body = chat("Give me a city as JSON.", 64);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": true}});
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        jsonschema::validator_for(&schema)
            .unwrap()
            .is_valid(&parsed),
        "{text}"
    );
    // The keys come in the schema's order.
    assert!(
        text.find("\"city\"").unwrap() < text.find("\"population\"").unwrap(),
        "{text}"
    );

    // A date and a code held to their format and pattern.
    let schema = json!({
        "type": "object",
        "properties": {"ended": {"type": "string", "format": "date"},
                       "code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
        "required": ["ended", "code"]
    });
    let mut body = chat("When did the Second World War end? Answer in JSON.", 48);
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "war", "schema": schema}});
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    assert!(validator.is_valid(&parsed), "{text}");

    let mut body = chat("Describe a dog in JSON.", 32);
    body["response_format"] = json!({"type": "json_object"});
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with('{'), "{text}");
    if v["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<Value>(text).unwrap().is_object());
    }
}

#[tokio::test]
async fn ollama_endpoints() {
    let (s, _, body) = call(app(), "GET", "/api/version", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["version"].is_string());
    let (s, _, body) = call(app(), "GET", "/api/tags", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["models"][0]["name"], "smollm2:latest");
    assert_eq!(v["models"][0]["details"]["format"], "gguf");
    let (s, v) = post_json(app(), "/api/show", json!({"model": "smollm2"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["model_info"]["general.architecture"], "llama");
    assert!(v["template"].as_str().unwrap().contains("im_start"));
    assert_eq!(v["capabilities"], json!(["completion"]));
    // Errors in Ollama's shape.
    let (s, v) = post_json(app(), "/api/chat", json!({"model": "nope", "messages": []})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("nope"));
    // Streaming chat: NDJSON, the last line done with statistics.
    let (s, _, body) = call(
        app(),
        "POST",
        "/api/chat",
        Some(&json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi!"}], "options": {"temperature": 0, "num_predict": 6}}).to_string()),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<Value> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert!(last["eval_count"].as_u64().unwrap() <= 6);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["done"] == false && l["message"]["role"] == "assistant")
    );
    // Non-streamed generate with a schema.
    let (s, v) = post_json(
        app(),
        "/api/generate",
        json!({"model": "smollm2", "prompt": "Is the sky blue? Answer in JSON.", "stream": false,
               "format": {"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"]},
               "options": {"temperature": 0, "num_predict": 20}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["done"], true);
    let parsed: Value = serde_json::from_str(v["response"].as_str().unwrap()).unwrap();
    assert!(parsed["answer"].is_boolean());
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let _ = post_json(app(), "/v1/chat/completions", chat("Hello", 3)).await;
    let (s, h, body) = call(app(), "GET", "/metrics", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body).unwrap();
    for name in [
        "lucid_requests_total{route=\"/v1/chat/completions\",status=\"200\"}",
        "lucid_completion_tokens_total{model=\"smollm2\"}",
        "lucid_time_to_first_token_seconds_bucket{model=\"smollm2\",le=\"+Inf\"}",
        "lucid_token_latency_seconds_count{model=\"smollm2\"}",
        "lucid_queue_depth{model=\"smollm2\"}",
        "lucid_active_sequences{model=\"smollm2\"}",
        "lucid_kv_cache_bytes{model=\"smollm2\"}",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
}

#[tokio::test]
async fn the_license_policy_refuses_routing_to_a_forbidden_use() {
    let policy = lucid_catalog::Policy {
        intended_uses: vec!["redistribute-weights".parse().unwrap()],
        refuse_unknown: false,
    };
    let state = state_with(
        scheduler_config(),
        lucid_server::ServerConfig {
            policy,
            ..server_config()
        },
    );
    // SmolLM2 (Apache-2.0) may be served.
    let lm = &state.models()[0];
    state
        .license_policy()
        .check_local("smollm2", &lm.model)
        .unwrap();
    let app = lucid_server::ServerBuilder::new(state).build();
    let (s, v) = post_json(
        app,
        "/v1/chat/completions",
        json!({"model": "anthropic:claude-3-5-haiku-latest", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "license_forbids_use");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redistribute"),
        "{v}"
    );
}

/// Ollama clients send tags, read digests and `/api/ps`, and expect an
/// object from `format: "json"`.
#[tokio::test]
async fn ollama_tags_digests_ps_and_json_objects() {
    let file = &model().meta.path;
    let want_digest = lucid_catalog::sha256_file(file).unwrap();
    let (s, _, body) = call(app(), "GET", "/api/tags", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["models"][0]["model"], "smollm2:latest");
    assert_eq!(v["models"][0]["digest"], want_digest.as_str());

    let (s, _, body) = call(app(), "GET", "/api/ps", None, Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let running = &v["models"][0];
    assert_eq!(running["name"], "smollm2:latest");
    assert_eq!(running["digest"], want_digest.as_str());
    assert_eq!(running["context_length"], 512);
    assert_eq!(running["size_vram"], 0);
    assert!(running["size"].as_u64().unwrap() >= model().meta.file_size);

    // The default tag reaches the model on both APIs; another tag does not.
    let mut body = chat("Hi!", 2);
    body["model"] = json!("smollm2:latest");
    let (s, v) = post_json(app(), "/v1/chat/completions", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post_json(
        app(),
        "/api/chat",
        json!({"model": "smollm2:latest", "stream": false, "messages": body["messages"],
               "options": {"num_predict": 2}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    body["model"] = json!("smollm2:7b");
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // `format: "json"` is an object, whatever the sampler draws: 50 seeds
    // at temperature 1, four at a time (the scheduler's slots).
    let mut completed = 0;
    for seeds in (0..50u64).collect::<Vec<_>>().chunks(4) {
        let answers = futures::future::join_all(seeds.iter().map(|&seed| {
            post_json(
                app(),
                "/api/generate",
                json!({"model": "smollm2", "prompt": "Describe a cat.", "stream": false,
                       "format": "json", "options": {"temperature": 1.0, "seed": seed, "num_predict": 32}}),
            )
        }))
        .await;
        for (seed, (s, v)) in seeds.iter().zip(answers) {
            assert_eq!(s, StatusCode::OK, "{v}");
            let text = v["response"].as_str().unwrap();
            assert!(
                text.trim_start().starts_with('{'),
                "seed {seed}: not an object: {text:?}"
            );
            if v["done_reason"] == "stop" {
                let parsed: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}: {text:?}"));
                assert!(parsed.is_object(), "seed {seed}: {text:?}");
                completed += 1;
            }
        }
    }
    eprintln!("format json: 50 of 50 began an object, {completed} complete within 32 tokens");
}

/// vLLM's output constraints: `structured_outputs` (`choice`, `regex`,
/// `json`) and the older `guided_*` fields hold the reply to them, on the
/// chat and the completions routes; two at once, or an unsupported key, is
/// a 400 naming it.
#[tokio::test]
async fn structured_outputs_constrain_the_reply() {
    let choices = ["Paris", "Lyon", "Marseille"];
    for constraint in [
        json!({"guided_choice": choices}),
        json!({"structured_outputs": {"choice": choices}}),
    ] {
        let mut body = chat("What is the capital of France?", 8);
        body.as_object_mut()
            .unwrap()
            .extend(constraint.as_object().unwrap().clone());
        let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(choices.contains(&text), "{constraint}: {text:?}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    }
    let regex = "[0-9]{4}-[0-9]{2}";
    let whole = regex::Regex::new(&format!("^(?:{regex})$")).unwrap();
    let mut body = chat("When did the war end?", 12);
    body["structured_outputs"] = json!({"regex": regex});
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(whole.is_match(text), "{text:?}");
    let (s, v) = post_json(
        app(),
        "/v1/completions",
        json!({"model": "smollm2", "prompt": "The year was", "max_tokens": 12,
               "guided_regex": regex}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(whole.is_match(text), "{text:?}");
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
                        "required": ["n"], "additionalProperties": false});
    let mut body = chat("Pick a number.", 16);
    body["guided_json"] = Value::String(schema.to_string());
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let n = serde_json::from_str::<Value>(text).unwrap()["n"]
        .as_i64()
        .unwrap();
    assert!((1..=9).contains(&n), "{text}");
    for (extra, param) in [
        (
            json!({"guided_choice": ["a"], "guided_regex": "a"}),
            "guided_choice",
        ),
        (
            json!({"structured_outputs": {"grammar": "root ::= \"a\""}}),
            "structured_outputs.grammar",
        ),
        (
            json!({"structured_outputs": {"choice": []}}),
            "structured_outputs.choice",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "guided_choice": ["a"]}),
            "response_format",
        ),
    ] {
        let mut body = chat("Hi", 4);
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
    }
}

/// Every field is applied or refused by name: vendor extensions lucid does
/// not apply get a 400 naming them, metadata passes, `ignore_eos` and
/// Ollama's `num_ctx` change the answer.
#[tokio::test]
async fn fields_are_applied_or_refused_by_name() {
    for field in [
        "guided_grammar",
        "guided_decoding_backend",
        "min_tokens",
        "use_beam_search",
        "reasoning_effort",
        "parallel_tool_calls",
        "some_new_extension",
    ] {
        let mut body = chat("Hi!", 2);
        body[field] = json!(["x"]);
        let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert_eq!(v["error"]["param"], field, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{v}"
        );
        let (s, v) = post_json(
            app(),
            "/v1/completions",
            json!({"model": "smollm2", "prompt": "Hi", "max_tokens": 2, field: ["x"]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert_eq!(v["error"]["param"], field, "{v}");
    }
    // Metadata and nulls pass.
    let mut body = chat("Hi!", 2);
    body["user"] = json!("someone");
    body["metadata"] = json!({"team": "a"});
    body["guided_json"] = Value::Null;
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // ignore_eos: the short greedy answer goes on to the token limit.
    let (s, plain) = post_json(app(), "/v1/chat/completions", chat("Say hi.", 60)).await;
    assert_eq!(s, StatusCode::OK, "{plain}");
    assert_eq!(plain["choices"][0]["finish_reason"], "stop", "{plain}");
    let mut body = chat("Say hi.", 60);
    body["ignore_eos"] = json!(true);
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 60, "{v}");

    // Ollama: unknown fields and options are refused by name, runtime-only
    // options pass, `think: true` is refused.
    let ollama = |extra: Value| {
        let mut body = json!({"model": "smollm2", "prompt": "Say hi.", "stream": false,
                              "options": {"temperature": 0, "num_predict": 40}});
        for (k, v) in extra.as_object().unwrap() {
            if k == "options" {
                for (ok, ov) in v.as_object().unwrap() {
                    body["options"][ok] = ov.clone();
                }
            } else {
                body[k] = v.clone();
            }
        }
        post_json(app(), "/api/generate", body)
    };
    for (extra, named) in [
        (json!({"template": "{{ .Prompt }}"}), "template"),
        (json!({"context": [1, 2, 3]}), "context"),
        (json!({"think": true}), "think"),
        (json!({"options": {"mirostat": 2}}), "mirostat"),
        (json!({"options": {"typical_p": 0.5}}), "typical_p"),
    ] {
        let (s, v) = ollama(extra.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{extra}: {v}");
        assert!(v["error"].as_str().unwrap().contains(named), "{v}");
    }
    let (s, whole) = ollama(json!({"keep_alive": "5m", "think": false,
                                   "options": {"num_thread": 8, "use_mmap": true}}))
    .await;
    assert_eq!(s, StatusCode::OK, "{whole}");
    // num_ctx: the reply stops where the window is full.
    let prompt_tokens = whole["prompt_eval_count"].as_u64().unwrap();
    let (s, v) = ollama(json!({"options": {"num_ctx": prompt_tokens + 3}})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["eval_count"], 3, "{v}");
    assert_eq!(v["done_reason"], "length", "{v}");
    let (s, v) = ollama(json!({"options": {"num_ctx": prompt_tokens}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("num_ctx"), "{v}");
}

/// One request with the given headers; the status and response headers.
async fn with_headers(
    app: axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            axum::body::Body::from(b.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let res = app.oneshot(req.body(body).unwrap()).await.unwrap();
    (res.status(), res.headers().clone())
}

/// CORS: off by default; with `--cors-origin`, a listed origin's preflight
/// is answered (without a key, as browsers send it) and its responses,
/// errors too, carry the origin; the key still applies; other origins get
/// no CORS headers. Without a key, a listed origin passes the origin check.
#[tokio::test]
async fn cors_only_for_listed_origins_and_the_key_still_applies() {
    const PAGE: &str = "https://app.example";
    let preflight = [
        ("origin", PAGE),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization,content-type,x-stainless-os",
        ),
    ];
    let allow_origin = |h: &axum::http::HeaderMap| {
        h.get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // Off by default: the preflight is refused (here by auth), with no
    // CORS headers.
    let (s, h) = with_headers(app(), "OPTIONS", "/v1/chat/completions", &preflight, None).await;
    assert!(s.is_client_error(), "{s}");
    assert_eq!(allow_origin(&h), None);

    let keyed = ServerBuilder::new(state_with(
        scheduler_config(),
        ServerConfig {
            cors_origins: vec![PAGE.to_owned()],
            ..server_config()
        },
    ))
    .build();
    let (s, h) = with_headers(
        keyed.clone(),
        "OPTIONS",
        "/v1/chat/completions",
        &preflight,
        None,
    )
    .await;
    assert!(s.is_success(), "{s}");
    assert_eq!(allow_origin(&h).as_deref(), Some(PAGE));
    let allowed_headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("x-stainless-os"),
        "{allowed_headers}"
    );
    let body = chat("Hi!", 2);
    let bearer = format!("Bearer {KEY}");
    let (s, h) = with_headers(
        keyed.clone(),
        "POST",
        "/v1/chat/completions",
        &[("origin", PAGE), ("authorization", &bearer)],
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(allow_origin(&h).as_deref(), Some(PAGE));
    // The page may read the headers lucid adds (embedding inputs cut).
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("x-lucid-truncated"), "{exposed}");
    // The key still applies, and the page can read the refusal.
    let (s, h) = with_headers(
        keyed.clone(),
        "POST",
        "/v1/chat/completions",
        &[("origin", PAGE)],
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(allow_origin(&h).as_deref(), Some(PAGE));
    // Another origin: no CORS headers.
    let (_, h) = with_headers(
        keyed,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        None,
    )
    .await;
    assert_eq!(allow_origin(&h), None);

    // Without a key: the listed origin passes the origin check, another
    // origin is refused.
    let open = ServerBuilder::new(state_with(
        scheduler_config(),
        ServerConfig {
            api_key: None,
            cors_origins: vec![PAGE.to_owned()],
            ..server_config()
        },
    ))
    .build();
    let host = ("host", "127.0.0.1:8080");
    let (s, _) = with_headers(
        open.clone(),
        "POST",
        "/v1/chat/completions",
        &[("origin", PAGE), host],
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = with_headers(
        open,
        "POST",
        "/v1/chat/completions",
        &[("origin", "https://evil.example"), host],
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// `/tokenize`, `/detokenize` and `/apply-template` show what the model is
/// given: the template's text for a conversation tokenizes to exactly as
/// many tokens as the chat route reads for it.
#[tokio::test]
async fn tokenize_detokenize_and_apply_template() {
    let m = model();
    let text = "Hello world, ünïcödé!";
    let (s, v) = post_json(app(), "/tokenize", json!({"content": text})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ids: Vec<u32> = serde_json::from_value(v["tokens"].clone()).unwrap();
    assert_eq!(ids, m.tokenizer.encode(text, false, true).unwrap());
    let (s, v) = post_json(
        app(),
        "/tokenize",
        json!({"content": text, "with_pieces": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let pieces = v["tokens"].as_array().unwrap();
    assert_eq!(pieces.len(), ids.len());
    // A piece that is part of a character comes as its bytes.
    let joined: Vec<u8> = pieces
        .iter()
        .flat_map(|p| match &p["piece"] {
            Value::String(s) => s.as_bytes().to_vec(),
            bytes => serde_json::from_value::<Vec<u8>>(bytes.clone()).unwrap(),
        })
        .collect();
    assert!(pieces.iter().any(|p| p["piece"].is_array()), "{v}");
    assert_eq!(String::from_utf8(joined).unwrap(), text, "{v}");

    let (s, v) = post_json(app(), "/detokenize", json!({"tokens": ids})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["content"], text);
    let (s, v) = post_json(app(), "/detokenize", json!({"tokens": [1, 10_000_000]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "tokens[1]", "{v}");

    let messages = json!([{"role": "user", "content": "What is 2+2?"}]);
    let (s, v) = post_json(app(), "/apply-template", json!({"messages": messages})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let prompt = v["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("<|im_start|>user\nWhat is 2+2?<|im_end|>"),
        "{prompt}"
    );
    let (_, v) = post_json(
        app(),
        "/tokenize",
        json!({"content": prompt, "add_special": true}),
    )
    .await;
    let prompt_ids = v["tokens"].as_array().unwrap().len();
    let mut body = chat("What is 2+2?", 1);
    body["messages"] = messages;
    let (s, v) = post_json(app(), "/v1/chat/completions", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], prompt_ids, "{v}");

    // Unknown fields are named.
    let (s, v) = post_json(app(), "/tokenize", json!({"content": "x", "tokenz": 1})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("tokenz"),
        "{v}"
    );
}

/// A generator embeds too (its last token's hidden state, normalized, as
/// Ollama and llama-server do for a model that names no pooling), between
/// its generations; it cannot rerank.
#[tokio::test]
async fn a_generator_embeds_and_cannot_rerank() {
    let (s, v) = post_json(
        app(),
        "/v1/embeddings",
        json!({"model": "smollm2", "input": ["Hello there", "General Kenobi"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for d in data {
        let e: Vec<f64> = d["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(e.len(), 576);
        let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let (s, v) = post_json(
        app(),
        "/v1/rerank",
        json!({"model": "smollm2", "query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(v["error"]["code"], "model_not_supported");
}
