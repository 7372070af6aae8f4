//! `lucid create NAME -f FILE`: a user model's system message, sampling
//! settings and chat template are honoured by `run`, `explain` and both
//! server APIs alike, exactly as the same settings given by hand; `show`,
//! `list` and `rm` know it; bad model files are refused with the reason.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

const SYSTEM: &str = "You are a pirate. Answer in one short sentence.";
const QUESTION: &str = "Where is the treasure?";

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models")
}

fn lucid(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lucid"));
    cmd.env("LUCID_HOME", home)
        .env("LUCID_LOCAL_MODELS", models_dir())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("LUCID_PYPI_URL", "http://127.0.0.1:9/pypi")
        .env("NO_COLOR", "1");
    cmd
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails_saying(cmd: &mut Command, expected: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{cmd:?} succeeded: {stderr}");
    assert!(stderr.contains(expected), "no {expected:?} in: {stderr}");
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().or_else(|| t["id"].as_u64()).unwrap())
        .collect()
}

#[test]
fn a_user_model_is_honoured_everywhere() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let file = h.join("pirate.toml");
    std::fs::write(
        &file,
        format!(
            "from = \"smollm2\"\nsystem = \"{SYSTEM}\"\nlicense_note = \"Apache-2.0, as SmolLM2\"\n\n[parameters]\ntemperature = 0\n"
        ),
    )
    .unwrap();
    let out = ok(lucid(h).args(["create", "pirate", "-f"]).arg(&file));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("created pirate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The reference: the same settings given by hand.
    let by_hand = json_of(
        &ok(lucid(h)
            .args(["run", "smollm2", QUESTION, "--json", "--system", SYSTEM])
            .args(["--temperature", "0", "--max-tokens", "24", "--threads", "2"]))
        .stdout,
    );
    let prompt = ids(&by_hand["prompt_tokens"]);
    let text = by_hand["text"].as_str().unwrap().to_owned();

    let run = json_of(
        &ok(lucid(h).args(["run", "pirate", QUESTION, "--json"]).args([
            "--max-tokens",
            "24",
            "--threads",
            "2",
        ]))
        .stdout,
    );
    assert_eq!(ids(&run["prompt_tokens"]), prompt);
    assert_eq!(run["text"], text.as_str(), "{run}");

    let explain = json_of(
        &ok(lucid(h)
            .args(["explain", "pirate", QUESTION, "--chat", "--json"])
            .args(["--max-tokens", "1", "--threads", "2"]))
        .stdout,
    );
    assert_eq!(ids(&explain["tokens"]), prompt);

    // Both server APIs, with no sampling settings in the requests.
    let server = common::Server::start(lucid(h), &["--model", "pirate", "--threads", "2"]);
    let (base, client) = (&server.base, &server.client);
    let messages = json!([{"role": "user", "content": QUESTION}]);
    let openai: Value = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "pirate", "messages": messages, "max_tokens": 24}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        openai["usage"]["prompt_tokens"].as_u64(),
        Some(prompt.len() as u64),
        "{openai}"
    );
    assert_eq!(
        openai["choices"][0]["message"]["content"],
        text.as_str(),
        "{openai}"
    );
    // Ollama's default repeat penalty (1.1) is its own, not a sampling
    // setting of the model file, so the request turns it off.
    let ollama: Value = client
        .post(format!("{base}/api/chat"))
        .json(
            &json!({"model": "pirate", "messages": messages, "stream": false,
                      "options": {"num_predict": 24, "repeat_penalty": 1.0}}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        ollama["prompt_eval_count"].as_u64(),
        Some(prompt.len() as u64),
        "{ollama}"
    );
    assert_eq!(ollama["message"]["content"], text.as_str(), "{ollama}");
    drop(server);

    // show, list and rm know it.
    let show = String::from_utf8(ok(lucid(h).args(["show", "pirate"])).stdout).unwrap();
    assert!(show.contains("pirate made from      smollm2"), "{show}");
    assert!(show.contains(SYSTEM), "{show}");
    assert!(show.contains("Apache-2.0, as SmolLM2"), "{show}");
    let list = String::from_utf8(ok(lucid(h).arg("list")).stdout).unwrap();
    assert!(list.contains("(from smollm2)"), "{list}");
    ok(lucid(h).args(["rm", "pirate"]));
    fails_saying(
        lucid(h).args(["run", "pirate", "hi"]),
        "unknown model `pirate`",
    );
}

/// A chat template of one's own replaces the model's: the prompt is what
/// the template writes, with no default system message.
#[test]
fn a_user_template_replaces_the_models() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let file = h.join("plain.toml");
    std::fs::write(
        &file,
        "from = \"smollm2\"\ntemplate = \"{% for m in messages %}{{ m.role }}: {{ m.content }}\\n{% endfor %}assistant:\"\n",
    )
    .unwrap();
    ok(lucid(h).args(["create", "plain", "-f"]).arg(&file));
    let run = json_of(
        &ok(lucid(h)
            .args(["run", "plain", QUESTION, "--json", "--temperature", "0"])
            .args(["--max-tokens", "1", "--threads", "2"]))
        .stdout,
    );
    // The catalog's system message is still the default, now written by
    // the user's template.
    let raw = json_of(
        &ok(lucid(h)
            .args(["run", "smollm2", "--raw", "--json", "--temperature", "0"])
            .arg(format!(
                "system: You are a helpful AI assistant.\nuser: {QUESTION}\nassistant:"
            ))
            .args(["--max-tokens", "1", "--threads", "2"]))
        .stdout,
    );
    assert_eq!(ids(&run["prompt_tokens"]), ids(&raw["prompt_tokens"]));
}

#[test]
fn bad_model_files_are_refused_with_the_reason() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let write = |name: &str, text: &str| {
        let path = h.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = write("good.toml", "from = \"smollm2\"\n");
    fails_saying(
        lucid(h).args(["create", "smollm2", "-f"]).arg(&good),
        "cannot create `smollm2`: the catalog has a model of that name",
    );
    fails_saying(
        lucid(h).args(["create", "a/b", "-f"]).arg(&good),
        "cannot create `a/b`: a model name is a word",
    );
    let typo = write("typo.toml", "from = \"smollm2\"\nsytem = \"x\"\n");
    fails_saying(
        lucid(h).args(["create", "x", "-f"]).arg(&typo),
        "unknown field `sytem`",
    );
    let hot = write(
        "hot.toml",
        "from = \"smollm2\"\n[parameters]\ntemperature = -2\n",
    );
    fails_saying(
        lucid(h).args(["create", "x", "-f"]).arg(&hot),
        "temperature must be a number >= 0, not -2",
    );
    let nowhere = write("nowhere.toml", "from = \"smolm2\"\n");
    fails_saying(
        lucid(h).args(["create", "x", "-f"]).arg(&nowhere),
        "did you mean `smollm2`?",
    );
    let itself = write("itself.toml", "from = \"x\"\n");
    fails_saying(
        lucid(h).args(["create", "x", "-f"]).arg(&itself),
        "it is made from itself",
    );
    let broken = write(
        "broken.toml",
        "from = \"smollm2\"\ntemplate = \"{% for %}\"\n",
    );
    fails_saying(
        lucid(h).args(["create", "x", "-f"]).arg(&broken),
        "the model's chat template does not compile",
    );
    // Nothing refused was kept.
    fails_saying(lucid(h).args(["run", "x", "hi"]), "unknown model `x`");
    fails_saying(
        lucid(h)
            .args(["create", "x", "-f"])
            .arg(h.join("missing.toml")),
        "missing.toml",
    );
}
