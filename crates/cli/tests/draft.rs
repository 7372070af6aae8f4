//! `--draft lookup` (speculative decoding by prompt lookup) from the outside:
//! `lucid run` gives the same tokens with it as without, and reports the
//! guesses; `lucid serve --draft lookup` answers `/v1/chat/completions`
//! with that same text.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

/// An answer that repeats its prompt, so that guesses are made and kept.
const EDIT: &str = "Repeat this list exactly: apples, pears, plums, cherries, grapes, apples, pears, plums, cherries, grapes.";

fn model() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "run scripts/fetch-test-models.sh: {} is missing",
        path.display()
    );
    path
}

fn lucid(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lucid"));
    cmd.env("LUCID_HOME", home)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("LUCID_PYPI_URL", "http://127.0.0.1:9/pypi")
        .env("NO_COLOR", "1");
    cmd
}

fn run_json(home: &std::path::Path, extra: &[&str]) -> Value {
    let out = lucid(home)
        .arg("run")
        .arg(model())
        .args([EDIT, "--json", "--temperature", "0", "--max-tokens", "48"])
        .args(["--threads", "2"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn drafting_changes_the_speed_not_the_answer() {
    let home = std::env::temp_dir().join(format!("lucid-draft-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();

    let plain = run_json(&home, &[]);
    let drafting = run_json(&home, &["--draft", "lookup", "--draft-max", "6"]);
    assert_eq!(drafting["tokens"], plain["tokens"]);
    assert_eq!(drafting["text"], plain["text"]);
    assert_eq!(plain["timings"]["draft_tokens"], 0);
    let drafted = drafting["timings"]["draft_tokens"].as_u64().unwrap();
    let kept = drafting["timings"]["draft_accepted"].as_u64().unwrap();
    assert!(
        kept > 0 && kept <= drafted,
        "{kept} of {drafted} guesses kept: {}",
        drafting["text"]
    );

    // The server drafts too, and answers the same text.
    let model = model();
    let args = [
        "--threads",
        "2",
        "--draft",
        "lookup",
        "--model",
        model.to_str().unwrap(),
    ];
    let server = common::Server::start(lucid(&home), &args);
    let (base, client) = (&server.base, &server.client);
    let reply: Value = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({
            "model": "SmolLM2-135M-Instruct.Q4_1",
            "messages": [{"role": "user", "content": EDIT}],
            "temperature": 0,
            "max_tokens": 48,
        }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"], plain["text"],
        "{reply}"
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics:\n{metrics}"))
    };
    let (served_drafted, served_kept) = (
        counter("lucid_draft_tokens_total"),
        counter("lucid_draft_accepted_tokens_total"),
    );
    eprintln!(
        "lucid run: {kept} of {drafted} guesses kept; lucid serve: {served_kept} of {served_drafted}"
    );
    assert!(served_kept > 0 && served_kept <= served_drafted);
    let _ = std::fs::remove_dir_all(&home);
}
