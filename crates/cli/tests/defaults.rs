//! One question, every entry point, one prompt: `lucid run --json`,
//! `/v1/chat/completions`, `/api/chat`, `/v1/messages` and `/v1/responses`
//! of `lucid serve`, and `lucid explain --chat` build the same prompt token
//! ids for the same chat
//! request, the model's catalog defaults (SmolLM2's system message and
//! sampling settings) applied by each, and greedy generation gives the same
//! text. Before, the CLI alone applied them, and the server answered the
//! capital of France with a list of Paris landmarks. `lucid ps` then lists
//! the model the server holds.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const QUESTION: &str = "What is the capital of France?";

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models")
}

/// A private store whose only source is the test models' directory.
struct Home(PathBuf);

impl Home {
    fn new() -> Home {
        let path = std::env::temp_dir().join(format!("lucid-defaults-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Home(path)
    }

    fn lucid(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lucid"));
        cmd.env("LUCID_HOME", &self.0)
            .env("LUCID_LOCAL_MODELS", models_dir())
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env("LUCID_PYPI_URL", "http://127.0.0.1:9/pypi")
            .env("NO_COLOR", "1");
        cmd
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn the_cli_both_server_apis_and_the_glass_box_build_the_same_prompt() {
    let home = Home::new();
    // The CLI.
    let out = home
        .lucid()
        .args(["run", "smollm2", QUESTION, "--json", "--temperature", "0"])
        .args(["--max-tokens", "16", "--threads", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = json_of(&out.stdout);
    let cli_prompt: Vec<u64> = cli["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let cli_text = cli["text"].as_str().unwrap().to_owned();
    assert!(cli_text.contains("Paris"), "{cli_text}");

    // The glass box builds the same prompt.
    let out = home
        .lucid()
        .args(["explain", "smollm2", QUESTION, "--chat", "--json"])
        .args(["--max-tokens", "1", "--threads", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let glass: Vec<u64> = json_of(&out.stdout)["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(glass, cli_prompt, "explain --chat and run differ");

    // The server, both APIs.
    let server = common::Server::start(home.lucid(), &["--model", "smollm2", "--threads", "2"]);
    let (base, client) = (&server.base, &server.client);
    // Every route answers as JSON; any failure to send or parse fails the test.
    let post = |path: &str, body: Value| -> Value {
        client
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let messages = json!([{"role": "user", "content": QUESTION}]);
    let openai: Value = post(
        "/v1/chat/completions",
        json!({"model": "smollm2", "messages": messages, "temperature": 0, "max_tokens": 16}),
    );
    assert_eq!(
        openai["usage"]["prompt_tokens"].as_u64(),
        Some(cli_prompt.len() as u64),
        "{openai}"
    );
    assert_eq!(
        openai["choices"][0]["message"]["content"],
        cli_text.as_str(),
        "{openai}"
    );
    // Ollama's own default repeat penalty (1.1) changes even greedy
    // choices; the CLI's is 1.0, so the request says so.
    let ollama: Value = post(
        "/api/chat",
        json!({"model": "smollm2", "messages": messages, "stream": false,
                      "options": {"temperature": 0, "num_predict": 16, "repeat_penalty": 1.0}}),
    );
    assert_eq!(
        ollama["prompt_eval_count"].as_u64(),
        Some(cli_prompt.len() as u64),
        "{ollama}"
    );
    assert_eq!(ollama["message"]["content"], cli_text.as_str(), "{ollama}");
    // The token ids themselves: the completion route reads ids as given,
    // and greedy text from the CLI's ids is the CLI's text.
    let completion: Value = post(
        "/v1/completions",
        json!({"model": "smollm2", "prompt": cli_prompt, "temperature": 0, "max_tokens": 16}),
    );
    assert_eq!(
        completion["choices"][0]["text"],
        cli_text.as_str(),
        "{completion}"
    );
    // Anthropic's Messages API and OpenAI's Responses API: the same prompt
    // (the model's default system message included) and the same reply.
    let anthropic: Value = post(
        "/v1/messages",
        json!({"model": "smollm2", "messages": messages, "temperature": 0, "max_tokens": 16}),
    );
    let usage = &anthropic["usage"];
    assert_eq!(
        usage["input_tokens"].as_u64().unwrap()
            + usage["cache_read_input_tokens"].as_u64().unwrap(),
        cli_prompt.len() as u64,
        "{anthropic}"
    );
    assert_eq!(
        anthropic["content"][0]["text"],
        cli_text.as_str(),
        "{anthropic}"
    );
    let responses: Value = post(
        "/v1/responses",
        json!({"model": "smollm2", "input": messages, "temperature": 0,
                      "max_output_tokens": 16}),
    );
    assert_eq!(
        responses["usage"]["input_tokens"].as_u64(),
        Some(cli_prompt.len() as u64),
        "{responses}"
    );
    assert_eq!(
        responses["output"][0]["content"][0]["text"],
        cli_text.as_str(),
        "{responses}"
    );

    // `lucid ps` lists what the server holds.
    let out = home.lucid().args(["ps", "--host", base]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "smollm2:latest", "{table}");
    assert_eq!(row[1].len(), 12, "the digest's first 12 digits: {table}");

    // `lucid stop` unloads it: `ps` holds nothing, the model stays listed,
    // and the next request loads it again and answers as before.
    let ps = |home: &Home| home.lucid().args(["ps", "--host", base]).output().unwrap();
    let out = home
        .lucid()
        .args(["stop", "smollm2", "--host", base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ps(&home);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("holds no models"), "{said}");
    let tags: Value = client
        .get(format!("{base}/api/tags"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["models"][0]["name"], "smollm2:latest", "{tags}");
    let again: Value = post(
        "/v1/chat/completions",
        json!({"model": "smollm2", "messages": messages, "temperature": 0, "max_tokens": 16}),
    );
    assert_eq!(again["choices"][0]["message"]["content"], cli_text.as_str());
    let table = String::from_utf8_lossy(&ps(&home).stdout).into_owned();
    assert!(table.contains("smollm2:latest"), "{table}");
    let out = home
        .lucid()
        .args(["stop", "nope", "--host", base])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("`nope`"), "{said}");
    drop(server);
}
