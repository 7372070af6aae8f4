//! A chat template that grows a string without bound (issue 13, item 6):
//! its render runs out of the worker's memory, and the command or request
//! that drove it fails with an error naming the bound, while `lucid` itself
//! goes on. Before renders ran in workers, such a template aborted `lucid
//! run` and the whole server.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Doubles the last message 64 times when it says "boom"; renders plainly
/// otherwise, so the model loads.
const BOOM: &str = r#"{% set ns = namespace(s=messages[-1].content) %}{% if ns.s == "boom" %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{% endif %}{% for m in messages %}{{ m.role }}: {{ m.content }}
{% endfor %}assistant:"#;

/// Doubles a string on every render: refused when the model loads.
const ALWAYS: &str = r#"{% set ns = namespace(s="x") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"#;

const MEMORY: &str = "MiB of memory a render may use";

fn lucid(home: &Path) -> Command {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lucid"));
    cmd.env("LUCID_HOME", home)
        .env("LUCID_LOCAL_MODELS", models)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("LUCID_PYPI_URL", "http://127.0.0.1:9/pypi")
        .env("NO_COLOR", "1");
    cmd
}

fn model_file(home: &Path, name: &str, template: &str) -> PathBuf {
    let file = home.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!("from = \"smollm2\"\ntemplate = '''{template}'''\n"),
    )
    .unwrap();
    file
}

/// Fails with exit code 1 (an error, not a signal) and says `expected`.
fn fails_cleanly_saying(cmd: &mut Command, expected: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {stderr}");
    assert!(stderr.contains(expected), "no {expected:?} in: {stderr}");
}

#[test]
fn a_template_that_grows_a_string_without_bound_fails_alone() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // Growing on every render: refused when the model is made.
    let always = model_file(h, "always", ALWAYS);
    fails_cleanly_saying(
        lucid(h).args(["create", "always", "-f"]).arg(&always),
        MEMORY,
    );

    // Growing on one input: the model loads, that input fails, others answer.
    let boom = model_file(h, "boom", BOOM);
    let made = lucid(h)
        .args(["create", "boom", "-f"])
        .arg(&boom)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    fails_cleanly_saying(
        lucid(h).args(["run", "boom", "boom", "--max-tokens", "1"]),
        MEMORY,
    );
    let fine = lucid(h)
        .args(["run", "boom", "hello", "--max-tokens", "1"])
        .output()
        .unwrap();
    assert!(
        fine.status.success(),
        "{}",
        String::from_utf8_lossy(&fine.stderr)
    );

    // The server answers that request with a 400 naming the bound, and
    // goes on answering.
    let server = common::Server::start(lucid(h), &["--model", "boom", "--threads", "2"]);
    let (base, client) = (&server.base, &server.client);
    let chat = |content: &str| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "boom", "max_tokens": 1,
                          "messages": [{"role": "user", "content": content}]}))
            .send()
            .unwrap()
    };
    // More at once than there are workers (4): each waits for one, and
    // `/health` answers within a second throughout.
    let started = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let crowd: Vec<_> = (0..6).map(|_| s.spawn(|| chat("boom"))).collect();
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let asked = Instant::now();
                let health = client.get(format!("{base}/health")).send().unwrap();
                assert_eq!(health.status(), 200);
                assert!(
                    asked.elapsed() < Duration::from_secs(1),
                    "{:?}",
                    asked.elapsed()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        for refused in crowd {
            let refused = refused.join().unwrap();
            assert_eq!(refused.status(), 400);
            let body: Value = refused.json().unwrap();
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(MEMORY), "{body}");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    eprintln!("6 refused in {:.2} s", started.elapsed().as_secs_f64());
    let health = client.get(format!("{base}/health")).send().unwrap();
    assert_eq!(health.status(), 200);
    let answered = chat("hello");
    assert_eq!(answered.status(), 200, "{:?}", answered.text());
}
